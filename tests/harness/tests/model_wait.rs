//! Negative and positive tests of the fast-mutex and semaphore model
//! (`src/wait.rs`): a small in-process driver reaches the model functions
//! through the import registry, as the loader binds them, and commits one
//! violation per test; each is reported with its rule and bug check.

mod common;

use common::driver::{call, leak, violation_of};
use core::ffi::c_void;
use std::time::{Duration, Instant};

use ndis_sys::{FAST_MUTEX, KEVENT, KSEMAPHORE, STATUS_SEMAPHORE_LIMIT_EXCEEDED, STATUS_TIMEOUT};
use portwatch_harness::irql::{self, APC, DISPATCH, PASSIVE};
use portwatch_harness::stack::{call_driver, call_driver_at};
use portwatch_harness::verifier::{codes, Config, Session};
use portwatch_harness::wait::{self, C4_IRQL_EX_APC_LTE1, IRQL_GT_ZERO_AT_SYSTEM_SERVICE, KMODE_EXCEPTION_NOT_HANDLED};

/// `ExInitializeFastMutex` as wdm.h inlines it.
fn init_mutex(m: *mut FAST_MUTEX) {
    // SAFETY: `m` is a live FAST_MUTEX of the test.
    unsafe {
        (*m).Count = ndis_sys::FM_LOCK_BIT;
        (*m).Owner = core::ptr::null_mut();
        (*m).Contention = 0;
    }
    // SAFETY: as above; the event is inside the mutex.
    let event = unsafe { &raw mut (*m).Event };
    call!("KeInitializeEvent" as fn(*mut KEVENT, i32, u8), event, ndis_sys::SynchronizationEvent, 0);
}

fn acquire(m: *mut FAST_MUTEX) {
    call!("ExAcquireFastMutex" as fn(*mut FAST_MUTEX), m);
}

fn release(m: *mut FAST_MUTEX) {
    call!("ExReleaseFastMutex" as fn(*mut FAST_MUTEX), m);
}

fn init_semaphore(s: *mut KSEMAPHORE, count: i32, limit: i32) {
    call!("KeInitializeSemaphore" as fn(*mut KSEMAPHORE, i32, i32), s, count, limit);
}

/// `KeWaitForSingleObject` with a relative timeout (`None`: infinite).
fn wait(s: *mut KSEMAPHORE, timeout_100ns: Option<i64>) -> i32 {
    let mut t = timeout_100ns.map(|t| -t);
    let p = t.as_mut().map_or(core::ptr::null_mut(), |t| t as *mut i64);
    call!("KeWaitForSingleObject" as fn(*mut c_void, i32, i8, u8, *mut i64) -> i32, s.cast(), 0, 0, 0, p)
}

fn release_semaphore(s: *mut KSEMAPHORE, adjustment: i32) -> i32 {
    call!("KeReleaseSemaphore" as fn(*mut KSEMAPHORE, i32, i32, u8) -> i32, s, 1, adjustment, 0)
}

#[test]
fn a_correct_fast_mutex_and_semaphore_pass() {
    let _s = Session::begin(Config::default());
    let (m, s) = (leak::<FAST_MUTEX>(), leak::<KSEMAPHORE>());
    call_driver_at("ioctl", PASSIVE, || {
        init_mutex(m);
        init_semaphore(s, 1, 1);
        acquire(m);
        assert_eq!(irql::current(), APC);
        assert_eq!(wait(s, Some(10_000)), 0);
        assert_eq!(wait(s, Some(10_000)), STATUS_TIMEOUT);
        assert_eq!(release_semaphore(s, 1), 0);
        release(m);
        assert_eq!(irql::current(), PASSIVE);
    })
    .unwrap();
    // A zero timeout is the one wait DISPATCH_LEVEL allows.
    call_driver_at("dpc", DISPATCH, || {
        assert_eq!(wait(s, Some(0)), 0);
        release_semaphore(s, 1);
    })
    .unwrap();
    assert_eq!(wait::semaphore_count(s as usize), Some(1));
}

#[test]
fn the_timeout_is_waited() {
    let _s = Session::begin(Config::default());
    let s = leak::<KSEMAPHORE>();
    call_driver_at("ioctl", PASSIVE, || {
        init_semaphore(s, 0, 1);
        let start = Instant::now();
        assert_eq!(wait(s, Some(200_000)), STATUS_TIMEOUT); // 20 ms
        assert!(start.elapsed() >= Duration::from_millis(20));
    })
    .unwrap();
}

#[test]
fn fast_mutex_acquired_above_apc_level() {
    let _s = Session::begin(Config::default());
    let m = leak::<FAST_MUTEX>();
    let v = violation_of(call_driver_at("dpc", DISPATCH, || {
        init_mutex(m);
        acquire(m);
    }));
    assert_eq!((v.rule, v.bugcheck, v.params[0]), ("fast mutex acquired above APC_LEVEL", 0xC4, C4_IRQL_EX_APC_LTE1));
}

#[test]
fn recursive_fast_mutex_acquire() {
    let _s = Session::begin(Config::default());
    let m = leak::<FAST_MUTEX>();
    let v = violation_of(call_driver_at("ioctl", PASSIVE, || {
        init_mutex(m);
        acquire(m);
        acquire(m);
    }));
    assert_eq!((v.rule, v.params[0]), ("recursive fast mutex acquire", codes::C4_SELF_DEADLOCK));
}

