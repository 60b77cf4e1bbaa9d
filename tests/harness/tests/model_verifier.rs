//! Negative tests of the model's own checks: a small in-process driver
//! (Rust `extern "win64"` functions reaching the model through the import
//! registry) commits one violation class per test, and each must be caught
//! with the right rule and bug check.

mod common;

use common::driver::{call, filter_characteristics, h, register_device, register_filter, set_attributes, set_unload};
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use core::ffi::c_void;
use core::ptr::null_mut;
use ndis_sys::{
    DEVICE_OBJECT, DRIVER_OBJECT, IRP, IRP_MJ_PNP, NDIS_HANDLE, NDIS_STATUS, NDIS_STATUS_INVALID_PARAMETER,
    NDIS_STATUS_PAUSED, NDIS_STATUS_PENDING, NET_BUFFER_LIST, NTSTATUS, UNICODE_STRING,
};
use portwatch_harness::frames::{FrameSpec, IPPROTO_UDP};
use portwatch_harness::io::{c9, IoError, MULTIPLE_IRP_COMPLETE_REQUESTS};
use portwatch_harness::nbl::NblSpec;
use portwatch_harness::ndis::{subcodes, AdapterId, AdapterSpec, At, Completion};
use portwatch_harness::session::{LoadError, Options, Session};
use portwatch_harness::verifier::{codes, Violation};

/// What the driver does wrong in this test.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Bug {
    None,
    CompleteIrpTwice,
    TouchIrpAfterCompletion,
    IrpNotCompleted,
    PendingNotMarked,
    CompleteWithPending,
    InformationTooLarge,
    CompleteSendTwice,
    SwallowSend,
    TouchSendAfterPassingDown,
    ReturnResourcesNbl,
    PausedSendsDown,
    PausedWrongStatus,
    PauseNeverCompletes,
    WrongReceiveCount,
    KeepDevice,
    PnpHandler,
    BadHandle,
}

static BUG: AtomicU32 = AtomicU32::new(0);
static FILTER: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
static DEVICE: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
/// Tests share the driver's globals: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn bug() -> Bug {
    // SAFETY: only values of Bug are stored.
    unsafe { core::mem::transmute::<u32, Bug>(BUG.load(Ordering::Relaxed)) }
}

unsafe extern "win64" fn driver_entry(driver: *mut DRIVER_OBJECT, _reg: *mut UNICODE_STRING) -> NTSTATUS {
    set_unload(driver, unload as *const () as usize);
    let mut c = filter_characteristics("{00000000-0000-0000-0000-000000000001}", "Bad");
    c.AttachHandler = h(attach as *const () as usize);
    c.DetachHandler = h(detach as *const () as usize);
    c.RestartHandler = h(restart as *const () as usize);
    c.PauseHandler = h(pause as *const () as usize);
    c.SendNetBufferListsHandler = h(send as *const () as usize);
    c.SendNetBufferListsCompleteHandler = h(send_complete as *const () as usize);
    c.ReceiveNetBufferListsHandler = h(receive as *const () as usize);
    c.ReturnNetBufferListsHandler = h(return_nbls as *const () as usize);
    c.StatusHandler = h(status as *const () as usize);
    let (st, handle) = register_filter(driver, &c);
    if st != 0 {
        return st;
    }
    FILTER.store(handle, Ordering::Relaxed);
    let pnp = [usize::from(IRP_MJ_PNP)];
    let extra: &[usize] = if bug() == Bug::PnpHandler { &pnp } else { &[] };
    let (st, dh) = register_device(handle, "Bad", dispatch as *const () as usize, extra);
    if st != 0 {
        call!("NdisFDeregisterFilterDriver" as fn(NDIS_HANDLE), handle);
        return st;
    }
    DEVICE.store(dh, Ordering::Relaxed);
    0
}

unsafe extern "win64" fn unload(_driver: *mut DRIVER_OBJECT) {
    if bug() != Bug::KeepDevice {
        call!("NdisDeregisterDeviceEx" as fn(NDIS_HANDLE), DEVICE.load(Ordering::Relaxed));
    }
    call!("NdisFDeregisterFilterDriver" as fn(NDIS_HANDLE), FILTER.load(Ordering::Relaxed));
}

/// Module context: the NDIS handle and a paused flag, leaked on purpose
/// (the model's own pool is not involved).
#[repr(C)]
struct Module {
    handle: NDIS_HANDLE,
    paused: AtomicU32,
}

