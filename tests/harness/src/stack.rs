//! Guarded driver stacks: every call into the driver runs here.
//!
//! [`call_driver`] runs a closure (which calls a driver entry point) on a
//! small stack of its thread: the configured budget measured from the
//! entry frame (`enter`, the first frame on that stack), with an
//! inaccessible guard page right below it. The stack top is placed so that
//! the budget ends exactly at the guard page (the entry frame's distance
//! from the top is measured once, [`entry_offset`]): a call that touches
//! one byte past its budget faults there at once and is a stack overflow
//! (0x7F/0x8), with no system call per call (the guard stays protected for
//! the thread's life). Where the budget is not a multiple of 16 the few
//! bytes between the budget's end and the guard page are checked after
//! every call ("stack budget exceeded").
//!
//! Each entry point's peak use ([`peak_usage`], a report figure, not a
//! check) is measured by filling the stack with a pattern before the call
//! and finding the lowest byte that changed: for the first
//! [`PEAK_EXACT_CALLS`] calls of each entry point on each thread, then for
//! every [`PEAK_SAMPLE_EVERY`]-th (a scan of the whole budget costs about as
//! much as the rest of a packet's model; the budget check itself is the
//! guard page on every call).
//!
//! The budget, [`DEFAULT_STACK_BUDGET`] = 8 KiB, is a third of the 24 KiB
//! kernel stack of x64 Windows ("How do I keep my driver from running out
//! of kernel-mode stack?", Microsoft, dn613940: 12 KiB on x86, 24 KiB on
//! x64; "Using the Kernel Stack": "limited to approximately three pages").
//! A filter shares that stack with everything on the call chain: on
//! receive, the miniport's DPC, NDIS and the filters below it, and above
//! it the filters and protocol drivers (TCP/IP, which may send from inside
//! a receive indication); on send the same chain from the other end. A
//! third for one filter's call is what leaves the others their share.
//!
//! It leaves the driver stack in one of four ways, each by a context switch
//! written in assembly below (no unwinding through driver frames, which have
//! no unwind information the host understands):
//! * normal return: the IRQL must equal the IRQL at entry and no lock
//!   acquired inside may still be held, else a violation is reported;
//! * [`crate::verifier::violation`] raised by model code: jumps back;
//! * a fault (SIGSEGV/SIGBUS, handled on `sigaltstack` on every thread that
//!   calls the driver): the handler redirects the faulting context to the
//!   jump-back code, and the fault is classified afterwards: guard page =
//!   stack overflow (0x7F/8, a double fault, which is what a kernel stack
//!   overflow produces), special pool (0xD5/0xD6), other addresses
//!   (0x50, or 0xD1 at DISPATCH_LEVEL);
//! * the watchdog: a call that runs longer than the configured limit is
//!   stopped, from a signal when the thread is executing driver code, or at
//!   the next [`check_watchdog`] of a model wait loop (0x133 at
//!   DISPATCH_LEVEL and above, 0xE2 below).
//!
//! Model functions must not eat the driver's budget: [`on_host`] runs their
//! body on the host stack of the thread (below the frame that entered the
//! driver, which is idle while the driver runs).
//!
//! A call's bookkeeping touches only its thread's runtime ([`thread_rt`]):
//! the thread's first call installs the signal handlers (once per
//! process), its alternate signal stack and its watchdog entry; every call
//! then reads the budget from the thread's copy of the options (refreshed
//! when a session stores new ones), counts the entry point in a table
//! found by the name's address, and arms the watchdog with one store.

use std::any::Any;
use std::cell::Cell;
use std::collections::HashMap;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::irql;
use crate::verifier::{self, codes, Violation};

const PAGE: usize = 4096;
/// Stack budget of one driver call (see the module docs for its source).
pub const DEFAULT_STACK_BUDGET: usize = 8 * 1024;
/// Calls of an entry point per thread whose peak stack use is always
/// measured; after them every [`PEAK_SAMPLE_EVERY`]-th is.
pub const PEAK_EXACT_CALLS: u64 = 64;
/// See [`PEAK_EXACT_CALLS`].
pub const PEAK_SAMPLE_EVERY: u64 = 1024;
/// Entry points whose call counts a thread keeps (more distinct names are
/// always measured).
const PEAK_SLOTS: usize = 64;
/// Byte the stack is filled with before a call.
const FILL: u8 = 0xA5;
const MAX_DEPTH: usize = 16;
const ALTSTACK_SIZE: usize = 64 * 1024;
const WATCHDOG_SIGNAL: libc::c_int = libc::SIGURG;

const EXIT_RETURNED: u64 = 0;
const EXIT_VIOLATION: u64 = 1;
const EXIT_FAULT: u64 = 2;
const EXIT_WATCHDOG: u64 = 3;

/// Host registers saved when entering the driver stack (System V
/// callee-saved set, stack pointer, MXCSR and x87 control word). The
/// assembly below depends on these offsets.
#[repr(C)]
#[derive(Default)]
struct HostContext {
    rsp: u64,
    rbx: u64,
    rbp: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    fpu: u64,
}

// pw_harness_switch_call(ctx, stack_top, f, data) -> u64: saves the host
// context in `ctx`, switches to `stack_top`, calls `f(data)` and switches
// back (returns 0). pw_harness_resume(ctx, code) restores the context saved
// by the matching switch_call, making it return `code`: a longjmp that only
// ever jumps from the driver stack (or a host stack frame below `ctx.rsp`)
// back up. pw_harness_on_stack(sp, f, data) calls `f(data)` on stack `sp`.
std::arch::global_asm!(
    ".text",
    ".globl pw_harness_switch_call",
    ".type pw_harness_switch_call,@function",
    "pw_harness_switch_call:",
    "    mov [rdi + 8], rbx",
    "    mov [rdi + 16], rbp",
    "    mov [rdi + 24], r12",
    "    mov [rdi + 32], r13",
    "    mov [rdi + 40], r14",
    "    mov [rdi + 48], r15",
    "    stmxcsr [rdi + 56]",
    "    fnstcw [rdi + 60]",
    "    mov [rdi], rsp",
    "    mov rsp, rsi",
    "    push rdi",
    "    push rdi",
    "    mov rdi, rcx",
    "    call rdx",
    "    pop rdi",
    "    pop rdi",
    "    mov rsp, [rdi]",
    "    xor eax, eax",
    "    ret",
    ".size pw_harness_switch_call, . - pw_harness_switch_call",
    ".globl pw_harness_resume",
    ".type pw_harness_resume,@function",
    "pw_harness_resume:",
    "    mov rsp, [rdi]",
    "    mov rbx, [rdi + 8]",
    "    mov rbp, [rdi + 16]",
    "    mov r12, [rdi + 24]",
    "    mov r13, [rdi + 32]",
    "    mov r14, [rdi + 40]",
    "    mov r15, [rdi + 48]",
    "    ldmxcsr [rdi + 56]",
    "    fldcw [rdi + 60]",
    "    cld",
    "    mov rax, rsi",
    "    ret",
    ".size pw_harness_resume, . - pw_harness_resume",
    ".globl pw_harness_on_stack",
    ".type pw_harness_on_stack,@function",
    "pw_harness_on_stack:",
    "    push rbp",
    "    mov rbp, rsp",
    "    mov rsp, rdi",
    "    and rsp, -16",
    "    mov rdi, rdx",
    "    call rsi",
    "    mov rsp, rbp",
    "    pop rbp",
    "    ret",
    ".size pw_harness_on_stack, . - pw_harness_on_stack",
);

extern "C" {
    fn pw_harness_switch_call(ctx: *mut HostContext, stack_top: usize, f: usize, data: *mut u8) -> u64;
    fn pw_harness_resume(ctx: *const HostContext, code: u64) -> !;
    fn pw_harness_on_stack(sp: usize, f: usize, data: *mut u8);
}

/// Where the fault that left a call happened.
#[derive(Default, Clone, Copy)]
struct FaultInfo {
    addr: usize,
    rip: usize,
    write: bool,
}

