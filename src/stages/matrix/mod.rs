//! `imagepipe matrix`: the build legs, as the CI system's job matrix.
//!
//! Prints the matrix on stdout and sets it as the step output `matrix`, with `leg-count` and `cached`. Refuses
//! (exit 2) a manifest that is invalid, a Dockerfile it declares that is missing or unreadable, and Dockerfiles
//! built `FROM` one another in a cycle: no leg could build them. With the published image-info, units that
//! would build the same image again are left out (see [`cache`]); a registry that cannot be asked about a base
//! image fails the stage (exit 1) rather than planning a full rebuild unannounced.

mod cache;
pub mod output;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;

use crate::build::dependencies::read_dependencies;
use crate::ci::CiHost;
use crate::inputs;
use crate::model::legs::{Filters, leave_out_cached, plan_legs};
use crate::model::platform::PlatformIdentity;
use crate::stages::summary;
use crate::store::registry::{ClientSettings, RegistryClient};

pub use output::Format;

pub struct Settings {
    pub manifest: PathBuf,
    pub variables: BTreeMap<String, String>,
    pub filters: Filters,
    /// The image-info last published: units unchanged since are left out.
    pub published_image_info: Option<PathBuf>,
    pub format: Format,
    pub client: ClientSettings,
}

pub async fn run(settings: Settings, host: &mut dyn CiHost) -> anyhow::Result<()> {
    let Settings {
        manifest: manifest_file,
        variables,
        filters,
        published_image_info,
        format,
        client,
    } = settings;
    let manifest = inputs::load_manifest(&manifest_file, &variables)?;
    let published = match &published_image_info {
        Some(file) => Some(inputs::load_published_image_info(file, &manifest)?),
        None => None,
    };
    let dependencies = read_dependencies(&manifest, &manifest_file)?;

    let started = Instant::now();
    let planned = plan_legs(&manifest, &dependencies, &filters);
    let planning = started.elapsed();
    let planned_units = planned.iter().map(|leg| leg.units.len()).sum::<usize>();
    tracing::info!(
        "planned {} for {} in {planning:.1?}",
        summary::count(planned.len(), "leg"),
        summary::count(planned_units, "platform"),
    );

    let (legs, cached) = match &published {
        Some(published) => {
            let client = Arc::new(RegistryClient::new(client)?);
            let unchanged = cache::unchanged_units(
                &manifest,
                &manifest_file,
                &dependencies,
                &planned,
                published,
                &client,
            )
            .await?;
            let cached: Vec<PlatformIdentity> = planned
                .iter()
                .flat_map(|leg| &leg.units)
                .map(|unit| unit.identity.clone())
                .filter(|identity| unchanged.contains(identity))
                .collect();
            let legs = leave_out_cached(planned, |unit| unchanged.contains(unit));
            (legs, cached)
        }
        None => (planned, Vec::new()),
    };
    if let Some(file) = &published_image_info {
        tracing::info!(
            "left out {} unchanged since the published record `{}`",
            summary::count(cached.len(), "platform"),
            file.display()
        );
    }

    let matrix = output::matrix(format, &legs).to_string();
    println!("{matrix}");
    host.set_output("stage", "matrix")
        .and_then(|()| host.set_output("matrix", &matrix))
        .and_then(|()| host.set_output("leg-count", &legs.len().to_string()))
        .and_then(|()| host.set_output("cached", &output::cached_list(&cached).to_string()))
        .context("setting the step outputs")?;
    host.summary(&output::summary_markdown(&legs, &cached))
        .context("writing the step summary")?;
    let building: usize = legs.iter().map(|leg| leg.to_build().count()).sum();
    tracing::info!(
        "{} building {}",
        summary::count(legs.len(), "leg"),
        summary::count(building, "platform")
    );
    Ok(())
}
