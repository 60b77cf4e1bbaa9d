//! The I/O manager model through the fixture's control device: CREATE /
//! CLEANUP / CLOSE, METHOD_BUFFERED copy-back rules, handles.

mod common;

use portwatch_harness::io::{IoError, STATUS_INVALID_HANDLE, STATUS_OBJECT_NAME_NOT_FOUND};
use portwatch_harness::session::Options;

const STATUS_BUFFER_OVERFLOW: i32 = 0x8000_0005_u32 as i32;
const STATUS_BUFFER_TOO_SMALL: i32 = 0xC000_0023_u32 as i32;
const STATUS_INVALID_DEVICE_REQUEST: i32 = 0xC000_0010_u32 as i32;

#[test]
fn names_resolve_like_the_object_manager() {
    let s = common::load(Options::default());
    for name in ["\\\\.\\LwfFixture", "\\DosDevices\\LwfFixture", "\\Device\\LwfFixture", "\\\\.\\lwffixture"] {
        let h = s.open(name).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        s.close(h).unwrap();
    }
    assert_eq!(s.open("\\\\.\\Nope"), Err(IoError::Status(STATUS_OBJECT_NAME_NOT_FOUND)));
    assert_eq!(s.open("\\\\.\\LwfFixtureX"), Err(IoError::Status(STATUS_OBJECT_NAME_NOT_FOUND)));
    // A file name under the device reaches the driver, which refuses it.
    assert_eq!(s.open("\\\\.\\LwfFixture\\sub"), Err(IoError::Status(STATUS_OBJECT_NAME_NOT_FOUND)));
    let report = s.unload();
    assert_eq!(report.io.irps["IRP_MJ_CREATE"], 5);
    assert_eq!(report.io.irps["IRP_MJ_CLOSE"], 4, "no CLOSE after a failed CREATE");
    assert!(report.violations.is_empty() && report.leaked.is_empty(), "{report}");
}

#[test]
fn buffered_copy_back_follows_the_status_severity() {
    let s = common::load(Options::default());
    let h = s.open(common::DEVICE).unwrap();
    let input: Vec<u8> = (0..16).collect();
    let inverted: Vec<u8> = input.iter().map(|b| !b).collect();
    // Success: Information bytes copied back.
    let r = s.ioctl(h, common::IOCTL_LWF_ECHO, &input, 32).unwrap();
    assert_eq!((r.status, r.information), (0, 16));
    assert_eq!(r.output, inverted);
    // Warning: copied back too (what fits).
    let r = s.ioctl(h, common::IOCTL_LWF_ECHO, &input, 4).unwrap();
    assert_eq!((r.status, r.information), (STATUS_BUFFER_OVERFLOW, 4));
    assert_eq!(r.output, inverted[..4]);
    // Error: nothing copied back.
    let r = s.ioctl(h, common::IOCTL_LWF_COUNTERS, &[], 39).unwrap();
    assert_eq!((r.status, r.information, r.output.len()), (STATUS_BUFFER_TOO_SMALL, 0, 0));
    let r = s.ioctl(h, 0x0012_2FFC, &input, 8).unwrap();
    assert_eq!((r.status, r.output.len()), (STATUS_INVALID_DEVICE_REQUEST, 0));
    // Both lengths 0: no system buffer, still dispatched.
    let r = s.ioctl(h, common::IOCTL_LWF_ECHO, &[], 0).unwrap();
    assert_eq!((r.status, r.information), (0, 0));
    // The per-handle FsContext counted every IOCTL on this handle.
    let r = s.ioctl(h, common::IOCTL_LWF_COUNTERS, &[], 40).unwrap();
    assert_eq!(u64::from_le_bytes(r.output[32..40].try_into().unwrap()), 6);
    s.close(h).unwrap();
    assert_eq!(s.ioctl(h, common::IOCTL_LWF_ECHO, &[], 0), Err(IoError::Status(STATUS_INVALID_HANDLE)));
    let report = s.unload();
    assert!(report.violations.is_empty() && report.leaked.is_empty(), "{report}");
}

#[test]
fn cleanup_on_last_handle_close_only() {
    let s = common::load(Options::default());
    let h = s.open(common::DEVICE).unwrap();
    let d = s.duplicate(h).unwrap();
    s.close(h).unwrap();
    assert_eq!(s.report().io.irps.get("IRP_MJ_CLEANUP"), None, "a handle is still open");
    s.ioctl(d, common::IOCTL_LWF_ECHO, &[1], 1).unwrap();
    s.close(d).unwrap();
    let io = s.report().io;
    assert_eq!((io.irps["IRP_MJ_CLEANUP"], io.irps["IRP_MJ_CLOSE"]), (1, 1));
    assert!(s.unload().violations.is_empty());
}

#[test]
fn many_threads_share_handles_and_close_them() {
    let s = common::load(Options::default());
    std::thread::scope(|scope| {
        for t in 0..6u8 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..30u8 {
                    let h = s.open(common::DEVICE).unwrap();
                    let d = s.duplicate(h).unwrap();
                    let r = s.ioctl(d, common::IOCTL_LWF_ECHO, &[t, i], 2).unwrap();
                    assert_eq!(r.output, vec![!t, !i]);
                    s.close(h).unwrap();
                    s.close(d).unwrap();
                }
            });
        }
    });
    let report = s.unload();
    assert_eq!(report.io.irps["IRP_MJ_CLOSE"], 180);
    assert!(report.violations.is_empty() && report.leaked.is_empty(), "{report}");
}
