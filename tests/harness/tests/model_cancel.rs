//! IRP cancellation in the I/O manager model: an in-process driver keeps
//! IOCTLs pending with a cancel routine (its own, under the cancel spin
//! lock, or the cancel-safe queue's), and user mode cancels them with
//! CancelIoEx, races the cancel against the driver's completion, or closes
//! the handle. Then one driver bug per cancellation rule, each caught by
//! name.

mod common;

use common::driver::{call, filter_characteristics, h, register_device, register_filter, set_attributes, set_unload};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use core::ffi::c_void;
use core::ptr::null_mut;
use ndis_sys::{
    DEVICE_OBJECT, DRIVER_OBJECT, FILE_OBJECT, IRP, NDIS_HANDLE, NDIS_SPIN_LOCK, NDIS_STATUS, NTSTATUS,
    SL_PENDING_RETURNED, UNICODE_STRING,
};
use portwatch_harness::cancel::{set_cancel_routine, IoCsq, STATUS_CANCELLED};
use portwatch_harness::io::{self, c9, Handle, IoError, MULTIPLE_IRP_COMPLETE_REQUESTS};
use portwatch_harness::session::{Options, Session};
use portwatch_harness::stack;
use portwatch_harness::verifier::{codes, Config, Violation};

const STATUS_PENDING: NTSTATUS = 0x103;
const IOCTL_READ: u32 = 0x0012_2000;

/// How the driver queues IRPs, and what it does wrong.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
enum Mode {
    /// Its own queue under the cancel spin lock, its own cancel routine.
    Manual,
    /// A cancel-safe queue (IoCsq*) under an NDIS spin lock.
    Csq,
    /// The cancel routine completes the IRP twice.
    CancelCompletesTwice,
    /// The completer leaves the cancel routine set.
    CompleteWithRoutineSet,
    /// CLEANUP leaves the file object's IRPs pending.
    CleanupKeepsIrps,
    /// IoReleaseCancelSpinLock without IoAcquireCancelSpinLock.
    ReleaseNotHeld,
    /// IoAcquireCancelSpinLock twice.
    AcquireTwice,
    /// The cancel spin lock released after an NDIS spin lock acquired
    /// before it was released first (out of order): at PASSIVE_LEVEL.
    ReleaseWrongIrql,
    /// The cancel routine returns without IoReleaseCancelSpinLock.
    CancelKeepsLock,
    /// STATUS_PENDING returned without IoMarkIrpPending.
    PendingNotMarked,
    /// The dispatch routine returns holding the cancel spin lock.
    DispatchKeepsCancelLock,
    /// Dispatch takes the driver's lock, then the cancel spin lock; the
    /// cancel routine takes the driver's lock under the cancel spin lock.
    LockOrder,
    /// Pends the IRP without a cancel routine and never completes it.
    PendForever,
    /// As Manual, but queues a read that reaches it after CLEANUP of its
    /// file object (the check R37 asks for is missing).
    PendAfterCleanup,
}

static MODE: AtomicU32 = AtomicU32::new(0);
static FILTER: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
static DEVICE: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
static CSQ: AtomicPtr<IoCsq> = AtomicPtr::new(null_mut());
static LOCK: AtomicPtr<NDIS_SPIN_LOCK> = AtomicPtr::new(null_mut());
/// The driver's queue of pending IRPs (addresses), guarded by the cancel
/// spin lock (Manual) or by LOCK (Csq); the Mutex only satisfies Rust.
static QUEUE: Mutex<VecDeque<usize>> = Mutex::new(VecDeque::new());
/// File objects (addresses) whose CLEANUP ran, until their CLOSE: the
/// driver refuses their new reads (R37: IRPs may still arrive after
/// CLEANUP). Guarded like QUEUE.
static CLEANED: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// While set, a read waits at the start of its dispatch routine (a forced
/// interleaving: the read is dispatched but not queued yet).
static HOLD: AtomicBool = AtomicBool::new(false);
/// Reads that reached the HOLD gate.
static HELD: AtomicU32 = AtomicU32::new(0);
/// CLEANUP requests the driver finished.
static CLEANUPS: AtomicU32 = AtomicU32::new(0);
/// Tests share the driver's globals: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn mode() -> Mode {
    // SAFETY: only values of Mode are stored.
    unsafe { core::mem::transmute::<u32, Mode>(MODE.load(Ordering::Relaxed)) }
}

