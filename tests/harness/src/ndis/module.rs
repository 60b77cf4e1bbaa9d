//! Simulated adapters and the filter module state machine:
//! Attach -> Paused -> Restart -> Running -> Pause -> Paused -> Detach,
//! at PASSIVE_LEVEL, with NdisFSetAttributes, NdisFPauseComplete and
//! NdisFRestartComplete.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ndis_sys::{
    MediaConnectStateConnected, MediaDuplexStateFull, NdisMedium802_3, NdisPhysicalMedium802_3,
    IF_TYPE_ETHERNET_CSMACD, NDIS_FILTER_ATTACH_PARAMETERS, NDIS_FILTER_ATTACH_PARAMETERS_REVISION_4,
    NDIS_FILTER_ATTRIBUTES, NDIS_FILTER_ATTRIBUTES_REVISION_1, NDIS_FILTER_DRIVER_CHARACTERISTICS,
    NDIS_FILTER_PAUSE_PARAMETERS, NDIS_FILTER_PAUSE_PARAMETERS_REVISION_1, NDIS_FILTER_RESTART_PARAMETERS,
    NDIS_FILTER_RESTART_PARAMETERS_REVISION_1, NDIS_HANDLE, NDIS_OBJECT_HEADER,
    NDIS_OBJECT_TYPE_FILTER_ATTACH_PARAMETERS, NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES,
    NDIS_OBJECT_TYPE_FILTER_PAUSE_PARAMETERS, NDIS_OBJECT_TYPE_FILTER_RESTART_PARAMETERS, NDIS_PAUSE_NDIS_INTERNAL,
    NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_4, NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1,
    NDIS_SIZEOF_FILTER_PAUSE_PARAMETERS_REVISION_1, NDIS_SIZEOF_FILTER_RESTART_PARAMETERS_REVISION_1, NDIS_STATUS,
    NDIS_STATUS_INVALID_PARAMETER, NDIS_STATUS_PENDING, NDIS_STATUS_SUCCESS, NET_LUID, UNICODE_STRING,
};

use super::filter::{bad_handle, filter_snapshot};
use super::{model, ndis_violation, notify, raise, subcodes, win64};
use crate::imports::Import;
use crate::verifier::Violation;
use crate::{irql, stack};

/// An adapter of the session, in the order they were added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AdapterId(pub usize);

/// A simulated adapter: a miniport with a stack of filters above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSpec {
    /// Miniport name (`BaseMiniportName`).
    pub name: String,
    /// Other (model) modifying filters bound to this adapter.
    pub other_modifying_filters: usize,
    /// The driver is a monitoring filter: it then gets a module above the
    /// miniport and above each modifying filter; a modifying filter gets
    /// exactly one module.
    pub driver_monitors: bool,
}

impl AdapterSpec {
    /// An adapter with no other filters.
    pub fn named(name: &str) -> Self {
        AdapterSpec { name: name.into(), other_modifying_filters: 0, driver_monitors: false }
    }

    /// How many modules of the driver this adapter's stack holds.
    pub fn module_count(&self) -> usize {
        if self.driver_monitors {
            self.other_modifying_filters + 1
        } else {
            1
        }
    }
}

/// State of one filter module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleState {
    /// FilterAttach is running.
    Attaching,
    /// Attached, not running.
    Paused,
    /// FilterRestart is running or pending.
    Restarting,
    /// Data flows.
    Running,
    /// FilterPause is running or pending.
    Pausing,
    /// Detached (the record is kept for the report).
    Detached,
}

pub(crate) struct AdapterRec {
    pub spec: AdapterSpec,
    pub if_index: u32,
    /// Driver modules, lowest first; empty while detached.
    pub modules: Vec<usize>,
    /// Held for reading by every send from above for its whole duration and
    /// for writing by pause, restart, attach and detach: the layers above a
    /// pausing filter are already paused, so no new send arrives meanwhile.
    pub send_gate: Arc<RwLock<()>>,
    /// Held for reading by receives and for writing by attach and detach
    /// (the miniport is paused before a filter is detached).
    pub receive_gate: Arc<RwLock<()>>,
}

pub(crate) struct ModuleRec {
    pub adapter: usize,
    pub state: ModuleState,
    pub context: usize,
    pub attributes_set: bool,
    /// The asynchronous completion status of a pending pause or restart.
    pub completed: Option<NDIS_STATUS>,
}

