//! `portwatch-check [--driver PATH] [--ops N | --duration SECS] [--threads N]
//! [--seed N] [--scenarios a,b,…] [--lowres on|off]`: runs the scenario set
//! (each scenario `--ops` operations, or for `--duration` seconds) against
//! a driver image under the harness (special pool on), then the
//! low-resources sweep, and prints one line: `CLEAN`, or
//! `FOUND <rule> — <message> [<scenario>]` for the first thing found.
//!
//! `--duration` is the long mode (hours are fine): its default set ends
//! with the packet flood, which fails when the process's memory, mappings,
//! threads or descriptors grow past their bounds between the end of its
//! warm-up and 95% of its run (`resources::Bounds::LONG_RUN`); the figures go to
//! stderr.
//! Exits 0 when clean, 1 when something was found, 2 on a usage error.
//! The driver is `--driver`, else `$PORTWATCH_DRIVER`, else the build output.

use std::process::ExitCode;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn main() -> ExitCode {
    use portwatch_scenarios::harness_target::driver_path;
    use portwatch_scenarios::verdict::{lowres_finding, run_set, LONG, ORDER};
    use portwatch_scenarios::{Params, Scenario};

    const USAGE: &str =
        "usage: portwatch-check [--driver PATH] [--ops N | --duration SECS] [--threads N] [--seed N] [--scenarios a,b,...] [--lowres on|off]";
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut driver = None;
    let mut params = Params::ops(4, 20_000, 1);
    let mut scenarios = None;
    let mut lowres = true;
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            eprintln!("portwatch-check: {flag} needs a value\n{USAGE}");
            return ExitCode::from(2);
        };
        let ok = match flag.as_str() {
            "--driver" => {
                driver = Some(std::path::PathBuf::from(value));
                true
            }
            "--ops" => value.parse().map(|n| params.budget = portwatch_scenarios::Budget::Ops(n)).is_ok(),
            "--duration" => value
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(|s| params.budget = portwatch_scenarios::Budget::Duration(std::time::Duration::from_secs_f64(s)))
                .is_some(),
            "--threads" => value.parse::<usize>().map(|n| params.threads = n.max(1)).is_ok(),
            "--seed" => value.parse().map(|n| params.seed = n).is_ok(),
            "--lowres" => match value.as_str() {
                "on" | "off" => {
                    lowres = value == "on";
                    true
                }
                _ => false,
            },
            "--scenarios" => value
                .split(',')
                .map(str::parse::<Scenario>)
                .collect::<Result<Vec<_>, _>>()
                .map(|s| scenarios = Some(s))
                .is_ok(),
            _ => false,
        };
        if !ok {
            eprintln!("portwatch-check: bad option {flag} {value}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let long = matches!(params.budget, portwatch_scenarios::Budget::Duration(_));
    let scenarios = scenarios.unwrap_or_else(|| if long { LONG.to_vec() } else { ORDER.to_vec() });
    let driver = driver.unwrap_or_else(driver_path);
    let finding = run_set(&driver, &scenarios, &params).or_else(|| lowres.then(|| lowres_finding(&driver)).flatten());
    match finding {
        None => {
            println!("CLEAN");
            ExitCode::SUCCESS
        }
        Some(f) => {
            println!("FOUND {f}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn main() -> ExitCode {
    eprintln!("portwatch-check runs the harness, which exists on x86_64 Linux only");
    ExitCode::from(2)
}
