//! `portwatch.exe`: see `portwatch.exe --help` and the crate docs of
//! `portwatch_cli`.

use std::process::ExitCode;

use clap::Parser;
use portwatch_cli::cli::Cli;
use portwatch_cli::ops;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match ops::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("portwatch: {f}");
            ExitCode::from(f.code)
        }
    }
}
