//! The command line of `portwatch.exe` (clap derive). Every subcommand,
//! flag and scenario name that scripts and docs may use is declared here;
//! `tests/names.rs` checks them against `scripts/*.ps1`, `docs/*.md` and
//! `README.md` through [`command`].

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use portwatch_scenarios::Scenario;

/// `portwatch.exe`: install PortWatch on a Windows test machine, turn
/// Driver Verifier on for it, stress it, and look at it.
#[derive(Debug, Parser)]
#[command(
    name = "portwatch",
    bin_name = "portwatch.exe",
    version,
    about = "PortWatch test tool: install the NDIS filter, drive Driver Verifier, run the HLK-style stress \
             scenarios, show status and live counters",
    after_help = "Exit status: 0 done (a clean run for stress), 1 failed (or problems found), 2 usage error, \
                  3 refused (not elevated, test signing off, not Windows), 4 PortWatch is not installed.\n\n\
                  On a fresh test VM, from an elevated prompt in the package folder:\n  \
                  portwatch.exe install\n  portwatch.exe verifier on        (then reboot)\n  \
                  portwatch.exe stress lwf-logo --duration 600\n  portwatch.exe status"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install the filter from the package: checks elevation and test signing, imports the test
    /// certificate into Root and TrustedPublisher, runs netcfg.
    #[command(after_help = "Examples:\n  portwatch.exe install\n  \
                            portwatch.exe install --package C:\\portwatch\n  \
                            portwatch.exe install --certificate C:\\certs\\mytest.cer")]
    Install(InstallArgs),
    /// Uninstall the filter (netcfg -u) and delete its package from the driver store (pnputil).
    #[command(after_help = "Examples:\n  portwatch.exe uninstall\n  portwatch.exe uninstall --keep-driver-store")]
    Uninstall(UninstallArgs),
    /// Turn Driver Verifier on or off for portwatch.sys, or show its settings.
    #[command(subcommand)]
    Verifier(VerifierCommand),
    /// Run an HLK-style stress scenario against the installed driver (or the Linux harness), with
    /// traffic; progress on stderr, summary on stdout, exit 0 only when clean.
    #[command(after_help = "Examples:\n  portwatch.exe stress\n  \
                            portwatch.exe stress lwf-logo --duration 600\n  \
                            portwatch.exe stress datapath --adapter Ethernet --peer 192.168.1.1\n  \
                            portwatch.exe stress races --threads 16 --ops 100000 --seed 42")]
    Stress(StressArgs),
    /// Show the driver's version, filter modules, port name and the counters of chosen ports.
    #[command(after_help = "Examples:\n  portwatch.exe status\n  portwatch.exe status --port udp:53 --port tcp:443")]
    Status(StatusArgs),
    /// Bind a new endpoint to ports and show what it counts (the binding lasts while the command runs).
    #[command(after_help = "Examples:\n  portwatch.exe bind udp:5000\n  \
                            portwatch.exe bind tcp:443 udp:53 --hold 60")]
    Bind(BindArgs),
    /// Bind a new endpoint to ports, then unbind them again (a manual test of both IOCTLs).
    #[command(after_help = "Example:\n  portwatch.exe unbind udp:5000")]
    Unbind(PortsArgs),
    /// Show the global port name, or set it.
    #[command(after_help = "Examples:\n  portwatch.exe port-name\n  portwatch.exe port-name \"lab port\"")]
    PortName(PortNameArgs),
    /// Set a new endpoint's local address and read it back (IPv4 or IPv6 socket address).
    #[command(after_help = "Examples:\n  portwatch.exe local-address 192.168.1.10:5000\n  \
                            portwatch.exe local-address [fe80::1]:443")]
    LocalAddress(LocalAddressArgs),
    /// Print one line per packet on the ports (and per filter-module state change), as it happens.
    #[command(after_help = "Examples:\n  portwatch.exe watch udp:5000\n  \
                            portwatch.exe watch tcp:443 udp:53 --count 100 --json\n  \
                            portwatch.exe watch udp:5000 --pending 8 --duration 60")]
    Watch(WatchArgs),
}