/// Adds an adapter.
pub(crate) fn add_adapter(spec: AdapterSpec) -> AdapterId {
    let mut m = model();
    let id = m.adapters.len();
    m.adapters.push(AdapterRec {
        spec,
        if_index: 10 + id as u32,
        modules: Vec::new(),
        send_gate: Arc::default(),
        receive_gate: Arc::default(),
    });
    AdapterId(id)
}

/// The driver's modules on `adapter`, lowest first, with their states.
pub(crate) fn modules_of(adapter: AdapterId) -> Vec<(usize, ModuleState)> {
    let m = model();
    m.adapters[adapter.0].modules.iter().map(|h| (*h, m.modules[h].state)).collect()
}

fn gates(adapter: AdapterId) -> (Arc<RwLock<()>>, Arc<RwLock<()>>) {
    let m = model();
    let a = &m.adapters[adapter.0];
    (a.send_gate.clone(), a.receive_gate.clone())
}

/// Sets the state of module `h`.
fn set_state(h: usize, state: ModuleState) {
    if let Some(rec) = model().modules.get_mut(&h) {
        rec.state = state;
    }
}

pub(crate) fn state_of(h: usize) -> Option<ModuleState> {
    model().modules.get(&h).map(|r| r.state)
}

type AttachFn = unsafe extern "win64" fn(NDIS_HANDLE, NDIS_HANDLE, *mut NDIS_FILTER_ATTACH_PARAMETERS) -> NDIS_STATUS;
type ContextFn = unsafe extern "win64" fn(NDIS_HANDLE) -> NDIS_STATUS;
type DetachFn = unsafe extern "win64" fn(NDIS_HANDLE);
type RestartFn = unsafe extern "win64" fn(NDIS_HANDLE, *mut NDIS_FILTER_RESTART_PARAMETERS) -> NDIS_STATUS;
type PauseFn = unsafe extern "win64" fn(NDIS_HANDLE, *mut NDIS_FILTER_PAUSE_PARAMETERS) -> NDIS_STATUS;

/// The `NET_LUID` of an Ethernet interface with this index.
fn ethernet_luid(if_index: u32) -> NET_LUID {
    NET_LUID { Value: (u64::from(IF_TYPE_ETHERNET_CSMACD) << 48) | u64::from(if_index) }
}

fn chars() -> (NDIS_FILTER_DRIVER_CHARACTERISTICS, usize) {
    let (c, ctx, _) = filter_snapshot().expect("no filter driver registered");
    (c, ctx)
}

/// A UNICODE_STRING over a UTF-16 buffer the caller keeps alive.
fn unicode(buf: &mut [u16]) -> UNICODE_STRING {
    let bytes = (buf.len() * 2) as u16;
    UNICODE_STRING { Length: bytes, MaximumLength: bytes, Buffer: buf.as_mut_ptr() }
}

/// Attaches the driver's module(s) to `adapter`, lowest first. Returns the
/// first failure status, or success.
pub(crate) fn attach(adapter: AdapterId) -> Result<NDIS_STATUS, Violation> {
    let (send_gate, receive_gate) = gates(adapter);
    let _s = send_gate.write().unwrap_or_else(|e| e.into_inner());
    let _r = receive_gate.write().unwrap_or_else(|e| e.into_inner());
    let (c, driver_ctx) = chars();
    let (spec, if_index) = {
        let m = model();
        let a = &m.adapters[adapter.0];
        assert!(a.modules.is_empty(), "attach: adapter {} already attached", a.spec.name);
        (a.spec.clone(), a.if_index)
    };
    for level in 0..spec.module_count() {
        let status = attach_one(adapter, &spec, if_index, level, &c, driver_ctx)?;
        if status != NDIS_STATUS_SUCCESS {
            return Ok(status);
        }
    }
    Ok(NDIS_STATUS_SUCCESS)
}