fn queue() -> MutexGuard<'static, VecDeque<usize>> {
    QUEUE.lock().unwrap_or_else(|e| e.into_inner())
}

fn cleaned() -> MutexGuard<'static, Vec<usize>> {
    CLEANED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `file`'s CLEANUP ran: call under the queue's lock.
fn cleaned_up(file: *mut FILE_OBJECT) -> bool {
    mode() != Mode::PendAfterCleanup && cleaned().contains(&(file as usize))
}

fn acquire_cancel() -> u8 {
    let mut old = 0u8;
    call!("IoAcquireCancelSpinLock" as fn(*mut u8), &mut old);
    old
}

fn release_cancel(to: u8) {
    call!("IoReleaseCancelSpinLock" as fn(u8), to);
}

fn complete(irp: *mut IRP, status: NTSTATUS) {
    // SAFETY: an IRP the driver owns.
    unsafe {
        (*irp).IoStatus.Anonymous.Status = status;
        (*irp).IoStatus.Information = 0;
    }
    call!("IofCompleteRequest" as fn(*mut IRP, i8), irp, 0);
}

fn mark_pending(irp: *mut IRP) {
    // SAFETY: IoMarkIrpPending: the current stack location's Control.
    unsafe { (*(*irp).Tail.Overlay.Anonymous2.Anonymous.CurrentStackLocation).Control |= SL_PENDING_RETURNED };
}

fn file_of(irp: *mut IRP) -> *mut FILE_OBJECT {
    // SAFETY: the IRP's current stack location.
    unsafe { (*(*irp).Tail.Overlay.Anonymous2.Anonymous.CurrentStackLocation).FileObject }
}

unsafe extern "win64" fn driver_entry(driver: *mut DRIVER_OBJECT, _reg: *mut UNICODE_STRING) -> NTSTATUS {
    set_unload(driver, unload as *const () as usize);
    let mut c = filter_characteristics("{00000000-0000-0000-0000-000000000002}", "Cancel");
    c.AttachHandler = h(attach as *const () as usize);
    c.DetachHandler = h(noop as *const () as usize);
    c.RestartHandler = h(ok as *const () as usize);
    c.PauseHandler = h(ok as *const () as usize);
    let (st, handle) = register_filter(driver, &c);
    if st != 0 {
        return st;
    }
    FILTER.store(handle, Ordering::Relaxed);
    // The queue's lock and the cancel-safe queue (leaked: host memory).
    let lock = Box::into_raw(Box::new(NDIS_SPIN_LOCK::default()));
    call!("NdisAllocateSpinLock" as fn(*mut NDIS_SPIN_LOCK), lock);
    LOCK.store(lock, Ordering::Relaxed);
    // SAFETY: IO_CSQ is plain data; IoCsqInitialize fills it.
    let csq: *mut IoCsq = Box::into_raw(Box::new(unsafe { core::mem::zeroed() }));
    call!(
        "IoCsqInitializeEx" as fn(*mut IoCsq, usize, usize, usize, usize, usize, usize) -> NTSTATUS,
        csq,
        csq_insert as *const () as usize,
        csq_remove as *const () as usize,
        csq_peek as *const () as usize,
        csq_acquire as *const () as usize,
        csq_release as *const () as usize,
        csq_complete_canceled as *const () as usize
    );
    CSQ.store(csq, Ordering::Relaxed);
    let (_, dh) = register_device(handle, "Cancel", dispatch as *const () as usize, &[]);
    DEVICE.store(dh, Ordering::Relaxed);
    0
}

unsafe extern "win64" fn unload(_driver: *mut DRIVER_OBJECT) {
    call!("NdisDeregisterDeviceEx" as fn(NDIS_HANDLE), DEVICE.load(Ordering::Relaxed));
    call!("NdisFDeregisterFilterDriver" as fn(NDIS_HANDLE), FILTER.load(Ordering::Relaxed));
}

unsafe extern "win64" fn attach(handle: NDIS_HANDLE, _d: NDIS_HANDLE, _p: *mut c_void) -> NDIS_STATUS {
    set_attributes(handle, handle)
}
unsafe extern "win64" fn noop(_ctx: NDIS_HANDLE) {}
unsafe extern "win64" fn ok(_ctx: NDIS_HANDLE, _p: *mut c_void) -> NDIS_STATUS {
    0
}

