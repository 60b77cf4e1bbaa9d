//! `portwatch-stress`: runs one HLK-style scenario against the harness
//! (Linux) or the installed driver (Windows), prints progress on stderr and
//! a summary (operations, packets, violations, leaks, ops/s) on stdout.
//! Exits 0 when the run was clean, 1 when it found a problem, 2 on a usage
//! error.

mod args;

use std::process::ExitCode;

use args::{Args, TargetKind};
use portwatch_scenarios::{Summary, Target};

fn run_on(target: &dyn Target, a: &Args) -> Summary {
    eprintln!(
        "portwatch-stress: {} on {} ({:?}, {} threads, seed {})",
        a.scenario,
        target.describe(),
        a.params.budget,
        a.params.threads,
        a.params.seed
    );
    a.scenario.run(target, &a.params)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn harness(a: &Args) -> Result<Summary, String> {
    use portwatch_scenarios::harness_target::{driver_path, HarnessConfig, HarnessTarget};
    let driver = a.driver.clone().unwrap_or_else(driver_path);
    let mut config = HarnessConfig { special_pool: a.special_pool, ..HarnessConfig::new(&driver, a.adapters) };
    if a.scenario == portwatch_scenarios::Scenario::LwfLogo {
        // Sends complete late, concurrently with pauses, as on Windows.
        config.completion =
            portwatch_scenarios::harness_target::Completion::Delayed(std::time::Duration::from_micros(200));
    }
    let target = HarnessTarget::load(config).map_err(|e| format!("loading {}: {e}", driver.display()))?;
    Ok(run_on(&target, a))
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn harness(_: &Args) -> Result<Summary, String> {
    Err("the harness target runs on x86_64 Linux only; use --target device".into())
}

#[cfg(windows)]
fn device(a: &Args) -> Result<Summary, String> {
    use portwatch_scenarios::device_target::{DeviceConfig, DeviceTarget};
    if a.special_pool {
        eprintln!("--special-pool: enable it with Driver Verifier on the machine (scripts/verifier.ps1)");
    }
    let target = DeviceTarget::new(DeviceConfig { adapters: a.adapter_names.clone(), peer: a.peer });
    Ok(run_on(&target, a))
}

#[cfg(not(windows))]
fn device(_: &Args) -> Result<Summary, String> {
    Err("the device target runs on Windows with the driver installed; use --target harness".into())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", args::USAGE);
        return ExitCode::SUCCESS;
    }
    let a = match Args::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("portwatch-stress: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let summary = match a.target {
        TargetKind::Harness => harness(&a),
        TargetKind::Device => device(&a),
    };
    match summary {
        Ok(s) => {
            print!("{s}");
            if s.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("portwatch-stress: {e}");
            ExitCode::FAILURE
        }
    }
}
