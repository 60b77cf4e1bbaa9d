//! Sends and receives overlapping FilterPause and FilterRestart: the model
//! lets NBLs the filter forwarded complete after FilterPause began (the
//! miniport completes them later, concurrently with the pause), and sends
//! and receives keep arriving while the module is Pausing and Paused.
//!
//! A small in-process filter (Rust `extern "win64"` functions reaching the
//! model through the import registry) does it the strict way — it counts
//! what it forwarded and completes its pause when the last NBL is back —
//! and, one bug per test, does it wrong: each must be reported by its rule
//! (the early-completion rules under `Config::pause_waits_for_forwarded`;
//! the documented rule alone lets a pass-through filter complete at once).

mod common;

use common::driver::{call, filter_characteristics, h, register_filter, set_attributes, set_unload};
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use core::ffi::c_void;
use core::ptr::null_mut;
use ndis_sys::{
    DRIVER_OBJECT, NDIS_HANDLE, NDIS_RECEIVE_FLAGS_RESOURCES, NDIS_STATUS, NDIS_STATUS_PAUSED, NDIS_STATUS_PENDING,
    NDIS_STATUS_SUCCESS, NET_BUFFER_LIST, NTSTATUS, UNICODE_STRING,
};
use portwatch_harness::frames::{FrameSpec, IPPROTO_UDP};
use portwatch_harness::nbl::NblSpec;
use portwatch_harness::ndis::{subcodes, AdapterId, AdapterSpec, At, Completion};
use portwatch_harness::session::{Options, Session};
use portwatch_harness::verifier::{codes, Config, Violation};

/// What the filter does wrong in this test.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
enum Bug {
    /// Nothing: waits for its NBLs, then forwards nothing until restarted.
    None,
    /// FilterPause returns NDIS_STATUS_SUCCESS at once, NBLs outstanding.
    CompleteEarly,
    /// FilterPause calls NdisFPauseComplete at once and returns PENDING.
    PauseCompleteEarly,
    /// Sends are passed down whatever the state.
    ForwardSendAfterPause,
    /// Receives are indicated up whatever the state.
    IndicateAfterPause,
}

static BUG: AtomicU32 = AtomicU32::new(0);
static FILTER: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
/// Tests share the driver's globals: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn bug() -> Bug {
    match BUG.load(Ordering::Relaxed) {
        1 => Bug::CompleteEarly,
        2 => Bug::PauseCompleteEarly,
        3 => Bug::ForwardSendAfterPause,
        4 => Bug::IndicateAfterPause,
        _ => Bug::None,
    }
}

unsafe extern "win64" fn driver_entry(driver: *mut DRIVER_OBJECT, _reg: *mut UNICODE_STRING) -> NTSTATUS {
    set_unload(driver, unload as *const () as usize);
    let mut c = filter_characteristics("{00000000-0000-0000-0000-000000000002}", "Pauser");
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
    FILTER.store(handle, Ordering::Relaxed);
    st
}

unsafe extern "win64" fn unload(_driver: *mut DRIVER_OBJECT) {
    call!("NdisFDeregisterFilterDriver" as fn(NDIS_HANDLE), FILTER.load(Ordering::Relaxed));
}

/// Module context, leaked on purpose (the model's pool is not involved).
struct Module {
    handle: NDIS_HANDLE,
    /// 1 while Running.
    running: AtomicU32,
    /// NBLs passed on and not back, plus one while Running.
    in_flight: AtomicUsize,
    /// A pause waits for `in_flight` to reach zero.
    pause_pending: AtomicU32,
}

fn module<'a>(ctx: NDIS_HANDLE) -> &'a Module {
    // SAFETY: the context set in attach.
    unsafe { &*ctx.cast::<Module>() }
}

impl Module {
    /// Counts `n` NBLs as passed on if running (false: complete them).
    fn enter(&self, n: usize) -> bool {
        self.in_flight.fetch_add(n, Ordering::SeqCst);
        if self.running.load(Ordering::SeqCst) == 1 {
            return true;
        }
        self.leave(n);
        false
    }

    fn release(&self, n: usize) -> bool {
        self.in_flight.fetch_sub(n, Ordering::SeqCst) == n && self.pause_pending.swap(0, Ordering::SeqCst) == 1
    }

    /// `n` NBLs came back: the last one completes a pending pause.
    fn leave(&self, n: usize) {
        if self.release(n) {
            call!("NdisFPauseComplete" as fn(NDIS_HANDLE), self.handle);
        }
    }
}

