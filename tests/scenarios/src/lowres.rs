//! Low-resources simulation, systematically: a deterministic, single-threaded
//! script that reaches every allocation site the scenarios reach (driver
//! load, FilterAttach, endpoint creation, addresses, port names, bindings,
//! module enumeration, traffic, detach and re-attach, close, unload) is run
//! once cleanly to count its N allocations, then N more times with exactly
//! the n-th allocation failing. Each run must end healthy (no violation, no
//! leak, every NBL and IRP back), every failure must surface as a documented
//! status (STATUS_INSUFFICIENT_RESOURCES / NDIS_STATUS_RESOURCES, or a load
//! failure with that status), and the injected failure must be visible
//! somewhere: a driver that swallows a failed allocation is reported.

use std::collections::BTreeMap;
use std::path::Path;

use portwatch_harness::verifier::LowResources;
use portwatch_proto::{PROTO_TCP, PROTO_UDP};

use crate::client::{self, status};
use crate::harness_target::{HarnessConfig, HarnessTarget};
use crate::target::{Adapter, AdapterOp, Direction, Handle, Level, NblSpec, PacketSpec, Target, TargetError};

/// What one script run saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScriptLog {
    /// Steps that failed with the documented low-resources status.
    pub degraded: Vec<&'static str>,
    /// Steps that failed in any other way.
    pub failures: Vec<String>,
}

impl ScriptLog {
    /// Accepts `Ok`, records the documented out-of-memory status as a
    /// degradation and anything else as a failure. `true` on `Ok`.
    fn check<T>(&mut self, step: &'static str, r: Result<T, TargetError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(TargetError::Status(status::INSUFFICIENT_RESOURCES)) => {
                self.degraded.push(step);
                None
            }
            Err(e) => {
                self.failures.push(format!("{step}: {e}"));
                None
            }
        }
    }
}

fn packet(protocol: u8, src: u16, dst: u16) -> PacketSpec {
    PacketSpec {
        protocol,
        src_port: src,
        dst_port: dst,
        ipv6: dst % 2 == 0,
        vlan: false,
        payload_len: 20,
        truncate_to: None,
    }
}

/// Sends and receives `k` packets to `port` on every attached adapter;
/// returns how many passed a running module each way.
fn traffic(t: &dyn Target, attached: &[bool], port: u16, log: &mut ScriptLog) -> (u64, u64) {
    let mut counted = (0, 0);
    for (a, _) in attached.iter().enumerate().filter(|(_, &on)| on) {
        let nbl = NblSpec { packets: vec![packet(PROTO_TCP, 50_000, port); 2], loopback: false, fragmented: a == 1 };
        for (dir, level) in [(Direction::Send, Level::Dispatch), (Direction::Receive, Level::Passive)] {
            let nbls = if dir == Direction::Receive {
                vec![NblSpec { packets: vec![nbl.packets[0]], ..nbl.clone() }]
            } else {
                vec![nbl.clone()]
            };
            if let Some(results) = log.check("inject", t.inject(Adapter(a), dir, &nbls, level, false)) {
                let n: u64 =
                    results.iter().zip(&nbls).filter(|(r, _)| r.delivered).map(|(_, s)| s.packets.len() as u64).sum();
                if dir == Direction::Receive {
                    counted.0 += n
                } else {
                    counted.1 += n
                }
            }
        }
    }
    counted
}

fn endpoint_work(t: &dyn Target, h: Handle, attached: &[bool], log: &mut ScriptLog) {
    log.check("set local address", client::set_local_address(t, h, &[1; 16]));
    log.check("get local address", client::local_address(t, h));
    log.check("set port name", client::set_port_name(t, h, &[0x41; 20]));
    log.check("get port name", client::port_name(t, h));
    let bound = log.check("bind", client::bind(t, h, PROTO_TCP, 10_000)).is_some();
    log.check("bind", client::bind(t, h, PROTO_UDP, 10_001));
    log.check("bind", client::bind(t, h, PROTO_TCP, 10_002));
    log.check("modules", client::modules(t, h, 4));
    log.check("version", client::version(t, h));
    let before = log.check("endpoint stats", client::endpoint_stats(t, h));
    let (rx, tx) = traffic(t, attached, 10_000, log);
    let after = log.check("endpoint stats", client::endpoint_stats(t, h));
    if let (true, Some(b), Some(a)) = (bound, before, after) {
        // Degraded or not, what is bound is counted exactly.
        if a.rx.packets - b.rx.packets != rx || a.tx.packets - b.tx.packets != tx {
            log.failures.push(format!(
                "counted rx {} tx {}, passed rx {rx} tx {tx}",
                a.rx.packets - b.rx.packets,
                a.tx.packets - b.tx.packets
            ));
        }
    }
    log.check("port stats", client::port_stats(t, h, PROTO_TCP, 10_000));
    if bound {
        log.check("unbind", client::unbind(t, h, PROTO_TCP, 10_000));
    }
    log.check("replace local address", client::set_local_address(t, h, &[2; 40]));
    log.check("replace port name", client::set_port_name(t, h, &[0x42; 3]));
}

