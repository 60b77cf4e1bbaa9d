//! The PE loader against the real cross-built fixture driver: imports bound
//! by DLL and name, missing imports listed, exports found, page protections.

#[allow(dead_code)] // each test file uses a part of the helpers
mod runtime_common;

use portwatch_harness::imports;
use portwatch_harness::loader::{self, LoadError};
use portwatch_harness::verifier::{Config, Session};
use runtime_common::{fixture_path, Fixture};

#[test]
fn binds_every_import_by_dll_and_name() {
    let fx = Fixture::start(Config::default());
    let bound = fx.image.bound_imports();
    assert!(bound.iter().any(|(d, n)| d == "ndis.sys" && n == "NdisAcquireSpinLock"), "{bound:?}");
    assert!(bound.iter().any(|(d, n)| d == "ntoskrnl.exe" && n == "DbgPrintEx"), "{bound:?}");
    for name in ["fixture_ok_all", "fixture_stack_overflow", "fixture_deadlock_ab", "DriverEntry"] {
        assert!(fx.image.export(name).is_some(), "missing export {name}");
    }
    assert!(fx.image.contains(fx.image.entry()));
}

#[test]
fn missing_imports_fail_the_load_listing_them() {
    let _s = Session::begin(Config::default());
    let partial: Vec<_> = imports::registry()
        .into_iter()
        .filter(|i| i.name != "NdisAcquireSpinLock" && i.name != "KeBugCheckEx")
        .collect();
    match loader::load(&fixture_path(), &partial) {
        Err(LoadError::MissingImports(names)) => {
            assert_eq!(
                names,
                vec!["ntoskrnl.exe!KeBugCheckEx".to_string(), "ndis.sys!NdisAcquireSpinLock".to_string()]
            );
        }
        other => panic!("expected MissingImports, got {other:?}"),
    }
}

#[test]
fn sections_are_mapped_with_their_protections() {
    let fx = Fixture::start(Config::default());
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let perms_at = |addr: usize| {
        maps.lines()
            .find_map(|l| {
                let (range, rest) = l.split_once(' ')?;
                let (lo, hi) = range.split_once('-')?;
                let (lo, hi) = (usize::from_str_radix(lo, 16).ok()?, usize::from_str_radix(hi, 16).ok()?);
                (addr >= lo && addr < hi).then(|| rest[..4].to_string())
            })
            .unwrap()
    };
    let text = fx.image.export("fixture_ok_all").unwrap();
    assert_eq!(&perms_at(text)[..3], "r-x");
    assert_eq!(&perms_at(fx.image.base())[..3], "r--");
    let image = fx.image.base()..fx.image.base() + fx.image.size();
    let wx = image.step_by(4096).any(|p| {
        let perms = perms_at(p);
        perms.contains('w') && perms.contains('x')
    });
    assert!(!wx, "a page of the image is writable and executable");
}
