//! IRP cancellation: the cancel spin lock, `IoCancelIrp` and the cancel-safe
//! queue library (`IoCsq*`), with Driver Verifier's checks.
//!
//! * `IoSetCancelRoutine` is not an export: wdm.h defines it inline as an
//!   `InterlockedExchangePointer` on `Irp->CancelRoutine`. The driver writes
//!   the field itself; the model reads and exchanges it atomically the same
//!   way (`IoCancelIrp`, the `IoCsq*` routines, and the completion check
//!   of `crate::io`, 0xC9/0x07).
//! * `IoCancelIrp` ([R:IoCancelIrp]; "Canceling IRPs", "Points to consider
//!   when canceling IRPs"): takes the cancel spin lock, sets `Irp->Cancel`,
//!   exchanges the cancel routine with NULL and, if there was one, calls it
//!   at DISPATCH_LEVEL holding the cancel spin lock with `Irp->CancelIrql`
//!   set to the IRQL to restore; the routine must release the lock with
//!   `IoReleaseCancelSpinLock(Irp->CancelIrql)`. Without a routine it
//!   releases the lock and returns FALSE.
//! * The cancel spin lock ([R:IoAcquireCancelSpinLock],
//!   [R:IoReleaseCancelSpinLock]): one per system; acquiring raises to
//!   DISPATCH_LEVEL (callers at <= DISPATCH_LEVEL), releasing is at
//!   DISPATCH_LEVEL and restores the given IRQL. It counts as a held lock
//!   for the "lock held when a callback returns" rule.
//! * The cancel-safe queue ([R:IoCsqInitialize] and the pages of each
//!   routine; "Cancel-safe IRP queues"): library routines that call the
//!   driver's callbacks (insert, remove, peek, acquire/release its lock,
//!   complete a cancelled IRP) and set a cancel routine of their own, which
//!   the model implements as Windows does: insert and set the cancel routine
//!   under the driver's lock, and whoever exchanges the cancel routine with
//!   NULL first (a remove or the cancel) owns the IRP.
//!
//! Rules (the DDI compliance rule CancelSpinLock (wdm) states them; it is
//! checked by Static Driver Verifier only, so the codes are harness choices
//! from the 0xC4 table, as for the other spin locks of `crate::locks`):
//! release without holding (0xC4/0x1007), release by another thread
//! (0xC4/0x1004), release at an IRQL other than DISPATCH_LEVEL (0xC4/0x32),
//! recursive acquire (0xC4/0x1000), the cancel spin lock and a driver lock
//! taken in both orders (0xC4/0x1001, deadlock detection's lock order, as
//! for every other spin lock: the classic cancel-routine deadlock), a
//! cancel routine that returns holding
//! the cancel spin lock (0xC4/0x40009, the DDI SpinLock rule names cancel
//! routines) or at another IRQL than `CancelIrql` (0xC8).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use ndis_sys::{DEVICE_OBJECT, IRP, NTSTATUS};

use crate::imports::Import;
use crate::irql::{self, DISPATCH, PASSIVE};
use crate::stack::{on_host, spin_wait};
use crate::verifier::{self, codes, Violation};

/// `STATUS_CANCELLED`: what a cancelled IRP completes with.
pub const STATUS_CANCELLED: NTSTATUS = 0xC000_0120_u32 as i32;
/// `STATUS_SUCCESS`.
const STATUS_SUCCESS: NTSTATUS = 0;
/// `IO_TYPE_CSQ_IRP_CONTEXT` (wdm.h).
pub const IO_TYPE_CSQ_IRP_CONTEXT: u32 = 1;
/// `IO_TYPE_CSQ` (wdm.h): a queue made by IoCsqInitialize.
pub const IO_TYPE_CSQ: u32 = 2;
/// `IO_TYPE_CSQ_EX` (wdm.h): a queue made by IoCsqInitializeEx.
pub const IO_TYPE_CSQ_EX: u32 = 3;

/// Offset of `Irp->Tail.Overlay.DriverContext[3]` (x64 wdm.h: Tail at 120,
/// four pointers), where the cancel-safe queue keeps its context.
const DRIVER_CONTEXT_3: usize = 120 + 3 * 8;
const _: () = assert!(core::mem::offset_of!(IRP, Tail) == 120);

