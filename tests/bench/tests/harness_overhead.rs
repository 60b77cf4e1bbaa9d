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

/// The goal for the harness's own cost per packet (docs/benchmarks.md,
/// "Harness cost per packet").
const GOAL: f64 = 5_000.0;

/// Harness instructions per packet allowed for `driver`, in the profile
/// this test is built in.
///
/// Release: the goal, for both drivers. Measured 2026-12-07 with
/// `portwatch-bench overhead 2000` (docs/benchmarks.md, "Harness, seventh
/// round"): the pass-through filter 4,344 (send) and 4,361 (receive),
/// PortWatch 4,957 and 4,974; this test's own release run (300 packets,
/// `cargo test --release -p portwatch-bench --test harness_overhead --
/// --nocapture`): 4,336 / 4,345 and 4,952 / 4,954.
///
/// In `cargo test` the harness is optimised with debug assertions on (the
/// workspace's `[profile.dev.package]` overrides): measured 2026-12-07 with
/// `cargo test -p portwatch-bench --test harness_overhead -- --nocapture`,
/// 300 packets, 6,101 / 6,101 for the pass-through filter and 6,799 / 6,790
/// for PortWatch; each limit is the highest plus about 10%.
fn limit(driver: &str) -> f64 {
    match (cfg!(debug_assertions), driver) {
        (false, "passthrough" | "portwatch") => GOAL,
        (true, "passthrough") => 6_700.0,
        (true, "portwatch") => 7_500.0,
        _ => panic!("no limit for driver {driver:?}"),
    }
}

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
        let limit = limit(driver);
        assert!(
            o.harness() <= limit,
            "{driver} {way}: the harness costs {:.0} instructions per packet, limit {limit:.0}",
            o.harness()
        );
    }
}