// --- the driver's own cancellable queue, under the cancel spin lock -------

/// The cancel routine of the manual queue.
unsafe extern "win64" fn cancel_routine(_dev: *mut DEVICE_OBJECT, irp: *mut IRP) {
    if mode() == Mode::LockOrder {
        let lock = LOCK.load(Ordering::Relaxed);
        call!("NdisDprAcquireSpinLock" as fn(*mut NDIS_SPIN_LOCK), lock);
        call!("NdisDprReleaseSpinLock" as fn(*mut NDIS_SPIN_LOCK), lock);
    }
    queue().retain(|&i| i != irp as usize);
    if mode() != Mode::CancelKeepsLock {
        // SAFETY: the IRP being cancelled; CancelIrql set by IoCancelIrp.
        release_cancel(unsafe { (*irp).CancelIrql });
    }
    complete(irp, STATUS_CANCELLED);
    if mode() == Mode::CancelCompletesTwice {
        call!("IofCompleteRequest" as fn(*mut IRP, i8), irp, 0);
    }
}

fn pend_manual(irp: *mut IRP) -> NTSTATUS {
    let old = acquire_cancel();
    // SAFETY: the IRP being dispatched.
    if unsafe { (*irp).Cancel } || cleaned_up(file_of(irp)) {
        release_cancel(old);
        complete(irp, STATUS_CANCELLED);
        return STATUS_CANCELLED;
    }
    set_cancel_routine(irp, cancel_routine as *const () as usize);
    if mode() != Mode::PendingNotMarked {
        mark_pending(irp);
    }
    queue().push_back(irp as usize);
    release_cancel(old);
    STATUS_PENDING
}

/// Completes the oldest pending IRP with STATUS_SUCCESS, as a driver does
/// when the data a read waits for arrives; false if there was none.
fn complete_one() -> bool {
    let irp = if mode() == Mode::Csq {
        call!("IoCsqRemoveNextIrp" as fn(*mut IoCsq, *mut c_void) -> *mut IRP, CSQ.load(Ordering::Relaxed), null_mut())
    } else {
        let old = acquire_cancel();
        let irp = queue().pop_front().map_or(null_mut(), |i| i as *mut IRP);
        if !irp.is_null() && mode() != Mode::CompleteWithRoutineSet {
            let had = set_cancel_routine(irp, 0);
            assert_ne!(had, 0, "in the queue, so not being cancelled");
        }
        release_cancel(old);
        irp
    };
    if irp.is_null() {
        return false;
    }
    complete(irp, 0);
    true
}

/// CLEANUP: completes every pending IRP of `file` as cancelled, and
/// refuses the reads that reach the driver after (R37).
fn cleanup(file: *mut FILE_OBJECT) {
    if mode() != Mode::CleanupKeepsIrps {
        cancel_queued(file);
    }
    CLEANUPS.fetch_add(1, Ordering::SeqCst);
}

fn cancel_queued(file: *mut FILE_OBJECT) {
    if mode() == Mode::Csq {
        // Marked under the queue's lock: a read's insert sees it, or
        // CLEANUP sees the read in the queue.
        let lock = LOCK.load(Ordering::Relaxed);
        call!("NdisAcquireSpinLock" as fn(*mut NDIS_SPIN_LOCK), lock);
        cleaned().push(file as usize);
        call!("NdisReleaseSpinLock" as fn(*mut NDIS_SPIN_LOCK), lock);
        loop {
            let irp = call!(
                "IoCsqRemoveNextIrp" as fn(*mut IoCsq, *mut c_void) -> *mut IRP,
                CSQ.load(Ordering::Relaxed),
                file.cast()
            );
            if irp.is_null() {
                return;
            }
            complete(irp, STATUS_CANCELLED);
        }
    }
    let old = acquire_cancel();
    cleaned().push(file as usize);
    let mut mine = Vec::new();
    queue().retain(|&i| {
        let take = file_of(i as *mut IRP) == file;
        if take {
            mine.push(i as *mut IRP);
        }
        !take
    });
    for &irp in &mine {
        set_cancel_routine(irp, 0);
    }
    release_cancel(old);
    for irp in mine {
        complete(irp, STATUS_CANCELLED);
    }
}

// --- the cancel-safe queue's callbacks --------------------------------------