fn chain_len(mut nbl: *mut NET_BUFFER_LIST) -> usize {
    let mut n = 0;
    while !nbl.is_null() {
        n += 1;
        // SAFETY: a chain NDIS handed us.
        nbl = unsafe { (*nbl).Next };
    }
    n
}

unsafe extern "win64" fn attach(handle: NDIS_HANDLE, _d: NDIS_HANDLE, _p: *mut c_void) -> NDIS_STATUS {
    let m = Box::into_raw(Box::new(Module {
        handle,
        running: AtomicU32::new(0),
        in_flight: AtomicUsize::new(0),
        pause_pending: AtomicU32::new(0),
    }));
    set_attributes(handle, m.cast())
}
unsafe extern "win64" fn detach(_ctx: NDIS_HANDLE) {}
unsafe extern "win64" fn restart(ctx: NDIS_HANDLE, _p: *mut c_void) -> NDIS_STATUS {
    let m = module(ctx);
    m.in_flight.fetch_add(1, Ordering::SeqCst);
    m.running.store(1, Ordering::SeqCst);
    NDIS_STATUS_SUCCESS
}
unsafe extern "win64" fn pause(ctx: NDIS_HANDLE, _p: *mut c_void) -> NDIS_STATUS {
    let m = module(ctx);
    m.running.store(0, Ordering::SeqCst);
    match bug() {
        Bug::CompleteEarly => {
            m.in_flight.fetch_sub(1, Ordering::SeqCst);
            NDIS_STATUS_SUCCESS
        }
        Bug::PauseCompleteEarly => {
            m.in_flight.fetch_sub(1, Ordering::SeqCst);
            call!("NdisFPauseComplete" as fn(NDIS_HANDLE), m.handle);
            NDIS_STATUS_PENDING
        }
        _ => {
            m.pause_pending.store(1, Ordering::SeqCst);
            if m.release(1) {
                NDIS_STATUS_SUCCESS
            } else {
                NDIS_STATUS_PENDING
            }
        }
    }
}
unsafe extern "win64" fn send(ctx: NDIS_HANDLE, nbls: *mut NET_BUFFER_LIST, port: u32, flags: u32) {
    let m = module(ctx);
    let n = chain_len(nbls);
    let forward = if bug() == Bug::ForwardSendAfterPause {
        m.in_flight.fetch_add(n, Ordering::SeqCst);
        true
    } else {
        m.enter(n)
    };
    if forward {
        call!(
            "NdisFSendNetBufferLists" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32, u32),
            m.handle,
            nbls,
            port,
            flags
        );
        return;
    }
    let mut nbl = nbls;
    while !nbl.is_null() {
        // SAFETY: the chain NDIS gave us.
        unsafe {
            (*nbl).Status = NDIS_STATUS_PAUSED;
            nbl = (*nbl).Next;
        }
    }
    call!("NdisFSendNetBufferListsComplete" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32), m.handle, nbls, flags & 1);
}
unsafe extern "win64" fn send_complete(ctx: NDIS_HANDLE, nbls: *mut NET_BUFFER_LIST, flags: u32) {
    let m = module(ctx);
    let n = chain_len(nbls);
    call!("NdisFSendNetBufferListsComplete" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32), m.handle, nbls, flags);
    m.leave(n);
}
unsafe extern "win64" fn receive(ctx: NDIS_HANDLE, nbls: *mut NET_BUFFER_LIST, port: u32, count: u32, flags: u32) {
    let m = module(ctx);
    let n = chain_len(nbls);
    let forward = if bug() == Bug::IndicateAfterPause {
        m.in_flight.fetch_add(n, Ordering::SeqCst);
        true
    } else {
        m.enter(n)
    };
    let resources = flags & NDIS_RECEIVE_FLAGS_RESOURCES != 0;
    if forward {
        call!(
            "NdisFIndicateReceiveNetBufferLists" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32, u32, u32),
            m.handle,
            nbls,
            port,
            count,
            flags
        );
        if resources {
            m.leave(n);
        }
    } else if !resources {
        call!("NdisFReturnNetBufferLists" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32), m.handle, nbls, flags & 1);
    }
}
unsafe extern "win64" fn return_nbls(ctx: NDIS_HANDLE, nbls: *mut NET_BUFFER_LIST, flags: u32) {
    let m = module(ctx);
    let n = chain_len(nbls);
    call!("NdisFReturnNetBufferLists" as fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32), m.handle, nbls, flags);
    m.leave(n);
}
unsafe extern "win64" fn status(ctx: NDIS_HANDLE, ind: *mut c_void) {
    call!("NdisFIndicateStatus" as fn(NDIS_HANDLE, *mut c_void), module(ctx).handle, ind);
}

