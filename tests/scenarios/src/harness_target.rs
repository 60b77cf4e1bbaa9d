//! [`HarnessTarget`]: the real `portwatch.sys` loaded into this process by
//! `portwatch-harness`, with Driver Verifier's checks on.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::thread::ThreadId;

use portwatch_harness::frames::FrameSpec;
use portwatch_harness::io::{Handle as IoHandle, IoError};
use portwatch_harness::nbl::{Layout, NblSpec as HarnessNbl};
pub use portwatch_harness::ndis::Completion;
use portwatch_harness::ndis::{AdapterId, AdapterSpec, At};
use portwatch_harness::registry::Hive;
use portwatch_harness::session::{LoadError, Options, Report, Session};
use portwatch_harness::verifier::Config;
pub use portwatch_harness::verifier::LowResources;

use crate::target::{
    Adapter, AdapterOp, Direction, Handle, Health, Level, NblResult, NblSpec, PacketSpec, StatusIndication, Target,
    TargetError,
};

/// `NDIS_STATUS_SUCCESS`.
const NDIS_STATUS_SUCCESS: i32 = 0;

/// How the harness runs the driver.
#[derive(Debug, Clone)]
pub struct HarnessConfig {
    /// The driver image (`portwatch.sys` or the linker's `portwatch.dll`).
    pub driver: PathBuf,
    /// Simulated adapters.
    pub adapters: usize,
    /// Attach and restart every adapter at load (else they start detached
    /// and the caller attaches them with [`Target::adapter_op`]).
    pub start_adapters: bool,
    /// Driver Verifier's special pool.
    pub special_pool: bool,
    /// Low-resources simulation.
    pub low_resources: LowResources,
    /// When the miniport completes sends and the protocol returns receives.
    pub completion: Completion,
}

impl HarnessConfig {
    /// `adapters` running adapters, special pool on, no simulated failures.
    pub fn new(driver: &Path, adapters: usize) -> Self {
        HarnessConfig {
            driver: driver.to_owned(),
            adapters,
            start_adapters: true,
            special_pool: true,
            low_resources: LowResources::Off,
            // Inline: the fastest; `Completion::Delayed` makes completions
            // overlap pauses (the lwf-logo scenario uses it).
            completion: Completion::Inline,
        }
    }
}

/// The command that builds the driver the harness loads.
pub const BUILD: &str =
    "scripts/package.sh (or cargo build -p portwatch --target x86_64-pc-windows-msvc --profile driver)";

/// `$PORTWATCH_DRIVER`, else the linker output under `$CARGO_TARGET_DIR` or
/// the workspace's `target/`, else the packaged `portwatch.sys`. Panics
/// (never skips) when none exists.
pub fn driver_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PORTWATCH_DRIVER") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "PORTWATCH_DRIVER={} does not exist; build it with {BUILD}", p.display());
        return p;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rel = "x86_64-pc-windows-msvc/driver/portwatch.dll";
    [
        std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join(rel)),
        Some(root.join("target").join(rel)),
        Some(root.join("target/package/portwatch/portwatch.sys")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
    .unwrap_or_else(|| {
        panic!("portwatch.sys not found ($PORTWATCH_DRIVER, $CARGO_TARGET_DIR, target/); build it with {BUILD}")
    })
}

struct Loaded {
    session: Session,
    adapters: Vec<AdapterId>,
}

/// The driver's `Parameters` key on the modelled machine.
const PARAMETERS: &str = "\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\PortWatch\\Parameters";

/// The driver in the harness. See [`Target`].
pub struct HarnessTarget {
    config: HarnessConfig,
    /// The machine's registry, kept across reloads.
    registry: Hive,
    loaded: RwLock<Option<Loaded>>,
    open: Mutex<HashSet<u64>>,
    owner: ThreadId,
}

// SAFETY: every field is Sync except that `Session` is not Send (it holds
// the verifier's exclusive MutexGuard), which makes the RwLock not Sync.
// Other threads only ever get `&Session` (Session is Sync: its methods take
// `&self` and are made to be called from many threads); the session is
// created, replaced and dropped only on the thread that created the target
// (`owner`, asserted in `reload` and `unload`), so the guard is released on
// the thread that took it.
unsafe impl Sync for HarnessTarget {}