unsafe extern "win64" fn csq_insert(_csq: *mut IoCsq, irp: *mut IRP, _ctx: *mut c_void) -> NTSTATUS {
    if cleaned_up(file_of(irp)) {
        return STATUS_CANCELLED;
    }
    queue().push_back(irp as usize);
    0
}
unsafe extern "win64" fn csq_remove(_csq: *mut IoCsq, irp: *mut IRP) {
    queue().retain(|&i| i != irp as usize);
}
unsafe extern "win64" fn csq_peek(_csq: *mut IoCsq, irp: *mut IRP, file: *mut c_void) -> *mut IRP {
    let q = queue();
    let start = if irp.is_null() { 0 } else { q.iter().position(|&i| i == irp as usize).map_or(q.len(), |p| p + 1) };
    q.iter()
        .skip(start)
        .find(|&&i| file.is_null() || file_of(i as *mut IRP) == file.cast())
        .map_or(null_mut(), |&i| i as *mut IRP)
}
unsafe extern "win64" fn csq_acquire(_csq: *mut IoCsq, _irql: *mut u8) {
    call!("NdisAcquireSpinLock" as fn(*mut NDIS_SPIN_LOCK), LOCK.load(Ordering::Relaxed));
}
unsafe extern "win64" fn csq_release(_csq: *mut IoCsq, _irql: u8) {
    call!("NdisReleaseSpinLock" as fn(*mut NDIS_SPIN_LOCK), LOCK.load(Ordering::Relaxed));
}
unsafe extern "win64" fn csq_complete_canceled(_csq: *mut IoCsq, irp: *mut IRP) {
    complete(irp, STATUS_CANCELLED);
}

unsafe extern "win64" fn dispatch(_dev: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: the IRP's current stack location.
    let major = unsafe { (*(*irp).Tail.Overlay.Anonymous2.Anonymous.CurrentStackLocation).MajorFunction };
    if major == 0x0E && HOLD.load(Ordering::SeqCst) {
        HELD.fetch_add(1, Ordering::SeqCst);
        while HOLD.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
    }
    match major {
        0x12 => cleanup(file_of(irp)),
        0x02 => cleaned().retain(|&f| f != file_of(irp) as usize),
        0x0E => match mode() {
            Mode::Csq => {
                let status = call!(
                    "IoCsqInsertIrpEx" as fn(*mut IoCsq, *mut IRP, *mut c_void, *mut c_void) -> NTSTATUS,
                    CSQ.load(Ordering::Relaxed),
                    irp,
                    null_mut(),
                    null_mut()
                );
                if status != 0 {
                    complete(irp, status);
                    return status;
                }
                return STATUS_PENDING;
            }
            Mode::ReleaseNotHeld => release_cancel(0),
            Mode::AcquireTwice => {
                acquire_cancel();
                acquire_cancel();
            }
            Mode::DispatchKeepsCancelLock => {
                acquire_cancel();
            }
            Mode::PendForever => {
                mark_pending(irp);
                return STATUS_PENDING;
            }
            Mode::LockOrder => {
                let lock = LOCK.load(Ordering::Relaxed);
                call!("NdisAcquireSpinLock" as fn(*mut NDIS_SPIN_LOCK), lock);
                let status = pend_manual(irp);
                call!("NdisReleaseSpinLock" as fn(*mut NDIS_SPIN_LOCK), lock);
                return status;
            }
            Mode::ReleaseWrongIrql => {
                let lock = LOCK.load(Ordering::Relaxed);
                call!("NdisAcquireSpinLock" as fn(*mut NDIS_SPIN_LOCK), lock);
                let old = acquire_cancel();
                call!("NdisReleaseSpinLock" as fn(*mut NDIS_SPIN_LOCK), lock);
                release_cancel(old);
            }
            _ => return pend_manual(irp),
        },
        _ => {}
    }
    complete(irp, 0);
    0
}

fn load(m: Mode, config: Config) -> Session {
    MODE.store(m as u32, Ordering::Relaxed);
    queue().clear();
    cleaned().clear();
    HOLD.store(false, Ordering::SeqCst);
    HELD.store(0, Ordering::SeqCst);
    CLEANUPS.store(0, Ordering::SeqCst);
    // SAFETY: driver_entry and every handler it registers are win64 functions.
    unsafe {
        Session::load_in_process(driver_entry as *const () as usize, Options { verifier: config, ..Options::default() })
    }
    .unwrap_or_else(|e| panic!("{e}"))
}

