//! The scenarios. Each takes a [`Target`] and [`Params`], runs, unloads the
//! driver and returns a [`Summary`] that is clean only if every invariant
//! held and the target saw no violation, leak, lost NBL or lost IRP.

pub mod datapath;
pub mod events;
pub mod flood;
pub mod ioctl_storm;
pub mod lifecycle;
pub mod lwf_logo;
pub mod races;
pub mod traffic;

use std::fmt;
use std::str::FromStr;

use crate::run::{Params, Run, Summary};
use crate::target::Target;

/// One of the scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// 1: every IOCTL, valid and invalid, on shared handles being closed.
    IoctlStorm,
    /// 2: traffic both ways while endpoints bind and unbind; exact counts.
    DataPath,
    /// 3: 1 and 2 while adapters pause, restart, detach and attach; then
    /// load/unload cycles.
    Lifecycle,
    /// 4: seed 000's local-address and port-name races.
    Races,
    /// 5: the LWF logo stress (NDISTest 6.5 "LWF - Logo Test"): LSO-sized
    /// sends, RESOURCES receives, pause/restart, media and reset status
    /// indications and IOCTLs, all at once; then a connectivity check. The
    /// default scenario.
    LwfLogo,
    /// 6: the event stream: pending reads completed by the data path and
    /// control events, CancelIoEx racing them, ring overflow accounting,
    /// handles closed with reads pending.
    Events,
    /// 7: the packet flood: millions of packets in chains of multi-packet
    /// NBLs, several endpoints and ports, adapters paused, restarted,
    /// detached and re-attached, counters read all along; exact counts.
    Flood,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 7] = [
        Scenario::LwfLogo,
        Scenario::IoctlStorm,
        Scenario::DataPath,
        Scenario::Lifecycle,
        Scenario::Races,
        Scenario::Events,
        Scenario::Flood,
    ];

    /// The scenario `portwatch.exe stress` runs when none is named.
    pub const DEFAULT: Scenario = Scenario::LwfLogo;

    /// The name the command line uses.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::IoctlStorm => "ioctl-storm",
            Scenario::DataPath => "datapath",
            Scenario::Lifecycle => "lifecycle",
            Scenario::Races => "races",
            Scenario::LwfLogo => "lwf-logo",
            Scenario::Events => "events",
            Scenario::Flood => "flood",
        }
    }

    /// Runs the scenario, then unloads the driver and checks its health.
    pub fn run(self, t: &dyn Target, params: &Params) -> Summary {
        let run = Run::new(params);
        let threads = params.threads.max(1);
        run.with_progress(self.name(), params.progress, || match self {
            Scenario::IoctlStorm => ioctl_storm::storm(t, &run, threads, params.seed),
            Scenario::DataPath => {
                let adapters = traffic::Adapters::attached(t.adapter_count());
                datapath::storm(t, &run, threads, params.seed, &adapters, false)
            }
            Scenario::Lifecycle => lifecycle::storm(t, &run, threads, params.seed, 2),
            Scenario::Races => races::storm(t, &run, threads, params.seed),
            Scenario::LwfLogo => lwf_logo::storm(t, &run, threads, params.seed),
            Scenario::Events => events::storm(t, &run, threads, params.seed),
            Scenario::Flood => flood::storm(t, &run, threads, params.seed),
        });
        let health = match t.unload() {
            Ok(h) => h,
            Err(e) => {
                run.error("unload", &e);
                Default::default()
            }
        };
        run.summary(self.name(), health)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL.into_iter().find(|sc| sc.name() == s).ok_or_else(|| {
            let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
            format!("unknown scenario '{s}' (one of: {})", names.join(", "))
        })
    }
}