/// `IO_CSQ` (wdm.h, x64 layout): the queue the driver embeds in its context.
#[repr(C)]
#[derive(Debug)]
pub struct IoCsq {
    /// IO_TYPE_CSQ or IO_TYPE_CSQ_EX.
    pub ty: u32,
    /// `CsqInsertIrp` (or `CsqInsertIrpEx` for IO_TYPE_CSQ_EX).
    pub insert: usize,
    /// `CsqRemoveIrp`.
    pub remove: usize,
    /// `CsqPeekNextIrp`.
    pub peek: usize,
    /// `CsqAcquireLock`.
    pub acquire: usize,
    /// `CsqReleaseLock`.
    pub release: usize,
    /// `CsqCompleteCanceledIrp`.
    pub complete_canceled: usize,
    /// `ReservePointer`.
    pub reserve: usize,
}

/// `IO_CSQ_IRP_CONTEXT` (wdm.h, x64 layout).
#[repr(C)]
#[derive(Debug)]
pub struct IoCsqIrpContext {
    /// IO_TYPE_CSQ_IRP_CONTEXT.
    pub ty: u32,
    /// The IRP, NULL once it left the queue.
    pub irp: *mut IRP,
    /// The queue.
    pub csq: *mut IoCsq,
}

const _: () = assert!(core::mem::size_of::<IoCsq>() == 64);
const _: () = assert!(core::mem::size_of::<IoCsqIrpContext>() == 24);

/// The cancel spin lock: the owning thread's id, 0 when free.
static CANCEL_LOCK: AtomicU64 = AtomicU64::new(0);
/// How the cancel spin lock appears among a thread's held locks.
const CANCEL_LOCK_KIND: &str = "cancel spin lock";

fn lock_addr() -> usize {
    &CANCEL_LOCK as *const AtomicU64 as usize
}

/// Session reset: the cancel spin lock is free.
pub(crate) fn reset() {
    CANCEL_LOCK.store(0, Ordering::Release);
}

/// Whether the calling thread holds the cancel spin lock.
pub fn holds_cancel_lock() -> bool {
    CANCEL_LOCK.load(Ordering::Acquire) == irql::thread_id()
}

/// Acquires the cancel spin lock for `function`; returns the IRQL to
/// restore.
fn acquire(function: &str) -> u8 {
    irql::require(function, PASSIVE, DISPATCH);
    let me = irql::thread_id();
    if CANCEL_LOCK.load(Ordering::Relaxed) == me {
        verifier::violation(Violation::c4(
            "cancel spin lock acquired recursively",
            codes::C4_SELF_DEADLOCK,
            lock_addr() as u64,
            0,
            0,
            format!("{function}: this thread already holds the cancel spin lock (CancelSpinLock rule)"),
        ));
    }
    crate::locks::check_order(lock_addr(), function);
    let old = irql::raise(DISPATCH);
    while CANCEL_LOCK.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
        spin_wait(function);
    }
    crate::locks::push_held(lock_addr(), CANCEL_LOCK_KIND);
    old
}

/// Releases the cancel spin lock for `function`, lowering to `to`.
fn release(function: &str, to: u8) {
    let level = irql::current();
    let owner = CANCEL_LOCK.load(Ordering::Relaxed);
    let me = irql::thread_id();
    if owner == 0 {
        verifier::violation(Violation::c4(
            "IoReleaseCancelSpinLock without holding it",
            codes::C4_UNACQUIRED_RESOURCE,
            lock_addr() as u64,
            0,
            0,
            format!("{function}: the cancel spin lock is not held (CancelSpinLock rule)"),
        ));
    }
    if owner != me {
        verifier::violation(Violation::c4(
            "cancel spin lock released by another thread",
            codes::C4_UNEXPECTED_THREAD,
            lock_addr() as u64,
            owner,
            me,
            format!("{function}: held by thread {owner}, released by thread {me}"),
        ));
    }
    if level != DISPATCH {
        verifier::violation(Violation::c4(
            "cancel spin lock released at wrong IRQL",
            codes::C4_SPIN_LOCK_RELEASE_WRONG_IRQL,
            u64::from(level),
            lock_addr() as u64,
            0,
            format!("{function} at {}: the holder runs at DISPATCH_LEVEL", irql::name(level)),
        ));
    }
    crate::locks::pop_held(lock_addr());
    CANCEL_LOCK.store(0, Ordering::Release);
    irql::lower(to);
}

