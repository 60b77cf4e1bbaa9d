//! portwatch.sys: load, registration, unload.

mod pw;

use portwatch_harness::session::Options;

#[test]
fn loads_registers_and_unloads_clean() {
    let s = pw::load(Options::default());
    let f = s.filter();
    assert_eq!(f.ndis_version, (6, 30));
    assert_eq!(f.unique_name, portwatch_proto::FILTER_UNIQUE_NAME);
    assert_eq!(f.service_name, portwatch_proto::SERVICE_NAME);
    assert_eq!(f.friendly_name, portwatch_proto::FILTER_FRIENDLY_NAME);
    for bypassed in ["FilterOidRequest", "FilterOidRequestComplete", "FilterNetPnPEvent"] {
        assert!(f.null_handlers.contains(&bypassed), "{bypassed} should be NULL: {:?}", f.null_handlers);
    }
    for present in ["FilterAttach", "FilterSendNetBufferLists", "FilterReceiveNetBufferLists", "FilterStatus"] {
        assert!(!f.null_handlers.contains(&present), "{present} missing");
    }
    assert_eq!(
        s.control_device(),
        Some((portwatch_proto::DEVICE_NAME.into(), portwatch_proto::SYMBOLIC_LINK_NAME.into()))
    );
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.leaked.is_empty(), "{report}");
}