fn quick() -> Config {
    Config { watchdog: Duration::from_secs(2), ..Config::default() }
}

/// Waits until `n` IRPs on `h` are pending in the driver's queue: their
/// dispatch routine returned STATUS_PENDING. Neither the queue's length
/// (shared by every file object) nor `io::pending_irps` (which counts an IRP
/// still inside its dispatch routine) says that.
fn wait_queued(h: Handle, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while io::pended_irps(h) < n {
        assert!(Instant::now() < deadline, "IRPs never pended");
        std::thread::yield_now();
    }
}

fn assert_caught(v: &Violation, rule: &str, bugcheck: u32, p1: u64) {
    assert_eq!((v.rule, v.bugcheck, v.params[0]), (rule, bugcheck, p1), "{v}");
}

fn cancel_via_cancel_io_ex(m: Mode) {
    let s = load(m, quick());
    let h = s.open("\\\\.\\Cancel").unwrap();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| s.ioctl(h, IOCTL_READ, &[], 8));
        wait_queued(h, 1);
        assert_eq!(io::cancel_io(h), Ok(1), "one cancel routine called");
        let r = reader.join().unwrap().unwrap();
        assert_eq!((r.status, r.information), (STATUS_CANCELLED, 0));
    });
    assert_eq!(io::cancel_io(h), Ok(0), "nothing left to cancel");
    s.close(h).unwrap();
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!((report.io.pended, report.io.completed), (1, 4), "{report}");
}

#[test]
fn cancel_io_ex_completes_once_with_status_cancelled() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    cancel_via_cancel_io_ex(Mode::Manual);
    cancel_via_cancel_io_ex(Mode::Csq);
}

fn race(m: Mode, rounds: usize) {
    let s = load(m, quick());
    let h = s.open("\\\\.\\Cancel").unwrap();
    let (mut cancelled, mut succeeded) = (0, 0);
    for _ in 0..rounds {
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| s.ioctl(h, IOCTL_READ, &[], 8));
            wait_queued(h, 1);
            let completer = scope.spawn(|| stack::call_driver("completer", complete_one).unwrap());
            io::cancel_io(h).unwrap();
            completer.join().unwrap();
            match reader.join().unwrap().unwrap().status {
                STATUS_CANCELLED => cancelled += 1,
                0 => succeeded += 1,
                other => panic!("completed with {other:#x}"),
            }
        });
        assert!(queue().is_empty());
    }
    eprintln!("{m:?}: {cancelled} cancelled, {succeeded} completed by the driver");
    s.close(h).unwrap();
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!(report.io.completed as usize, rounds + 3, "every IRP completed exactly once: {report}");
    assert_eq!(cancelled + succeeded, rounds);
}

#[test]
fn cancel_racing_completion_completes_exactly_once() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    race(Mode::Manual, 300);
    race(Mode::Csq, 300);
}

fn close_cancels_at_cleanup(m: Mode) {
    // The default watchdog: nothing here should time out, and a loaded
    // machine must not make it.
    let s = load(m, Config::default());
    let h = s.open("\\\\.\\Cancel").unwrap();
    let other = s.open("\\\\.\\Cancel").unwrap();
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..3).map(|_| scope.spawn(|| s.ioctl(h, IOCTL_READ, &[], 8))).collect();
        let bystander = scope.spawn(|| s.ioctl(other, IOCTL_READ, &[], 8));
        wait_queued(h, 3);
        wait_queued(other, 1);
        s.close(h).unwrap();
        for r in readers {
            assert_eq!(r.join().unwrap().unwrap().status, STATUS_CANCELLED);
        }
        assert_eq!(io::pending_irps(other), 1, "the other file object's IRP stays pending");
        assert_eq!(io::cancel_io(other), Ok(1));
        assert_eq!(bystander.join().unwrap().unwrap().status, STATUS_CANCELLED);
    });
    s.close(other).unwrap();
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!(report.io.cleanups_with_irps_in_flight, 1, "{report}");
}

#[test]
fn handle_close_cancels_pending_reads_at_cleanup() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    close_cancels_at_cleanup(Mode::Manual);
    close_cancels_at_cleanup(Mode::Csq);
}