/// `IoAcquireCancelSpinLock(PKIRQL Irql)`.
extern "win64" fn io_acquire_cancel_spin_lock(old: *mut u8) {
    on_host(|| {
        let level = acquire("IoAcquireCancelSpinLock");
        // SAFETY: the driver passes a writable KIRQL.
        unsafe { old.write(level) };
    })
}

/// `IoReleaseCancelSpinLock(KIRQL Irql)`.
extern "win64" fn io_release_cancel_spin_lock(to: u8) {
    on_host(|| release("IoReleaseCancelSpinLock", to))
}

fn cancel_routine_field(irp: *mut IRP) -> &'static AtomicUsize {
    // SAFETY: `CancelRoutine` is a pointer-sized, aligned field of a live IRP;
    // wdm.h's IoSetCancelRoutine exchanges it atomically, and so does the model.
    unsafe { AtomicUsize::from_ptr(std::ptr::addr_of_mut!((*irp).CancelRoutine).cast()) }
}

/// The IRP's cancel routine now (0 for none).
pub fn cancel_routine_of(irp: *mut IRP) -> usize {
    cancel_routine_field(irp).load(Ordering::Acquire)
}

/// `IoSetCancelRoutine(Irp, routine)`, as wdm.h's inline definition: the
/// previous routine (0 for none).
pub fn set_cancel_routine(irp: *mut IRP, routine: usize) -> usize {
    cancel_routine_field(irp).swap(routine, Ordering::AcqRel)
}

type CancelFn = unsafe extern "win64" fn(*mut DEVICE_OBJECT, *mut IRP);

/// `IoCancelIrp`'s work, run inside a driver call (the driver's own call to
/// IoCancelIrp, or the I/O manager's call for CancelIoEx): the cancel
/// routine is driver code and runs on the driver's stack. Returns whether a
/// cancel routine was called.
pub(crate) fn cancel_irp(irp: *mut IRP) -> bool {
    let prepared = on_host(|| {
        let old = acquire("IoCancelIrp");
        // SAFETY: a live IRP (the caller's contract).
        unsafe { std::ptr::addr_of_mut!((*irp).Cancel).write_volatile(true) };
        let routine = set_cancel_routine(irp, 0);
        if routine == 0 {
            release("IoCancelIrp", old);
            return None;
        }
        // SAFETY: as above; the IRP's current stack location is valid.
        let device = unsafe {
            std::ptr::addr_of_mut!((*irp).CancelIrql).write_volatile(old);
            (*(*irp).Tail.Overlay.Anonymous2.Anonymous.CurrentStackLocation).DeviceObject
        };
        Some((routine, device, old))
    });
    let Some((routine, device, old)) = prepared else { return false };
    // SAFETY: the routine the driver (or the cancel-safe queue) set, with the
    // arguments the I/O manager passes.
    unsafe {
        let f: CancelFn = core::mem::transmute::<usize, CancelFn>(routine);
        f(device, irp);
    }
    on_host(|| check_cancel_routine_exit(routine, irp, old));
    true
}

fn check_cancel_routine_exit(routine: usize, irp: *mut IRP, old: u8) {
    if holds_cancel_lock() {
        verifier::violation(Violation::c4(
            "cancel routine returned holding the cancel spin lock",
            codes::C4_DDI_SPIN_LOCK_RULE,
            lock_addr() as u64,
            routine as u64,
            irp as u64,
            format!(
                "cancel routine {routine:#x} for IRP {irp:p} did not call IoReleaseCancelSpinLock(Irp->CancelIrql)"
            ),
        ));
    }
    let now = irql::current();
    if now != old {
        verifier::violation(Violation::new(
            "cancel routine returned at a different IRQL",
            codes::IRQL_UNEXPECTED_VALUE,
            [u64::from(now), u64::from(old), routine as u64, irp as u64],
            format!(
                "cancel routine {routine:#x} returned at {}, Irp->CancelIrql is {} (C28144)",
                irql::name(now),
                irql::name(old)
            ),
        ));
    }
}