fn attach_one(
    adapter: AdapterId,
    spec: &AdapterSpec,
    if_index: u32,
    level: usize,
    c: &NDIS_FILTER_DRIVER_CHARACTERISTICS,
    driver_ctx: usize,
) -> Result<NDIS_STATUS, Violation> {
    let handle = {
        let mut m = model();
        let h = m.new_handle();
        m.modules.insert(
            h,
            ModuleRec {
                adapter: adapter.0,
                state: ModuleState::Attaching,
                context: 0,
                attributes_set: false,
                completed: None,
            },
        );
        h
    };
    let mut guid: Vec<u16> =
        format!("{{5CBF81BD-5055-47CD-9055-A76B2B4E{:04X}}}-{level}", if_index).encode_utf16().collect();
    let mut name: Vec<u16> = spec.name.encode_utf16().collect();
    let mut guid_s = unicode(&mut guid);
    let mut name_s = unicode(&mut name);
    // SAFETY: plain data; all-zero is a valid starting point.
    let mut p: NDIS_FILTER_ATTACH_PARAMETERS = unsafe { core::mem::zeroed() };
    p.Header = NDIS_OBJECT_HEADER::new(
        NDIS_OBJECT_TYPE_FILTER_ATTACH_PARAMETERS,
        NDIS_FILTER_ATTACH_PARAMETERS_REVISION_4,
        NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_4,
    );
    p.IfIndex = if_index * 100 + level as u32;
    p.NetLuid = ethernet_luid(p.IfIndex);
    p.FilterModuleGuidName = &mut guid_s;
    p.BaseMiniportIfIndex = if_index;
    p.BaseMiniportInstanceName = &mut name_s;
    p.BaseMiniportName = &mut name_s;
    p.MediaConnectState = MediaConnectStateConnected;
    p.MediaDuplexState = MediaDuplexStateFull;
    p.XmitLinkSpeed = 1_000_000_000;
    p.RcvLinkSpeed = 1_000_000_000;
    p.MiniportMediaType = NdisMedium802_3;
    p.MiniportPhysicalMediaType = NdisPhysicalMedium802_3;
    p.MacAddressLength = 6;
    p.CurrentMacAddress[..6].copy_from_slice(&[0x02, 0, 0, 0, adapter.0 as u8, 1]);
    p.BaseMiniportNetLuid = ethernet_luid(if_index);
    p.LowerIfIndex = if level == 0 { if_index } else { p.IfIndex - 1 };
    // SAFETY: FilterAttach is mandatory (checked at registration).
    let f: AttachFn = unsafe { win64(c.AttachHandler.expect("mandatory")) };
    model().count("FilterAttach");
    // SAFETY: the arguments NDIS passes; `p` and the strings outlive the call.
    let status = stack::call_driver_at("FilterAttach", irql::PASSIVE, || unsafe {
        f(handle as NDIS_HANDLE, driver_ctx as NDIS_HANDLE, &mut p)
    })?;
    let attributes_set = model().modules[&handle].attributes_set;
    if status == NDIS_STATUS_SUCCESS && !attributes_set {
        return Err(record(ndis_violation(
            "FilterAttach succeeded without NdisFSetAttributes",
            subcodes::BAD_TRANSITION,
            handle as u64,
            0,
            "a filter must call NdisFSetAttributes before FilterAttach returns success".into(),
        )));
    }
    let mut m = model();
    if status == NDIS_STATUS_SUCCESS {
        m.modules.get_mut(&handle).expect("module").state = ModuleState::Paused;
        m.adapters[adapter.0].modules.push(handle);
    } else {
        m.modules.get_mut(&handle).expect("module").state = ModuleState::Detached;
        m.retired.insert(handle, "filter module handle (attach failed)");
    }
    Ok(status)
}

/// Records a violation found by host code and returns it.
pub(crate) fn record(v: Violation) -> Violation {
    crate::verifier::record(v.clone());
    v
}

fn require_state(h: usize, want: ModuleState, op: &str) {
    let now = state_of(h);
    assert_eq!(now, Some(want), "{op}: module {h:#x} is {now:?}; NDIS only does this from {want:?} (R7)");
}