/// Waits (bounded) until `counter` reaches `n`.
fn wait_count(counter: &AtomicU32, n: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::yield_now();
    }
}

/// The forced interleaving behind a close racing a read: the read is
/// dispatched but held before the driver queues it, the last handle closes
/// and CLEANUP returns, then the read goes on into the driver. Returns the
/// close's and the read's results.
fn read_reaching_dispatch_after_cleanup(
    s: &Session,
) -> (Result<(), IoError>, std::thread::Result<Result<io::IoctlResult, IoError>>) {
    let h = s.open("\\\\.\\Cancel").unwrap();
    HOLD.store(true, Ordering::SeqCst);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| s.ioctl(h, IOCTL_READ, &[], 8));
        wait_count(&HELD, 1, "the read's dispatch");
        assert_eq!((io::pending_irps(h), io::pended_irps(h)), (1, 0), "being dispatched is not pended");
        let closer = scope.spawn(|| s.close(h));
        wait_count(&CLEANUPS, 1, "CLEANUP");
        HOLD.store(false, Ordering::SeqCst);
        let closed = closer.join().unwrap();
        (closed, reader.join())
    })
}

fn refuses_reads_after_cleanup(m: Mode) {
    let s = load(m, quick());
    let (closed, read) = read_reaching_dispatch_after_cleanup(&s);
    assert_eq!(closed, Ok(()));
    assert_eq!(read.unwrap().unwrap().status, STATUS_CANCELLED);
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!((report.io.pended, report.io.cleanups_with_irps_in_flight), (0, 1), "{report}");
}

#[test]
fn a_read_reaching_dispatch_after_cleanup_is_refused() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    refuses_reads_after_cleanup(Mode::Manual);
    refuses_reads_after_cleanup(Mode::Csq);
}

#[test]
fn irp_pended_after_cleanup_of_its_file_object_is_caught_as_such() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = load(Mode::PendAfterCleanup, Config { watchdog: Duration::from_millis(500), ..Config::default() });
    let (closed, read) = read_reaching_dispatch_after_cleanup(&s);
    let v = match closed {
        Err(IoError::Violation(v)) => v,
        other => panic!("expected a violation, got {other:?}"),
    };
    assert_caught(
        &v,
        "IRP pended after CLEANUP of its file object",
        codes::DRIVER_VERIFIER_IOMANAGER_VIOLATION,
        c9::NEVER_COMPLETED,
    );
    assert!(v.detail.contains("still running when CLEANUP was sent"), "{v}");
    let _ = read;
}

/// Pends a read and cancels it: the violation the cancel reports.
fn cancel_violation(m: Mode) -> Violation {
    let s = load(m, quick());
    let h = s.open("\\\\.\\Cancel").unwrap();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| s.ioctl(h, IOCTL_READ, &[], 8));
        wait_queued(h, 1);
        let v = match io::cancel_io(h) {
            Err(IoError::Violation(v)) => v,
            other => panic!("expected a violation, got {other:?}"),
        };
        let _ = reader.join();
        v
    })
}

/// Sends one read: the violation its dispatch reports.
fn ioctl_violation(m: Mode) -> Violation {
    let s = load(m, quick());
    let h = s.open("\\\\.\\Cancel").unwrap();
    match s.ioctl(h, IOCTL_READ, &[], 8) {
        Err(IoError::Violation(v)) => v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn irp_completed_twice_by_the_cancel_routine_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let v = cancel_violation(Mode::CancelCompletesTwice);
    assert_eq!((v.rule, v.bugcheck), ("IRP completed twice or unknown", MULTIPLE_IRP_COMPLETE_REQUESTS), "{v}");
}

#[test]
fn irp_completed_with_its_cancel_routine_set_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = load(Mode::CompleteWithRoutineSet, quick());
    let h = s.open("\\\\.\\Cancel").unwrap();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| s.ioctl(h, IOCTL_READ, &[], 8));
        wait_queued(h, 1);
        let v = stack::call_driver("completer", complete_one).unwrap_err();
        assert_caught(
            &v,
            "IRP completed with a cancel routine set",
            codes::DRIVER_VERIFIER_IOMANAGER_VIOLATION,
            c9::CANCEL_ROUTINE_SET,
        );
        let _ = reader.join();
    });
}