fn module<'a>(ctx: NDIS_HANDLE) -> &'a Module {
    // SAFETY: the context set in attach.
    unsafe { &*ctx.cast::<Module>() }
}

unsafe extern "win64" fn attach(handle: NDIS_HANDLE, _d: NDIS_HANDLE, _p: *mut c_void) -> NDIS_STATUS {
    let m = Box::into_raw(Box::new(Module { handle, paused: AtomicU32::new(1) }));
    set_attributes(handle, m.cast())
}
unsafe extern "win64" fn detach(_ctx: NDIS_HANDLE) {}
unsafe extern "win64" fn restart(ctx: NDIS_HANDLE, _p: *mut c_void) -> NDIS_STATUS {
    module(ctx).paused.store(0, Ordering::Relaxed);
    0
}
unsafe extern "win64" fn pause(ctx: NDIS_HANDLE, _p: *mut c_void) -> NDIS_STATUS {
    module(ctx).paused.store(1, Ordering::Relaxed);
    if bug() == Bug::PauseNeverCompletes {
        NDIS_STATUS_PENDING
    } else {
        0
    }
}
unsafe extern "win64" fn send(ctx: NDIS_HANDLE, nbls: *mut NET_BUFFER_LIST, port: u32, flags: u32) {
    let m = module(ctx);
    let mut handle = m.handle;
    if bug() == Bug::BadHandle {
        handle = 0x1234 as NDIS_HANDLE;
    }
    if m.paused.load(Ordering::Relaxed) == 1 && bug() != Bug::PausedSendsDown {
        if bug() != Bug::PausedWrongStatus {
            // SAFETY: the NBL NDIS gave us.
            unsafe { (*nbls).Status = NDIS_STATUS_PAUSED };
        }
        call!("NdisFSendNetBufferListsComplete" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32), handle, nbls, flags & 1);
        return;
    }
    match bug() {
        Bug::SwallowSend => {}
        Bug::TouchSendAfterPassingDown => {
            call!(
                "NdisFSendNetBufferLists" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32, u32),
                handle,
                nbls,
                port,
                flags
            );
            // SAFETY: none: reads the chain after giving it away, on purpose.
            let _ = unsafe { core::ptr::read_volatile(&(*nbls).Status) };
        }
        Bug::CompleteSendTwice => {
            call!(
                "NdisFSendNetBufferListsComplete" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32),
                handle,
                nbls,
                flags & 1
            );
            call!(
                "NdisFSendNetBufferListsComplete" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32),
                handle,
                nbls,
                flags & 1
            );
        }
        _ => call!(
            "NdisFSendNetBufferLists" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32, u32),
            handle,
            nbls,
            port,
            flags
        ),
    }
}
unsafe extern "win64" fn send_complete(ctx: NDIS_HANDLE, nbls: *mut NET_BUFFER_LIST, flags: u32) {
    call!(
        "NdisFSendNetBufferListsComplete" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32),
        module(ctx).handle,
        nbls,
        flags
    );
}
unsafe extern "win64" fn receive(ctx: NDIS_HANDLE, nbls: *mut NET_BUFFER_LIST, port: u32, count: u32, flags: u32) {
    let handle = module(ctx).handle;
    match bug() {
        Bug::ReturnResourcesNbl => {
            call!("NdisFReturnNetBufferLists" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32), handle, nbls, flags & 1)
        }
        Bug::WrongReceiveCount => call!(
            "NdisFIndicateReceiveNetBufferLists" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32, u32, u32),
            handle,
            nbls,
            port,
            count + 1,
            flags
        ),
        _ => call!(
            "NdisFIndicateReceiveNetBufferLists" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32, u32, u32),
            handle,
            nbls,
            port,
            count,
            flags
        ),
    }
}
unsafe extern "win64" fn return_nbls(ctx: NDIS_HANDLE, nbls: *mut NET_BUFFER_LIST, flags: u32) {
    call!("NdisFReturnNetBufferLists" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32), module(ctx).handle, nbls, flags);
}
unsafe extern "win64" fn status(ctx: NDIS_HANDLE, ind: *mut c_void) {
    call!("NdisFIndicateStatus" as fn(NDIS_HANDLE, *mut c_void), module(ctx).handle, ind);
}

