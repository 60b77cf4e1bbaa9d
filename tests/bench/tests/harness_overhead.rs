//! The harness's own cost per packet stays within its limit: the
//! `portwatch-bench overhead` run of this build under callgrind (exact
//! instruction counts), whole process minus the driver's code, for the
//! pass-through filter and PortWatch, sends and receives. Every verifier
//! check stays on (the run is a normal session). Needs `valgrind`
//! (scripts/test.sh installs it); without it the test fails rather than
//! skipping.
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::path::PathBuf;
use std::process::Command;

use portwatch_bench::callgrind;

/// Packets per configuration (after 100 warm-up packets).
const PACKETS: u32 = 300;

/// Harness instructions per packet allowed, for the profile this test is
/// built in. Release, 2,000 packets (measured 2026-12-07 with
/// `portwatch-bench overhead`): 5,952 to 6,166 for the pass-through filter
/// and 6,826 to 7,020 for PortWatch, see docs/benchmarks.md, "Harness,
/// sixth round"; this test's own release run (300 packets, `cargo test
/// --release -p portwatch-bench --test harness_overhead -- --nocapture`)
/// measured 5,893 to 6,152 and 6,874 to 7,003. In `cargo test` the harness
/// is optimised with debug assertions on (the workspace's
/// `[profile.dev.package]` overrides): measured 2026-12-07 with `cargo test
/// -p portwatch-bench --test harness_overhead -- --nocapture`, 300
/// packets, 8,095 to 8,487 for the pass-through filter and 9,271 to 9,512
/// for PortWatch. Each limit is the highest of its build plus about 10%.
const LIMIT: f64 = if cfg!(debug_assertions) { 10_600.0 } else { 7_800.0 };

#[test]
fn harness_cost_per_packet_is_within_its_limit() {
    let version = Command::new("valgrind").arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "valgrind is needed for this check (scripts/test.sh installs it): {version:?}"
    );
    let dir = std::env::temp_dir().join(format!("pw-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let status = Command::new("valgrind")
        .args(["--tool=callgrind", "--dump-instr=yes", "--compress-pos=no", "--compress-strings=no"])
        .arg(format!("--callgrind-out-file={}/callgrind.out.%p", dir.display()))
        .arg(env!("CARGO_BIN_EXE_portwatch-bench"))
        .args(["overhead", &PACKETS.to_string()])
        .status()
        .expect("run valgrind");
    assert!(status.success(), "portwatch-bench overhead failed under callgrind: {status}");
    let files: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("read dumps").map(|e| e.expect("dump entry").path()).collect();
    let rows = callgrind::overhead(&files);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(rows.len(), 4, "two drivers, two directions: {rows:?}");
    for ((driver, way), o) in &rows {
        println!("{driver} {way}: {:.0} per packet, driver {:.0}, harness {:.0}", o.total, o.driver, o.harness());
        assert!(o.driver > 0.0, "{driver} {way}: no instruction counted in the driver image");
        assert!(
            o.harness() <= LIMIT,
            "{driver} {way}: the harness costs {:.0} instructions per packet, limit {LIMIT:.0}",
            o.harness()
        );
    }
}