/// Restarts every module of `adapter`, lowest first (FilterSetModuleOptions
/// first when the driver has one).
///
/// Sends and receives keep arriving meanwhile: the module is Restarting
/// (it completes sends with NDIS_STATUS_PAUSED or, once its FilterRestart
/// has made it ready, passes them on).
pub(crate) fn restart(adapter: AdapterId) -> Result<NDIS_STATUS, Violation> {
    let (c, _) = chars();
    let handles = model().adapters[adapter.0].modules.clone();
    for h in handles {
        require_state(h, ModuleState::Paused, "restart");
        let ctx = model().modules[&h].context;
        if let Some(opt) = c.SetFilterModuleOptionsHandler {
            // SAFETY: documented signature of FilterSetModuleOptions.
            let f: ContextFn = unsafe { win64(opt) };
            model().count("FilterSetModuleOptions");
            // SAFETY: the argument NDIS passes.
            let s =
                stack::call_driver_at("FilterSetModuleOptions", irql::PASSIVE, || unsafe { f(ctx as NDIS_HANDLE) })?;
            if s != NDIS_STATUS_SUCCESS {
                return Ok(s);
            }
        }
        set_state(h, ModuleState::Restarting);
        let mut p = NDIS_FILTER_RESTART_PARAMETERS {
            Header: NDIS_OBJECT_HEADER::new(
                NDIS_OBJECT_TYPE_FILTER_RESTART_PARAMETERS,
                NDIS_FILTER_RESTART_PARAMETERS_REVISION_1,
                NDIS_SIZEOF_FILTER_RESTART_PARAMETERS_REVISION_1,
            ),
            MiniportMediaType: NdisMedium802_3,
            MiniportPhysicalMediaType: NdisPhysicalMedium802_3,
            ..Default::default()
        };
        // SAFETY: FilterRestart is mandatory.
        let f: RestartFn = unsafe { win64(c.RestartHandler.expect("mandatory")) };
        model().count("FilterRestart");
        // SAFETY: the arguments NDIS passes; `p` outlives the call.
        let mut status =
            stack::call_driver_at("FilterRestart", irql::PASSIVE, || unsafe { f(ctx as NDIS_HANDLE, &mut p) })?;
        if status == NDIS_STATUS_PENDING {
            status = wait_completion(h, "FilterRestart", "NdisFRestartComplete")?;
        }
        set_state(h, if status == NDIS_STATUS_SUCCESS { ModuleState::Running } else { ModuleState::Paused });
        if status != NDIS_STATUS_SUCCESS {
            return Ok(status);
        }
    }
    Ok(NDIS_STATUS_SUCCESS)
}

/// How long a pending pause or restart may take (R50: NDIS's verifier
/// allows 10 s; sessions use a shorter, configurable limit).
static PAUSE_TIMEOUT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(2000);

