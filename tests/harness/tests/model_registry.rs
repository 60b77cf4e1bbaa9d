//! Negative and positive tests of the mutex-object model (`src/kmutex.rs`)
//! and the registry model (`src/registry.rs`): a small in-process driver
//! reaches the model functions through the import registry, as the loader
//! binds them, and commits one violation per test.

mod common;

use common::driver::{call, leak, violation_of};
use core::ffi::c_void;
use core::ptr::{null, null_mut};

use ndis_sys::{
    HANDLE, KEY_QUERY_VALUE, KEY_SET_VALUE, KMUTEX, OBJECT_ATTRIBUTES, OBJ_CASE_INSENSITIVE, OBJ_KERNEL_HANDLE,
    REG_CREATED_NEW_KEY, REG_OPENED_EXISTING_KEY, REG_SZ, STATUS_MUTANT_NOT_OWNED, UNICODE_STRING,
};
use portwatch_harness::irql::{self, APC, DISPATCH, PASSIVE};
use portwatch_harness::kmutex::APC_INDEX_MISMATCH;
use portwatch_harness::registry::{self, Hive, C4_IRQL_ZW_PASSIVE, C4_USER_HANDLE_AS_KERNEL, INVALID_KERNEL_HANDLE};
use portwatch_harness::stack::call_driver_at;
use portwatch_harness::verifier::{codes, Config, Session};
use portwatch_harness::wait::KMODE_EXCEPTION_NOT_HANDLED;

const STATUS_INVALID_PARAMETER: i32 = 0xC000_000D_u32 as i32;
const STATUS_OBJECT_NAME_NOT_FOUND: i32 = 0xC000_0034_u32 as i32;
const STATUS_ACCESS_DENIED: i32 = 0xC000_0022_u32 as i32;
const STATUS_BUFFER_TOO_SMALL: i32 = 0xC000_0023_u32 as i32;
const STATUS_BUFFER_OVERFLOW: i32 = 0x8000_0005_u32 as i32;
const SERVICE: &str = "\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\Model";

fn init_mutex(m: *mut KMUTEX) {
    call!("KeInitializeMutex" as fn(*mut KMUTEX, u32), m, 0);
}

fn wait(m: *mut KMUTEX) -> i32 {
    call!("KeWaitForSingleObject" as fn(*mut c_void, i32, i8, u8, *mut i64) -> i32, m.cast(), 0, 0, 0, null_mut())
}

fn release(m: *mut KMUTEX) -> i32 {
    call!("KeReleaseMutex" as fn(*mut KMUTEX, u8) -> i32, m, 0)
}

#[test]
fn a_mutex_object_keeps_passive_and_is_recursive_like_windows() {
    let _s = Session::begin(Config::default());
    let m = leak::<KMUTEX>();
    call_driver_at("ioctl", PASSIVE, || {
        init_mutex(m);
        assert_eq!(wait(m), 0);
        assert_eq!(irql::current(), PASSIVE, "a mutex object does not raise the IRQL");
        assert_eq!(wait(m), 0, "the owner may wait again");
        release(m);
        assert!(portwatch_harness::kmutex::holds_any(), "released once of twice: still owned");
        release(m);
        assert!(!portwatch_harness::kmutex::holds_any());
    })
    .unwrap();
    // Another thread gets it now.
    let addr = m as usize;
    std::thread::spawn(move || {
        let m = addr as *mut KMUTEX;
        call_driver_at("worker", PASSIVE, || {
            assert_eq!(wait(m), 0);
            release(m);
        })
        .unwrap()
    })
    .join()
    .unwrap();
}

#[test]
fn a_mutex_object_released_by_a_thread_that_does_not_own_it() {
    let _s = Session::begin(Config::default());
    let m = leak::<KMUTEX>();
    call_driver_at("init", PASSIVE, || init_mutex(m)).unwrap();
    let v = violation_of(call_driver_at("ioctl", PASSIVE, || {
        release(m);
    }));
    assert_eq!((v.bugcheck, v.params[0]), (KMODE_EXCEPTION_NOT_HANDLED, STATUS_MUTANT_NOT_OWNED as u32 as u64), "{v}");
}

#[test]
fn a_driver_call_returning_with_a_mutex_object_held() {
    let _s = Session::begin(Config::default());
    let m = leak::<KMUTEX>();
    let v = violation_of(call_driver_at("ioctl", PASSIVE, || {
        init_mutex(m);
        wait(m);
    }));
    assert_eq!((v.bugcheck, v.params[2]), (APC_INDEX_MISMATCH, 0xFFFF), "{v}");
}

