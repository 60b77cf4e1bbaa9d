//! One loaded driver and everything a test does with it: adapters, the
//! filter state machine, traffic, the control device, unload and the
//! report.
//!
//! ```no_run
//! use portwatch_harness::frames::{FrameSpec, IPPROTO_UDP};
//! use portwatch_harness::nbl::NblSpec;
//! use portwatch_harness::ndis::{AdapterSpec, At};
//! use portwatch_harness::session::{Options, Session};
//!
//! let s = Session::load(std::path::Path::new("lwf_fixture.dll"), Options::default()).unwrap();
//! let eth0 = s.add_adapter(AdapterSpec::named("eth0"));
//! s.start(eth0).unwrap();
//! let frame = FrameSpec::ipv4(IPPROTO_UDP, 5000, 53).build();
//! let done = s.send(eth0, vec![NblSpec::of(vec![frame])], At::Dispatch).unwrap();
//! assert!(done[0].delivered);
//! s.pause(eth0).unwrap();
//! s.detach(eth0).unwrap();
//! let report = s.unload();
//! assert!(report.violations.is_empty(), "{report}");
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ndis_sys::{DRIVER_OBJECT, NDIS_STATUS, NDIS_STATUS_SUCCESS, NTSTATUS, NT_SUCCESS, UNICODE_STRING};

use crate::io::{self, DriverObject, Handle, IoError, IoStats, IoctlResult};
use crate::loader::{self, LoadedImage};
use crate::nbl::{self, NblSpec};
use crate::ndis::{self, AdapterId, AdapterSpec, At, Completion, NblOutcome, Outcomes, Stats};
use crate::registry::{self, Hive};
use crate::verifier::{self, codes, Config, Violation};
use crate::{irql, pool, stack};

/// How a session runs the driver.
#[derive(Debug, Clone)]
pub struct Options {
    /// Driver Verifier options.
    pub verifier: Config,
    /// How long a pending FilterPause/FilterRestart may take (NDIS's
    /// verifier allows 10 s; tests use less).
    pub pause_timeout: Duration,
    /// When the miniport completes sends and the protocol returns receives.
    pub completion: Completion,
    /// Service name (`\Driver\<name>`, the registry path).
    pub service: String,
    /// Fail the load unless DriverEntry registered a control device.
    pub require_device: bool,
    /// The machine's registry: pass a clone of one [`Hive`] to successive
    /// sessions to load the driver again on the same machine.
    pub registry: Hive,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verifier: Config::default(),
            pause_timeout: Duration::from_secs(2),
            completion: Completion::Deferred,
            service: "PortWatch".into(),
            require_device: true,
            registry: Hive::new(),
        }
    }
}

/// Why a driver could not be loaded and started.
#[derive(Debug)]
pub enum LoadError {
    /// The image could not be mapped or bound.
    Image(loader::LoadError),
    /// DriverEntry failed with this status (after cleaning up correctly).
    EntryFailed(NTSTATUS),
    /// The verifier stopped the driver during DriverEntry or its cleanup.
    Violation(Violation),
    /// DriverEntry succeeded without registering what it must.
    Registration(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Image(e) => write!(f, "{e}"),
            LoadError::EntryFailed(s) => write!(f, "DriverEntry failed with {s:#x}"),
            LoadError::Violation(v) => write!(f, "{v}"),
            LoadError::Registration(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// Everything that happened in a session.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every driver entry point called, with its peak stack use in bytes.
    pub entry_points: Vec<(String, usize)>,
    /// NDIS model counters (filter callbacks, NBLs, bypasses).
    pub ndis: Stats,
    /// I/O manager counters (IRPs).
    pub io: IoStats,
    /// Pool allocations made by the driver.
    pub allocations: u64,
    /// Pool allocations still live (leaks once unloaded).
    pub leaked: Vec<String>,
    /// Every violation, in order; the first is the bug check.
    pub violations: Vec<Violation>,
    /// The driver's DbgPrint output.
    pub debug_output: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "entry points (peak stack bytes):")?;
        for (name, peak) in &self.entry_points {
            writeln!(f, "  {name:<36} {peak:>6}")?;
        }
        writeln!(f, "filter callbacks: {:?}", self.ndis.callbacks)?;
        writeln!(
            f,
            "NBLs: {} created, {} back; NET_BUFFERs {} to the miniport, {} to the protocol; {} sends completed PAUSED; {} frames modified",
            self.ndis.nbls_allocated,
            self.ndis.nbls_finished,
            self.ndis.nbs_to_miniport,
            self.ndis.nbs_to_protocol,
            self.ndis.sends_completed_paused,
            self.ndis.frames_modified
        )?;
        writeln!(
            f,
            "status indications: {} forwarded, {} bypassed; OIDs bypassed: {}",
            self.ndis.status_forwarded, self.ndis.status_bypassed, self.ndis.oids_bypassed
        )?;
        writeln!(
            f,
            "IRPs: {:?}; {} pended, {} completed, {} cleanups with IRPs in flight",
            self.io.irps, self.io.pended, self.io.completed, self.io.cleanups_with_irps_in_flight
        )?;
        writeln!(f, "pool: {} allocations, {} leaked {:?}", self.allocations, self.leaked.len(), self.leaked)?;
        writeln!(f, "violations: {}", self.violations.len())?;
        for v in &self.violations {
            writeln!(f, "  {v}")?;
        }
        Ok(())
    }
}