/// `install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The package folder (portwatch.inf, portwatch.sys, portwatch.cat, the certificate); default: the
    /// folder of portwatch.exe.
    #[arg(long, value_name = "DIR")]
    pub package: Option<PathBuf>,
    /// The test certificate to trust; default: portwatch-test.cer in the package folder.
    #[arg(long, value_name = "FILE")]
    pub certificate: Option<PathBuf>,
}

/// `uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Leave the package in the driver store (only netcfg -u).
    #[arg(long)]
    pub keep_driver_store: bool,
}

/// `verifier on|off|status`.
#[derive(Debug, Subcommand)]
pub enum VerifierCommand {
    /// Verify portwatch.sys from the next boot: standard checks plus NDIS/WIFI verification.
    #[command(after_help = "Examples:\n  portwatch.exe verifier on\n  \
                            portwatch.exe verifier on --low-resources\n  \
                            portwatch.exe verifier on --no-ndis-wifi\nReboot afterwards.")]
    On(VerifierOnArgs),
    /// Remove every Driver Verifier setting (verifier /reset) from the next boot.
    #[command(after_help = "Example:\n  portwatch.exe verifier off\nReboot afterwards.")]
    Off,
    /// Show the saved settings (verifier /querysettings) and live statistics (verifier /query).
    #[command(after_help = "Example:\n  portwatch.exe verifier status")]
    Status,
}

/// `verifier on`.
#[derive(Debug, Args)]
pub struct VerifierOnArgs {
    /// Only the standard checks (verifier /standard), without NDIS/WIFI verification.
    #[arg(long)]
    pub no_ndis_wifi: bool,
    /// Add randomized low resources simulation: allocations fail at random (expect failed attaches and
    /// IOCTLs, never a bug check).
    #[arg(long)]
    pub low_resources: bool,
    /// The driver image to verify.
    #[arg(long, value_name = "NAME", default_value = portwatch_proto::BINARY_NAME)]
    pub driver: String,
}

/// A scenario, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioName {
    /// The HLK LWF logo stress: every element at once, then connectivity (the default).
    #[value(name = "lwf-logo")]
    LwfLogo,
    /// Every IOCTL, valid and malformed, on handles being closed.
    #[value(name = "ioctl-storm")]
    IoctlStorm,
    /// Traffic while endpoints bind and unbind; counters checked.
    #[value(name = "datapath")]
    DataPath,
    /// IOCTLs and traffic while adapters restart.
    #[value(name = "lifecycle")]
    Lifecycle,
    /// Seed 000's local-address and port-name races.
    #[value(name = "races")]
    Races,
    /// The event stream: pending reads, CancelIoEx racing completions, handles closed with reads pending.
    #[value(name = "events")]
    Events,
    /// Millions of packets in chains of multi-packet NBLs while adapters restart; counters checked.
    #[value(name = "flood")]
    Flood,
}

impl ScenarioName {
    /// The scenario.
    pub fn scenario(self) -> Scenario {
        match self {
            ScenarioName::LwfLogo => Scenario::LwfLogo,
            ScenarioName::IoctlStorm => Scenario::IoctlStorm,
            ScenarioName::DataPath => Scenario::DataPath,
            ScenarioName::Lifecycle => Scenario::Lifecycle,
            ScenarioName::Races => Scenario::Races,
            ScenarioName::Events => Scenario::Events,
            ScenarioName::Flood => Scenario::Flood,
        }
    }
}

/// Where `stress` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// The installed driver through \\.\PortWatch (Windows).
    Device,
    /// The real portwatch.sys in process under the verifier model (x86_64 Linux).
    Harness,
}

impl TargetKind {
    /// Device on Windows, the harness elsewhere.
    pub fn default_here() -> Self {
        if cfg!(windows) {
            TargetKind::Device
        } else {
            TargetKind::Harness
        }
    }
}

