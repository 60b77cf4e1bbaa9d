//! The NDIS filter callbacks.
//!
//! PortWatch registers as a *modifying* filter that never modifies traffic.
//! A monitoring filter is bound above every modifying filter of an adapter,
//! so one adapter can get several monitoring modules and each packet would
//! be counted once per module; a modifying filter gets exactly one module per
//! adapter (the INF gives it a FilterClass that places it once in the stack),
//! so each packet passes through PortWatch, and is counted, exactly once.
//!
//! OID, status-bypass and PnP handlers are left NULL so NDIS routes those
//! around the filter. A filter with receive handlers must also handle status
//! indications, so FilterStatus passes them up unchanged.

use alloc::boxed::Box;
use core::cell::Cell;

use ndis_sync::{CallbackIrql, Dispatch, Passive};
use ndis_sys::*;
use portwatch_proto::{EventKind, ModuleState};

use crate::entry::globals;
use crate::modules::{fixed_name, Module, NdisHandle};
use crate::nbl::Chain;
use crate::percpu::Cpu;
use crate::ports::{Direction, NoEvents, PortTable};
use crate::trace::trace;

/// The characteristics NdisFRegisterFilterDriver takes (NDIS 6.30).
pub fn characteristics(names: &crate::entry::Names) -> NDIS_FILTER_DRIVER_CHARACTERISTICS {
    NDIS_FILTER_DRIVER_CHARACTERISTICS {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS,
            Revision: NDIS_FILTER_CHARACTERISTICS_REVISION_2,
            Size: NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2,
        },
        MajorNdisVersion: NDIS_FILTER_MAJOR_VERSION,
        MinorNdisVersion: NDIS_FILTER_MINOR_VERSION,
        MajorDriverVersion: crate::version::NDIS_MAJOR,
        MinorDriverVersion: crate::version::NDIS_MINOR,
        Flags: 0,
        FriendlyName: names.friendly,
        UniqueName: names.unique,
        ServiceName: names.service,
        SetOptionsHandler: Some(set_options),
        SetFilterModuleOptionsHandler: None,
        AttachHandler: Some(attach),
        DetachHandler: Some(detach),
        RestartHandler: Some(restart),
        PauseHandler: Some(pause),
        SendNetBufferListsHandler: Some(send),
        SendNetBufferListsCompleteHandler: Some(send_complete),
        CancelSendNetBufferListsHandler: None,
        ReceiveNetBufferListsHandler: Some(receive),
        ReturnNetBufferListsHandler: Some(return_nbls),
        OidRequestHandler: None,
        OidRequestCompleteHandler: None,
        CancelOidRequestHandler: None,
        DevicePnPEventNotifyHandler: None,
        NetPnPEventHandler: None,
        StatusHandler: Some(status),
        DirectOidRequestHandler: None,
        DirectOidRequestCompleteHandler: None,
        CancelDirectOidRequestHandler: None,
    }
}

/// The module NDIS passes back as FilterModuleContext.
///
/// # Safety
///
/// `context` must be the FilterModuleContext of a module whose FilterDetach
/// has not returned. NDIS guarantees it: it passes back exactly the context
/// given to NdisFSetAttributes, and calls no handler of the module during or
/// after its FilterDetach (which frees it).
unsafe fn module<'a>(context: NDIS_HANDLE) -> &'a Module {
    // SAFETY: the function's contract.
    unsafe { &*context.cast::<Module>() }
}

unsafe extern "system" fn set_options(_driver: NDIS_HANDLE, _context: NDIS_HANDLE) -> NDIS_STATUS {
    NDIS_STATUS_SUCCESS // no optional services
}

