//! Instructions per packet in the driver image, under callgrind: the
//! figures of docs/benchmarks.md may not regress. Runs
//! `portwatch-bench datapath` (1 and 3,000 bound ports, one NBL per call;
//! chains of 1, 8 and 64 NBLs with 100 ports) under
//! `valgrind --tool=callgrind` and checks, per path:
//!
//! * the single-NBL cost in the driver image is at most its budget (the
//!   figure measured when it was set: callgrind counts are exact, so any
//!   growth fails), with no endpoint's events enabled and with another
//!   endpoint's enabled, and for a port nobody bound;
//! * it is the same for 1 and 3,000 bound ports (flat in table size);
//! * per NBL, a chain of 64 costs at most 60% of a single NBL (the
//!   per-chain work amortises).
//!
//! `valgrind` is required (scripts/test.sh installs it); a missing one
//! fails the test, it never skips.

use std::path::PathBuf;
use std::process::Command;

use portwatch_bench::artifacts::Artifact;
use portwatch_bench::callgrind::{per_packet_in_image, read_dumps, Rows};

/// Budgets: instructions per packet in the image, one NBL per call (the
/// measured figures: docs/benchmarks.md), to a bound port while no
/// endpoint has events enabled (the counting-only loop).
const SEND_BUDGET: f64 = 145.0;
const RECEIVE_BUDGET: f64 = 149.0;
/// The same packets, 100 ports bound, while another endpoint has events
/// enabled (the event-aware loop: `*-others-events`).
const SEND_OTHERS_EVENTS_BUDGET: f64 = 163.0;
const RECEIVE_OTHERS_EVENTS_BUDGET: f64 = 167.0;
/// A packet to a port nobody bound, 100 ports bound, no events enabled
/// (`*-nomatch`).
const SEND_UNBOUND_BUDGET: f64 = 132.0;
const RECEIVE_UNBOUND_BUDGET: f64 = 136.0;
/// The larger table: 3,000 ports span 12 leaves of the port table (1 port:
/// one); enough to show the cost does not grow, small enough to bind under
/// callgrind in seconds.
const LARGE: u32 = 3_000;
/// Per-NBL cost of a 64-NBL chain relative to a single NBL.
const CHAIN_RATIO: f64 = 0.6;

fn measure() -> Rows {
    let dir = std::env::temp_dir().join(format!("pw-budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let status = Command::new("valgrind")
        .args(["--tool=callgrind", "--dump-instr=yes", "--compress-pos=no", "--compress-strings=no"])
        .arg(format!("--callgrind-out-file={}/callgrind.out.%p", dir.display()))
        .arg(env!("CARGO_BIN_EXE_portwatch-bench"))
        .args(["datapath", "64", "--ports", &format!("1,{LARGE}")])
        .env("PORTWATCH_SYS", Artifact::Driver.path())
        .env("PORTWATCH_PASSTHROUGH", Artifact::Passthrough.path())
        .current_dir(&dir)
        .output()
        .expect("run valgrind (install it: apt-get install valgrind)");
    assert!(status.status.success(), "callgrind run failed:\n{}", String::from_utf8_lossy(&status.stderr));
    let files: Vec<PathBuf> = std::fs::read_dir(&dir).expect("dumps").map(|e| e.expect("entry").path()).collect();
    let rows = per_packet_in_image(&read_dumps(&files));
    std::fs::remove_dir_all(&dir).ok();
    rows
}

#[test]
fn per_packet_costs_stay_within_budget_flat_and_amortised() {
    let rows = measure();
    let get = |way: &str, ports: u32, chain: u32| -> f64 {
        *rows
            .get(&(way.to_string(), ports, chain))
            .and_then(|r| r.get("portwatch"))
            .unwrap_or_else(|| panic!("no dump for {way} ports={ports} chain={chain}: {rows:?}"))
    };
    for (way, budget) in [("send", SEND_BUDGET), ("receive", RECEIVE_BUDGET)] {
        let (one, many) = (get(way, 1, 1), get(way, LARGE, 1));
        let (single, chained) = (one, get(way, 100, 64));
        println!("{way}: {one} (1 port), {many} ({LARGE} ports); per NBL {single} (1), {chained} (64 in a chain)");
        assert!(one <= budget, "{way}: {one} instructions per packet, budget {budget}");
        assert!((one - many).abs() < 0.5, "{way}: {one} with 1 port, {many} with 10,000: not flat");
        assert!(
            chained <= CHAIN_RATIO * single,
            "{way}: {chained} per NBL in a chain of 64, more than {CHAIN_RATIO} x {single}"
        );
    }
    for (way, budget) in [
        ("send-others-events", SEND_OTHERS_EVENTS_BUDGET),
        ("receive-others-events", RECEIVE_OTHERS_EVENTS_BUDGET),
        ("send-nomatch", SEND_UNBOUND_BUDGET),
        ("receive-nomatch", RECEIVE_UNBOUND_BUDGET),
    ] {
        let cost = get(way, 100, 1);
        println!("{way}: {cost}");
        assert!(cost <= budget, "{way}: {cost} instructions per packet, budget {budget}");
    }
}
