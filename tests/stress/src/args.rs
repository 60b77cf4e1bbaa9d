//! Command-line parsing (no dependencies: the tool also builds for Windows
//! machines without network access to fetch crates).

use std::path::PathBuf;
use std::time::Duration;

use portwatch_scenarios::{Budget, Params, Scenario};

/// Where the scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// The in-process harness (Linux x86_64).
    Harness,
    /// The installed driver (Windows).
    Device,
}

/// Everything the command line says.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// The scenario.
    pub scenario: Scenario,
    /// The target.
    pub target: TargetKind,
    /// Threads, budget, seed.
    pub params: Params,
    /// Special pool (harness).
    pub special_pool: bool,
    /// The driver image (harness); default: the usual build outputs.
    pub driver: Option<PathBuf>,
    /// Simulated adapters (harness).
    pub adapters: usize,
    /// Adapter names (device).
    pub adapter_names: Vec<String>,
    /// UDP peer for traffic (device).
    pub peer: Option<std::net::Ipv4Addr>,
}

/// The usage text.
pub const USAGE: &str = "usage: portwatch-stress [scenario] [--target harness|device] [--threads N] \
[--ops N | --duration SECONDS] [--seed N] [--special-pool] [--driver PATH] [--adapters N] \
[--adapter NAME]... [--peer IPV4]
scenarios: lwf-logo (the default), ioctl-storm, datapath, lifecycle, races
  --target    harness (default on Linux): the real portwatch.sys in-process under the verifier model
              device (default on Windows): the installed driver through \\\\.\\PortWatch
  --threads   worker threads (default 4)
  --ops       operations in all (default 20000) | --duration: run this many seconds
  --seed      seed of every random choice (default 1)
  --special-pool  harness: guard page after every allocation, freed memory unmapped
  --driver    harness: driver image (default $PORTWATCH_DRIVER or the build output)
  --adapters  harness: simulated adapters (default 2)
  --adapter   device: an adapter the lifecycle scenario may restart (repeat)
  --peer      device: IPv4 peer that UDP traffic is sent to";

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<&'a String, String> {
    it.next().ok_or_else(|| format!("{flag} needs a value"))
}

fn number<T: std::str::FromStr>(s: &str, flag: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("{flag}: '{s}' is not a valid number"))
}

impl Args {
    /// Parses the arguments after the program name.
    pub fn parse(argv: &[String]) -> Result<Args, String> {
        let it = argv.iter();
        let mut it = it.peekable();
        let scenario: Scenario = match it.peek() {
            Some(name) if !name.starts_with("--") => it.next().map_or(Ok(Scenario::DEFAULT), |n| n.parse())?,
            _ => Scenario::DEFAULT,
        };
        let default_target = if cfg!(windows) { TargetKind::Device } else { TargetKind::Harness };
        let mut a = Args {
            scenario,
            target: default_target,
            params: Params { threads: 4, budget: Budget::Ops(20_000), seed: 1, progress: true },
            special_pool: false,
            driver: None,
            adapters: 2,
            adapter_names: Vec::new(),
            peer: None,
        };
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "--target" => {
                    a.target = match value(&mut it, flag)?.as_str() {
                        "harness" => TargetKind::Harness,
                        "device" => TargetKind::Device,
                        other => return Err(format!("--target: '{other}' is neither harness nor device")),
                    }
                }
                "--threads" => a.params.threads = number::<usize>(value(&mut it, flag)?, flag)?.max(1),
                "--ops" => a.params.budget = Budget::Ops(number(value(&mut it, flag)?, flag)?),
                "--duration" => {
                    a.params.budget = Budget::Duration(Duration::from_secs_f64(number(value(&mut it, flag)?, flag)?))
                }
                "--seed" => a.params.seed = number(value(&mut it, flag)?, flag)?,
                "--special-pool" => a.special_pool = true,
                "--driver" => a.driver = Some(PathBuf::from(value(&mut it, flag)?)),
                "--adapters" => a.adapters = number::<usize>(value(&mut it, flag)?, flag)?.max(1),
                "--adapter" => a.adapter_names.push(value(&mut it, flag)?.clone()),
                "--peer" => a.peer = Some(number(value(&mut it, flag)?, flag)?),
                "--quiet" => a.params.progress = false,
                other => return Err(format!("unknown option '{other}'")),
            }
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, String> {
        Args::parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn parses_every_option() {
        let a = parse(
            "lifecycle --target harness --threads 8 --duration 2.5 --seed 9 --special-pool --driver x.sys --adapters 3",
        )
        .unwrap();
        assert_eq!(a.scenario, Scenario::Lifecycle);
        assert_eq!(a.target, TargetKind::Harness);
        assert_eq!(a.params.threads, 8);
        assert_eq!(a.params.budget, Budget::Duration(Duration::from_millis(2500)));
        assert_eq!(a.params.seed, 9);
        assert!(a.special_pool);
        assert_eq!(a.driver, Some(PathBuf::from("x.sys")));
        assert_eq!(a.adapters, 3);
        let d = parse("races --target device --ops 5 --adapter Ethernet --peer 10.0.0.2").unwrap();
        assert_eq!((d.target, d.params.budget), (TargetKind::Device, Budget::Ops(5)));
        assert_eq!(d.adapter_names, vec!["Ethernet".to_string()]);
        assert_eq!(parse("").unwrap().scenario, Scenario::LwfLogo, "the logo stress is the default");
        assert_eq!(parse("--threads 2").unwrap().scenario, Scenario::LwfLogo);
        assert_eq!(d.peer, Some(std::net::Ipv4Addr::new(10, 0, 0, 2)));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse("--threads").is_err(), "a flag without its value");
        assert!(parse("nosuch").is_err());
        assert!(parse("races --threads").is_err());
        assert!(parse("races --threads many").is_err());
        assert!(parse("races --target vm").is_err());
        assert!(parse("races --bogus").is_err());
    }
}