/// The script: attach adapters, two endpoints, every IOCTL, traffic, a
/// detach and re-attach, close. The target is loaded with its adapters
/// detached; the caller unloads it.
pub fn script(t: &dyn Target) -> ScriptLog {
    let mut log = ScriptLog::default();
    let mut attached = vec![false; t.adapter_count()];
    for (a, on) in attached.iter_mut().enumerate() {
        *on = log.check("attach", t.adapter_op(Adapter(a), AdapterOp::Attach)).is_some();
        if *on && log.check("restart", t.adapter_op(Adapter(a), AdapterOp::Restart)).is_none() {
            log.failures.push(format!("adapter {a} attached but did not restart"));
        }
    }
    let handles: Vec<Handle> = (0..2).filter_map(|_| log.check("open", t.open())).collect();
    for &h in &handles {
        endpoint_work(t, h, &attached, &mut log);
    }
    if attached.first() == Some(&true) {
        log.check("pause", t.adapter_op(Adapter(0), AdapterOp::Pause));
        log.check("detach", t.adapter_op(Adapter(0), AdapterOp::Detach));
        if log.check("re-attach", t.adapter_op(Adapter(0), AdapterOp::Attach)).is_some() {
            log.check("restart", t.adapter_op(Adapter(0), AdapterOp::Restart));
        }
    }
    for h in handles {
        log.check("close", t.close(h));
    }
    log
}

/// The outcome of one run with the n-th allocation failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// DriverEntry failed with STATUS_INSUFFICIENT_RESOURCES and left nothing behind.
    LoadFailed,
    /// The script ran; these steps degraded.
    Degraded(Vec<&'static str>),
}

/// What the sweep found.
#[derive(Debug, Default, Clone)]
pub struct SweepReport {
    /// Allocations of the clean run (= runs with a failure injected).
    pub allocations: u64,
    /// Outcome per failing allocation n (1-based).
    pub outcomes: BTreeMap<u64, RunOutcome>,
    /// Everything that went wrong.
    pub failures: Vec<String>,
}

impl SweepReport {
    /// How many runs ended with each first degraded step (or a load failure).
    pub fn sites(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for o in self.outcomes.values() {
            let key = match o {
                RunOutcome::LoadFailed => "DriverEntry".to_string(),
                RunOutcome::Degraded(steps) => steps.first().map_or("(none)", |s| s).to_string(),
            };
            *m.entry(key).or_insert(0) += 1;
        }
        m
    }
}

/// One run of the script with `low_resources`; its log and health problems.
fn run_once(
    driver: &Path,
    adapters: usize,
    low_resources: LowResources,
) -> Result<(ScriptLog, Vec<String>, u64), TargetError> {
    let config = HarnessConfig { start_adapters: false, low_resources, ..HarnessConfig::new(driver, adapters) };
    let t = HarnessTarget::load(config)?;
    let log = script(&t);
    let health = t.unload()?;
    Ok((log, health.problems(), health.allocations))
}

/// The sweep over every allocation of the script (at most `limit` runs).
pub fn sweep(driver: &Path, adapters: usize, limit: Option<u64>) -> SweepReport {
    let mut report = SweepReport::default();
    let clean = run_once(driver, adapters, LowResources::Off);
    let Ok((log, problems, n)) = clean else {
        report.failures.push(format!("clean run failed to load: {clean:?}"));
        return report;
    };
    if !log.degraded.is_empty() || !log.failures.is_empty() || !problems.is_empty() {
        report.failures.push(format!("clean run is not clean: {log:?} {problems:?}"));
    }
    report.allocations = n;
    match run_once(driver, adapters, LowResources::Off) {
        Ok((_, _, again)) if again == n => {}
        other => report.failures.push(format!("the script is not deterministic: {n} allocations, then {other:?}")),
    }
    for k in 1..=n.min(limit.unwrap_or(u64::MAX)) {
        match run_once(driver, adapters, LowResources::FailNth(k)) {
            Err(TargetError::Status(status::INSUFFICIENT_RESOURCES)) => {
                report.outcomes.insert(k, RunOutcome::LoadFailed);
            }
            Err(e) => report.failures.push(format!("allocation {k}: load: {e}")),
            Ok((log, problems, _)) => {
                report.failures.extend(log.failures.iter().map(|f| format!("allocation {k}: {f}")));
                report.failures.extend(problems.iter().map(|p| format!("allocation {k}: {p}")));
                if log.degraded.is_empty() {
                    report.failures.push(format!("allocation {k} failed but no step reported it"));
                }
                report.outcomes.insert(k, RunOutcome::Degraded(log.degraded));
            }
        }
    }
    report
}