fn load_error(e: LoadError) -> TargetError {
    match e {
        LoadError::EntryFailed(status) => TargetError::Status(status),
        LoadError::Violation(v) => TargetError::Violation(v.to_string()),
        other => TargetError::Os(other.to_string()),
    }
}

fn io_error(e: IoError) -> TargetError {
    match e {
        IoError::Status(s) => TargetError::Status(s),
        IoError::Violation(v) => TargetError::Violation(v.to_string()),
    }
}

fn ndis_status(s: i32) -> Result<(), TargetError> {
    if s == NDIS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(TargetError::Status(s))
    }
}

/// The health the harness reports after unload.
pub fn health_of(report: &Report) -> Health {
    Health {
        violations: report.violations.iter().map(ToString::to_string).collect(),
        leaks: report.leaked.clone(),
        allocations: report.allocations,
        nbls_outstanding: report.ndis.nbls_allocated.saturating_sub(report.ndis.nbls_finished),
        irps_sent: report.io.irps.values().sum(),
        irps_completed: report.io.completed,
        peak_stack: report.entry_points.iter().map(|e| e.1).max().unwrap_or(0),
        unobservable: false,
        model: vec![
            ("FilterPause calls", report.ndis.callbacks.get("FilterPause").copied().unwrap_or(0)),
            ("pauses begun with NBLs outstanding", report.ndis.pauses_with_nbls_out),
            ("pauses pended", report.ndis.pauses_pended),
            ("sends completed NDIS_STATUS_PAUSED", report.ndis.sends_completed_paused),
            ("status indications", report.ndis.status_forwarded + report.ndis.status_bypassed),
            ("NET_BUFFERs to the miniport", report.ndis.nbs_to_miniport),
            ("NET_BUFFERs to the protocol", report.ndis.nbs_to_protocol),
        ],
    }
}

fn frame_spec(p: &PacketSpec) -> FrameSpec {
    let mut f = if p.ipv6 {
        FrameSpec::ipv6(p.protocol, p.src_port, p.dst_port)
    } else {
        FrameSpec::ipv4(p.protocol, p.src_port, p.dst_port)
    };
    f.vlan = p.vlan.then_some(5);
    f.payload_len = usize::from(p.payload_len);
    f
}

fn harness_nbl(spec: &NblSpec) -> Result<HarnessNbl, TargetError> {
    let mut frames = Vec::with_capacity(spec.packets.len());
    for p in &spec.packets {
        let mut frame = frame_spec(p).build();
        if let Some(n) = p.truncate_to {
            // A runt: the NET_BUFFER's data (and its MDL) end after `n` bytes.
            frame.bytes.truncate(usize::from(n).max(1));
            if usize::from(n) < p.ports_end() {
                frame.keys.clear();
            }
        }
        // The two oracles must agree, or the counting check means nothing.
        if frame.keys != p.keys() {
            return Err(TargetError::Os(format!("frame oracle disagrees: {:?} vs {:?}", frame.keys, p.keys())));
        }
        frames.push(frame);
    }
    let mut nbl = HarnessNbl::of(frames);
    nbl.loopback = spec.loopback;
    if spec.fragmented {
        nbl.layout = Layout { data_offset: 6, headroom_mdl: true, cuts: vec![7, 15, 33, 55] };
    }
    Ok(nbl)
}

fn at(level: Level) -> At {
    match level {
        Level::Passive => At::Passive,
        Level::Dispatch => At::Dispatch,
        Level::DispatchUnflagged => At::DispatchUnflagged,
    }
}

impl HarnessTarget {
    /// Loads the driver (DriverEntry) and adds the adapters.
    pub fn load(config: HarnessConfig) -> Result<Self, TargetError> {
        let registry = Hive::new();
        let loaded = Self::load_instance(&config, &registry)?;
        Ok(HarnessTarget {
            config,
            registry,
            loaded: RwLock::new(Some(loaded)),
            open: Mutex::new(HashSet::new()),
            owner: std::thread::current().id(),
        })
    }