/// The miniport completes sends and the protocol returns receives 150 to
/// 300 ms after they reach it: long enough for a pause to begin meanwhile.
const SLOW: Completion = Completion::Delayed(Duration::from_millis(300));

fn running(b: Bug, completion: Completion) -> (Session, AdapterId) {
    running_with(b, completion, Config::default())
}

/// The strict pause rule: a pause also waits for what the filter forwarded.
fn strict() -> Config {
    Config { pause_waits_for_forwarded: true, ..Config::default() }
}

fn running_with(b: Bug, completion: Completion, verifier: Config) -> (Session, AdapterId) {
    BUG.store(b as u32, Ordering::Relaxed);
    let options = Options { completion, require_device: false, verifier, ..Options::default() };
    // SAFETY: driver_entry and every handler it registers are win64 functions.
    let s = unsafe { Session::load_in_process(driver_entry as *const () as usize, options) }
        .unwrap_or_else(|e| panic!("{e}"));
    let a = s.add_adapter(AdapterSpec::named("eth0"));
    s.start(a).unwrap();
    (s, a)
}

fn frame() -> Vec<NblSpec> {
    vec![NblSpec::of(vec![FrameSpec::ipv4(IPPROTO_UDP, 1, 2).build()])]
}

/// Pauses `a` 40 ms after a send and a receive began on other threads (so
/// both are outstanding beyond the filter when FilterPause runs); returns
/// the pause's result, how long it took, and the traffic's results.
fn pause_with_traffic_out(s: &Session, a: AdapterId) -> (Result<(), Violation>, Duration, bool) {
    std::thread::scope(|scope| {
        let tx = scope.spawn(|| s.send(a, frame(), At::Dispatch));
        let rx = scope.spawn(|| s.receive(a, frame(), At::Dispatch, false));
        std::thread::sleep(Duration::from_millis(40));
        let t0 = Instant::now();
        let paused = s.pause(a);
        let took = t0.elapsed();
        let tx = tx.join().expect("send thread");
        let rx = rx.join().expect("receive thread");
        let delivered = matches!((&tx, &rx), (Ok(t), Ok(r)) if t[0].delivered && r[0].delivered);
        (paused, took, delivered)
    })
}

fn assert_caught(v: &Violation, rule: &str, sub: u64) {
    assert_eq!(v.rule, rule, "{v}");
    assert_eq!(v.bugcheck, codes::DRIVER_VERIFIER_DETECTED_VIOLATION, "{v}");
    assert_eq!(v.params[0], sub, "{v}");
}

#[test]
fn a_filter_that_waits_for_its_nbls_is_clean_and_paused_traffic_bounces() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (s, a) = running_with(Bug::None, SLOW, strict());
    let (paused, took, delivered) = pause_with_traffic_out(&s, a);
    paused.unwrap();
    assert!(delivered, "the NBLs forwarded before the pause went through");
    assert!(took >= Duration::from_millis(50), "the pause waited for the NBLs outstanding: {took:?}");
    // Paused: a new send is completed with NDIS_STATUS_PAUSED, a receive is
    // returned, nothing reaches the far end.
    let sent = s.send(a, frame(), At::Passive).unwrap();
    assert_eq!((sent[0].delivered, sent[0].status), (false, NDIS_STATUS_PAUSED));
    assert!(!s.receive(a, frame(), At::Dispatch, false).unwrap()[0].delivered);
    assert!(!s.receive(a, frame(), At::Dispatch, true).unwrap()[0].delivered);
    // Restart resumes.
    assert_eq!(s.restart(a).unwrap(), NDIS_STATUS_SUCCESS);
    assert!(s.send(a, frame(), At::Dispatch).unwrap()[0].delivered);
    assert!(s.receive(a, frame(), At::Dispatch, true).unwrap()[0].delivered);
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!(report.ndis.pauses_pended, 1, "{report}");
    assert_eq!(report.ndis.sends_completed_paused, 1, "{report}");
}

#[test]
fn pause_returning_success_with_nbls_outstanding_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (s, a) = running_with(Bug::CompleteEarly, SLOW, strict());
    let (paused, _, _) = pause_with_traffic_out(&s, a);
    let v = paused.unwrap_err();
    assert_caught(&v, "pause completed with NBLs outstanding", subcodes::PAUSE_WITH_NBLS);
    assert!(v.detail.contains("FilterPause returned NDIS_STATUS_SUCCESS"), "{v}");
}

