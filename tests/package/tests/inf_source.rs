//! Checks of the INF source `inf/portwatch.inx` and of its stamping by
//! `scripts/stampinf.sh` (no driver build needed).

use portwatch_package_tests::inf::Inf;
use portwatch_package_tests::{inf_checks, paths};
use std::path::PathBuf;
use std::process::Command;

/// 2023-11-14T22:13:20Z: a fixed build date for a reproducible stamp.
const EPOCH: &str = "1700000000";

fn inx_text() -> String {
    std::fs::read_to_string(paths::inx_source()).expect("inf/portwatch.inx is readable")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portwatch-inf-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

fn stamp(inx: &std::path::Path, inf: &std::path::Path, version: &str) -> std::process::Output {
    Command::new("bash")
        .arg(paths::workspace_root().join("scripts/stampinf.sh"))
        .args([inx.as_os_str(), inf.as_os_str()])
        .arg(version)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .expect("bash runs")
}

#[test]
fn inx_cross_references_match_the_driver() {
    let inf = Inf::parse(&inx_text()).expect("the .inx parses");
    inf_checks::assert_driver_inf(&inf, "$ARCH$");
}

#[test]
fn a_wrong_unique_name_is_caught() {
    let broken = inx_text().replace(portwatch_proto::FILTER_UNIQUE_NAME, "{00000000-0000-0000-0000-000000000000}");
    let inf = Inf::parse(&broken).expect("still parses");
    let result = std::panic::catch_unwind(|| inf_checks::assert_driver_inf(&inf, "$ARCH$"));
    assert!(result.is_err(), "the checks accepted a wrong NetCfgInstanceId");
}

#[test]
fn a_monitoring_filter_type_is_caught() {
    let broken = inx_text().replace("FilterType, 0x00010001, 2", "FilterType, 0x00010001, 1");
    assert_ne!(broken, inx_text(), "the .inx sets FilterType as expected");
    let inf = Inf::parse(&broken).expect("still parses");
    let result = std::panic::catch_unwind(|| inf_checks::assert_driver_inf(&inf, "$ARCH$"));
    assert!(result.is_err(), "the checks accepted FilterType 1");
}

#[test]
fn stamped_inf_matches_the_driver_and_the_crate_version() {
    let dir = scratch("stamp");
    let inf_path = dir.join("portwatch.inf");
    let version = env!("CARGO_PKG_VERSION");
    let output = stamp(&paths::inx_source(), &inf_path, version);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(&inf_path).expect("stamped INF");
    assert!(!text.contains("$ARCH$"), "architecture placeholders left");
    assert!(text.split_inclusive('\n').all(|l| l.ends_with("\r\n")), "CRLF line endings");
    let inf = Inf::parse(&text).expect("the stamped INF parses");
    inf_checks::assert_driver_inf(&inf, "amd64");
    let driver_ver = inf.value("Version", "DriverVer").expect("DriverVer");
    assert_eq!(driver_ver, ["11/14/2023".to_owned(), format!("{version}.0")]);
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[test]
fn stamping_adds_a_missing_driver_ver() {
    let dir = scratch("missing");
    let inx = dir.join("in.inx");
    std::fs::write(&inx, "[Version]\nSignature = \"$Windows NT$\"\n[Models.NT$ARCH$]\n").expect("write");
    let output = stamp(&inx, &dir.join("out.inf"), "1.2.3.4");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let inf = Inf::parse(&std::fs::read_to_string(dir.join("out.inf")).expect("read")).expect("parses");
    assert_eq!(inf.value("Version", "DriverVer").expect("DriverVer"), ["11/14/2023", "1.2.3.4"]);
    assert!(inf.section("Models.NTamd64").is_some());
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[test]
fn stamping_rejects_a_bad_version() {
    let dir = scratch("bad");
    for version in ["1.2", "1.2.3.70000", "x.y.z"] {
        let output = stamp(&paths::inx_source(), &dir.join("out.inf"), version);
        assert!(!output.status.success(), "version {version} accepted");
    }
    assert!(!dir.join("out.inf").exists(), "no INF written for a bad version");
    std::fs::remove_dir_all(dir).expect("cleanup");
}