unsafe extern "win64" fn dispatch(_dev: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    let complete = |status: NTSTATUS, info: usize| {
        // SAFETY: the IRP being dispatched.
        unsafe {
            (*irp).IoStatus.Anonymous.Status = status;
            (*irp).IoStatus.Information = info;
        }
        call!("IofCompleteRequest" as fn(*mut IRP, i8), irp, 0);
    };
    // SAFETY: the IRP's current stack location.
    let major = unsafe { (*(*irp).Tail.Overlay.Anonymous2.Anonymous.CurrentStackLocation).MajorFunction };
    if major != 0x0E {
        complete(0, 0);
        return 0;
    }
    match bug() {
        Bug::CompleteIrpTwice => {
            complete(0, 0);
            // Again, without touching the IRP in between.
            call!("IofCompleteRequest" as fn(*mut IRP, i8), irp, 0);
            0
        }
        Bug::TouchIrpAfterCompletion => {
            complete(0, 0);
            // SAFETY: none: reads the IRP after completing it, on purpose.
            unsafe { core::ptr::read_volatile(&(*irp).IoStatus.Information) as NTSTATUS }
        }
        Bug::IrpNotCompleted => 0,
        Bug::PendingNotMarked => 0x103,
        Bug::CompleteWithPending => {
            complete(0x103, 0);
            0x103
        }
        Bug::InformationTooLarge => {
            complete(0, 64);
            0
        }
        _ => {
            complete(0, 0);
            0
        }
    }
}

fn load(b: Bug, options: Options) -> Result<Session, LoadError> {
    BUG.store(b as u32, Ordering::Relaxed);
    // SAFETY: driver_entry and every handler it registers are win64 functions.
    unsafe { Session::load_in_process(driver_entry as *const () as usize, Options { require_device: true, ..options }) }
}

fn running(b: Bug, options: Options) -> (Session, AdapterId) {
    let s = load(b, options).unwrap_or_else(|e| panic!("{e}"));
    let a = s.add_adapter(AdapterSpec::named("eth0"));
    s.start(a).unwrap();
    (s, a)
}

fn frame() -> Vec<NblSpec> {
    vec![NblSpec::of(vec![FrameSpec::ipv4(IPPROTO_UDP, 1, 2).build()])]
}

fn assert_caught(v: Violation, rule: &str, bugcheck: u32, p1: Option<u64>) {
    assert_eq!(v.rule, rule, "{v}");
    assert_eq!(v.bugcheck, bugcheck, "{v}");
    if let Some(p1) = p1 {
        assert_eq!(v.params[0], p1, "{v}");
    }
}

fn ioctl_violation(b: Bug) -> Violation {
    let (s, _) = running(b, Options::default());
    let h = s.open("\\\\.\\Bad").unwrap();
    match s.ioctl(h, 0x0012_2000, &[1, 2, 3], 8) {
        Err(IoError::Violation(v)) => v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn correct_in_process_driver_is_clean() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (s, a) = running(Bug::None, Options::default());
    assert!(s.send(a, frame(), At::Dispatch).unwrap()[0].delivered);
    s.receive(a, frame(), At::Passive, false).unwrap();
    let h = s.open("\\\\.\\Bad").unwrap();
    assert_eq!(s.ioctl(h, 0x0012_2000, &[1], 1).unwrap().status, 0);
    s.close(h).unwrap();
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
}

#[test]
fn irp_rules() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert_caught(
        ioctl_violation(Bug::CompleteIrpTwice),
        "IRP completed twice or unknown",
        MULTIPLE_IRP_COMPLETE_REQUESTS,
        None,
    );
    let v = ioctl_violation(Bug::TouchIrpAfterCompletion);
    assert_caught(v.clone(), "IRP used after completion", codes::DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL, None);
    assert!(v.detail.contains("into the IRP_MJ_DEVICE_CONTROL IRP after IoCompleteRequest"), "{v}");
    assert_caught(
        ioctl_violation(Bug::IrpNotCompleted),
        "IRP neither completed nor pending",
        codes::DRIVER_VERIFIER_IOMANAGER_VIOLATION,
        Some(c9::NOT_COMPLETED),
    );
    assert_caught(
        ioctl_violation(Bug::PendingNotMarked),
        "STATUS_PENDING returned without IoMarkIrpPending",
        codes::DRIVER_VERIFIER_IOMANAGER_VIOLATION,
        Some(c9::PENDING_NOT_MARKED),
    );
    assert_caught(
        ioctl_violation(Bug::CompleteWithPending),
        "IRP completed with STATUS_PENDING",
        codes::DRIVER_VERIFIER_IOMANAGER_VIOLATION,
        Some(c9::COMPLETE_PENDING),
    );
    assert_caught(
        ioctl_violation(Bug::InformationTooLarge),
        "Information larger than the output buffer",
        codes::DRIVER_VERIFIER_IOMANAGER_VIOLATION,
        Some(c9::INFORMATION_TOO_LARGE),
    );
}