/// `IoCancelIrp(Irp)`.
extern "win64" fn io_cancel_irp(irp: *mut IRP) -> u8 {
    u8::from(cancel_irp(irp))
}

// ---------------------------------------------------------------------------
// Cancel-safe queues.

type InsertFn = unsafe extern "win64" fn(*mut IoCsq, *mut IRP);
type InsertExFn = unsafe extern "win64" fn(*mut IoCsq, *mut IRP, *mut core::ffi::c_void) -> NTSTATUS;
type RemoveFn = unsafe extern "win64" fn(*mut IoCsq, *mut IRP);
type PeekFn = unsafe extern "win64" fn(*mut IoCsq, *mut IRP, *mut core::ffi::c_void) -> *mut IRP;
type AcquireFn = unsafe extern "win64" fn(*mut IoCsq, *mut u8);
type ReleaseFn = unsafe extern "win64" fn(*mut IoCsq, u8);
type CompleteCanceledFn = unsafe extern "win64" fn(*mut IoCsq, *mut IRP);

/// The driver's callbacks of a queue.
struct Callbacks {
    csq: *mut IoCsq,
}

impl Callbacks {
    /// # Safety
    /// `csq` is an IO_CSQ the driver initialised with IoCsqInitialize(Ex).
    unsafe fn of(csq: *mut IoCsq) -> Self {
        Self { csq }
    }

    fn field(&self, f: impl FnOnce(&IoCsq) -> usize) -> usize {
        // SAFETY: the driver's initialised IO_CSQ (the constructor's contract).
        f(unsafe { &*self.csq })
    }

    fn lock(&self) -> u8 {
        let mut irql = 0u8;
        // SAFETY: the driver's CsqAcquireLock with its queue.
        unsafe { core::mem::transmute::<usize, AcquireFn>(self.field(|c| c.acquire))(self.csq, &mut irql) };
        irql
    }

    fn unlock(&self, irql: u8) {
        // SAFETY: the driver's CsqReleaseLock with the IRQL its acquire returned.
        unsafe { core::mem::transmute::<usize, ReleaseFn>(self.field(|c| c.release))(self.csq, irql) };
    }

    fn remove(&self, irp: *mut IRP) {
        // SAFETY: the driver's CsqRemoveIrp, called with its lock held.
        unsafe { core::mem::transmute::<usize, RemoveFn>(self.field(|c| c.remove))(self.csq, irp) };
    }

    fn peek(&self, irp: *mut IRP, context: *mut core::ffi::c_void) -> *mut IRP {
        // SAFETY: the driver's CsqPeekNextIrp, called with its lock held.
        unsafe { core::mem::transmute::<usize, PeekFn>(self.field(|c| c.peek))(self.csq, irp, context) }
    }

    fn complete_canceled(&self, irp: *mut IRP) {
        // SAFETY: the driver's CsqCompleteCanceledIrp, called without its lock.
        unsafe {
            core::mem::transmute::<usize, CompleteCanceledFn>(self.field(|c| c.complete_canceled))(self.csq, irp)
        };
    }
}

fn driver_context(irp: *mut IRP) -> *mut usize {
    // SAFETY: DriverContext[3] lies inside the IRP.
    unsafe { irp.cast::<u8>().add(DRIVER_CONTEXT_3).cast::<usize>() }
}

fn csq_initialize(csq: *mut IoCsq, ty: u32, callbacks: [usize; 6]) -> NTSTATUS {
    let [insert, remove, peek, acquire, release, complete_canceled] = callbacks;
    // SAFETY: the driver passes writable IO_CSQ storage.
    unsafe { csq.write(IoCsq { ty, insert, remove, peek, acquire, release, complete_canceled, reserve: 0 }) };
    STATUS_SUCCESS
}

/// `IoCsqInitialize(Csq, Insert, Remove, Peek, Acquire, Release, CompleteCanceled)`.
extern "win64" fn io_csq_initialize(
    csq: *mut IoCsq,
    insert: usize,
    remove: usize,
    peek: usize,
    acquire: usize,
    release: usize,
    complete_canceled: usize,
) -> NTSTATUS {
    csq_initialize(csq, IO_TYPE_CSQ, [insert, remove, peek, acquire, release, complete_canceled])
}