#[test]
fn a_mutex_object_waited_for_at_dispatch_level() {
    let _s = Session::begin(Config::default());
    let m = leak::<KMUTEX>();
    call_driver_at("init", PASSIVE, || init_mutex(m)).unwrap();
    let v = violation_of(call_driver_at("dpc", DISPATCH, || {
        wait(m);
    }));
    assert_eq!(
        (v.bugcheck, v.params[0]),
        (codes::DRIVER_VERIFIER_DETECTED_VIOLATION, codes::C4_KERNEL_API_WRONG_IRQL),
        "{v}"
    );
}

// ---------------------------------------------------------------------------
// Registry.

struct Name(Vec<u16>, UNICODE_STRING);

fn name(s: &str) -> Box<Name> {
    let mut n =
        Box::new(Name(s.encode_utf16().collect(), UNICODE_STRING { Length: 0, MaximumLength: 0, Buffer: null_mut() }));
    let bytes = (n.0.len() * 2) as u16;
    n.1 = UNICODE_STRING { Length: bytes, MaximumLength: bytes, Buffer: n.0.as_mut_ptr() };
    n
}

fn attributes(n: &Name, flags: u32) -> OBJECT_ATTRIBUTES {
    OBJECT_ATTRIBUTES {
        Length: size_of::<OBJECT_ATTRIBUTES>() as u32,
        RootDirectory: null_mut(),
        ObjectName: &n.1,
        Attributes: flags,
        SecurityDescriptor: null(),
        SecurityQualityOfService: null(),
    }
}

fn create(path: &str, access: u32, flags: u32) -> (i32, HANDLE, u32) {
    let n = name(path);
    let a = attributes(&n, flags);
    let (mut h, mut disposition): (HANDLE, u32) = (null_mut(), 0);
    let status = call!(
        "ZwCreateKey"
            as fn(*mut HANDLE, u32, *const OBJECT_ATTRIBUTES, u32, *const UNICODE_STRING, u32, *mut u32) -> i32,
        &mut h,
        access,
        &a,
        0,
        null(),
        0,
        &mut disposition
    );
    (status, h, disposition)
}

fn open(path: &str, access: u32) -> (i32, HANDLE) {
    let n = name(path);
    let a = attributes(&n, OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE);
    let mut h: HANDLE = null_mut();
    let status = call!("ZwOpenKey" as fn(*mut HANDLE, u32, *const OBJECT_ATTRIBUTES) -> i32, &mut h, access, &a);
    (status, h)
}

fn set(h: HANDLE, value: &str, data: &[u8]) -> i32 {
    let n = name(value);
    call!(
        "ZwSetValueKey" as fn(HANDLE, *const UNICODE_STRING, u32, u32, *const c_void, u32) -> i32,
        h,
        &n.1,
        0,
        REG_SZ,
        data.as_ptr().cast(),
        data.len() as u32
    )
}

fn query(h: HANDLE, value: &str, buffer: &mut [u32], bytes: u32) -> (i32, u32) {
    let n = name(value);
    let mut returned = 0;
    let status = call!(
        "ZwQueryValueKey" as fn(HANDLE, *const UNICODE_STRING, i32, *mut c_void, u32, *mut u32) -> i32,
        h,
        &n.1,
        2,
        buffer.as_mut_ptr().cast(),
        bytes,
        &mut returned
    );
    (status, returned)
}

fn close(h: HANDLE) -> i32 {
    call!("ZwClose" as fn(HANDLE) -> i32, h)
}

fn machine() -> Hive {
    let hive = Hive::new();
    hive.ensure_key(SERVICE);
    hive
}

/// A session whose registry is `hive` (what Session::load does).
fn begin(hive: &Hive) -> Session {
    let s = Session::begin(Config::default());
    registry::install_for_tests(hive);
    s
}

#[test]
fn create_set_query_close_round_trip() {
    let hive = machine();
    let _s = begin(&hive);
    let key = format!("{SERVICE}\\Parameters");
    call_driver_at("ioctl", PASSIVE, || {
        let (status, h, disposition) = create(&key, KEY_SET_VALUE, OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE);
        assert_eq!((status, disposition), (0, REG_CREATED_NEW_KEY));
        assert_eq!(set(h, "PortName", &[0x61, 0, 0, 0]), 0);
        assert_eq!(close(h), 0);
        let (status, h, disposition) = create(&key.to_uppercase(), KEY_SET_VALUE, OBJ_KERNEL_HANDLE);
        assert_eq!((status, disposition), (0, REG_OPENED_EXISTING_KEY), "names compare without case");
        close(h);
        let (status, h) = open(&key, KEY_QUERY_VALUE);
        assert_eq!(status, 0);
        let mut buffer = [0u32; 8];
        assert_eq!(query(h, "portname", &mut buffer, 32), (0, 16));
        assert_eq!(&buffer[1..3], &[REG_SZ, 4]);
        assert_eq!(buffer[3], 0x61, "data after the 12-byte header");
        assert_eq!(query(h, "PortName", &mut buffer, 8), (STATUS_BUFFER_TOO_SMALL, 16));
        assert_eq!(query(h, "PortName", &mut buffer, 12), (STATUS_BUFFER_OVERFLOW, 16));
        assert_eq!(query(h, "Missing", &mut buffer, 32).0, STATUS_OBJECT_NAME_NOT_FOUND);
        assert_eq!(set(h, "PortName", &[0, 0]), STATUS_ACCESS_DENIED, "opened for query only");
        close(h);
        assert_eq!(open(&format!("{SERVICE}\\Nope"), KEY_QUERY_VALUE).0, STATUS_OBJECT_NAME_NOT_FOUND);
        assert_eq!(
            create(&format!("{SERVICE}\\A\\B"), KEY_SET_VALUE, OBJ_KERNEL_HANDLE).0,
            STATUS_OBJECT_NAME_NOT_FOUND
        );
    })
    .unwrap();
    assert_eq!(hive.string(&key, "PortName").as_deref(), Some("a"));
    assert_eq!(registry::open_handles(), 0);
    registry::leak_check().unwrap();
}