/// `stress`.
#[derive(Debug, Args)]
pub struct StressArgs {
    /// The scenario.
    #[arg(value_enum, default_value = "lwf-logo")]
    pub scenario: ScenarioName,
    /// Worker threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// Operations in all, shared by every thread (not per thread).
    #[arg(long, default_value_t = 20_000, conflicts_with = "duration")]
    pub ops: u64,
    /// Run this many seconds instead of a number of operations.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// Seed of every random choice (print it, to repeat a run).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Adapter the scenarios restart and send through (repeat for several); default: the one adapter
    /// PortWatch is bound to.
    #[arg(long, value_name = "NAME")]
    pub adapter: Vec<String>,
    /// IPv4 peer UDP traffic is sent to; default: the adapter's default gateway.
    #[arg(long, value_name = "IPV4", conflicts_with = "no_traffic")]
    pub peer: Option<Ipv4Addr>,
    /// Send no traffic (the data-path checks are then skipped on the device).
    #[arg(long)]
    pub no_traffic: bool,
    /// Where to run.
    #[arg(long, value_enum, default_value_t = TargetKind::default_here())]
    pub target: TargetKind,
    /// Harness: a guard page after every allocation, freed memory unmapped (on Windows, special pool
    /// comes from `verifier on`).
    #[arg(long)]
    pub special_pool: bool,
    /// Harness: the driver image (default: $PORTWATCH_DRIVER or the build output).
    #[arg(long, value_name = "PATH")]
    pub driver: Option<PathBuf>,
    /// Harness: simulated adapters.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub adapters: u16,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// A run time in seconds: finite, more than 0, at most 30 days.
fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v <= 30.0 * 86_400.0 {
        Ok(v)
    } else {
        Err(format!("'{s}': give more than 0 and at most 2592000 seconds"))
    }
}

/// A (protocol, port) pair written `udp:5000` or `tcp:443`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// `PROTO_UDP` or `PROTO_TCP`.
    pub protocol: u8,
    /// The port, non-zero.
    pub port: u16,
}

impl FromStr for PortSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (proto, port) = s.split_once(':').ok_or_else(|| format!("'{s}': write PROTOCOL:PORT, e.g. udp:5000"))?;
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "udp" => portwatch_proto::PROTO_UDP,
            "tcp" => portwatch_proto::PROTO_TCP,
            other => return Err(format!("'{other}': the protocol is udp or tcp")),
        };
        let port: u16 = port.parse().map_err(|_| format!("'{port}': a port is 1 to 65535"))?;
        if port == 0 {
            return Err("port 0 cannot be bound".into());
        }
        Ok(PortSpec { protocol, port })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = if self.protocol == portwatch_proto::PROTO_TCP { "tcp" } else { "udp" };
        f.pad(&format!("{proto}:{}", self.port))
    }
}

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A port whose counters and endpoints to show (repeat for several).
    #[arg(long, value_name = "PROTO:PORT")]
    pub port: Vec<PortSpec>,
}

/// Ports to act on.
#[derive(Debug, Args)]
pub struct PortsArgs {
    /// The ports, PROTO:PORT (udp:5000, tcp:443).
    #[arg(required = true, value_name = "PROTO:PORT")]
    pub ports: Vec<PortSpec>,
}

/// `bind`.
#[derive(Debug, Args)]
pub struct BindArgs {
    /// The ports, PROTO:PORT (udp:5000, tcp:443).
    #[arg(required = true, value_name = "PROTO:PORT")]
    pub ports: Vec<PortSpec>,
    /// Keep the endpoint (and its bindings) this many seconds, printing its counters every second.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub hold: u64,
}

/// `port-name`.
#[derive(Debug, Args)]
pub struct PortNameArgs {
    /// The new name; without it the current one is shown.
    pub name: Option<String>,
}

/// `local-address`.
#[derive(Debug, Args)]
pub struct LocalAddressArgs {
    /// The address, e.g. `192.168.1.10:5000` or `[fe80::1]:443`.
    pub address: SocketAddr,
}

