//! The model's registration, state machine and unload, driven through the
//! fixture LWF.

mod common;

use portwatch_harness::ndis::{AdapterSpec, At, ModuleState};
use portwatch_harness::session::Options;

#[test]
fn load_registers_filter_and_device_and_unloads_clean() {
    let s = common::load(Options::default());
    let f = s.filter();
    assert_eq!(f.ndis_version, (6, 30));
    assert_eq!(f.unique_name, "{8F2A6D31-5B7C-4E90-A1D2-3C4B5A6F7E80}");
    assert_eq!(f.service_name, "LwfFixture");
    assert!(f.null_handlers.contains(&"FilterOidRequest"));
    assert!(!f.null_handlers.contains(&"FilterStatus"));
    assert_eq!(s.control_device(), Some(("\\Device\\LwfFixture".into(), "\\DosDevices\\LwfFixture".into())));
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.leaked.is_empty(), "{report}");
    let names: Vec<&str> = report.entry_points.iter().map(|(n, _)| n.as_str()).collect();
    for expected in ["DriverEntry", "FilterSetOptions", "DriverUnload"] {
        assert!(names.contains(&expected), "{expected} not called: {names:?}");
    }
    assert!(report.entry_points.iter().all(|(_, peak)| *peak > 0 && *peak < 8192), "{report}");
}

#[test]
fn state_machine_on_two_adapters() {
    let s = common::load(Options::default());
    let a = s.add_adapter(AdapterSpec::named("eth0"));
    let b = s.add_adapter(AdapterSpec::named("eth1"));
    for ad in [a, b] {
        assert_eq!(s.attach(ad).unwrap(), 0);
        assert_eq!(s.modules(ad).iter().map(|m| m.1).collect::<Vec<_>>(), vec![ModuleState::Paused]);
        assert_eq!(s.restart(ad).unwrap(), 0);
        assert_eq!(s.modules(ad)[0].1, ModuleState::Running);
    }
    s.pause(a).unwrap();
    assert_eq!(s.modules(a)[0].1, ModuleState::Paused);
    s.restart(a).unwrap();
    s.pause(a).unwrap();
    s.detach(a).unwrap();
    assert!(s.modules(a).is_empty());
    let report = s.report();
    assert_eq!(report.ndis.callbacks["FilterAttach"], 2);
    assert_eq!(report.ndis.callbacks["FilterRestart"], 3);
    assert_eq!(report.ndis.callbacks["FilterSetModuleOptions"], 3, "called before every restart");
    assert_eq!(report.ndis.callbacks["FilterPause"], 2);
    assert_eq!(report.ndis.callbacks["FilterDetach"], 1);
    // Adapter b is still running: NdisFDeregisterFilterDriver in
    // DriverUnload must pause and detach it before it returns.
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!(report.ndis.callbacks["FilterPause"], 3);
    assert_eq!(report.ndis.callbacks["FilterDetach"], 2);
    assert!(report.leaked.is_empty(), "module contexts freed: {report}");
}

#[test]
fn monitoring_filter_gets_a_module_per_layer_modifying_one_module() {
    let s = common::load(Options::default());
    let mon = s.add_adapter(AdapterSpec { name: "wifi0".into(), other_modifying_filters: 2, driver_monitors: true });
    let modi = s.add_adapter(AdapterSpec { name: "eth0".into(), other_modifying_filters: 2, driver_monitors: false });
    s.start(mon).unwrap();
    s.start(modi).unwrap();
    assert_eq!(s.modules(mon).len(), 3);
    assert_eq!(s.modules(modi).len(), 1);
    let frame = portwatch_harness::frames::FrameSpec::ipv4(6, 1, 2).build();
    let nbl = || portwatch_harness::nbl::NblSpec::of(vec![frame.clone()]);
    s.send(mon, vec![nbl()], At::Dispatch).unwrap();
    s.send(modi, vec![nbl()], At::Dispatch).unwrap();
    assert_eq!(common::counters(&s)[0], 4, "3 modules saw the first send, 1 the second");
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
}

#[test]
fn open_handles_block_nothing_after_close_and_unload_reports_ioctls() {
    let s = common::load(Options::default());
    let h = s.open(common::DEVICE).unwrap();
    s.close(h).unwrap();
    let report = s.unload();
    assert_eq!(report.io.irps["IRP_MJ_CREATE"], 1);
    assert_eq!(report.io.irps["IRP_MJ_CLEANUP"], 1);
    assert_eq!(report.io.irps["IRP_MJ_CLOSE"], 1);
    assert!(report.violations.is_empty() && report.leaked.is_empty(), "{report}");
}