#[test]
fn malformed_names_and_attributes_are_refused() {
    let hive = machine();
    let _s = begin(&hive);
    call_driver_at("ioctl", PASSIVE, || {
        let mut n = name(SERVICE);
        n.1.Length += 1; // odd
        let a = attributes(&n, OBJ_KERNEL_HANDLE);
        let mut h: HANDLE = null_mut();
        assert_eq!(
            call!("ZwOpenKey" as fn(*mut HANDLE, u32, *const OBJECT_ATTRIBUTES) -> i32, &mut h, 1, &a),
            STATUS_INVALID_PARAMETER
        );
        let n = name(SERVICE);
        let mut a = attributes(&n, OBJ_KERNEL_HANDLE);
        a.Length = 40;
        assert_eq!(
            call!("ZwOpenKey" as fn(*mut HANDLE, u32, *const OBJECT_ATTRIBUTES) -> i32, &mut h, 1, &a),
            STATUS_INVALID_PARAMETER
        );
    })
    .unwrap();
}

#[test]
fn a_registry_call_above_passive_level() {
    for level in [APC, DISPATCH] {
        let hive = machine();
        let _s = begin(&hive);
        let v = violation_of(call_driver_at("fast mutex held", level, || {
            open(SERVICE, KEY_QUERY_VALUE);
        }));
        assert_eq!(
            (v.bugcheck, v.params[0], v.params[1]),
            (codes::DRIVER_VERIFIER_DETECTED_VIOLATION, C4_IRQL_ZW_PASSIVE, u64::from(level)),
            "{v}"
        );
    }
}

#[test]
fn a_key_opened_without_obj_kernel_handle() {
    let hive = machine();
    let _s = begin(&hive);
    let v = violation_of(call_driver_at("ioctl", PASSIVE, || {
        create(SERVICE, KEY_SET_VALUE, OBJ_CASE_INSENSITIVE);
    }));
    assert_eq!((v.bugcheck, v.params[0]), (codes::DRIVER_VERIFIER_DETECTED_VIOLATION, C4_USER_HANDLE_AS_KERNEL), "{v}");
}

#[test]
fn a_handle_closed_twice() {
    let hive = machine();
    let _s = begin(&hive);
    let v = violation_of(call_driver_at("ioctl", PASSIVE, || {
        let (_, h) = open(SERVICE, KEY_QUERY_VALUE);
        close(h);
        close(h);
    }));
    assert_eq!(v.bugcheck, INVALID_KERNEL_HANDLE, "{v}");
}

#[test]
fn a_handle_left_open_is_a_leak() {
    let hive = machine();
    let _s = begin(&hive);
    call_driver_at("ioctl", PASSIVE, || {
        open(SERVICE, KEY_QUERY_VALUE);
    })
    .unwrap();
    let v = registry::leak_check().expect_err("an open handle at unload");
    assert_eq!(
        (v.bugcheck, v.params[0]),
        (codes::DRIVER_VERIFIER_DETECTED_VIOLATION, codes::C4_POOL_LEAK_AT_UNLOAD),
        "{v}"
    );
}

#[test]
fn an_injected_set_failure_is_returned_and_writes_nothing() {
    let hive = machine();
    let _s = begin(&hive);
    hive.fail_next_set(STATUS_ACCESS_DENIED);
    call_driver_at("ioctl", PASSIVE, || {
        let (_, h, _) = create(SERVICE, KEY_SET_VALUE, OBJ_KERNEL_HANDLE);
        assert_eq!(set(h, "V", &[1, 0, 0, 0]), STATUS_ACCESS_DENIED);
        assert_eq!(set(h, "V", &[2, 0, 0, 0]), 0, "only the next one fails");
        close(h);
    })
    .unwrap();
    assert_eq!(hive.value(SERVICE, "V"), Some((REG_SZ, vec![2, 0, 0, 0])));
    assert_eq!(hive.writes(), 1);
}