    fn load_instance(config: &HarnessConfig, registry: &Hive) -> Result<Loaded, TargetError> {
        let verifier =
            Config { special_pool: config.special_pool, low_resources: config.low_resources, ..Config::default() };
        let options =
            Options { verifier, completion: config.completion, registry: registry.clone(), ..Options::default() };
        let session = Session::load(&config.driver, options).map_err(load_error)?;
        let adapters: Vec<AdapterId> =
            (0..config.adapters).map(|i| session.add_adapter(AdapterSpec::named(&format!("eth{i}")))).collect();
        let loaded = Loaded { session, adapters };
        if config.start_adapters {
            for &a in &loaded.adapters {
                let attach = loaded.session.attach(a).map_err(|v| TargetError::Violation(v.to_string()))?;
                ndis_status(attach)?;
                let restart = loaded.session.restart(a).map_err(|v| TargetError::Violation(v.to_string()))?;
                ndis_status(restart)?;
            }
        }
        Ok(loaded)
    }

    fn with<R>(&self, f: impl FnOnce(&Loaded) -> Result<R, TargetError>) -> Result<R, TargetError> {
        let guard: RwLockReadGuard<'_, Option<Loaded>> = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(l) => f(l),
            None => Err(TargetError::Os("the driver is unloaded".into())),
        }
    }

    fn adapter_id(l: &Loaded, a: Adapter) -> Result<AdapterId, TargetError> {
        l.adapters.get(a.0).copied().ok_or_else(|| TargetError::Os(format!("no adapter {}", a.0)))
    }

    /// Closes handles a failed scenario left open (Windows would not unload
    /// the driver with handles open), then unloads.
    fn unload_instance(&self, loaded: Loaded) -> Health {
        let leftover: Vec<u64> = self.open.lock().unwrap_or_else(PoisonError::into_inner).drain().collect();
        for h in &leftover {
            let _ = loaded.session.close(IoHandle(*h));
        }
        let mut health = health_of(&loaded.session.unload());
        if !leftover.is_empty() {
            health.violations.push(format!("{} handle(s) left open by the scenario", leftover.len()));
        }
        health
    }

    fn assert_owner(&self) {
        assert_eq!(
            std::thread::current().id(),
            self.owner,
            "load and unload only on the thread that created the target"
        );
    }
}

impl Target for HarnessTarget {
    fn describe(&self) -> String {
        format!(
            "harness: {} with {} adapter(s), special pool {}, low resources {:?}",
            self.config.driver.display(),
            self.config.adapters,
            if self.config.special_pool { "on" } else { "off" },
            self.config.low_resources
        )
    }

    fn open(&self) -> Result<Handle, TargetError> {
        let h = self.with(|l| l.session.open(portwatch_proto::USER_DEVICE_PATH).map_err(io_error))?;
        self.open.lock().unwrap_or_else(PoisonError::into_inner).insert(h.0);
        Ok(Handle(h.0))
    }

    fn ioctl(
        &self,
        handle: Handle,
        code: u32,
        input: &[u8],
        out_len: u32,
    ) -> Result<crate::target::Reply, TargetError> {
        self.with(|l| {
            let r = l.session.ioctl(IoHandle(handle.0), code, input, out_len).map_err(io_error)?;
            Ok(crate::target::Reply { status: r.status, output: r.output })
        })
    }