/// FilterAttach (PASSIVE_LEVEL): the module starts Paused.
unsafe extern "system" fn attach(
    filter_handle: NDIS_HANDLE,
    _driver_context: NDIS_HANDLE,
    params: *mut NDIS_FILTER_ATTACH_PARAMETERS,
) -> NDIS_STATUS {
    // SAFETY: NDIS calls FilterAttach at PASSIVE_LEVEL.
    let mut irql = unsafe { Passive::new_unchecked() };
    // SAFETY: NDIS passes valid attach parameters for the call's duration.
    let params = unsafe { &*params };
    if params.MiniportMediaType != NdisMedium802_3 {
        return NDIS_STATUS_INVALID_PARAMETER; // the INF binds to ethernet only
    }
    // SAFETY: BaseMiniportName is NULL or a valid NDIS_STRING for the call.
    let name = unsafe { params.BaseMiniportName.as_ref() }.map_or(&[][..], |s| {
        // SAFETY: a valid UNICODE_STRING's Buffer holds Length bytes.
        unsafe { unicode_chars(s) }
    });
    let handle = NdisHandle(filter_handle);
    let new_module = Module::new(&irql, handle, &globals().ports, params.BaseMiniportIfIndex, fixed_name(name));
    let Some(new_module) = crate::pool::try_pin_box(new_module) else { return NDIS_STATUS_RESOURCES };
    let attributes = NDIS_FILTER_ATTRIBUTES {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES,
            Revision: NDIS_FILTER_ATTRIBUTES_REVISION_1,
            Size: NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1,
        },
        Flags: 0,
    };
    // SAFETY: the module stays pinned: every `Box::from_raw` below frees it
    // in place.
    let context = Box::into_raw(unsafe { core::pin::Pin::into_inner_unchecked(new_module) });
    // SAFETY: `filter_handle` is NDIS's handle for this attach; `context`
    // stays allocated until FilterDetach; the attributes are valid.
    let status = unsafe { NdisFSetAttributes(filter_handle, context.cast(), &attributes) };
    if status != NDIS_STATUS_SUCCESS {
        // SAFETY: NDIS refused the context, so nothing else references it.
        drop(unsafe { Box::from_raw(context) });
        return status;
    }
    // SAFETY: NDIS accepted the context and will pass it back until detach.
    let module = unsafe { module(context.cast()) };
    // SAFETY: the module stays allocated until FilterDetach removes it from
    // the list and runs it down before freeing it.
    if unsafe { globals().modules.insert(&mut irql, module) }.is_err() {
        // SAFETY: not listed, no handler called yet: ours alone.
        drop(unsafe { Box::from_raw(context) });
        return NDIS_STATUS_RESOURCES;
    }
    module.set_state(ModuleState::Paused);
    crate::control::broadcast(globals(), EventKind::ModuleAttached, module.if_index, &mut irql);
    trace!(DPFLTR_INFO_LEVEL, "attached to interface %u", module.if_index);
    NDIS_STATUS_SUCCESS
}

/// The UTF-16 code units of a counted string.
///
/// # Safety
///
/// `s.Buffer` must point to `s.Length` readable bytes for `'a`.
unsafe fn unicode_chars<'a>(s: &UNICODE_STRING) -> &'a [u16] {
    if s.Buffer.is_null() {
        return &[];
    }
    // SAFETY: the function's contract.
    unsafe { core::slice::from_raw_parts(s.Buffer, usize::from(s.Length) / 2) }
}

/// FilterDetach (PASSIVE_LEVEL, module Paused): unlist, run down, free.
unsafe extern "system" fn detach(context: NDIS_HANDLE) {
    // SAFETY: NDIS calls FilterDetach at PASSIVE_LEVEL.
    let mut irql = unsafe { Passive::new_unchecked() };
    // SAFETY: NDIS passes our context; this is its last use by NDIS.
    let module = unsafe { module(context) };
    trace!(DPFLTR_INFO_LEVEL, "detaching from interface %u", module.if_index);
    crate::control::broadcast(globals(), EventKind::ModuleDetached, module.if_index, &mut irql);
    globals().modules.remove(&mut irql, module);
    // Waits for IOCTL_ENUM_FILTER_MODULES readers that reached it before.
    let _ = module.rundown.run_down(&irql);
    // SAFETY: unlisted and run down, and NDIS calls nothing more for it: the
    // allocation from FilterAttach is ours alone again.
    drop(unsafe { Box::from_raw(context.cast::<Module>()) });
}

/// FilterRestart (PASSIVE_LEVEL, module Paused).
unsafe extern "system" fn restart(context: NDIS_HANDLE, _params: *mut NDIS_FILTER_RESTART_PARAMETERS) -> NDIS_STATUS {
    // SAFETY: NDIS passes our context for a module not being detached.
    let module = unsafe { module(context) };
    // SAFETY: NDIS calls FilterRestart at PASSIVE_LEVEL.
    let mut irql = unsafe { Passive::new_unchecked() };
    module.set_state(ModuleState::Restarting);
    module.start_running();
    crate::control::broadcast(globals(), EventKind::ModuleRestarted, module.if_index, &mut irql);
    trace!(DPFLTR_INFO_LEVEL, "running on interface %u", module.if_index);
    NDIS_STATUS_SUCCESS
}