#[test]
fn irp_pending_at_close_of_its_file_object_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = load(Mode::CleanupKeepsIrps, Config { watchdog: Duration::from_millis(500), ..Config::default() });
    let h = s.open("\\\\.\\Cancel").unwrap();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| s.ioctl(h, IOCTL_READ, &[], 8));
        wait_queued(h, 1);
        let v = match s.close(h) {
            Err(IoError::Violation(v)) => v,
            other => panic!("expected a violation, got {other:?}"),
        };
        assert_caught(
            &v,
            "IRP pending at CLOSE of its file object",
            codes::DRIVER_VERIFIER_IOMANAGER_VIOLATION,
            c9::NEVER_COMPLETED,
        );
        let _ = reader.join();
    });
}

#[test]
fn cancel_spin_lock_released_without_holding_it_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let v = ioctl_violation(Mode::ReleaseNotHeld);
    assert_caught(
        &v,
        "IoReleaseCancelSpinLock without holding it",
        codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
        codes::C4_UNACQUIRED_RESOURCE,
    );
}

#[test]
fn cancel_spin_lock_acquired_recursively_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let v = ioctl_violation(Mode::AcquireTwice);
    assert_caught(
        &v,
        "cancel spin lock acquired recursively",
        codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
        codes::C4_SELF_DEADLOCK,
    );
}

#[test]
fn cancel_spin_lock_released_at_the_wrong_irql_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let v = ioctl_violation(Mode::ReleaseWrongIrql);
    assert_caught(
        &v,
        "cancel spin lock released at wrong IRQL",
        codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
        codes::C4_SPIN_LOCK_RELEASE_WRONG_IRQL,
    );
}

#[test]
fn cancel_routine_returning_with_the_cancel_spin_lock_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let v = cancel_violation(Mode::CancelKeepsLock);
    assert_caught(
        &v,
        "cancel routine returned holding the cancel spin lock",
        codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
        codes::C4_DDI_SPIN_LOCK_RULE,
    );
}

#[test]
fn pending_without_io_mark_irp_pending_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let v = ioctl_violation(Mode::PendingNotMarked);
    assert_caught(
        &v,
        "STATUS_PENDING returned without IoMarkIrpPending",
        codes::DRIVER_VERIFIER_IOMANAGER_VIOLATION,
        c9::PENDING_NOT_MARKED,
    );
}

#[test]
fn dispatch_returning_with_the_cancel_spin_lock_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let v = ioctl_violation(Mode::DispatchKeepsCancelLock);
    assert_caught(
        &v,
        "lock held when callback returns",
        codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
        codes::C4_DDI_SPIN_LOCK_RULE,
    );
    assert!(v.detail.contains("cancel spin lock"), "{v}");
}

#[test]
fn cancel_spin_lock_and_a_driver_lock_in_both_orders_is_a_deadlock() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let v = cancel_violation(Mode::LockOrder);
    assert_caught(&v, "deadlock: lock order violation", codes::DRIVER_VERIFIER_DETECTED_VIOLATION, codes::C4_DEADLOCK);
}

#[test]
fn a_cancelable_read_may_outlive_the_watchdog() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = load(Mode::Manual, Config { watchdog: Duration::from_millis(300), ..Config::default() });
    let h = s.open("\\\\.\\Cancel").unwrap();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| s.ioctl(h, IOCTL_READ, &[], 8));
        wait_queued(h, 1);
        std::thread::sleep(Duration::from_millis(500));
        assert!(stack::call_driver("completer", complete_one).unwrap());
        assert_eq!(reader.join().unwrap().unwrap().status, 0);
    });
    s.close(h).unwrap();
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
}

#[test]
fn a_pended_irp_that_cannot_be_cancelled_must_complete_within_the_watchdog() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = load(Mode::PendForever, Config { watchdog: Duration::from_millis(300), ..Config::default() });
    let h = s.open("\\\\.\\Cancel").unwrap();
    let started = Instant::now();
    let v = match s.ioctl(h, IOCTL_READ, &[], 8) {
        Err(IoError::Violation(v)) => v,
        other => panic!("expected a violation, got {other:?}"),
    };
    assert_caught(&v, "IRP never completed", codes::DRIVER_VERIFIER_IOMANAGER_VIOLATION, c9::NEVER_COMPLETED);
    assert!(started.elapsed() < Duration::from_secs(2), "reported within the watchdog");
}