    fn close(&self, handle: Handle) -> Result<(), TargetError> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&handle.0);
        self.with(|l| l.session.close(IoHandle(handle.0)).map_err(io_error))
    }

    fn cancel_io(&self, handle: Handle) -> Result<(), TargetError> {
        self.with(|_| portwatch_harness::io::cancel_io(IoHandle(handle.0)).map(drop).map_err(io_error))
    }

    fn adapter_count(&self) -> usize {
        self.config.adapters
    }

    fn supports(&self, _op: AdapterOp) -> bool {
        true
    }

    fn adapter_op(&self, adapter: Adapter, op: AdapterOp) -> Result<(), TargetError> {
        let violation = |v: portwatch_harness::verifier::Violation| TargetError::Violation(v.to_string());
        self.with(|l| {
            let (s, a) = (&l.session, Self::adapter_id(l, adapter)?);
            match op {
                AdapterOp::Pause => s.pause(a).map_err(violation),
                AdapterOp::Restart => ndis_status(s.restart(a).map_err(violation)?),
                AdapterOp::Detach => s.detach(a).map_err(violation),
                AdapterOp::Attach => ndis_status(s.attach(a).map_err(violation)?),
                AdapterOp::Cycle => {
                    s.pause(a).map_err(violation)?;
                    s.detach(a).map_err(violation)?;
                    ndis_status(s.attach(a).map_err(violation)?)?;
                    ndis_status(s.restart(a).map_err(violation)?)
                }
            }
        })
    }

    fn inject(
        &self,
        adapter: Adapter,
        direction: Direction,
        nbls: &[NblSpec],
        level: Level,
        resources: bool,
    ) -> Result<Vec<NblResult>, TargetError> {
        let specs = nbls.iter().map(harness_nbl).collect::<Result<Vec<_>, _>>()?;
        let lengths: Vec<Vec<u64>> =
            specs.iter().map(|n| n.frames.iter().map(|f| f.bytes.len() as u64).collect()).collect();
        let outcomes = self.with(|l| {
            let a = Self::adapter_id(l, adapter)?;
            let r = match direction {
                Direction::Send => l.session.send(a, specs, at(level)),
                Direction::Receive => l.session.receive(a, specs, at(level), resources),
            };
            r.map_err(|v| TargetError::Violation(v.to_string()))
        })?;
        Ok(outcomes
            .into_iter()
            .zip(lengths)
            .map(|(o, frame_bytes)| NblResult { delivered: o.delivered, frame_bytes })
            .collect())
    }

    fn exact_traffic(&self) -> bool {
        true
    }

    fn indicate_status(&self, adapter: Adapter, status: StatusIndication, level: Level) -> Result<(), TargetError> {
        self.with(|l| {
            let a = Self::adapter_id(l, adapter)?;
            l.session.indicate_status(a, status.code(), at(level)).map_err(|v| TargetError::Violation(v.to_string()))
        })
    }

    fn ndis_version(&self) -> Result<(u8, u8), TargetError> {
        self.with(|l| Ok(l.session.filter().ndis_version))
    }

    fn persisted_port_name(&self) -> Result<Option<Vec<u16>>, TargetError> {
        let Some((kind, data)) = self.registry.value(PARAMETERS, "PortName") else { return Ok(None) };
        if kind != 1 {
            // REG_SZ
            return Err(TargetError::Os(format!("PortName has type {kind}, not REG_SZ")));
        }
        let mut units: Vec<u16> = data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        if units.pop() != Some(0) {
            return Err(TargetError::Os(format!("PortName is not NUL-terminated: {units:04x?}")));
        }
        Ok(Some(units))
    }

    fn fail_next_registry_write(&self, status: i32) -> Result<(), TargetError> {
        self.registry.fail_next_set(status);
        Ok(())
    }

    fn reload(&self) -> Result<Health, TargetError> {
        self.assert_owner();
        let mut guard = self.loaded.write().unwrap_or_else(PoisonError::into_inner);
        let old = guard.take().ok_or_else(|| TargetError::Os("the driver is unloaded".into()))?;
        let health = self.unload_instance(old);
        *guard = Some(Self::load_instance(&self.config, &self.registry)?);
        Ok(health)
    }

    fn unload(&self) -> Result<Health, TargetError> {
        self.assert_owner();
        let old = self.loaded.write().unwrap_or_else(PoisonError::into_inner).take();
        let old = old.ok_or_else(|| TargetError::Os("the driver is unloaded".into()))?;
        Ok(self.unload_instance(old))
    }
}
