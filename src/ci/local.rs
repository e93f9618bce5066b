//! A terminal or an unknown CI system: plain lines on stderr, no protocol.

use std::io;
use std::path::Path;

use std::sync::Arc;

use super::{CiHost, Masker};

pub struct Local;

impl CiHost for Local {
    fn set_output(&mut self, name: &str, value: &str) -> io::Result<()> {
        tracing::debug!("output {name}={value}");
        Ok(())
    }

    // Messages already name their file; a terminal has nowhere else to attach it.
    fn error(&mut self, message: &str, _file: Option<&Path>) {
        eprintln!("error: {message}");
    }

    fn warning(&mut self, message: &str, _file: Option<&Path>) {
        eprintln!("warning: {message}");
    }

    fn begin_group(&mut self, title: &str) {
        tracing::info!("{title}");
    }

    fn end_group(&mut self) {}

    // A terminal has no log to hide secrets from; they are never printed anyway.
    fn mask(&mut self, _secret: &str) {}

    fn masker(&self) -> Masker {
        Arc::new(|_| {})
    }

    fn summary(&mut self, _markdown: &str) -> io::Result<()> {
        Ok(())
    }
}