#[test]
fn fast_mutex_released_by_another_thread() {
    let _s = Session::begin(Config::default());
    let m = leak::<FAST_MUTEX>() as usize;
    call_driver_at("init", PASSIVE, || init_mutex(m as *mut _)).unwrap();
    // The owner acquires inside a call that then waits for the other thread.
    let v = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        scope.spawn(move || {
            let _ = call_driver_at("owner", PASSIVE, || {
                acquire(m as *mut _);
                tx.send(()).unwrap();
                let _ = done_rx.recv();
            });
        });
        rx.recv().unwrap();
        let v = call_driver_at("other", APC, || release(m as *mut _));
        done_tx.send(()).unwrap();
        v
    });
    let v = violation_of(v);
    assert_eq!(
        (v.rule, v.params[0]),
        ("fast mutex released by a thread that does not own it", codes::C4_UNEXPECTED_THREAD)
    );
}

#[test]
fn fast_mutex_released_but_not_held() {
    let _s = Session::begin(Config::default());
    let m = leak::<FAST_MUTEX>();
    let v = violation_of(call_driver_at("ioctl", APC, || {
        init_mutex(m);
        release(m);
    }));
    assert_eq!((v.rule, v.params[0]), ("fast mutex released but not held", codes::C4_UNACQUIRED_RESOURCE));
}

#[test]
fn fast_mutex_used_before_initialisation() {
    let _s = Session::begin(Config::default());
    let m = leak::<FAST_MUTEX>();
    let v = violation_of(call_driver_at("ioctl", PASSIVE, || acquire(m)));
    assert_eq!((v.rule, v.params[0]), ("lock used before its initialisation", codes::C4_UNINITIALIZED_RESOURCE));
}

#[test]
fn driver_call_returns_holding_a_fast_mutex() {
    let _s = Session::begin(Config::default());
    let m = leak::<FAST_MUTEX>();
    let v = violation_of(call_driver("IRP_MJ_DEVICE_CONTROL", || {
        init_mutex(m);
        acquire(m);
    }));
    assert_eq!((v.rule, v.bugcheck), ("driver call returned holding a fast mutex", IRQL_GT_ZERO_AT_SYSTEM_SERVICE));
    assert_eq!(v.params[1], u64::from(APC));
}

#[test]
fn wait_at_dispatch_with_a_timeout() {
    let _s = Session::begin(Config::default());
    let s = leak::<KSEMAPHORE>();
    let v = violation_of(call_driver_at("dpc", DISPATCH, || {
        init_semaphore(s, 1, 1);
        wait(s, Some(10_000));
    }));
    assert_eq!(
        (v.rule, v.params[0]),
        ("wait at DISPATCH_LEVEL with a non-zero timeout", codes::C4_KERNEL_API_WRONG_IRQL)
    );
}

#[test]
fn infinite_wait_at_dispatch() {
    let _s = Session::begin(Config::default());
    let s = leak::<KSEMAPHORE>();
    let v = violation_of(call_driver_at("dpc", DISPATCH, || {
        init_semaphore(s, 1, 1);
        wait(s, None);
    }));
    assert_eq!(v.rule, "wait at DISPATCH_LEVEL with a non-zero timeout");
}

#[test]
fn semaphore_released_past_its_limit() {
    let _s = Session::begin(Config::default());
    let s = leak::<KSEMAPHORE>();
    let v = violation_of(call_driver_at("ioctl", PASSIVE, || {
        init_semaphore(s, 2, 2);
        assert_eq!(wait(s, Some(0)), 0);
        release_semaphore(s, 2);
    }));
    assert_eq!((v.rule, v.bugcheck), ("semaphore released past its limit", KMODE_EXCEPTION_NOT_HANDLED));
    assert_eq!(v.params[0], STATUS_SEMAPHORE_LIMIT_EXCEEDED as u32 as u64);
}

#[test]
fn semaphore_used_before_initialisation() {
    let _s = Session::begin(Config::default());
    let s = leak::<KSEMAPHORE>();
    let v = violation_of(call_driver_at("ioctl", PASSIVE, || {
        wait(s, Some(0));
    }));
    assert_eq!(v.rule, "lock used before its initialisation");
}

#[test]
fn fast_mutex_and_spin_lock_orders_are_checked_together() {
    // A fast mutex is on the thread's lock list: a spin lock inside it is
    // fine, and the model's deadlock detection sees the mutex.
    let _s = Session::begin(Config::default());
    let m = leak::<FAST_MUTEX>();
    let spin = leak::<ndis_sys::NDIS_SPIN_LOCK>();
    type SpinFn = unsafe extern "win64" fn(*mut ndis_sys::NDIS_SPIN_LOCK);
    let ndis = |name: &str| -> SpinFn {
        let addr =
            portwatch_harness::imports::registry().iter().find(|i| i.dll == "ndis.sys" && i.name == name).unwrap().addr;
        // SAFETY: the model function's signature: one NDIS_SPIN_LOCK pointer.
        unsafe { core::mem::transmute::<usize, SpinFn>(addr) }
    };
    let (alloc, acq, rel) = (ndis("NdisAllocateSpinLock"), ndis("NdisAcquireSpinLock"), ndis("NdisReleaseSpinLock"));
    call_driver_at("ioctl", PASSIVE, || {
        init_mutex(m);
        // SAFETY: a live NDIS_SPIN_LOCK of the test.
        unsafe {
            alloc(spin);
            acquire(m);
            acq(spin);
            assert_eq!(irql::current(), DISPATCH);
            rel(spin);
            assert_eq!(irql::current(), APC);
            release(m);
        }
    })
    .unwrap();
}
