//! portwatch.sys keeps the global port name in the registry
//! (`Parameters\PortName`, REG_SZ): it survives an unload and a load on the
//! same machine, a failed registry write changes nothing and returns its
//! status, and concurrent writers leave the registry and memory equal.

mod pw;

use portwatch_harness::frames::FrameSpec;
use portwatch_harness::io::Handle;
use portwatch_harness::nbl::NblSpec;
use portwatch_harness::ndis::{AdapterSpec, At};
use portwatch_harness::registry::Hive;
use portwatch_harness::session::{Options, Session};
use portwatch_proto::*;

const PARAMETERS: &str = "\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\PortWatch\\Parameters";
const STATUS_INVALID_PARAMETER: i32 = 0xC000_000D_u32 as i32;
const STATUS_INSUFFICIENT_RESOURCES: i32 = 0xC000_009A_u32 as i32;
const STATUS_ACCESS_DENIED: i32 = 0xC000_0022_u32 as i32;
const REG_DWORD: u32 = 4;

fn on(hive: &Hive) -> Options {
    Options { registry: hive.clone(), ..Options::default() }
}

fn set_name(s: &Session, h: Handle, name: &str) -> i32 {
    let units: Vec<u16> = name.encode_utf16().collect();
    let mut input = pw::bytes(&PortNameHeader { version: PROTOCOL_VERSION, chars: units.len() as u32 });
    input.extend(units.iter().flat_map(|c| c.to_le_bytes()));
    pw::ioctl(s, h, IOCTL_SET_PORT_NAME, &input, 0).0
}

fn get_name(s: &Session, h: Handle) -> String {
    let (status, out) = pw::ioctl(s, h, IOCTL_GET_PORT_NAME, &[], (VarHeader::SIZE + 2 * 256) as u32);
    assert_eq!(status, 0);
    let units: Vec<u16> = out[VarHeader::SIZE..].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16(&units).unwrap()
}

fn finish(s: Session) {
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.leaked.is_empty(), "{report}");
    assert_eq!(portwatch_harness::registry::open_handles(), 0);
}

#[test]
fn the_name_survives_unload_and_load_on_the_same_machine() {
    let machine = Hive::new();
    let s = pw::load(on(&machine));
    let h = pw::open(&s);
    assert_eq!(get_name(&s, h), "", "nothing saved yet");
    assert_eq!(set_name(&s, h, "lpc-watch"), 0);
    assert_eq!(machine.string(PARAMETERS, "PortName").as_deref(), Some("lpc-watch"));
    s.close(h).unwrap();
    finish(s);

    let s = pw::load(on(&machine));
    let h = pw::open(&s);
    assert_eq!(get_name(&s, h), "lpc-watch", "read back by DriverEntry");
    s.close(h).unwrap();
    finish(s);

    // Another machine has its own registry.
    let s = pw::load(Options::default());
    let h = pw::open(&s);
    assert_eq!(get_name(&s, h), "");
    s.close(h).unwrap();
    finish(s);
}

#[test]
fn a_failed_registry_write_returns_its_status_and_changes_nothing() {
    let machine = Hive::new();
    let s = pw::load(on(&machine));
    let h = pw::open(&s);
    assert_eq!(set_name(&s, h, "first"), 0);
    for status in [STATUS_ACCESS_DENIED, STATUS_INSUFFICIENT_RESOURCES] {
        machine.fail_next_set(status);
        assert_eq!(set_name(&s, h, "second"), status, "the registry's status, unchanged");
        assert_eq!(get_name(&s, h), "first", "memory unchanged");
        assert_eq!(machine.string(PARAMETERS, "PortName").as_deref(), Some("first"));
    }
    assert_eq!(set_name(&s, h, "third"), 0, "the next write works");
    assert_eq!(get_name(&s, h), "third");
    s.close(h).unwrap();
    finish(s);
}

#[test]
fn a_name_with_a_nul_inside_is_refused_before_the_registry() {
    let machine = Hive::new();
    let s = pw::load(on(&machine));
    let h = pw::open(&s);
    assert_eq!(set_name(&s, h, "a\0b"), STATUS_INVALID_PARAMETER);
    assert_eq!(machine.writes(), 0);
    assert_eq!(get_name(&s, h), "");
    s.close(h).unwrap();
    finish(s);
}

#[test]
fn a_value_the_driver_cannot_use_is_ignored_at_load() {
    for (kind, data) in [
        (REG_DWORD, 7u32.to_le_bytes().to_vec()),
        (
            ndis_sys::REG_SZ,
            "x".repeat(MAX_PORT_NAME_CHARS as usize + 1).encode_utf16().flat_map(u16::to_le_bytes).collect(),
        ),
    ] {
        let machine = Hive::new();
        machine.set_value(PARAMETERS, "PortName", kind, &data);
        let s = pw::load(on(&machine));
        let h = pw::open(&s);
        assert_eq!(get_name(&s, h), "", "type {kind}, {} bytes", data.len());
        s.close(h).unwrap();
        finish(s);
    }
    // An unterminated REG_SZ (regedit writes the NUL; other tools may not).
    let machine = Hive::new();
    machine.set_value(PARAMETERS, "PortName", ndis_sys::REG_SZ, &[0x61, 0, 0x62, 0]);
    let s = pw::load(on(&machine));
    let h = pw::open(&s);
    assert_eq!(get_name(&s, h), "ab");
    s.close(h).unwrap();
    finish(s);
}

/// Many threads set the name while others read it and traffic runs:
/// every name read is one some writer wrote, whole, and at the end the
/// registry's value is the memory copy.
#[test]
fn concurrent_writers_leave_registry_and_memory_equal() {
    let machine = Hive::new();
    let s = pw::load(on(&machine));
    let a = s.add_adapter(AdapterSpec::named("eth0"));
    s.start(a).unwrap();
    let frame = FrameSpec::ipv4(PROTO_UDP, 40000, 53).build();
    std::thread::scope(|scope| {
        for t in 0..6u32 {
            let (s, frame) = (&s, &frame);
            scope.spawn(move || {
                let h = pw::open(s);
                for i in 0..150u32 {
                    if t % 3 == 2 {
                        // A name is `len` copies of one letter; len from 1.
                        let name = get_name(s, h);
                        let first = name.chars().next();
                        assert!(name.chars().all(|c| Some(c) == first), "torn name {name:?}");
                        s.send(a, vec![NblSpec::of(vec![frame.clone()])], At::Dispatch).unwrap();
                    } else {
                        let letter = char::from(b'a' + ((t * 7 + i) % 26) as u8);
                        let name: String = std::iter::repeat_n(letter, 1 + (i as usize % 40)).collect();
                        assert_eq!(set_name(s, h, &name), 0);
                    }
                }
                s.close(h).unwrap();
            });
        }
    });
    let h = pw::open(&s);
    let memory = get_name(&s, h);
    assert!(!memory.is_empty());
    assert_eq!(machine.string(PARAMETERS, "PortName"), Some(memory));
    assert_eq!(machine.writes(), 4 * 150);
    s.close(h).unwrap();
    s.pause(a).unwrap();
    s.detach(a).unwrap();
    finish(s);
}