/// A loaded driver. Methods take `&self` and may be called from many
/// threads at once.
pub struct Session {
    // Field order is drop order: the image is unmapped before the verifier
    // session ends.
    image: Mutex<Option<LoadedImage>>,
    driver: Mutex<DriverObject>,
    unloaded: Mutex<Option<Report>>,
    _verifier: verifier::Session,
}

type DriverEntryFn = unsafe extern "win64" fn(*mut DRIVER_OBJECT, *mut UNICODE_STRING) -> NTSTATUS;
type DriverUnloadFn = unsafe extern "win64" fn(*mut DRIVER_OBJECT);

impl Session {
    /// Loads the driver at `path`, runs DriverEntry at PASSIVE_LEVEL on a
    /// guarded stack and checks that it registered a filter driver (and a
    /// control device, unless `options.require_device` is false).
    pub fn load(path: &Path, options: Options) -> Result<Session, LoadError> {
        let exclusive = verifier::Session::begin(options.verifier);
        let image = loader::load(path, &crate::imports::registry()).map_err(LoadError::Image)?;
        let entry = image.entry();
        Self::boot(exclusive, Some(image), entry, options)
    }

    /// Runs a driver that is not a PE image: `entry` is the address of an
    /// `extern "win64" fn(*mut DRIVER_OBJECT, *mut UNICODE_STRING) ->
    /// NTSTATUS` in this process, which reaches the model through the
    /// addresses in [`crate::imports::registry`]. Used to commit violations
    /// on purpose in the model's own tests.
    ///
    /// # Safety
    /// `entry` is such a function, and so is every handler it registers.
    pub unsafe fn load_in_process(entry: usize, options: Options) -> Result<Session, LoadError> {
        let exclusive = verifier::Session::begin(options.verifier);
        Self::boot(exclusive, None, entry, options)
    }

    fn boot(
        exclusive: verifier::Session,
        image: Option<LoadedImage>,
        entry: usize,
        options: Options,
    ) -> Result<Session, LoadError> {
        ndis::reset();
        io::reset();
        ndis::configure(options.completion, options.pause_timeout);
        let (base, size) = image.as_ref().map_or((entry, 0), |i| (i.base(), i.size()));
        let mut driver = DriverObject::new(&options.service, base, size);
        // The service key exists: setup created it.
        options
            .registry
            .ensure_key(&format!("\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\{}", options.service));
        registry::install(&options.registry);
        let (obj, reg) = (driver.as_ptr(), driver.registry_path());
        let session = Session {
            image: Mutex::new(image),
            driver: Mutex::new(driver),
            unloaded: Mutex::new(None),
            _verifier: exclusive,
        };
        // SAFETY: `entry` is DriverEntry (the image's /ENTRY, or the
        // caller's promise for in-process drivers).
        let f: DriverEntryFn = unsafe { core::mem::transmute::<usize, DriverEntryFn>(entry) };
        // SAFETY: DriverEntry's arguments; both objects outlive the session's driver.
        let status = stack::call_driver_at("DriverEntry", irql::PASSIVE, || unsafe { f(obj, reg) })
            .map_err(LoadError::Violation)?;
        if !NT_SUCCESS(status) {
            // A failed DriverEntry must leave nothing behind (R4); the
            // driver is then unloaded without DriverUnload.
            session.check_left_behind().map_err(LoadError::Violation)?;
            return Err(LoadError::EntryFailed(status));
        }
        ndis::call_driver_entry_checks().map_err(LoadError::Registration)?;
        if options.require_device && ndis::control_device().is_none() {
            return Err(LoadError::Registration(
                "DriverEntry did not register a control device (NdisRegisterDeviceEx)".into(),
            ));
        }
        Ok(session)
    }

