use std::process::ExitCode;

use clap::Parser;
use imagepipe::{ci, cli::Cli, dispatch, report};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    report::init_logging(cli.verbose);
    let mut host = ci::detect();
    match dispatch::run(cli, host.as_mut()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report::report(&error, host.as_mut()),
    }
}