#[test]
fn send_rules() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c4 = codes::DRIVER_VERIFIER_DETECTED_VIOLATION;
    let (s, a) = running(Bug::CompleteSendTwice, Options::default());
    assert_caught(
        s.send(a, frame(), At::Dispatch).unwrap_err(),
        "send NBL completed twice or not owned",
        c4,
        Some(subcodes::NBL_NOT_OWNED),
    );
    drop(s);
    // Inline completion: the NBL is back with its creator when
    // NdisFSendNetBufferLists returns, and the read after it faults.
    let inline = Options { completion: Completion::Inline, ..Options::default() };
    let (s, a) = running(Bug::TouchSendAfterPassingDown, inline);
    let v = s.send(a, frame(), At::Dispatch).unwrap_err();
    assert_caught(
        v.clone(),
        "NBL used after it went back to its creator",
        codes::DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL,
        None,
    );
    assert_eq!(v.function, "FilterSendNetBufferLists", "{v}");
    drop(s);
    let (s, a) = running(Bug::SwallowSend, Options::default());
    assert_caught(
        s.send(a, frame(), At::Passive).unwrap_err(),
        "send NBL never completed",
        c4,
        Some(subcodes::SEND_NBL_HELD),
    );
    drop(s);
    let (s, a) = running(Bug::PausedWrongStatus, Options::default());
    s.pause(a).unwrap();
    assert_caught(
        s.send(a, frame(), At::Dispatch).unwrap_err(),
        "send completed while paused without NDIS_STATUS_PAUSED",
        c4,
        Some(subcodes::NOT_PAUSED_STATUS),
    );
    drop(s);
    let (s, a) = running(Bug::PausedSendsDown, Options::default());
    s.pause(a).unwrap();
    assert_caught(
        s.send(a, frame(), At::Dispatch).unwrap_err(),
        "NBL forwarded after the filter's pause completed",
        c4,
        Some(subcodes::FORWARDED_AFTER_PAUSE),
    );
    drop(s);
    let (s, a) = running(Bug::BadHandle, Options::default());
    assert_caught(s.send(a, frame(), At::Dispatch).unwrap_err(), "invalid NDIS handle", c4, Some(subcodes::BAD_HANDLE));
}

#[test]
fn receive_rules() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c4 = codes::DRIVER_VERIFIER_DETECTED_VIOLATION;
    let (s, a) = running(Bug::ReturnResourcesNbl, Options::default());
    assert_caught(
        s.receive(a, frame(), At::Dispatch, true).unwrap_err(),
        "RESOURCES NBL returned by the filter",
        c4,
        Some(subcodes::RESOURCES_RETURNED),
    );
    drop(s);
    let (s, a) = running(Bug::WrongReceiveCount, Options::default());
    assert_caught(
        s.receive(a, frame(), At::Dispatch, false).unwrap_err(),
        "receive NBL count mismatch",
        c4,
        Some(subcodes::NBL_COUNT),
    );
}

#[test]
fn pause_that_never_completes_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (s, a) =
        running(Bug::PauseNeverCompletes, Options { pause_timeout: Duration::from_millis(100), ..Options::default() });
    assert_caught(
        s.pause(a).unwrap_err(),
        "pause or restart never completed",
        codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
        Some(subcodes::PAUSE_COMPLETE),
    );
}

#[test]
fn registration_and_unload_rules() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    match load(Bug::PnpHandler, Options::default()) {
        Err(LoadError::EntryFailed(st)) => assert_eq!(st, NDIS_STATUS_INVALID_PARAMETER, "R36: no PnP/Power entries"),
        other => panic!("expected the device registration to fail: {other:?}"),
    }
    let (s, _) = running(Bug::KeepDevice, Options::default());
    let report = s.unload();
    let v = report.violations.first().expect("device left registered");
    assert_caught(
        v.clone(),
        "not deregistered at unload",
        codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
        Some(subcodes::NOT_DEREGISTERED),
    );
    assert!(v.detail.contains("\\Device\\Bad"), "{v}");
}