    /// Where the driver image is mapped: (base address, size); `None` for
    /// an in-process driver. Profilers use it to turn addresses in the
    /// anonymous mapping back into image offsets.
    pub fn image_range(&self) -> Option<(usize, usize)> {
        self.image.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|i| (i.base(), i.size()))
    }

    /// What the driver registered.
    pub fn filter(&self) -> ndis::FilterInfo {
        ndis::registered_filter().expect("registered at load")
    }

    /// The control device: (device name, symbolic link).
    pub fn control_device(&self) -> Option<(String, String)> {
        ndis::control_device()
    }

    /// Adds a simulated adapter (not yet attached).
    pub fn add_adapter(&self, spec: AdapterSpec) -> AdapterId {
        ndis::add_adapter(spec)
    }

    /// The driver's modules on `adapter` (lowest first) and their states.
    pub fn modules(&self, adapter: AdapterId) -> Vec<(usize, ndis::ModuleState)> {
        ndis::modules_of(adapter)
    }

    /// FilterAttach for every module of `adapter`; the status it returned.
    pub fn attach(&self, adapter: AdapterId) -> Result<NDIS_STATUS, Violation> {
        ndis::attach(adapter)
    }

    /// FilterSetModuleOptions (if any) and FilterRestart for every module.
    pub fn restart(&self, adapter: AdapterId) -> Result<NDIS_STATUS, Violation> {
        ndis::restart(adapter)
    }

    /// Attach and restart, both expected to succeed.
    pub fn start(&self, adapter: AdapterId) -> Result<(), Violation> {
        let a = self.attach(adapter)?;
        assert_eq!(a, NDIS_STATUS_SUCCESS, "FilterAttach failed with {a:#x}");
        let r = self.restart(adapter)?;
        assert_eq!(r, NDIS_STATUS_SUCCESS, "FilterRestart failed with {r:#x}");
        Ok(())
    }

    /// FilterPause for every module, after sends from above have stopped.
    pub fn pause(&self, adapter: AdapterId) -> Result<(), Violation> {
        ndis::pause(adapter)
    }

    /// FilterDetach for every module.
    pub fn detach(&self, adapter: AdapterId) -> Result<(), Violation> {
        ndis::detach(adapter)
    }

    /// Sends one NBL per spec, chained, from the protocol above `adapter`.
    pub fn send(&self, adapter: AdapterId, nbls: Vec<NblSpec>, at: At) -> Result<Vec<NblOutcome>, Violation> {
        ndis::send(adapter, nbl::build_all(nbls), at).map(Outcomes::into_vec)
    }

    /// Like [`Session::send`], borrowing the specs: nothing is cloned or
    /// allocated per packet (for callers that send the same frames again).
    pub fn send_slice(&self, adapter: AdapterId, nbls: &[NblSpec], at: At) -> Result<Outcomes, Violation> {
        // SAFETY: `nbls` outlives the operation; one that ends in a
        // violation makes its NBLs' specs owned before it returns.
        ndis::send(adapter, unsafe { nbl::build_all_borrowed(nbls) }, at)
    }

    /// Indicates one NBL per spec, chained, from the miniport of `adapter`,
    /// with NDIS_RECEIVE_FLAGS_RESOURCES when `resources`.
    pub fn receive(
        &self,
        adapter: AdapterId,
        nbls: Vec<NblSpec>,
        at: At,
        resources: bool,
    ) -> Result<Vec<NblOutcome>, Violation> {
        ndis::receive(adapter, nbl::build_all(nbls), at, resources).map(Outcomes::into_vec)
    }

    /// Like [`Session::receive`], borrowing the specs (see
    /// [`Session::send_slice`]).
    pub fn receive_slice(
        &self,
        adapter: AdapterId,
        nbls: &[NblSpec],
        at: At,
        resources: bool,
    ) -> Result<Outcomes, Violation> {
        // SAFETY: as in `send_slice`.
        ndis::receive(adapter, unsafe { nbl::build_all_borrowed(nbls) }, at, resources)
    }

    /// A status indication from the miniport of `adapter`.
    pub fn indicate_status(&self, adapter: AdapterId, status: NDIS_STATUS, at: At) -> Result<(), Violation> {
        ndis::indicate_status(adapter, status, at)
    }

    /// An OID request through `adapter`'s stack.
    pub fn oid_request(&self, adapter: AdapterId) -> Result<(), String> {
        ndis::oid_request(adapter)
    }

    /// CreateFile.
    pub fn open(&self, path: &str) -> Result<Handle, IoError> {
        io::open(path)
    }

    /// DeviceIoControl (METHOD_BUFFERED).
    pub fn ioctl(&self, handle: Handle, code: u32, input: &[u8], out_len: u32) -> Result<IoctlResult, IoError> {
        io::ioctl(handle, code, input, out_len)
    }

    /// DuplicateHandle.
    pub fn duplicate(&self, handle: Handle) -> Result<Handle, IoError> {
        io::duplicate(handle)
    }

    /// CloseHandle.
    pub fn close(&self, handle: Handle) -> Result<(), IoError> {
        io::close(handle)
    }

    /// What happened so far.
    pub fn report(&self) -> Report {
        Report {
            entry_points: stack::peak_usage(),
            ndis: ndis::stats(),
            io: io::stats(),
            allocations: pool::allocation_count(),
            leaked: pool::outstanding()
                .iter()
                .map(|a| format!("'{}' {} bytes at {:#x}", a.tag_str(), a.size, a.addr))
                .collect(),
            violations: verifier::violations(),
            debug_output: crate::kernel::debug_output(),
        }
    }

    /// Calls DriverUnload at PASSIVE_LEVEL, then checks that the driver
    /// deregistered its filter and device, that no NBL is outstanding and
    /// that no pool is leaked; unmaps the image. Every handle must be
    /// closed first (Windows does not unload a driver with open handles).
    pub fn unload(self) -> Report {
        self.unload_in_place();
        let report = self.unloaded.lock().unwrap_or_else(PoisonError::into_inner).take().expect("unloaded");
        drop(self);
        report
    }

    fn unload_in_place(&self) {
        assert_eq!(io::open_handles(), 0, "close every handle before unloading");
        let (obj, unload) = {
            let mut d = self.driver.lock().unwrap_or_else(PoisonError::into_inner);
            (d.as_ptr(), d.unload_routine())
        };
        let ran = match unload {
            Some(u) => {
                // SAFETY: the driver's DriverUnload routine.
                let f: DriverUnloadFn = unsafe { core::mem::transmute::<usize, DriverUnloadFn>(u) };
                // SAFETY: the argument the I/O manager passes.
                stack::call_driver_at("DriverUnload", irql::PASSIVE, || unsafe { f(obj) }).is_ok()
            }
            None => {
                verifier::record(Violation::c4(
                    "no DriverUnload",
                    ndis::subcodes::NOT_DEREGISTERED,
                    0,
                    0,
                    0,
                    "the driver set no DriverUnload routine: it can never be unloaded (R5)".into(),
                ));
                false
            }
        };
        if ran {
            let _ = self.check_left_behind();
        }
        let report = self.report();
        *self.image.lock().unwrap_or_else(PoisonError::into_inner) = None;
        *self.unloaded.lock().unwrap_or_else(PoisonError::into_inner) = Some(report);
    }

    /// After unload (or a failed DriverEntry): nothing registered, no model
    /// NBL outstanding, no pool.
    fn check_left_behind(&self) -> Result<(), Violation> {
        let mut first = None;
        for what in ndis::call_unload_checks() {
            let v = Violation::c4("not deregistered at unload", ndis::subcodes::NOT_DEREGISTERED, 0, 0, 0, what);
            verifier::record(v.clone());
            first.get_or_insert(v);
        }
        let nbls = ndis::outstanding_nbls();
        if !nbls.is_empty() {
            let v = Violation::c4(
                "NBLs outstanding at unload",
                ndis::subcodes::SEND_NBL_HELD,
                nbls[0] as u64,
                nbls.len() as u64,
                0,
                format!("{} NBL(s) never came back", nbls.len()),
            );
            verifier::record(v.clone());
            first.get_or_insert(v);
        }
        if let Err(v) = pool::leak_check("DriverUnload") {
            first.get_or_insert(v);
        }
        if let Err(v) = registry::leak_check() {
            first.get_or_insert(v);
        }
        let _ = codes::DRIVER_VERIFIER_DETECTED_VIOLATION;
        first.map_or(Ok(()), Err)
    }
}

/// Finds a driver binary for a test: `$<env_var>` if set, else
/// `<target dir>/x86_64-pc-windows-msvc/driver/<file>` under
/// `$CARGO_TARGET_DIR` or the workspace's `target`. Panics naming `build`
/// (the command that builds it) when there is none: tests never skip.
pub fn find_driver(env_var: &str, file: &str, build: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "${env_var} = {} does not exist; build it with `{build}`", p.display());
        return p;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut dirs: Vec<PathBuf> = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).into_iter().collect();
    dirs.push(workspace.join("target"));
    let candidates: Vec<PathBuf> = dirs.iter().map(|d| d.join("x86_64-pc-windows-msvc/driver").join(file)).collect();
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("{file} not found (looked at ${env_var} and {candidates:?}); build it with `{build}`")
    })
}

impl Drop for Session {
    fn drop(&mut self) {
        let done = self.unloaded.lock().unwrap_or_else(PoisonError::into_inner).is_some();
        if !done && !std::thread::panicking() && !verifier::is_tainted() {
            // A session dropped without unload: unload so the checks run.
            self.unload_in_place();
        }
        *self.image.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}