/// `IoCsqInitializeEx(...)`: the insert callback returns an NTSTATUS.
extern "win64" fn io_csq_initialize_ex(
    csq: *mut IoCsq,
    insert: usize,
    remove: usize,
    peek: usize,
    acquire: usize,
    release: usize,
    complete_canceled: usize,
) -> NTSTATUS {
    csq_initialize(csq, IO_TYPE_CSQ_EX, [insert, remove, peek, acquire, release, complete_canceled])
}

/// The cancel routine the cancel-safe queue sets on the IRPs it holds.
extern "win64" fn csq_cancel_routine(_device: *mut DEVICE_OBJECT, irp: *mut IRP) {
    // SAFETY: a live IRP being cancelled; CancelIrql was set by IoCancelIrp.
    let cancel_irql = unsafe { std::ptr::addr_of!((*irp).CancelIrql).read_volatile() };
    on_host(|| release("IoCancelIrp (cancel-safe queue)", cancel_irql));
    // SAFETY: DriverContext[3] holds the queue or the IRP context the
    // insert stored.
    let context = unsafe { driver_context(irp).read() };
    // SAFETY: both types start with their ULONG Type.
    let ty = unsafe { (context as *const u32).read() };
    let (csq, irp_context) = if ty == IO_TYPE_CSQ_IRP_CONTEXT {
        // SAFETY: an IO_CSQ_IRP_CONTEXT the driver passed to the insert.
        (unsafe { (*(context as *mut IoCsqIrpContext)).csq }, context as *mut IoCsqIrpContext)
    } else {
        (context as *mut IoCsq, std::ptr::null_mut())
    };
    // SAFETY: the queue the IRP was inserted into.
    let q = unsafe { Callbacks::of(csq) };
    let irql = q.lock();
    q.remove(irp);
    if !irp_context.is_null() {
        // SAFETY: as above; the IRP has left the queue.
        unsafe { (*irp_context).irp = std::ptr::null_mut() };
    }
    // SAFETY: as above.
    unsafe { driver_context(irp).write(0) };
    q.unlock(irql);
    q.complete_canceled(irp);
}

fn csq_insert(
    csq: *mut IoCsq,
    irp: *mut IRP,
    context: *mut IoCsqIrpContext,
    insert_context: *mut core::ffi::c_void,
) -> NTSTATUS {
    // SAFETY: the driver's initialised queue.
    let q = unsafe { Callbacks::of(csq) };
    let irql = q.lock();
    let ty = q.field(|c| c.ty as usize) as u32;
    let status = if ty == IO_TYPE_CSQ_EX {
        // SAFETY: the driver's CsqInsertIrpEx, with its lock held.
        unsafe { core::mem::transmute::<usize, InsertExFn>(q.field(|c| c.insert))(csq, irp, insert_context) }
    } else {
        // SAFETY: the driver's CsqInsertIrp, with its lock held.
        unsafe { core::mem::transmute::<usize, InsertFn>(q.field(|c| c.insert))(csq, irp) };
        STATUS_SUCCESS
    };
    if status != STATUS_SUCCESS {
        q.unlock(irql);
        return status;
    }
    // IoMarkIrpPending, then the context, then the cancel routine.
    // SAFETY: the live IRP being queued; its current stack location is valid.
    unsafe {
        let loc = (*irp).Tail.Overlay.Anonymous2.Anonymous.CurrentStackLocation;
        (*loc).Control |= ndis_sys::SL_PENDING_RETURNED;
        if context.is_null() {
            driver_context(irp).write(csq as usize);
        } else {
            context.write(IoCsqIrpContext { ty: IO_TYPE_CSQ_IRP_CONTEXT, irp, csq });
            driver_context(irp).write(context as usize);
        }
    }
    set_cancel_routine(irp, csq_cancel_routine as *const () as usize);
    // SAFETY: the live IRP.
    let cancelled = unsafe { std::ptr::addr_of!((*irp).Cancel).read_volatile() };
    if cancelled && set_cancel_routine(irp, 0) != 0 {
        // Cancelled before the routine was set, and IoCancelIrp did not
        // see it: take the IRP back and complete it as cancelled.
        q.remove(irp);
        if !context.is_null() {
            // SAFETY: the context just written.
            unsafe { (*context).irp = std::ptr::null_mut() };
        }
        q.unlock(irql);
        q.complete_canceled(irp);
        return status;
    }
    q.unlock(irql);
    status
}

