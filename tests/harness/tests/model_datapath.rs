//! The model's send and receive paths through the fixture LWF: NBL chains
//! with several NET_BUFFERs, MDL chains cut inside headers, DataOffset,
//! both IRQLs, every completion mode, paused modules, status and OIDs.

mod common;

use ndis_sys::NDIS_STATUS_PAUSED;
use portwatch_harness::frames::{self, FrameSpec, IPPROTO_TCP, IPPROTO_UDP};
use portwatch_harness::nbl::{Layout, NblSpec};
use portwatch_harness::ndis::{AdapterSpec, At, Completion};
use portwatch_harness::session::{Options, Session};

/// Frames of every shape, and how many of them have an IPv4 / IPv6
/// EtherType right after the MAC addresses (what the fixture counts: a
/// VLAN-tagged frame has 0x8100 there).
fn mixed() -> (Vec<frames::Frame>, u64, u64) {
    let specs = frames::mixed(&[(IPPROTO_TCP, 80), (IPPROTO_UDP, 53), (IPPROTO_TCP, 443)], 40000);
    let untagged = |s: &&FrameSpec| s.vlan.is_none();
    let v4 = specs.iter().filter(untagged).filter(|s| matches!(s.network, frames::Network::V4 { .. })).count() as u64;
    let v6 = specs.iter().filter(untagged).filter(|s| matches!(s.network, frames::Network::V6 { .. })).count() as u64;
    (specs.iter().map(FrameSpec::build).collect(), v4, v6)
}

/// NBLs of 1..3 NET_BUFFERs each, with varied layouts (headers cut across
/// MDLs, headroom in the first MDL or in its own).
fn nbls(frames: &[frames::Frame]) -> Vec<NblSpec> {
    frames
        .chunks(3)
        .enumerate()
        .map(|(i, chunk)| NblSpec {
            frames: chunk.to_vec(),
            layout: match i % 4 {
                0 => Layout::default(),
                1 => Layout { data_offset: 10, headroom_mdl: false, cuts: vec![5, 13, 14, 20] },
                2 => Layout { data_offset: 32, headroom_mdl: true, cuts: vec![1, 2, 3] },
                _ => Layout::every(7, 200),
            },
            loopback: i == 2,
        })
        .collect()
}

fn started(completion: Completion) -> (Session, portwatch_harness::ndis::AdapterId) {
    let s = common::load(Options { completion, ..Options::default() });
    let a = s.add_adapter(AdapterSpec::named("eth0"));
    s.start(a).unwrap();
    (s, a)
}

fn traffic_both_ways(completion: Completion) {
    let (s, a) = started(completion);
    let (frames, v4, v6) = mixed();
    let n = frames.len() as u64;
    let mut expected = [0u64; 4];
    for at in [At::Passive, At::Dispatch, At::DispatchUnflagged] {
        let sent = s.send(a, nbls(&frames), at).unwrap();
        assert!(sent.iter().all(|o| o.delivered && o.status == 0), "{sent:?}");
        expected[0] += n;
        for resources in [false, true] {
            let at_rx = if at == At::Passive && resources { At::Dispatch } else { at };
            let one_per_nbl: Vec<NblSpec> = frames.iter().map(|f| NblSpec::of(vec![f.clone()])).collect();
            let got = s.receive(a, one_per_nbl, at_rx, resources).unwrap();
            assert!(got.iter().all(|o| o.delivered), "{got:?}");
            expected[1] += n;
        }
        expected[2] += 3 * v4;
        expected[3] += 3 * v6;
    }
    let c = common::counters(&s);
    assert_eq!(c[..4], expected, "sends, receives, IPv4, IPv6 seen by the filter");
    let report = s.report();
    assert_eq!(report.ndis.nbs_to_miniport, 3 * n);
    assert_eq!(report.ndis.nbs_to_protocol, 6 * n);
    assert_eq!(report.ndis.frames_modified, 0, "a pass-through filter changes nothing");
    assert_eq!(report.ndis.nbls_allocated, report.ndis.nbls_finished);
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.leaked.is_empty(), "{report}");
}

#[test]
fn traffic_with_inline_completion() {
    traffic_both_ways(Completion::Inline);
}

#[test]
fn traffic_with_deferred_completion() {
    traffic_both_ways(Completion::Deferred);
}

#[test]
fn traffic_with_completion_from_another_thread() {
    traffic_both_ways(Completion::OtherThread);
}

#[test]
fn paused_filter_completes_sends_paused_and_returns_receives() {
    let (s, a) = started(Completion::Deferred);
    s.pause(a).unwrap();
    let f = FrameSpec::ipv4(IPPROTO_UDP, 1, 2).build();
    let sent = s.send(a, vec![NblSpec::of(vec![f.clone()]), NblSpec::of(vec![f.clone()])], At::Dispatch).unwrap();
    assert!(sent.iter().all(|o| !o.delivered && o.status == NDIS_STATUS_PAUSED), "{sent:?}");
    let got = s.receive(a, vec![NblSpec::of(vec![f.clone()])], At::Dispatch, false).unwrap();
    assert!(!got[0].delivered, "returned by the paused filter");
    let got = s.receive(a, vec![NblSpec::of(vec![f])], At::Dispatch, true).unwrap();
    assert!(!got[0].delivered, "dropped by the paused filter");
    let report = s.report();
    assert_eq!(report.ndis.sends_completed_paused, 2);
    assert_eq!(common::counters(&s)[..2], [0, 0]);
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
}

#[test]
fn status_goes_through_and_oids_around() {
    let (s, a) = started(Completion::Inline);
    s.indicate_status(a, 0x4001_000B, At::Dispatch).unwrap();
    s.oid_request(a).unwrap();
    let report = s.report();
    assert_eq!(report.ndis.callbacks["FilterStatus"], 1);
    assert_eq!(report.ndis.status_forwarded, 1);
    assert_eq!(report.ndis.status_bypassed, 0);
    assert_eq!(report.ndis.oids_bypassed, 1);
    assert!(s.unload().violations.is_empty());
}

#[test]
fn concurrent_traffic_counts_exactly() {
    let (s, a) = started(Completion::Deferred);
    let b = s.add_adapter(AdapterSpec::named("eth1"));
    s.start(b).unwrap();
    let (frames, _, _) = mixed();
    let per_thread = 20u64;
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (s, frames) = (&s, &frames);
            scope.spawn(move || {
                let adapter = if t % 2 == 0 { a } else { b };
                for i in 0..per_thread {
                    let at = if i % 2 == 0 { At::Dispatch } else { At::Passive };
                    s.send(adapter, nbls(frames), at).unwrap();
                    s.receive(adapter, vec![NblSpec::of(vec![frames[0].clone()])], At::Dispatch, i % 3 == 0).unwrap();
                }
            });
        }
    });
    let c = common::counters(&s);
    assert_eq!(c[0], 4 * per_thread * frames.len() as u64);
    assert_eq!(c[1], 4 * per_thread);
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
}