/// One active driver call on this thread.
#[derive(Default)]
struct Frame {
    ctx: HostContext,
    /// Where `enter` runs (the top less [`entry_offset`]; tests aim at
    /// the budget's last byte from it).
    #[cfg(test)]
    entry_sp: usize,
    fault: FaultInfo,
    pending: Option<Violation>,
}

/// The innermost driver call's stack `[lo, hi)` and the host context it
/// was entered from, for [`on_host`] (`lo == hi` outside any call).
#[derive(Clone, Copy)]
struct Active {
    lo: usize,
    hi: usize,
    ctx: *const HostContext,
}

/// The session's options a driver call needs, copied per thread and
/// refreshed when [`verifier::config_generation`] moves: one load per call
/// instead of a copy of the whole [`verifier::Config`].
struct CallConfig {
    generation: u64,
    budget: usize,
}

/// Per-thread runtime, reached from the signal handler through a raw
/// pointer in a const-initialised thread local. It exists once the thread
/// is ready for driver calls (see [`thread_rt`]).
struct ThreadRt {
    frames: [Frame; MAX_DEPTH],
    /// One driver stack per nesting depth, kept between calls.
    stacks: [Option<StackMem>; MAX_DEPTH],
    depth: usize,
    active: Active,
    /// The alternate signal stack this thread mapped, if it needed one.
    altstack: Option<(usize, usize)>,
    /// This thread's watchdog entry.
    watch: Arc<Watch>,
    /// Outermost driver calls made so far (numbers them for the watchdog).
    calls: u64,
    config: CallConfig,
    /// Per entry point: calls so far and the peak measured (sampling).
    peaks: PeakSlots,
}

thread_local! {
    static RT: Cell<*mut ThreadRt> = const { Cell::new(ptr::null_mut()) };
    static RT_OWNER: RtOwner = const { RtOwner };
}

/// Frees the thread's runtime (and its alternate signal stack) at exit.
struct RtOwner;

impl Drop for RtOwner {
    fn drop(&mut self) {
        let rt = RT.with(|c| c.replace(ptr::null_mut()));
        if rt.is_null() {
            return;
        }
        // SAFETY: `rt` came from Box::into_raw in `new_thread_rt` and the
        // thread local no longer refers to it.
        let rt = unsafe { Box::from_raw(rt) };
        watchdog_forget(&rt.watch);
        if let Some((base, size)) = rt.altstack {
            disable_altstack_if_ours(base);
            // SAFETY: the mapping was created by `ensure_altstack` and is no
            // longer the thread's alternate stack.
            unsafe { libc::munmap(base as *mut libc::c_void, size) };
        }
    }
}

/// This thread's runtime, ready for driver calls. Its first call installs
/// the signal handlers (once per process), the watchdog thread, the
/// thread's alternate signal stack and watchdog entry; every later call
/// finds all of them ready in one thread-local load.
#[inline]
fn thread_rt() -> *mut ThreadRt {
    let existing = RT.with(Cell::get);
    if !existing.is_null() {
        return existing;
    }
    new_thread_rt()
}

#[cold]
fn new_thread_rt() -> *mut ThreadRt {
    install_handlers();
    WATCHDOG_THREAD.call_once(|| {
        std::thread::Builder::new().name("pw-watchdog".into()).spawn(watchdog_loop).expect("spawn the watchdog thread");
    });
    let watch = Arc::new(Watch {
        // SAFETY: pthread_self has no preconditions.
        thread: unsafe { libc::pthread_self() },
        call: AtomicU64::new(0),
        seen_call: AtomicU64::new(0),
        seen_at: AtomicU64::new(0),
        limit_ms: AtomicU64::new(0),
        fired: AtomicBool::new(false),
    });
    WATCHES.lock().unwrap_or_else(PoisonError::into_inner).push(watch.clone());
    let rt = Box::into_raw(Box::new(ThreadRt {
        frames: std::array::from_fn(|_| Frame::default()),
        stacks: [const { None }; MAX_DEPTH],
        depth: 0,
        active: Active { lo: 0, hi: 0, ctx: ptr::null() },
        altstack: ensure_altstack(),
        watch,
        calls: 0,
        config: CallConfig { generation: u64::MAX, budget: 0 },
        peaks: PeakSlots::default(),
    }));
    RT.with(|c| c.set(rt));
    RT_OWNER.with(|_| {});
    rt
}

/// The stack budget of a call, from the thread's copy of the options
/// (refreshed, the watchdog limit stored and the thread's peak counts
/// forgotten, when a session stored new ones).
///
/// # Safety
/// `rt` is this thread's live runtime.
#[inline]
unsafe fn call_budget(rt: *mut ThreadRt) -> usize {
    let now = verifier::config_generation();
    // SAFETY: the caller's contract.
    unsafe {
        if (*rt).config.generation != now {
            refresh_config(rt, now);
        }
        (*rt).config.budget
    }
}

/// # Safety
/// `rt` is this thread's live runtime, not in a driver call.
#[cold]
unsafe fn refresh_config(rt: *mut ThreadRt, generation: u64) {
    let config = verifier::config();
    // SAFETY: the caller's contract.
    let rt = unsafe { &mut *rt };
    rt.config = CallConfig { generation, budget: config.stack_budget.max(PAGE) };
    rt.peaks.clear();
    let limit = config.watchdog.as_millis().min(u128::from(u64::MAX / 2)) as u64;
    rt.watch.limit_ms.store(limit, Ordering::Relaxed);
}

/// An mmapped driver stack: `[lo, hi)`, the lowest page always a guard.
/// `[dirty, hi)` may hold other bytes than the fill pattern. A driver stack
/// is entered at `top`, `budget` bytes plus the entry frame above the guard.
struct StackMem {
    lo: usize,
    hi: usize,
    dirty: usize,
    top: usize,
    budget: usize,
}

impl StackMem {
    fn new(size: usize) -> Self {
        // SAFETY: anonymous private mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap of a driver stack failed");
        let lo = p as usize;
        protect(lo, PAGE, libc::PROT_NONE);
        Self { lo, hi: lo + size, dirty: lo + PAGE, top: lo + size, budget: 0 }
    }

    /// A driver stack for `budget`: entered at a top from which the entry
    /// frame's stack pointer lies `budget` bytes (rounded up to 16) above
    /// the guard page.
    fn driver(budget: usize) -> Self {
        let top = (PAGE + budget + entry_offset()).next_multiple_of(16);
        let mut stack = Self::new(top.next_multiple_of(PAGE));
        stack.top = stack.lo + top;
        stack.budget = budget;
        // Filled now: the bytes past the budget are checked after every
        // call, measured or not (see `over_budget`).
        stack.fill();
        stack
    }

    /// Restores the fill pattern where the last call may have written:
    /// only the part it touched, not the whole stack.
    fn fill(&mut self) {
        // SAFETY: [dirty, hi) is mapped read/write and not in use.
        unsafe { ptr::write_bytes(self.dirty as *mut u8, FILL, self.hi - self.dirty) };
        self.dirty = self.hi;
    }
}

impl Drop for StackMem {
    fn drop(&mut self) {
        // SAFETY: the mapping belongs to this value and no frame uses it.
        unsafe { libc::munmap(self.lo as *mut libc::c_void, self.hi - self.lo) };
    }
}

fn protect(addr: usize, len: usize, prot: libc::c_int) {
    // SAFETY: callers pass page-aligned ranges inside mappings they own.
    let rc = unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) };
    assert_eq!(rc, 0, "mprotect failed");
}

/// A closure to run on another stack and, once it ran, its result or the
/// panic it raised (caught there: a panic must not unwind through the
/// stack switch). Written in place, so that neither the closure nor its
/// result is moved through an `Option` on the way.
struct Call<F, R> {
    /// The closure, until [`run_call`] takes it (then `ran`).
    f: ManuallyDrop<F>,
    ran: bool,
    /// Written when the closure returned.
    result: MaybeUninit<R>,
    /// Set when the closure panicked.
    panic: Option<Box<dyn Any + Send>>,
}