/// `IoCsqInsertIrp(Csq, Irp, Context)`.
extern "win64" fn io_csq_insert_irp(csq: *mut IoCsq, irp: *mut IRP, context: *mut IoCsqIrpContext) {
    csq_insert(csq, irp, context, std::ptr::null_mut());
}

/// `IoCsqInsertIrpEx(Csq, Irp, Context, InsertContext)`.
extern "win64" fn io_csq_insert_irp_ex(
    csq: *mut IoCsq,
    irp: *mut IRP,
    context: *mut IoCsqIrpContext,
    insert_context: *mut core::ffi::c_void,
) -> NTSTATUS {
    csq_insert(csq, irp, context, insert_context)
}

/// `IoCsqRemoveIrp(Csq, Context)`: the IRP, or NULL if it was cancelled
/// (or already removed).
extern "win64" fn io_csq_remove_irp(csq: *mut IoCsq, context: *mut IoCsqIrpContext) -> *mut IRP {
    // SAFETY: the driver's initialised queue.
    let q = unsafe { Callbacks::of(csq) };
    let irql = q.lock();
    // SAFETY: the context the driver passed to the insert.
    let mut irp = unsafe { (*context).irp };
    if !irp.is_null() {
        if set_cancel_routine(irp, 0) != 0 {
            q.remove(irp);
            // SAFETY: the IRP is ours now; forget the queue's context.
            unsafe {
                driver_context(irp).write(0);
                (*context).irp = std::ptr::null_mut();
            }
        } else {
            // Being cancelled: the cancel routine removes and completes it.
            irp = std::ptr::null_mut();
        }
    }
    q.unlock(irql);
    irp
}

/// `IoCsqRemoveNextIrp(Csq, PeekContext)`: the first IRP the driver's peek
/// finds that is not being cancelled, or NULL.
extern "win64" fn io_csq_remove_next_irp(csq: *mut IoCsq, peek_context: *mut core::ffi::c_void) -> *mut IRP {
    // SAFETY: the driver's initialised queue.
    let q = unsafe { Callbacks::of(csq) };
    let irql = q.lock();
    let mut irp = std::ptr::null_mut();
    loop {
        irp = q.peek(irp, peek_context);
        if irp.is_null() {
            break;
        }
        if set_cancel_routine(irp, 0) == 0 {
            // Being cancelled: skip it, the cancel routine completes it.
            continue;
        }
        q.remove(irp);
        // SAFETY: the IRP is ours now.
        unsafe {
            let context = driver_context(irp).read();
            if context != 0 && (context as *const u32).read() == IO_TYPE_CSQ_IRP_CONTEXT {
                (*(context as *mut IoCsqIrpContext)).irp = std::ptr::null_mut();
            }
            driver_context(irp).write(0);
        }
        break;
    }
    q.unlock(irql);
    irp
}

/// The cancellation functions the model binds.
pub(crate) fn imports() -> Vec<Import> {
    vec![
        Import::ntoskrnl("IoAcquireCancelSpinLock", io_acquire_cancel_spin_lock as *const () as usize),
        Import::ntoskrnl("IoReleaseCancelSpinLock", io_release_cancel_spin_lock as *const () as usize),
        Import::ntoskrnl("IoCancelIrp", io_cancel_irp as *const () as usize),
        Import::ntoskrnl("IoCsqInitialize", io_csq_initialize as *const () as usize),
        Import::ntoskrnl("IoCsqInitializeEx", io_csq_initialize_ex as *const () as usize),
        Import::ntoskrnl("IoCsqInsertIrp", io_csq_insert_irp as *const () as usize),
        Import::ntoskrnl("IoCsqInsertIrpEx", io_csq_insert_irp_ex as *const () as usize),
        Import::ntoskrnl("IoCsqRemoveIrp", io_csq_remove_irp as *const () as usize),
        Import::ntoskrnl("IoCsqRemoveNextIrp", io_csq_remove_next_irp as *const () as usize),
    ]
}
