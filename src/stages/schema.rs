//! `imagepipe schema`: the JSON Schemas of the file formats, generated from the model types.

use std::io::Write;

use crate::files;
use crate::model::image_info::ImageInfo;
use crate::model::manifest::Manifest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Manifest,
    ImageInfo,
}

/// The schema as the bytes `imagepipe schema` prints and `schema/` holds.
pub fn schema_text(format: Format) -> Vec<u8> {
    let schema = match format {
        Format::Manifest => schemars::schema_for!(Manifest),
        Format::ImageInfo => schemars::schema_for!(ImageInfo),
    };
    files::to_bytes(&schema)
}

pub fn run(format: Format) -> anyhow::Result<()> {
    std::io::stdout().write_all(&schema_text(format))?;
    Ok(())
}
