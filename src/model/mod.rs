//! The pipeline's data: what to build (manifest), what was built (image-info), the stage ledger, the merge of
//! build fragments, and the merge of a run into the published image-info. Pure data and rules: no I/O, no
//! stage, no CI host.

pub mod dependencies;
pub mod image_info;
pub mod image_reference;
pub mod issue;
pub mod ledger;
pub mod leg_names;
pub mod legs;
pub mod manifest;
pub mod merge;
pub mod naming;
pub mod path_glob;
pub mod placement;
pub mod platform;
pub mod platform_record;
pub mod published;
pub mod reference;
pub mod variables;