/// Sets the pause/restart completion timeout.
pub(crate) fn set_pause_timeout(t: Duration) {
    PAUSE_TIMEOUT_MS.store(t.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
}

fn wait_completion(h: usize, callback: &'static str, completer: &str) -> Result<NDIS_STATUS, Violation> {
    let timeout = Duration::from_millis(PAUSE_TIMEOUT_MS.load(std::sync::atomic::Ordering::Relaxed));
    let deadline = Instant::now() + timeout;
    let mut m = model();
    loop {
        if let Some(s) = m.modules.get_mut(&h).and_then(|r| r.completed.take()) {
            return Ok(s);
        }
        if crate::verifier::is_tainted() {
            if let Some(v) = crate::verifier::stopped() {
                return Err(v);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            drop(m);
            return Err(record(ndis_violation(
                "pause or restart never completed",
                subcodes::PAUSE_COMPLETE,
                h as u64,
                timeout.as_millis() as u64,
                format!("{callback} returned NDIS_STATUS_PENDING and {completer} was not called within {timeout:?}"),
            )));
        }
        // Wake now and then to notice a bug check on another thread.
        m = m.wait((deadline - now).min(Duration::from_millis(20)));
    }
}

/// Pauses every module of `adapter`, highest first.
///
/// As on Windows, nothing stops the data path for it: sends the module
/// forwarded may still be outstanding below it (the miniport completes
/// them later, concurrently with FilterPause, see
/// [`Completion::Delayed`](super::Completion::Delayed)), new sends keep
/// arriving from above and receives from below until the miniport is
/// paused. The filter's side is checked: its pause completes (FilterPause
/// returns NDIS_STATUS_SUCCESS, or NdisFPauseComplete) only once every NBL
/// it forwarded is back and it holds none ([`super::data::check_pause_complete`]);
/// from then on it forwards nothing (`FORWARDED_AFTER_PAUSE`) and completes
/// new sends with NDIS_STATUS_PAUSED (R14).
pub(crate) fn pause(adapter: AdapterId) -> Result<(), Violation> {
    pause_locked(adapter)
}

fn pause_locked(adapter: AdapterId) -> Result<(), Violation> {
    let (c, _) = chars();
    let mut handles = model().adapters[adapter.0].modules.clone();
    handles.reverse();
    for h in handles {
        require_state(h, ModuleState::Running, "pause");
        set_state(h, ModuleState::Pausing);
        let ctx = model().modules[&h].context;
        let mut p = NDIS_FILTER_PAUSE_PARAMETERS {
            Header: NDIS_OBJECT_HEADER::new(
                NDIS_OBJECT_TYPE_FILTER_PAUSE_PARAMETERS,
                NDIS_FILTER_PAUSE_PARAMETERS_REVISION_1,
                NDIS_SIZEOF_FILTER_PAUSE_PARAMETERS_REVISION_1,
            ),
            Flags: 0,
            PauseReason: NDIS_PAUSE_NDIS_INTERNAL,
        };
        // SAFETY: FilterPause is mandatory.
        let f: PauseFn = unsafe { win64(c.PauseHandler.expect("mandatory")) };
        {
            let mut m = model();
            m.count("FilterPause");
            if super::data::forwarded_outstanding(&m, h) {
                m.stats.pauses_with_nbls_out += 1;
            }
        }
        // SAFETY: the arguments NDIS passes; `p` outlives the call.
        let mut status =
            stack::call_driver_at("FilterPause", irql::PASSIVE, || unsafe { f(ctx as NDIS_HANDLE, &mut p) })?;
        if status == NDIS_STATUS_SUCCESS {
            let mut m = model();
            if m.modules.get_mut(&h).expect("module").completed.take().is_some() {
                drop(m);
                return Err(record(ndis_violation(
                    "pause or restart completed twice or unexpectedly",
                    subcodes::PAUSE_COMPLETE,
                    h as u64,
                    0,
                    "FilterPause called NdisFPauseComplete and returned NDIS_STATUS_SUCCESS".into(),
                )));
            }
            if let Err(v) = super::data::check_pause_complete(&m, h, "FilterPause returned NDIS_STATUS_SUCCESS") {
                drop(m);
                return Err(record(v));
            }
            m.modules.get_mut(&h).expect("module").state = ModuleState::Paused;
        }
        if status == NDIS_STATUS_PENDING {
            model().stats.pauses_pended += 1;
            // NdisFPauseComplete checks and moves the module to Paused.
            status = wait_completion(h, "FilterPause", "NdisFPauseComplete")?;
        }
        if status != NDIS_STATUS_SUCCESS {
            return Err(record(ndis_violation(
                "FilterPause failed",
                subcodes::PAUSE_COMPLETE,
                h as u64,
                status as u32 as u64,
                format!("FilterPause completed with {status:#x}; a pause cannot fail (R8)"),
            )));
        }
    }
    Ok(())
}

/// Detaches every module of `adapter`, highest first.
pub(crate) fn detach(adapter: AdapterId) -> Result<(), Violation> {
    let (send_gate, receive_gate) = gates(adapter);
    let _s = send_gate.write().unwrap_or_else(|e| e.into_inner());
    let _r = receive_gate.write().unwrap_or_else(|e| e.into_inner());
    detach_locked(adapter)
}

fn detach_locked(adapter: AdapterId) -> Result<(), Violation> {
    let (c, _) = chars();
    let mut handles = model().adapters[adapter.0].modules.clone();
    handles.reverse();
    for h in handles {
        require_state(h, ModuleState::Paused, "detach");
        let ctx = model().modules[&h].context;
        // SAFETY: FilterDetach is mandatory.
        let f: DetachFn = unsafe { win64(c.DetachHandler.expect("mandatory")) };
        model().count("FilterDetach");
        // SAFETY: the argument NDIS passes.
        stack::call_driver_at("FilterDetach", irql::PASSIVE, || unsafe { f(ctx as NDIS_HANDLE) })?;
        super::data::check_originated_on_detach(h)?;
        let mut m = model();
        m.modules.get_mut(&h).expect("module").state = ModuleState::Detached;
        m.adapters[adapter.0].modules.retain(|x| *x != h);
        m.retired.insert(h, "filter module handle (detached)");
    }
    Ok(())
}

/// Pauses (when running) and detaches every module of every adapter: what
/// NdisFDeregisterFilterDriver does before it returns.
pub(crate) fn tear_down_all() -> Result<(), Violation> {
    let count = model().adapters.len();
    for i in 0..count {
        let adapter = AdapterId(i);
        let states = modules_of(adapter);
        if states.is_empty() {
            continue;
        }
        let (send_gate, receive_gate) = gates(adapter);
        let _s = send_gate.write().unwrap_or_else(|e| e.into_inner());
        let _r = receive_gate.write().unwrap_or_else(|e| e.into_inner());
        if states.iter().any(|(_, s)| *s == ModuleState::Running) {
            pause_locked(adapter)?;
        }
        detach_locked(adapter)?;
    }
    Ok(())
}

/// The module record for a handle the driver passed, or a violation.
pub(crate) fn module_for(function: &str, handle: NDIS_HANDLE) -> Result<(usize, ModuleState, usize), Violation> {
    let found = model().modules.get(&(handle as usize)).map(|r| (r.adapter, r.state, r.context));
    match found {
        Some((_, ModuleState::Detached, _)) | None => Err(bad_handle(function, handle)),
        Some(rec) => Ok(rec),
    }
}

/// `NdisFSetAttributes`: only during FilterAttach.
#[allow(non_snake_case)]
unsafe extern "win64" fn NdisFSetAttributes(
    handle: NDIS_HANDLE,
    context: NDIS_HANDLE,
    attrs: *const NDIS_FILTER_ATTRIBUTES,
) -> NDIS_STATUS {
    irql::require("NdisFSetAttributes", irql::PASSIVE, irql::PASSIVE);
    let checked = stack::on_host(|| {
        let (_, state, _) = module_for("NdisFSetAttributes", handle)?;
        if state != ModuleState::Attaching {
            return Err(ndis_violation(
                "NdisFSetAttributes outside FilterAttach",
                subcodes::WRONG_STATE,
                handle as u64,
                0,
                format!("module is {state:?}"),
            ));
        }
        if attrs.is_null() || context.is_null() {
            return Ok(NDIS_STATUS_INVALID_PARAMETER);
        }
        // SAFETY: non-NULL attributes from the driver.
        let a = unsafe { *attrs };
        if a.Header.Type != NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES
            || a.Header.Revision != NDIS_FILTER_ATTRIBUTES_REVISION_1
            || a.Header.Size < NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1
        {
            return Ok(NDIS_STATUS_INVALID_PARAMETER);
        }
        let mut m = model();
        let rec = m.modules.get_mut(&(handle as usize)).expect("checked");
        rec.context = context as usize;
        rec.attributes_set = true;
        Ok(NDIS_STATUS_SUCCESS)
    });
    match checked {
        Ok(s) => s,
        Err(v) => raise(v),
    }
}

/// Completes a pending pause or restart of module `handle`.
fn complete(function: &str, handle: NDIS_HANDLE, want: ModuleState, status: NDIS_STATUS) {
    let result = stack::on_host(|| {
        let (_, state, _) = module_for(function, handle)?;
        let mut m = model();
        let rec = m.modules.get_mut(&(handle as usize)).expect("checked");
        if state != want || rec.completed.is_some() {
            return Err(ndis_violation(
                "pause or restart completed twice or unexpectedly",
                subcodes::PAUSE_COMPLETE,
                handle as u64,
                0,
                format!("{function} while the module is {state:?}"),
            ));
        }
        if want == ModuleState::Pausing {
            super::data::check_pause_complete(&m, handle as usize, "NdisFPauseComplete")?;
            m.modules.get_mut(&(handle as usize)).expect("checked").state = ModuleState::Paused;
        }
        let rec = m.modules.get_mut(&(handle as usize)).expect("checked");
        rec.completed = Some(status);
        Ok(())
    });
    match result {
        Ok(()) => notify(),
        Err(v) => raise(v),
    }
}

/// `NdisFPauseComplete`.
#[allow(non_snake_case)]
unsafe extern "win64" fn NdisFPauseComplete(handle: NDIS_HANDLE) {
    irql::require("NdisFPauseComplete", irql::PASSIVE, irql::DISPATCH);
    complete("NdisFPauseComplete", handle, ModuleState::Pausing, NDIS_STATUS_SUCCESS);
}

/// `NdisFRestartComplete`.
#[allow(non_snake_case)]
unsafe extern "win64" fn NdisFRestartComplete(handle: NDIS_HANDLE, status: NDIS_STATUS) {
    irql::require("NdisFRestartComplete", irql::PASSIVE, irql::PASSIVE);
    complete("NdisFRestartComplete", handle, ModuleState::Restarting, status);
}

pub(super) fn imports() -> Vec<Import> {
    vec![
        Import::ndis("NdisFSetAttributes", NdisFSetAttributes as *const () as usize),
        Import::ndis("NdisFPauseComplete", NdisFPauseComplete as *const () as usize),
        Import::ndis("NdisFRestartComplete", NdisFRestartComplete as *const () as usize),
    ]
}