/// `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The ports, PROTO:PORT (udp:5000, tcp:443).
    #[arg(required = true, value_name = "PROTO:PORT")]
    pub ports: Vec<PortSpec>,
    /// IOCTL_READ_EVENTS kept pending at once, each with its own buffer (1..=16, the driver's
    /// limit per handle; overlapped I/O on Windows).
    #[arg(long, alias = "reads", default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(portwatch_proto::MAX_PENDING_READS)))]
    pub pending: u32,
    /// Records the driver's ring for this handle holds (1..=4096); events
    /// that find it full are dropped and counted.
    #[arg(long, default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub ring: u32,
    /// Stop after this many events (default: until Ctrl+C or --duration).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds (default: until Ctrl+C or --count).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The clap command tree (for introspection: the names test, `--help`).
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("portwatch.exe").chain(line.split_whitespace()))
    }

    #[test]
    fn the_command_tree_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_scenario_has_its_name() {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        let mut cli: Vec<String> = ScenarioName::value_variants()
            .iter()
            .map(|v| v.to_possible_value().expect("visible").get_name().to_owned())
            .collect();
        for v in ScenarioName::value_variants() {
            assert_eq!(v.scenario().name(), v.to_possible_value().unwrap().get_name());
        }
        cli.sort();
        let mut names: Vec<String> = names.into_iter().map(String::from).collect();
        names.sort();
        assert_eq!(cli, names);
    }

    #[test]
    fn stress_defaults_and_flags() {
        let Command::Stress(s) = parse("stress").unwrap().command else { panic!("stress") };
        assert_eq!(s.scenario.scenario(), Scenario::DEFAULT);
        assert_eq!((s.threads, s.ops, s.seed, s.duration), (4, 20_000, 1, None));
        let Command::Stress(s) =
            parse("stress datapath --threads 8 --duration 2.5 --seed 9 --adapter A --adapter B --peer 10.0.0.2")
                .unwrap()
                .command
        else {
            panic!("stress")
        };
        assert_eq!(s.scenario, ScenarioName::DataPath);
        assert_eq!(s.adapter, ["A", "B"]);
        assert_eq!(s.peer, Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(s.duration, Some(2.5));
    }

    #[test]
    fn watch_pending_reads_and_stop_conditions() {
        let Command::Watch(w) = parse("watch udp:5000").unwrap().command else { panic!("watch") };
        assert_eq!((w.pending, w.ring, w.count, w.duration, w.json), (4, 1024, None, None, false));
        let Command::Watch(w) =
            parse("watch udp:5000 tcp:443 --pending 16 --duration 2.5 --count 9 --json").unwrap().command
        else {
            panic!("watch")
        };
        assert_eq!(w.ports.len(), 2);
        assert_eq!(
            (w.pending, w.count, w.duration, w.json),
            (portwatch_proto::MAX_PENDING_READS, Some(9), Some(2.5), true)
        );
        // The earlier spelling still works.
        let Command::Watch(w) = parse("watch udp:5000 --reads 1").unwrap().command else { panic!("watch") };
        assert_eq!(w.pending, 1);
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for bad in [
            "stress data-path",
            "stress seed000-races",
            "stress --threads",
            "stress --threads 0",
            "stress --ops 5 --duration 3",
            "stress --duration inf",
            "stress --duration -1",
            "stress --duration NaN",
            "stress --peer 10.0.0.2 --no-traffic",
            "bind",
            "bind udp:0",
            "bind icmp:3",
            "verifier",
            "verifier maybe",
            "watch udp:5000 --pending 0",
            "watch udp:5000 --pending 17",
            "watch udp:5000 --duration 0",
            "watch udp:5000 --duration forever",
            "nosuch",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
    }

    #[test]
    fn ports_parse_and_print() {
        let p: PortSpec = "TCP:443".parse().unwrap();
        assert_eq!((p.protocol, p.port), (portwatch_proto::PROTO_TCP, 443));
        assert_eq!(p.to_string(), "tcp:443");
        assert_eq!(format!("{p:<9}|"), "tcp:443  |", "widths apply (status and watch align on them)");
        assert!("udp:70000".parse::<PortSpec>().is_err());
        assert!("5000".parse::<PortSpec>().is_err());
    }

    #[test]
    fn every_subcommand_has_examples() {
        fn walk(c: &clap::Command, path: &str) {
            if c.get_subcommands().next().is_none() {
                let help = c.get_after_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(help.contains("portwatch.exe "), "{path}: no example in its --help");
            }
            for s in c.get_subcommands() {
                walk(s, &format!("{path} {}", s.get_name()));
            }
        }
        walk(&command(), "portwatch.exe");
    }
}