/// FilterPause (PASSIVE_LEVEL, module Running): completes at once.
///
/// A pause waits only for the NBLs a filter originated or queued
/// ("FILTER_PAUSE" remarks; NDIS-RULES, the Pausing row of the state
/// table: "await own NBLs"): PortWatch has none. Sends it
/// passed down and receives it indicated up are NDIS's to track (it pauses
/// the stack top-down), and their completions and returns keep passing
/// through the module after the pause. What the pause must stop is the
/// module passing new traffic on: the data path forwards only under the
/// port table's read lock after seeing Running there, so once the state is
/// Paused and the write lock has been taken and released, no handler is
/// still forwarding and none will.
unsafe extern "system" fn pause(context: NDIS_HANDLE, _params: *mut NDIS_FILTER_PAUSE_PARAMETERS) -> NDIS_STATUS {
    // SAFETY: NDIS calls FilterPause at PASSIVE_LEVEL.
    let mut irql = unsafe { Passive::new_unchecked() };
    // SAFETY: NDIS passes our context for a module not being detached.
    let module = unsafe { module(context) };
    crate::control::broadcast(globals(), EventKind::ModulePaused, module.if_index, &mut irql);
    module.set_state(ModuleState::Pausing);
    // The barrier: waits for every handler that saw Running under the read
    // lock (and is forwarding inside it).
    globals().ports.write(&mut irql, |_, _| module.set_state(ModuleState::Paused));
    trace!(DPFLTR_INFO_LEVEL, "paused on interface %u", module.if_index);
    NDIS_STATUS_SUCCESS
}

/// Runs `f` under the port table's read lock, at DISPATCH_LEVEL: the one
/// place the data path takes a lock, once per chain. `at_dispatch` is the
/// handler's NDIS_*_DISPATCH_LEVEL flag (set: at DISPATCH_LEVEL; clear:
/// unknown, at most DISPATCH_LEVEL).
fn under_table<R>(module: &Module, at_dispatch: bool, f: impl FnOnce(&PortTable, &mut Dispatch) -> R) -> R {
    let ports = module.ports;
    // SAFETY: `at_dispatch` is the handler's flag, and the handler holds no
    // lock of ours yet.
    unsafe {
        CallbackIrql::with(at_dispatch, |irql| match irql {
            CallbackIrql::Dispatch(irql) => ports.read_at_dispatch(irql, f),
            CallbackIrql::Unknown(irql) => ports.read(irql, f),
        })
    }
}

/// Counts a chain on the current processor, then records the events of its
/// watched packets (out of line, still under the read lock: the bindings'
/// event sinks are valid only under it). While no endpoint has events
/// enabled, the chain is counted by the counting-only loop, which checks no
/// binding's sink (the count changes only under the write lock, so it holds
/// for the whole chain).
#[inline(always)]
fn count(chain: Chain, table: &PortTable, direction: Direction, module: &Module, dispatch: &mut Dispatch) {
    let cpu = Cpu::current(dispatch);
    if !table.any_events() {
        chain.count::<NoEvents>(table, direction, cpu);
    } else if chain.count::<Cell<bool>>(table, direction, cpu) {
        record_events(chain, table, direction, module, dispatch);
    }
}

/// The event path of [`count`], out of line: the module's interface index
/// is read only here.
#[cold]
#[inline(never)]
fn record_events(chain: Chain, table: &PortTable, direction: Direction, module: &Module, dispatch: &mut Dispatch) {
    chain.record_events(table, direction, module.if_index, dispatch);
}