impl<F: FnOnce() -> R, R> Call<F, R> {
    fn new(f: F) -> Self {
        Self { f: ManuallyDrop::new(f), ran: false, result: MaybeUninit::uninit(), panic: None }
    }

    /// What the call produced: its result, or its panic resumed. Only
    /// after [`run_call`] returned normally (the closure ran to its end).
    fn into_result(mut self) -> R {
        debug_assert!(self.ran, "the call never ran");
        if let Some(payload) = self.panic.take() {
            panic::resume_unwind(payload);
        }
        // SAFETY: the closure ran and did not panic, so `run_call` wrote
        // the result; `self` is consumed, so it is read once.
        unsafe { self.result.assume_init_read() }
    }

    /// A call abandoned before it ran (it left by a violation, fault or
    /// the watchdog before reaching the closure): the closure is dropped.
    /// One that ran was consumed; what it was doing is abandoned.
    fn forget(mut self) {
        if !self.ran {
            // SAFETY: never taken: `ran` is set when it is.
            unsafe { ManuallyDrop::drop(&mut self.f) };
        }
    }
}

/// Runs the closure of the `Call<F, R>` at `data`, catching a panic.
///
/// # Safety
/// `data` is a live `Call<F, R>` whose closure has not run, used by
/// nothing else meanwhile.
unsafe fn run_call<F: FnOnce() -> R, R>(data: *mut u8) {
    // SAFETY: the caller's contract.
    let call = unsafe { &mut *data.cast::<Call<F, R>>() };
    call.ran = true;
    // SAFETY: not taken before (the caller's contract); `ran` now says so.
    let f = unsafe { ManuallyDrop::take(&mut call.f) };
    let result = &mut call.result;
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| {
        result.write(f());
    })) {
        caught(&mut call.panic, payload);
    }
}

/// Keeps a caught panic for the caller to resume (out of line: the
/// catching frame then keeps only what its call needs).
#[cold]
#[inline(never)]
fn caught(slot: &mut Option<Box<dyn Any + Send>>, payload: Box<dyn Any + Send>) {
    *slot = Some(payload);
}

/// Data handed to `enter`, the first frame on the driver stack: the call
/// to make (`run(data)`) and, written by `enter`, its stack pointer.
/// `enter` is not generic, so that stack pointer lies at the same distance
/// below the top on every call ([`entry_offset`]).
struct Entry {
    run: unsafe fn(*mut u8),
    data: *mut u8,
    entry_sp: usize,
}

extern "C" fn enter(data: *mut u8) {
    // SAFETY: `data` is the `Entry` passed to pw_harness_switch_call by
    // this module; it outlives this call.
    let entry = unsafe { &mut *data.cast::<Entry>() };
    entry.entry_sp = current_sp();
    // SAFETY: `run` and `data` were made for each other by the caller.
    unsafe { (entry.run)(entry.data) }
}

/// An [`Entry`] that does nothing (the scratch call of [`entry_offset`]).
///
/// # Safety
/// None: it touches nothing.
unsafe fn run_nothing(_: *mut u8) {}

/// How far below a driver stack's top `enter` runs: measured once, by
/// entering a scratch stack with nothing to do.
fn entry_offset() -> usize {
    static OFFSET: OnceLock<usize> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        let scratch = StackMem::new(4 * PAGE);
        let mut ctx = HostContext::default();
        let mut entry = Entry { run: run_nothing, data: ptr::null_mut(), entry_sp: 0 };
        // SAFETY: the scratch stack is mapped, its top 16-byte aligned;
        // `enter` matches `Entry`; nothing on it faults.
        unsafe {
            pw_harness_switch_call(&mut ctx, scratch.hi, enter as *const () as usize, ptr::addr_of_mut!(entry).cast())
        };
        scratch.hi - entry.entry_sp
    })
}

