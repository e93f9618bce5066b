use std::process::ExitCode;

use clap::Parser as _;
use imagepipe::{ci, cli::Cli, dispatch, report};

#[tokio::main]
async fn main() -> ExitCode {
    let mut host = ci::detect();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return report::report_usage(&error, host.as_mut()),
    };
    report::init_logging(cli.verbose);
    match dispatch::run(cli, host.as_mut()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report::report(&error, host.as_mut()),
    }
}