/// With `pause_waits_for_forwarded` off (the default) only the documented
/// rule holds: a pass-through filter whose pause completes at once, with
/// NBLs it forwarded still out, is clean (as on Windows, where the drivers
/// above pause first); forwarding after the pause is still caught.
#[test]
fn the_documented_pause_rule_lets_a_pass_through_filter_complete_at_once() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let documented = Config { pause_waits_for_forwarded: false, ..Config::default() };
    let (s, a) = running_with(Bug::CompleteEarly, SLOW, documented);
    let (paused, _, _) = pause_with_traffic_out(&s, a);
    paused.unwrap();
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");

    let documented = Config { pause_waits_for_forwarded: false, ..Config::default() };
    let (s, a) = running_with(Bug::ForwardSendAfterPause, Completion::Inline, documented);
    s.pause(a).unwrap();
    let v = s.send(a, frame(), At::Dispatch).unwrap_err();
    assert_eq!(v.rule, "NBL forwarded after the filter's pause completed", "{v}");
}

#[test]
fn pause_completed_by_ndisfpausecomplete_with_nbls_outstanding_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (s, a) = running_with(Bug::PauseCompleteEarly, SLOW, strict());
    let (paused, _, _) = pause_with_traffic_out(&s, a);
    let v = paused.unwrap_err();
    assert_caught(&v, "pause completed with NBLs outstanding", subcodes::PAUSE_WITH_NBLS);
    assert!(v.detail.contains("NdisFPauseComplete"), "{v}");
}

#[test]
fn send_forwarded_after_pause_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (s, a) = running(Bug::ForwardSendAfterPause, Completion::Inline);
    s.pause(a).unwrap();
    let v = s.send(a, frame(), At::Dispatch).unwrap_err();
    assert_caught(&v, "NBL forwarded after the filter's pause completed", subcodes::FORWARDED_AFTER_PAUSE);
    assert!(v.detail.contains("NdisFSendNetBufferLists"), "{v}");
}

#[test]
fn receive_indicated_after_pause_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (s, a) = running(Bug::IndicateAfterPause, Completion::Inline);
    s.pause(a).unwrap();
    let v = s.receive(a, frame(), At::Dispatch, false).unwrap_err();
    assert_caught(&v, "NBL forwarded after the filter's pause completed", subcodes::FORWARDED_AFTER_PAUSE);
    assert!(v.detail.contains("NdisFIndicateReceiveNetBufferLists"), "{v}");
}

/// Many iterations of pause and restart from one thread while three
/// threads send and receive with slow completions: every pause that began
/// with NBLs outstanding waited for them, and the filter stayed clean.
#[test]
fn overlapping_pause_restart_and_traffic_stays_clean() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (s, a) = running_with(Bug::None, Completion::Delayed(Duration::from_micros(400)), strict());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let started = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..3 {
            let (s, stop, started) = (&s, &stop, &started);
            scope.spawn(move || {
                let mut first = true;
                while !stop.load(Ordering::Relaxed) {
                    for o in s.send(a, frame(), At::Dispatch).unwrap() {
                        assert!(o.delivered || o.status == NDIS_STATUS_PAUSED, "{o:?}");
                    }
                    s.receive(a, frame(), At::Dispatch, t == 2).unwrap();
                    if std::mem::take(&mut first) {
                        started.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        // The cycles start once every thread has traffic going: 3,000
        // cycles can end before a new thread's first packet (bounded wait).
        let t0 = Instant::now();
        while started.load(Ordering::Relaxed) < 3 && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // At least 150 cycles, and on until some pause met NBLs outstanding
        // and waited for them (a loaded machine may need more), bounded in time: a cycle can
        // take microseconds, so a count alone may end before one overlaps.
        let t0 = Instant::now();
        for i in 0.. {
            s.pause(a).unwrap();
            s.restart(a).unwrap();
            let met = || {
                let ndis = s.report().ndis;
                ndis.pauses_with_nbls_out > 0 && ndis.pauses_pended > 0
            };
            if i >= 150 && i % 50 == 0 && (t0.elapsed() > Duration::from_secs(30) || met()) {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.ndis.pauses_with_nbls_out > 0, "no pause overlapped traffic: {report}");
    assert!(report.ndis.pauses_pended > 0, "the filter never waited: {report}");
}
