//! Long runs stay flat: many sessions of the real portwatch.sys (load, an
//! adapter, bind, traffic, IOCTLs, close, detach, unload) with special pool
//! on, measuring the process's memory mappings and resident memory. After
//! the warm-up sessions, the last session must be within a small constant
//! of the warm-up figure: nothing the harness or the driver does per
//! session may accumulate (special pool's quarantine is bounded, a reset
//! gives back every mapping).
//!
//! `PORTWATCH_SESSIONS` sets the count (default 100,000, about a minute and
//! a half in a debug build).

mod pw;

use portwatch_harness::frames::{FrameSpec, IPPROTO_UDP};
use portwatch_harness::nbl::NblSpec;
use portwatch_harness::ndis::{AdapterSpec, At};
use portwatch_harness::session::Options;
use portwatch_harness::verifier::Config;

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps").lines().count()
}

/// Resident memory in KiB.
fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value")
}

fn one_session() {
    let s = pw::load(Options { verifier: Config { special_pool: true, ..Config::default() }, ..Options::default() });
    let a = s.add_adapter(AdapterSpec::named("eth0"));
    s.start(a).unwrap();
    let h = pw::open(&s);
    pw::bind(&s, h, IPPROTO_UDP, 5000);
    let frame = || vec![NblSpec::of(vec![FrameSpec::ipv4(IPPROTO_UDP, 5000, 53).build()])];
    s.send(a, frame(), At::Dispatch).unwrap();
    s.receive(a, frame(), At::Dispatch, false).unwrap();
    let stats = pw::endpoint_stats(&s, h);
    assert_eq!((stats.tx.packets, stats.rx.packets), (1, 1));
    s.close(h).unwrap();
    s.pause(a).unwrap();
    s.detach(a).unwrap();
    let report = s.unload();
    assert!(report.violations.is_empty() && report.leaked.is_empty(), "{report}");
}

#[test]
fn many_sessions_stay_in_flat_memory() {
    let total: usize = std::env::var("PORTWATCH_SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let warm_up = (total / 100).max(100);
    for _ in 0..warm_up {
        one_session();
    }
    let (maps0, rss0) = (mappings(), rss_kib());
    for _ in warm_up..total {
        one_session();
    }
    let (maps1, rss1) = (mappings(), rss_kib());
    eprintln!(
        "after {warm_up} sessions: {maps0} mappings, {rss0} KiB resident; after {total}: {maps1} mappings, {rss1} KiB"
    );
    assert!(maps1 <= maps0 + 32, "mappings grew from {maps0} to {maps1} over {} sessions", total - warm_up);
    assert!(rss1 <= rss0 + 16 * 1024, "resident memory grew from {rss0} KiB to {rss1} KiB");
}

/// One long session: `PORTWATCH_PACKETS` packets (default 100,000, half
/// sent, half received) through the real driver with special pool on, the
/// memory after the first tenth compared with the end: the per-packet
/// state (lent NBL pages and their quarantine, guarded buffers, the NBL
/// table, stack measurement) is bounded, so a run of hours
/// (`portwatch-check --duration`) is too.
#[test]
fn many_packets_in_one_session_stay_in_flat_memory() {
    let total: usize = std::env::var("PORTWATCH_PACKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let s = pw::load(Options { verifier: Config { special_pool: true, ..Config::default() }, ..Options::default() });
    let a = s.add_adapter(AdapterSpec::named("eth0"));
    s.start(a).unwrap();
    let h = pw::open(&s);
    pw::bind(&s, h, IPPROTO_UDP, 5000);
    let spec = NblSpec::of(vec![FrameSpec::ipv4(IPPROTO_UDP, 5000, 53).build()]);
    let pair = || {
        assert!(s.send(a, vec![spec.clone()], At::Dispatch).unwrap()[0].delivered);
        assert!(s.receive(a, vec![spec.clone()], At::Dispatch, false).unwrap()[0].delivered);
    };
    let warm_up = total / 10;
    for _ in 0..warm_up / 2 {
        pair();
    }
    let (maps0, rss0) = (mappings(), rss_kib());
    for _ in warm_up / 2..total / 2 {
        pair();
    }
    let (maps1, rss1) = (mappings(), rss_kib());
    eprintln!(
        "after {warm_up} packets: {maps0} mappings, {rss0} KiB resident; after {total}: {maps1} mappings, {rss1} KiB"
    );
    let stats = pw::endpoint_stats(&s, h);
    assert_eq!((stats.tx.packets, stats.rx.packets), ((total / 2) as u64, (total / 2) as u64));
    s.close(h).unwrap();
    s.pause(a).unwrap();
    s.detach(a).unwrap();
    let report = s.unload();
    assert!(report.violations.is_empty() && report.leaked.is_empty(), "{report}");
    assert!(maps1 <= maps0 + 32, "mappings grew from {maps0} to {maps1} over {} packets", total - warm_up);
    assert!(rss1 <= rss0 + 4 * 1024, "resident memory grew from {rss0} KiB to {rss1} KiB");
}