/// FilterSendNetBufferLists (<= DISPATCH_LEVEL).
///
/// Under the port table's read lock: if the module is Running, counts the
/// chain and passes it down (inside the lock, which is what lets FilterPause
/// use the write lock as its barrier; the read lock may be taken again on
/// this processor if NDIS calls back into the driver from the send:
/// NdisAcquireRWLockRead, "can be acquired recursively on the same
/// processor"). Otherwise completes it with NDIS_STATUS_PAUSED.
unsafe extern "system" fn send(context: NDIS_HANDLE, nbls: *mut NET_BUFFER_LIST, port: NDIS_PORT_NUMBER, flags: u32) {
    // SAFETY: NDIS passes our context for a module not being detached.
    let module = unsafe { module(context) };
    // SAFETY: NDIS hands us the chain until we pass it on or complete it.
    let chain = unsafe { Chain::new(nbls) };
    let at_dispatch = flags & NDIS_SEND_FLAGS_DISPATCH_LEVEL != 0;
    let forwarded = under_table(module, at_dispatch, |table, dispatch| {
        if !module.is_running() {
            return false;
        }
        // Counted before passing on: afterwards the NBLs are not ours.
        count(chain, table, Direction::Tx, module, dispatch);
        // SAFETY: passing the chain down unchanged, flags passed through;
        // we do not touch it afterwards.
        unsafe { NdisFSendNetBufferLists(module.ndis_handle.0, chain.raw(), port, flags) };
        true
    });
    if !forwarded {
        chain.set_status(NDIS_STATUS_PAUSED);
        let complete_flags = if at_dispatch { NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL } else { 0 };
        // SAFETY: completing NBLs we were given, once, with our handle.
        unsafe { NdisFSendNetBufferListsComplete(module.ndis_handle.0, chain.raw(), complete_flags) };
    }
}

/// FilterSendNetBufferListsComplete (<= DISPATCH_LEVEL): none are ours, so
/// every completion goes straight up, in any state (no lock, no count).
unsafe extern "system" fn send_complete(context: NDIS_HANDLE, nbls: *mut NET_BUFFER_LIST, flags: u32) {
    // SAFETY: NDIS passes our context for a module not being detached.
    let module = unsafe { module(context) };
    // SAFETY: completing up NBLs sent from above through us, flags passed.
    unsafe { NdisFSendNetBufferListsComplete(module.ndis_handle.0, nbls, flags) };
}

/// FilterReceiveNetBufferLists (<= DISPATCH_LEVEL): as [`send`], upwards;
/// when not Running the chain goes back down at once (not a RESOURCES one:
/// those revert to NDIS when we return).
unsafe extern "system" fn receive(
    context: NDIS_HANDLE,
    nbls: *mut NET_BUFFER_LIST,
    port: NDIS_PORT_NUMBER,
    count_of_nbls: u32,
    flags: u32,
) {
    // SAFETY: NDIS passes our context for a module not being detached.
    let module = unsafe { module(context) };
    // SAFETY: NDIS hands us the chain for the call (RESOURCES) or until we
    // return it or pass it up.
    let chain = unsafe { Chain::new(nbls) };
    let at_dispatch = flags & NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL != 0;
    let forwarded = under_table(module, at_dispatch, |table, dispatch| {
        if !module.is_running() {
            return false;
        }
        count(chain, table, Direction::Rx, module, dispatch);
        // SAFETY: indicating the chain up unchanged, with the same count
        // and flags (RESOURCES kept, so NDIS knows they return on our
        // return); see `send` for the lock.
        unsafe { NdisFIndicateReceiveNetBufferLists(module.ndis_handle.0, chain.raw(), port, count_of_nbls, flags) };
        true
    });
    if !forwarded && flags & NDIS_RECEIVE_FLAGS_RESOURCES == 0 {
        let return_flags = if at_dispatch { NDIS_RETURN_FLAGS_DISPATCH_LEVEL } else { 0 };
        // SAFETY: returning NBLs we own, once.
        unsafe { NdisFReturnNetBufferLists(module.ndis_handle.0, chain.raw(), return_flags) };
    }
}

/// FilterReturnNetBufferLists (<= DISPATCH_LEVEL): none are ours, so every
/// return goes straight down, in any state (no lock, no count).
unsafe extern "system" fn return_nbls(context: NDIS_HANDLE, nbls: *mut NET_BUFFER_LIST, flags: u32) {
    // SAFETY: NDIS passes our context for a module not being detached.
    let module = unsafe { module(context) };
    // SAFETY: returning NBLs indicated from below through us, flags passed.
    unsafe { NdisFReturnNetBufferLists(module.ndis_handle.0, nbls, flags) };
}

/// FilterStatus (<= DISPATCH_LEVEL): passed up unchanged.
unsafe extern "system" fn status(context: NDIS_HANDLE, indication: *mut NDIS_STATUS_INDICATION) {
    // SAFETY: NDIS passes our context for a module not being detached.
    let module = unsafe { module(context) };
    // SAFETY: forwarding the indication we were given for this module.
    unsafe { NdisFIndicateStatus(module.ndis_handle.0, indication) };
}