fn current_sp() -> usize {
    let sp: usize;
    // SAFETY: reads the stack pointer; no memory access, no flags changed.
    unsafe { std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// Runs `f` (a call into the driver named `what`) on a guarded stack of
/// the configured budget (one per thread and nesting depth, kept between
/// calls). `what` is a constant: the peak table finds an entry point by its
/// name's address. Returns `Err` with the violation when the call
/// raised one, faulted, overflowed its stack, ran past the watchdog, or
/// returned at another IRQL or with a lock still held. The violation is
/// recorded in the session (with `function` = `what`).
///
/// Calls may nest (a model function may call back into the driver); a
/// violation leaves only the innermost call, whose caller should pass the
/// `Err` on with [`verifier::violation`] when it is itself model code
/// running inside an outer call.
pub fn call_driver<R, F: FnOnce() -> R>(what: &'static str, f: F) -> Result<R, Violation> {
    if verifier::is_tainted() {
        if let Some(v) = verifier::stopped() {
            return Err(v);
        }
    }
    let rt = thread_rt();
    // SAFETY: `rt` is this thread's runtime; only this thread mutates it
    // (the signal handler runs on this thread, synchronously). No reference
    // to the whole runtime is held across the call: a nested call uses the
    // next frame and stack.
    let budget = unsafe { call_budget(rt) };
    // SAFETY: as above.
    let depth = unsafe { (*rt).depth };
    assert!(depth < MAX_DEPTH, "driver calls nested more than {MAX_DEPTH} deep");
    // SAFETY: as above; only this call uses the stack of its depth.
    let stack = driver_stack(unsafe { &mut (*rt).stacks[depth] }, budget);
    // SAFETY: as above.
    let measure = unsafe { (*rt).peaks.should_measure(what) };
    if measure {
        stack.fill();
    }
    let entry_irql = irql::current();
    let entry_locks = crate::locks::held_count();
    let entry_mutexes = crate::kmutex::owned_count();
    // SAFETY: as above; the frame at `depth` is not active. Its `pending`
    // is empty (taken when its last call left with it) and `fault` is
    // written before it is read.
    let frame: *mut Frame = unsafe { &mut (*rt).frames[depth] };
    // SAFETY: as above.
    let outer = unsafe {
        #[cfg(test)]
        {
            (*frame).entry_sp = stack.top - entry_offset();
        }
        (*rt).depth = depth + 1;
        let active = Active { lo: stack.lo, hi: stack.hi, ctx: ptr::addr_of!((*frame).ctx) };
        std::mem::replace(&mut (*rt).active, active)
    };
    if depth == 0 {
        // SAFETY: as above.
        unsafe { watchdog_arm(rt) };
    }
    let mut call = Call::new(f);
    let mut entry = Entry { run: run_call::<F, R>, data: ptr::addr_of_mut!(call).cast(), entry_sp: 0 };
    // SAFETY: the stack top is 16-byte aligned and mapped; `enter` matches
    // `Entry`; `frame.ctx` stays valid until the call returns.
    let exit = unsafe {
        pw_harness_switch_call(
            ptr::addr_of_mut!((*frame).ctx),
            stack.top,
            enter as *const () as usize,
            ptr::addr_of_mut!(entry).cast(),
        )
    };
    let entry_sp = entry.entry_sp;
    // SAFETY: the call is over; this thread owns its runtime again.
    unsafe {
        if depth == 0 {
            (*rt).watch.disarm();
        }
        (*rt).depth = depth;
        (*rt).active = outer;
    }
    let over = over_budget(stack, entry_sp, budget);
    let peak = if measure || over { measure_peak(stack, entry_sp) } else { None };
    if !measure {
        // Unmeasured: anything above the budget's end may have changed.
        stack.dirty = stack.dirty.min(entry_sp.saturating_sub(budget).max(stack.lo + PAGE));
    }
    if let Some(peak) = peak {
        // SAFETY: this thread's runtime.
        unsafe { (*rt).peaks.record(what, peak) };
    }
    let outcome = if exit == EXIT_RETURNED {
        if call.panic.is_some() {
            irql::set(entry_irql);
        }
        let r = call.into_result();
        check_budget(if over { peak } else { None }, budget)
            .and_then(|()| check_return(entry_irql, entry_locks, entry_mutexes))
            .map(|()| r)
    } else {
        call.forget();
        // SAFETY: the frame is this thread's and no longer active.
        Err(unsafe { abandoned(exit, frame, stack.lo, what) })
    };
    outcome.map_err(|v| left_with(v, what, entry_irql, entry_locks))
}

/// The violation a call that did not return left with (`exit`, from
/// `frame`; its stack's guard page at `guard_lo`).
///
/// # Safety
/// `frame` is this thread's frame of that call, no longer active.
#[cold]
unsafe fn abandoned(exit: u64, frame: *mut Frame, guard_lo: usize, what: &str) -> Violation {
    match exit {
        // SAFETY: the caller's contract.
        EXIT_VIOLATION => unsafe { (*frame).pending.take() }.expect("violation exit without a violation"),
        // SAFETY: as above.
        EXIT_FAULT => classify_fault(unsafe { (*frame).fault }, guard_lo),
        _ => watchdog_violation(what),
    }
}

/// This depth's driver stack for `budget`, made (or remade, after the
/// budget changed) when needed.
#[inline]
fn driver_stack(slot: &mut Option<StackMem>, budget: usize) -> &mut StackMem {
    if !matches!(slot, Some(s) if s.budget == budget) {
        *slot = Some(StackMem::driver(budget));
    }
    slot.as_mut().expect("just made")
}

/// A call left with `v`: the thread's IRQL and lock list as at entry, `v`
/// recorded under the entry point's name.
#[cold]
fn left_with(mut v: Violation, what: &str, entry_irql: u8, entry_locks: usize) -> Violation {
    crate::locks::forget_held_since(entry_locks);
    irql::set(entry_irql);
    if v.function.is_empty() {
        v.function = what.to_owned();
    }
    verifier::record(v.clone());
    v
}

/// Like [`call_driver`], entering at `irql` and restoring the caller's IRQL
/// afterwards (the way NDIS and the I/O manager call a driver at a stated
/// IRQL).
pub fn call_driver_at<R>(what: &'static str, irql_at_entry: u8, f: impl FnOnce() -> R) -> Result<R, Violation> {
    let saved = irql::current();
    irql::set(irql_at_entry);
    let r = call_driver(what, f);
    irql::set(saved);
    r
}

/// A call that used more stack than its budget (without reaching the guard
/// page, which lies up to a page further down) would overflow a real
/// kernel stack whose other users take the rest. Harness choice: reported
/// as what the overflow would be, 0x7F/0x8 (a double fault).
fn check_budget(peak: Option<usize>, budget: usize) -> Result<(), Violation> {
    match peak {
        Some(peak) if peak > budget => Err(Violation::new(
            "stack budget exceeded",
            codes::UNEXPECTED_KERNEL_MODE_TRAP,
            [codes::TRAP_DOUBLE_FAULT, peak as u64, budget as u64, 0],
            format!("used {peak} bytes of stack, budget {budget} bytes"),
        )),
        _ => Ok(()),
    }
}

#[inline]
fn check_return(entry_irql: u8, entry_locks: usize, entry_mutexes: usize) -> Result<(), Violation> {
    crate::kmutex::check_return(entry_mutexes)?;
    let held = crate::locks::held_count();
    if held > entry_locks {
        return Err(lock_held_at_return(entry_locks, held));
    }
    let now = irql::current();
    if now != entry_irql {
        return Err(irql_changed(entry_irql, now));
    }
    Ok(())
}

#[cold]
fn lock_held_at_return(entry_locks: usize, held: usize) -> Violation {
    // A held fast mutex is on the thread's lock list too: only a call that
    // returns holding something can hold one (its own rule first).
    if let Err(v) = crate::wait::check_return(entry_locks) {
        return v;
    }
    let (addr, kind) = crate::locks::innermost_held().unwrap_or((0, "lock"));
    Violation::c4(
        "lock held when callback returns",
        codes::C4_DDI_SPIN_LOCK_RULE,
        addr as u64,
        (held - entry_locks) as u64,
        0,
        format!("{kind} {addr:#x} still held ({} acquired inside, not released)", held - entry_locks),
    )
}

#[cold]
fn irql_changed(entry_irql: u8, now: u8) -> Violation {
    Violation::new(
        "callback returned at a different IRQL",
        codes::IRQL_UNEXPECTED_VALUE,
        [u64::from(now), u64::from(entry_irql), 0, 0],
        format!("entered at {}, returned at {}", irql::name(entry_irql), irql::name(now)),
    )
}

/// Leaves the innermost driver call of this thread with `v` (see
/// [`verifier::violation`]).
pub(crate) fn leave_driver_call(v: Violation) -> ! {
    let rt = RT.with(Cell::get);
    let depth = if rt.is_null() {
        0
    } else {
        // SAFETY: `rt` is this thread's live runtime.
        unsafe { (*rt).depth }
    };
    if depth == 0 {
        verifier::record(v.clone());
        panic!("verifier violation outside a driver call: {v}");
    }
    // SAFETY: frame `depth - 1` is the active call; its context was saved by
    // pw_harness_switch_call, whose host frame is still live above us.
    unsafe {
        let frame = &mut (&mut (*rt).frames)[depth - 1];
        frame.pending = Some(v);
        pw_harness_resume(&frame.ctx, EXIT_VIOLATION)
    }
}

/// Runs `f` on the host stack when called on a driver stack (below the
/// frame that entered the driver), so model functions do not use the
/// driver's budget; elsewhere runs it directly.
#[inline]
pub fn on_host<R, F: FnOnce() -> R>(f: F) -> R {
    match host_sp_if_on_driver_stack() {
        Some(sp) => run_on_host(sp, f),
        None => f(),
    }
}

/// What `host_enter` runs: `run(data)`.
struct HostEntry {
    run: unsafe fn(*mut u8),
    data: *mut u8,
}

/// The first frame on the host stack. Not generic, like [`enter`]: one
/// symbol that profilers see entered by a call (a generic frame entered
/// right after the stack switch was charged to its caller's context).
extern "C" fn host_enter(data: *mut u8) {
    // SAFETY: `data` is the `HostEntry` that `run_on_host` passed to
    // pw_harness_on_stack; it outlives this call.
    let entry = unsafe { &*data.cast::<HostEntry>() };
    // SAFETY: `run` and `data` were made for each other by `run_on_host`.
    unsafe { (entry.run)(entry.data) }
}

fn run_on_host<R, F: FnOnce() -> R>(sp: usize, f: F) -> R {
    let mut call = Call::new(f);
    let entry = HostEntry { run: run_call::<F, R>, data: ptr::addr_of_mut!(call).cast() };
    // SAFETY: `sp` lies in the idle part of this thread's host stack;
    // `host_enter` matches `HostEntry`, whose `run` matches its `data`
    // (a `Call<F, R>` whose closure has not run).
    unsafe { pw_harness_on_stack(sp, host_enter as *const () as usize, ptr::addr_of!(entry).cast_mut().cast()) };
    call.into_result()
}

#[inline]
fn host_sp_if_on_driver_stack() -> Option<usize> {
    let rt = RT.with(Cell::get);
    if rt.is_null() {
        return None;
    }
    // SAFETY: this thread's live runtime.
    let active = unsafe { (*rt).active };
    let sp = current_sp();
    // SAFETY: `ctx` is the innermost call's host context, saved when it
    // entered its driver stack (the stack `sp` is on).
    (sp >= active.lo && sp < active.hi).then(|| (unsafe { (*active.ctx).rsp } as usize - 512) & !15)
}

/// Stops the calling driver call if the watchdog fired for it: model wait
/// loops (spin locks, rundown waits) call this while they spin or block.
pub fn check_watchdog(function: &str) {
    let rt = RT.with(Cell::get);
    if rt.is_null() {
        return;
    }
    // SAFETY: this thread's live runtime.
    let rt = unsafe { &*rt };
    let fired = rt.depth > 0 && rt.watch.fired.load(Ordering::Relaxed);
    if fired {
        let mut v = watchdog_violation(function);
        v.detail = format!("{function} still waiting when the watchdog fired: {}", v.detail);
        verifier::violation(v);
    }
}

/// One step of a model wait loop: yields the processor (a thread "at
/// DISPATCH_LEVEL" can be preempted by Linux, so spinning must yield) and
/// checks the watchdog.
pub fn spin_wait(function: &str) {
    std::thread::yield_now();
    check_watchdog(function);
    if verifier::is_tainted() && in_driver_call() {
        if let Some(v) = verifier::stopped() {
            verifier::violation(v);
        }
    }
}

/// Whether this thread is inside a driver call.
fn in_driver_call() -> bool {
    let rt = RT.with(Cell::get);
    // SAFETY: this thread's live runtime, if any.
    !rt.is_null() && unsafe { (*rt).depth } > 0
}

fn watchdog_violation(what: &str) -> Violation {
    let level = irql::current();
    let limit = verifier::config().watchdog;
    if level >= irql::DISPATCH {
        Violation::new(
            "watchdog: too long at DISPATCH_LEVEL",
            codes::DPC_WATCHDOG_VIOLATION,
            [0, limit.as_millis() as u64, 0, 0],
            format!("{what} ran longer than {limit:?} at {}", irql::name(level)),
        )
    } else {
        Violation::new(
            "watchdog: driver call hung",
            codes::MANUALLY_INITIATED_CRASH,
            [0, limit.as_millis() as u64, 0, 0],
            format!("{what} ran longer than {limit:?} at {}", irql::name(level)),
        )
    }
}

/// What a fault that left a call means; the call's guard page starts at
/// `guard_lo`.
fn classify_fault(fault: FaultInfo, guard_lo: usize) -> Violation {
    let FaultInfo { addr, rip, write } = fault;
    if addr >= guard_lo && addr < guard_lo + PAGE {
        return Violation::new(
            "kernel stack overflow",
            codes::UNEXPECTED_KERNEL_MODE_TRAP,
            [codes::TRAP_DOUBLE_FAULT, 0, 0, 0],
            format!(
                "stack budget of {} bytes exhausted: access to {addr:#x} in the guard page at rip {rip:#x}",
                verifier::config().stack_budget
            ),
        );
    }
    if let Some(v) = crate::pool::classify_fault(addr, write, rip) {
        return v;
    }
    if let Some(v) = crate::guarded::classify_fault(addr, write, rip) {
        return v;
    }
    if let Some(v) = crate::lent::classify_fault(addr, write, rip) {
        return v;
    }
    let level = irql::current();
    if level >= irql::DISPATCH {
        Violation::new(
            "invalid memory access at DISPATCH_LEVEL",
            codes::DRIVER_IRQL_NOT_LESS_OR_EQUAL,
            [addr as u64, u64::from(level), u64::from(write), rip as u64],
            format!("{} of {addr:#x} at rip {rip:#x}", if write { "write" } else { "read" }),
        )
    } else {
        Violation::new(
            "invalid memory access",
            codes::PAGE_FAULT_IN_NONPAGED_AREA,
            [addr as u64, u64::from(write), rip as u64, 0],
            format!("{} of {addr:#x} at rip {rip:#x}", if write { "write" } else { "read" }),
        )
    }
}

// ---------------------------------------------------------------------------
// Peak stack use.

static PEAKS: Mutex<Option<HashMap<&'static str, usize>>> = Mutex::new(None);

/// The few bytes between the budget's end and the guard page (the budget
/// not a multiple of 16, or an entry frame placed otherwise): whether the
/// call changed one of them. Always checked; they are always filled (a
/// change is a violation, after which the stack is refilled).
fn over_budget(stack: &StackMem, entry_sp: usize, budget: usize) -> bool {
    let guard_hi = stack.lo + PAGE;
    let Some(end) = entry_sp.checked_sub(budget) else { return false };
    // SAFETY: [guard_hi, end) lies inside the mapped read/write stack.
    let gap = unsafe { std::slice::from_raw_parts(guard_hi as *const u8, end.saturating_sub(guard_hi)) };
    gap.iter().any(|&b| b != FILL)
}

/// Measures the call's peak stack use (bytes below `entry_sp` no longer
/// holding the fill pattern, which the stack held before the call) and
/// marks the part to refill. `None` when the call never reached `enter`.
fn measure_peak(stack: &mut StackMem, entry_sp: usize) -> Option<usize> {
    let guard_hi = stack.lo + PAGE;
    if entry_sp == 0 {
        stack.dirty = guard_hi;
        return None;
    }
    const WORD: u64 = u64::from_ne_bytes([FILL; 8]);
    // SAFETY: [guard_hi, entry_sp) is mapped read/write driver stack;
    // guard_hi is page aligned.
    let words = unsafe { std::slice::from_raw_parts(guard_hi as *const u64, (entry_sp - guard_hi) / 8) };
    // Eight words at a time: one comparison per 64 bytes of untouched stack.
    let chunks = words.chunks_exact(8).take_while(|c| c.iter().fold(0, |a, &w| a | (w ^ WORD)) == 0).count();
    let untouched_words = chunks * 8 + words[chunks * 8..].iter().take_while(|&&w| w == WORD).count();
    let first = guard_hi + untouched_words * 8;
    // SAFETY: `first` and the bytes after it up to entry_sp are mapped.
    let tail = unsafe { std::slice::from_raw_parts(first as *const u8, entry_sp.saturating_sub(first).min(8)) };
    let lowest = first + tail.iter().take_while(|&&b| b == FILL).count();
    stack.dirty = first.min(stack.dirty);
    Some(entry_sp.saturating_sub(lowest))
}

/// One entry point's calls on this thread and the highest peak recorded,
/// found by its name's address and length: a `&'static str` is never
/// freed, so no other text can take its address.
#[derive(Clone, Copy, Default)]
struct PeakSlot {
    name: usize,
    len: usize,
    calls: u64,
    peak: usize,
}

/// Size of a thread's peak table: an open-addressed hash table twice the
/// [`PEAK_SLOTS`] it may hold (so a lookup ends at an empty slot).
const PEAK_TABLE: usize = 2 * PEAK_SLOTS;

/// Which calls of each entry point have their peak measured, and the
/// thread's highest peak per entry point (the shared table is written only
/// when a peak grows). Cleared with the thread's copy of the options
/// ([`refresh_config`]): every session stores its options, so a thread
/// forgets an earlier session's counts at its first call in the next.
struct PeakSlots {
    used: usize,
    table: Box<[PeakSlot; PEAK_TABLE]>,
}

impl Default for PeakSlots {
    fn default() -> Self {
        Self { used: 0, table: Box::new([PeakSlot::default(); PEAK_TABLE]) }
    }
}

impl PeakSlots {
    /// Forgets every count and peak (a new session).
    fn clear(&mut self) {
        *self.table = [PeakSlot::default(); PEAK_TABLE];
        self.used = 0;
    }

    #[inline]
    fn slot(&mut self, what: &'static str) -> Option<&mut PeakSlot> {
        let (name, len) = (what.as_ptr() as usize, what.len());
        // Fibonacci hashing: the top bits of the address times 2^64/phi.
        let mut i = name.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - PEAK_TABLE.trailing_zeros());
        loop {
            let slot = self.table[i];
            if slot.name == name && slot.len == len {
                return Some(&mut self.table[i]);
            }
            if slot.name == 0 {
                if self.used == PEAK_SLOTS {
                    return None;
                }
                self.used += 1;
                self.table[i] = PeakSlot { name, len, calls: 0, peak: 0 };
                return Some(&mut self.table[i]);
            }
            i = (i + 1) % PEAK_TABLE;
        }
    }

    /// Counts a call of `what`; whether to measure its peak.
    #[inline]
    fn should_measure(&mut self, what: &'static str) -> bool {
        let Some(slot) = self.slot(what) else { return true };
        slot.calls += 1;
        slot.calls <= PEAK_EXACT_CALLS || slot.calls % PEAK_SAMPLE_EVERY == 0
    }

    /// Records a measured peak of `what`.
    fn record(&mut self, what: &'static str, peak: usize) {
        if let Some(slot) = self.slot(what) {
            if peak <= slot.peak && slot.calls > 1 {
                return;
            }
            slot.peak = slot.peak.max(peak);
        }
        let mut peaks = PEAKS.lock().unwrap_or_else(PoisonError::into_inner);
        let e = peaks.get_or_insert_with(HashMap::new).entry(what).or_insert(0);
        *e = (*e).max(peak);
    }
}

/// Peak stack use, in bytes, of every entry point called this session (by
/// the name given to [`call_driver`]), measured from the closure's first
/// frame; sorted by name.
pub fn peak_usage() -> Vec<(String, usize)> {
    let peaks = PEAKS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut v: Vec<_> = peaks.iter().flatten().map(|(k, v)| (k.to_string(), *v)).collect();
    v.sort();
    v
}

/// Forgets the peak statistics (session reset; each thread forgets its
/// own counts when it sees the session's options, see [`PeakSlots`]).
pub(crate) fn reset() {
    *PEAKS.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

// ---------------------------------------------------------------------------
// Loaded driver images, so the watchdog signal knows driver code.

const MAX_IMAGES: usize = 16;
static IMAGES: [AtomicUsize; MAX_IMAGES * 2] = [const { AtomicUsize::new(0) }; MAX_IMAGES * 2];

/// Registers `[lo, hi)` as driver code (called by the loader).
pub(crate) fn register_image(lo: usize, hi: usize) {
    for i in 0..MAX_IMAGES {
        if IMAGES[2 * i].compare_exchange(0, lo, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            IMAGES[2 * i + 1].store(hi, Ordering::Release);
            return;
        }
    }
}

/// Forgets the image starting at `lo` (called when it is unmapped).
pub(crate) fn unregister_image(lo: usize) {
    for i in 0..MAX_IMAGES {
        if IMAGES[2 * i].load(Ordering::Acquire) == lo {
            IMAGES[2 * i + 1].store(0, Ordering::Release);
            IMAGES[2 * i].store(0, Ordering::Release);
        }
    }
}

fn in_driver_image(rip: usize) -> bool {
    (0..MAX_IMAGES).any(|i| {
        let lo = IMAGES[2 * i].load(Ordering::Acquire);
        lo != 0 && rip >= lo && rip < IMAGES[2 * i + 1].load(Ordering::Acquire)
    })
}

// ---------------------------------------------------------------------------
// Watchdog.

/// A thread's watchdog entry: which outermost driver call it is in (a
/// number per call, 0: not in a call), its limit, and whether it fired.
/// Armed and disarmed with plain atomic stores, no lock and no clock read:
/// the watchdog thread times each call from the tick it first sees it
/// (`seen`, written by that thread only), so a call is never stopped
/// early, and at most one tick late. The list is locked only when a
/// thread registers (its first call) and exits.
struct Watch {
    thread: libc::pthread_t,
    call: AtomicU64,
    /// The last call number the watchdog thread saw, and when (ms since
    /// the epoch); only that thread uses them.
    seen_call: AtomicU64,
    seen_at: AtomicU64,
    limit_ms: AtomicU64,
    fired: AtomicBool,
}

impl Watch {
    fn disarm(&self) {
        self.call.store(0, Ordering::Release);
    }
}

static WATCHES: Mutex<Vec<Arc<Watch>>> = Mutex::new(Vec::new());
static WATCHDOG_THREAD: Once = Once::new();
/// How often the watchdog thread looks.
const WATCHDOG_TICK_MS: u64 = 20;

/// Milliseconds since the first driver call, plus one (never 0).
fn watchdog_now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Arms this thread's watchdog for an outermost call: one store of the
/// call's number (the limit is stored when the options change, the fired
/// flag cleared only when set).
///
/// # Safety
/// `rt` is this thread's live runtime.
#[inline]
unsafe fn watchdog_arm(rt: *mut ThreadRt) {
    // SAFETY: the caller's contract; the fields are this thread's.
    unsafe {
        let watch = &*Arc::as_ptr(&(*rt).watch);
        if watch.fired.load(Ordering::Relaxed) {
            watch.fired.store(false, Ordering::Relaxed);
        }
        (*rt).calls = (*rt).calls.wrapping_add(1).max(1);
        watch.call.store((*rt).calls, Ordering::Release);
    }
}

/// Removes an exiting thread's entry (under the lock the watchdog signals
/// under, so it never signals a thread that is gone).
fn watchdog_forget(w: &Arc<Watch>) {
    WATCHES.lock().unwrap_or_else(PoisonError::into_inner).retain(|x| !Arc::ptr_eq(x, w));
}

fn watchdog_loop() {
    loop {
        std::thread::sleep(Duration::from_millis(WATCHDOG_TICK_MS));
        let now = watchdog_now_ms();
        let watches = WATCHES.lock().unwrap_or_else(PoisonError::into_inner);
        for w in watches.iter() {
            let call = w.call.load(Ordering::Acquire);
            if call != w.seen_call.load(Ordering::Relaxed) {
                // A new call (or none): timed from now, the first tick
                // that sees it.
                w.seen_call.store(call, Ordering::Relaxed);
                w.seen_at.store(now, Ordering::Relaxed);
                continue;
            }
            let elapsed = now.saturating_sub(w.seen_at.load(Ordering::Relaxed));
            if call != 0 && elapsed >= w.limit_ms.load(Ordering::Relaxed) {
                w.fired.store(true, Ordering::Relaxed);
                // SAFETY: the thread is registered, so it is alive: it
                // removes its entry (under this lock) before it exits.
                unsafe { libc::pthread_kill(w.thread, WATCHDOG_SIGNAL) };
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Signals.

static HANDLERS: Once = Once::new();
static OLD_ACTIONS: Mutex<Vec<(libc::c_int, libc::sigaction)>> = Mutex::new(Vec::new());
static OLD_SEGV: AtomicUsize = AtomicUsize::new(0);
static OLD_BUS: AtomicUsize = AtomicUsize::new(0);

fn install_handlers() {
    HANDLERS.call_once(|| {
        for sig in [libc::SIGSEGV, libc::SIGBUS, WATCHDOG_SIGNAL] {
            // SAFETY: a zeroed sigaction is a valid starting value.
            let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
            act.sa_sigaction = on_signal as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: `act.sa_mask` is a valid sigset_t.
            unsafe { libc::sigemptyset(&mut act.sa_mask) };
            // SAFETY: zeroed is a valid out-value.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointers to sigaction structures.
            let rc = unsafe { libc::sigaction(sig, &act, &mut old) };
            assert_eq!(rc, 0, "sigaction failed");
            let leaked = Box::leak(Box::new(old)) as *mut libc::sigaction as usize;
            match sig {
                libc::SIGSEGV => OLD_SEGV.store(leaked, Ordering::Release),
                libc::SIGBUS => OLD_BUS.store(leaked, Ordering::Release),
                _ => {}
            }
            OLD_ACTIONS.lock().unwrap_or_else(PoisonError::into_inner).push((sig, old));
        }
    });
}

/// Installs an alternate signal stack on this thread unless it has a
/// usable one; returns the mapping it made.
fn ensure_altstack() -> Option<(usize, usize)> {
    // SAFETY: zeroed stack_t is a valid out-value; sigaltstack with a null
    // new value only queries.
    let mut cur: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::sigaltstack(ptr::null(), &mut cur) };
    if cur.ss_flags & libc::SS_DISABLE == 0 && cur.ss_size >= 16 * 1024 {
        return None;
    }
    let mem = StackMem::new(ALTSTACK_SIZE + PAGE);
    let st = libc::stack_t { ss_sp: (mem.lo + PAGE) as *mut libc::c_void, ss_flags: 0, ss_size: ALTSTACK_SIZE };
    // SAFETY: the region is mapped read/write and owned by this thread.
    let rc = unsafe { libc::sigaltstack(&st, ptr::null_mut()) };
    assert_eq!(rc, 0, "sigaltstack failed");
    let (lo, size) = (mem.lo, mem.hi - mem.lo);
    std::mem::forget(mem);
    Some((lo, size))
}

fn disable_altstack_if_ours(base: usize) {
    // SAFETY: query only.
    let mut cur: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::sigaltstack(ptr::null(), &mut cur) };
    if cur.ss_sp as usize == base + PAGE {
        let off = libc::stack_t { ss_sp: ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
        // SAFETY: disabling the alternate stack has no other preconditions.
        unsafe { libc::sigaltstack(&off, ptr::null_mut()) };
    }
}

/// The signal handler. Async-signal-safe: it only reads this thread's
/// runtime through a raw pointer, writes the fault fields of the active
/// frame and rewrites the interrupted context so that, when the handler
/// returns, the thread resumes in `pw_harness_resume` (sigreturn restores
/// the signal mask, unlike a longjmp out of the handler).
extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    let rt = RT.with(Cell::get);
    let depth = if rt.is_null() {
        0
    } else {
        // SAFETY: `rt` is this thread's live runtime.
        unsafe { (*rt).depth }
    };
    let uc = uctx.cast::<libc::ucontext_t>();
    // SAFETY: the kernel passes a valid ucontext_t.
    let gregs = unsafe { &mut (*uc).uc_mcontext.gregs };
    let rip = gregs[libc::REG_RIP as usize] as usize;
    if sig == WATCHDOG_SIGNAL {
        if depth > 0 && in_driver_image(rip) {
            // SAFETY: active frame of this thread.
            let frame = unsafe { &mut (&mut (*rt).frames)[depth - 1] };
            redirect(gregs, frame, EXIT_WATCHDOG);
        }
        return;
    }
    // SAFETY: the kernel passes valid siginfo for SIGSEGV/SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    // Paged pool touched below DISPATCH_LEVEL: paged in, the access retried.
    if sig == libc::SIGSEGV && crate::pool::page_in(addr) {
        return;
    }
    if depth == 0 {
        chain(sig, info, uctx);
        return;
    }
    let write = gregs[libc::REG_ERR as usize] & 2 != 0;
    // SAFETY: active frame of this thread.
    let frame = unsafe { &mut (&mut (*rt).frames)[depth - 1] };
    frame.fault = FaultInfo { addr, rip, write };
    redirect(gregs, frame, EXIT_FAULT);
}

fn redirect(gregs: &mut [libc::greg_t; 23], frame: &Frame, code: u64) {
    gregs[libc::REG_RIP as usize] = pw_harness_resume as *const () as usize as libc::greg_t;
    gregs[libc::REG_RDI as usize] = ptr::addr_of!(frame.ctx) as libc::greg_t;
    gregs[libc::REG_RSI as usize] = code as libc::greg_t;
    gregs[libc::REG_RSP as usize] = ((frame.ctx.rsp as usize - 256) & !15) as libc::greg_t;
}

/// A fault outside any driver call: hand it to whoever handled it before
/// (Rust's own stack-overflow handler), or to the default action.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    let old = match sig {
        libc::SIGSEGV => OLD_SEGV.load(Ordering::Acquire),
        _ => OLD_BUS.load(Ordering::Acquire),
    } as *const libc::sigaction;
    if old.is_null() {
        return;
    }
    // SAFETY: leaked at install time, never freed.
    let old = unsafe { &*old };
    match old.sa_sigaction {
        libc::SIG_DFL | libc::SIG_IGN => {
            // SAFETY: restoring the previous disposition; the faulting
            // instruction re-executes and takes the default action.
            unsafe { libc::sigaction(sig, old, ptr::null_mut()) };
        }
        h if old.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: the previous handler was installed with SA_SIGINFO.
            let h: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(h) };
            h(sig, info, uctx);
        }
        h => {
            // SAFETY: the previous handler was a plain handler.
            let h: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
            h(sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verifier::{Config, Session};

    #[test]
    fn returns_value_and_measures_peak() {
        let _s = Session::begin(Config::default());
        let r = call_driver("small", || {
            // A reference through black_box keeps the array in memory on this
            // stack (a value alone may live in registers in a release build).
            let mut buf = [7u8; 1024];
            std::hint::black_box(&mut buf);
            buf.iter().map(|&b| usize::from(b)).sum::<usize>()
        });
        assert_eq!(r.unwrap(), 7 * 1024);
        let peak = peak_usage().into_iter().find(|(n, _)| n == "small").unwrap().1;
        assert!(peak >= 1024, "peak {peak}");
    }

    #[test]
    fn violation_inside_returns_err() {
        let _s = Session::begin(Config::default());
        let r: Result<(), _> =
            call_driver("bad", || verifier::violation(Violation::c4("test rule", 0x99, 0, 0, 0, "x".into())));
        let v = r.unwrap_err();
        assert_eq!((v.rule, v.params[0], v.function.as_str()), ("test rule", 0x99, "bad"));
        assert_eq!(verifier::first_violation().unwrap().rule, "test rule");
        // Nothing runs after the bug check: a later call stops at once.
        let ran = std::cell::Cell::new(false);
        let stopped = call_driver("after", || ran.set(true)).unwrap_err();
        assert_eq!((stopped.rule, ran.get()), (verifier::STOPPED, false));
        assert_eq!(verifier::violations().len(), 1, "the stop is not a new violation");
        drop(_s);
        // The thread is usable again in the next session.
        let _s = Session::begin(Config::default());
        assert_eq!(call_driver("after", || 5).unwrap(), 5);
    }

    #[test]
    fn budget_is_enforced_exactly() {
        const BUDGET: usize = 8 * 1024;
        for under in [2048, 512] {
            let _s = Session::begin(Config { stack_budget: BUDGET, ..Config::default() });
            let r = call_driver("inside", || touch_below_sp(BUDGET - under));
            assert!(r.is_ok(), "{} bytes under the budget: {r:?}", under);
        }
        // Any use past the budget is caught: by the comparison of the
        // measured peak with the budget, or by the guard page when it lies
        // right there (it is at most a page lower).
        for over in [64, 1024, 3000] {
            let _s = Session::begin(Config { stack_budget: BUDGET, ..Config::default() });
            let v = call_driver("over", || touch_below_sp(BUDGET + over)).unwrap_err();
            assert!(["stack budget exceeded", "kernel stack overflow"].contains(&v.rule), "{v}");
            assert_eq!(v.params[0], codes::TRAP_DOUBLE_FAULT, "{v}");
        }
    }

    #[test]
    fn budget_end_is_exact_to_the_byte_on_every_call() {
        // A budget that is a multiple of 16 ends at the guard page; one that
        // is not leaves a few bytes checked after the call.
        for budget in [8 * 1024, 8 * 1024 + 8] {
            let _s = Session::begin(Config { stack_budget: budget, ..Config::default() });
            // Many calls first: the peak is then only sampled, the budget
            // check must still see every call.
            for _ in 0..3 * PEAK_EXACT_CALLS * PEAK_SAMPLE_EVERY / 64 {
                call_driver("entry", || touch_at_entry_offset(budget)).expect("inside the budget");
            }
            let v = call_driver("entry", || touch_at_entry_offset(budget + 1)).unwrap_err();
            assert!(["stack budget exceeded", "kernel stack overflow"].contains(&v.rule), "{v}");
            assert_eq!(v.params[0], codes::TRAP_DOUBLE_FAULT, "{v}");
        }
    }

    #[test]
    fn nested_calls_on_fresh_stacks_stay_clean_when_unmeasured() {
        // An inner call runs on the next depth's stack (made at its first
        // call, kept after); past the measured calls it is checked
        // unmeasured, so that stack must hold the pattern from the start.
        let _s = Session::begin(Config::default());
        for _ in 0..2 * PEAK_EXACT_CALLS * PEAK_SAMPLE_EVERY / 64 + 5 {
            let inner = call_driver("outer", || on_host(|| call_driver("inner", || 7))).expect("outer clean");
            assert_eq!(inner.expect("inner clean"), 7);
        }
    }

    #[test]
    fn names_sharing_an_address_are_counted_apart() {
        let _s = Session::begin(Config::default());
        // One constant, two names: the same address, different lengths.
        const LONG: &str = "entry-ab";
        let short = &LONG[..7];
        for _ in 0..2 * PEAK_EXACT_CALLS {
            call_driver(LONG, || touch_below_sp(64)).unwrap();
        }
        // The short name's first call: measured (its own count), not taken
        // for a later call of the long one (which would be sampled out).
        call_driver(short, || touch_below_sp(32)).unwrap();
        let peaks = peak_usage();
        assert!(peaks.iter().any(|(n, p)| n == "entry-a" && *p >= 32), "{peaks:?}");
        assert!(peaks.iter().any(|(n, p)| n == "entry-ab" && *p >= 64), "{peaks:?}");
    }

    #[test]
    fn a_full_peak_table_measures_every_call() {
        let _s = Session::begin(Config::default());
        // More entry points than the table holds: the ones left out are
        // measured on every call.
        let names: Vec<&'static str> = (0..PEAK_SLOTS + 8).map(|i| &*format!("entry-{i}").leak()).collect();
        for name in &names {
            call_driver(name, || touch_below_sp(16)).unwrap();
        }
        let last = *names.last().unwrap();
        for _ in 0..2 * PEAK_EXACT_CALLS {
            call_driver(last, || touch_below_sp(16)).unwrap();
        }
        call_driver(last, || touch_below_sp(2048)).unwrap();
        let peak = peak_usage().into_iter().find(|(n, _)| n == last).unwrap().1;
        assert!(peak >= 2048, "peak {peak}");
    }

    /// Writes the byte `n` bytes below the entry frame's stack pointer (the
    /// point the budget is measured from): `n` = budget is its last byte.
    #[inline(never)]
    fn touch_at_entry_offset(n: usize) {
        let rt = RT.with(Cell::get);
        // SAFETY: this thread's live runtime, inside a driver call.
        let at = unsafe { (&(*rt).frames)[(*rt).depth - 1].entry_sp } - n;
        assert!(at < current_sp() - 64, "the target lies below this frame");
        // SAFETY: inside this call's driver stack or its guard page (which
        // the harness catches); nothing lives below the stack pointer.
        unsafe { std::ptr::write_volatile(at as *mut u8, !FILL) };
    }

    /// Writes one byte `n` bytes below the stack pointer, as a callee's
    /// locals that deep would.
    #[inline(never)]
    fn touch_below_sp(n: usize) {
        let at = current_sp() - n;
        // SAFETY: inside this call's driver stack (the budget plus a page
        // is mapped below the entry frame, or the guard page faults, which
        // the harness catches); nothing lives below the stack pointer, and
        // signals run on the alternate stack.
        unsafe { std::ptr::write_volatile(at as *mut u8, !FILL) };
    }

    #[test]
    fn overflow_hits_guard_page() {
        let _s = Session::begin(Config { stack_budget: 8 * 1024, ..Config::default() });
        let r = call_driver("deep", || recurse(100_000));
        let v = r.unwrap_err();
        assert_eq!(v.bugcheck, codes::UNEXPECTED_KERNEL_MODE_TRAP);
        assert_eq!(v.params[0], codes::TRAP_DOUBLE_FAULT);
    }

    #[inline(never)]
    fn recurse(n: u64) -> u64 {
        let pad = std::hint::black_box([n; 16]);
        if n == 0 {
            0
        } else {
            pad[3] + recurse(n - 1)
        }
    }

    #[test]
    fn wild_pointer_is_a_page_fault() {
        let _s = Session::begin(Config::default());
        // SAFETY: deliberately faults; the harness catches it.
        let r = call_driver("wild", || unsafe { ptr::read_volatile(16 as *const u64) });
        let v = r.unwrap_err();
        assert_eq!(v.bugcheck, codes::PAGE_FAULT_IN_NONPAGED_AREA);
        assert_eq!(v.params[0], 16);
    }

    #[test]
    fn irql_change_is_caught() {
        let _s = Session::begin(Config::default());
        let r = call_driver_at("raises", irql::PASSIVE, || irql::set(irql::DISPATCH));
        assert_eq!(r.unwrap_err().bugcheck, codes::IRQL_UNEXPECTED_VALUE);
        assert_eq!(irql::current(), irql::PASSIVE);
    }

    #[test]
    fn on_host_runs_off_the_driver_stack() {
        let _s = Session::begin(Config::default());
        let host = current_sp();
        let (inner, outer, lo, hi) = call_driver("host", || {
            // SAFETY: this thread's live runtime, read during its call.
            let active = unsafe { (*RT.with(Cell::get)).active };
            (on_host(current_sp), current_sp(), active.lo, active.hi)
        })
        .unwrap();
        // Checked against the driver stack's range, not a distance: the two
        // stacks' mappings may lie next to each other.
        assert!((lo..hi).contains(&outer), "outer {outer:#x} off the driver stack {lo:#x}..{hi:#x}");
        assert!(!(lo..hi).contains(&inner), "inner {inner:#x} on the driver stack {lo:#x}..{hi:#x}");
        assert!(inner < host && host - inner < 64 * 1024, "inner {inner:#x} not just below the host's {host:#x}");
    }

    #[test]
    fn watchdog_stops_a_spinning_wait() {
        let _s = Session::begin(Config { watchdog: Duration::from_millis(100), ..Config::default() });
        let r: Result<(), _> = call_driver_at("spins", irql::DISPATCH, || loop {
            on_host(|| spin_wait("test wait"));
        });
        assert_eq!(r.unwrap_err().bugcheck, codes::DPC_WATCHDOG_VIOLATION);
    }

    #[test]
    fn a_fired_watchdog_is_forgotten_by_the_next_call() {
        {
            let _s = Session::begin(Config { watchdog: Duration::from_millis(50), ..Config::default() });
            let r: Result<(), _> = call_driver_at("spins", irql::DISPATCH, || loop {
                on_host(|| spin_wait("test wait"));
            });
            assert_eq!(r.unwrap_err().bugcheck, codes::DPC_WATCHDOG_VIOLATION);
        }
        // The next session's call waits briefly: the earlier call's
        // verdict must not stop it.
        let _s = Session::begin(Config::default());
        call_driver_at("waits", irql::DISPATCH, || on_host(|| spin_wait("test wait"))).expect("not stopped");
    }

    #[test]
    fn a_panic_in_model_code_reaches_the_caller_with_the_irql_restored() {
        let _s = Session::begin(Config::default());
        let caught = panic::catch_unwind(|| {
            call_driver("panics", || {
                irql::set(irql::DISPATCH);
                on_host(|| -> u32 { panic!("model bug") })
            })
        });
        assert_eq!(caught.unwrap_err().downcast_ref::<&str>(), Some(&"model bug"));
        assert_eq!(irql::current(), irql::PASSIVE);
        // The thread's runtime is back at depth 0: a later call runs.
        assert_eq!(call_driver("after", || on_host(|| 3)).unwrap(), 3);
    }

    #[test]
    fn nested_calls_unwind_to_the_innermost() {
        let _s = Session::begin(Config::default());
        let outer = call_driver("outer", || {
            let inner: Result<(), _> = on_host(|| {
                call_driver("inner", || verifier::violation(Violation::c4("nested", 1, 0, 0, 0, String::new())))
            });
            inner.unwrap_err().function
        });
        assert_eq!(outer.unwrap(), "inner");
    }
}
