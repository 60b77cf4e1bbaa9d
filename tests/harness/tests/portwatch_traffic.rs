//! portwatch.sys: traffic in both directions at both IRQLs on two adapters,
//! with ports bound by two endpoints, then exact counter checks against the
//! frame oracle.

mod pw;

use std::collections::BTreeSet;

use portwatch_harness::frames::{self, Frame, FrameSpec};
use portwatch_harness::nbl::{Layout, NblSpec};
use portwatch_harness::ndis::{AdapterSpec, At, Completion};
use portwatch_harness::session::Options;
use portwatch_proto::{Counters, PROTO_TCP, PROTO_UDP};

/// What an endpoint bound to `ports` must have counted for `nbls`
/// (looped-back NBLs are not counted, R21).
fn expected(nbls: &[NblSpec], ports: &BTreeSet<(u8, u16)>) -> Counters {
    let mut c = Counters::default();
    for frame in nbls.iter().filter(|n| !n.loopback).flat_map(|n| &n.frames) {
        if frame.keys.iter().any(|k| ports.contains(k)) {
            c.packets += 1;
            c.bytes += frame.bytes.len() as u64;
        }
    }
    c
}

fn add(a: &mut Counters, b: Counters) {
    a.packets += b.packets;
    a.bytes += b.bytes;
}

fn traffic() -> Vec<Frame> {
    let ports = [(PROTO_TCP, 80), (PROTO_UDP, 53), (PROTO_TCP, 443), (PROTO_UDP, 5353), (PROTO_TCP, 22)];
    frames::mixed(&ports, 40000).iter().map(FrameSpec::build).collect()
}

fn send_nbls(frames: &[Frame]) -> Vec<NblSpec> {
    frames
        .chunks(2)
        .enumerate()
        .map(|(i, c)| NblSpec {
            frames: c.to_vec(),
            layout: match i % 3 {
                0 => Layout::default(),
                1 => Layout { data_offset: 6, headroom_mdl: true, cuts: vec![10, 15, 23, 35] },
                _ => Layout::every(5, 300),
            },
            loopback: i % 5 == 4,
        })
        .collect()
}

fn receive_nbls(frames: &[Frame]) -> Vec<NblSpec> {
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| NblSpec {
            frames: vec![f.clone()],
            layout: Layout::every(3 + i % 9, f.bytes.len()),
            loopback: false,
        })
        .collect()
}

fn run(completion: Completion) {
    let s = pw::load(Options { completion, ..Options::default() });
    let adapters = [s.add_adapter(AdapterSpec::named("eth0")), s.add_adapter(AdapterSpec::named("eth1"))];
    for a in adapters {
        s.start(a).unwrap();
    }
    let (ea, eb) = (pw::open(&s), pw::open(&s));
    let ports_a: BTreeSet<(u8, u16)> = [(PROTO_TCP, 80), (PROTO_UDP, 53)].into();
    let ports_b: BTreeSet<(u8, u16)> = [(PROTO_TCP, 443), (PROTO_UDP, 53), (PROTO_UDP, 5353)].into();
    for &(p, n) in &ports_a {
        pw::bind(&s, ea, p, n);
    }
    for &(p, n) in &ports_b {
        pw::bind(&s, eb, p, n);
    }
    let frames = traffic();
    let (mut tx_a, mut rx_a, mut tx_b, mut rx_b) = Default::default();
    for a in adapters {
        for at in [At::Passive, At::Dispatch, At::DispatchUnflagged] {
            let sends = send_nbls(&frames);
            let done = s.send(a, sends.clone(), at).unwrap();
            assert!(done.iter().all(|o| o.delivered && o.status == 0), "{done:?}");
            add(&mut tx_a, expected(&sends, &ports_a));
            add(&mut tx_b, expected(&sends, &ports_b));
            for resources in [false, true] {
                let rx_at = if resources { At::Dispatch } else { at };
                let receives = receive_nbls(&frames);
                let done = s.receive(a, receives.clone(), rx_at, resources).unwrap();
                assert!(done.iter().all(|o| o.delivered), "{done:?}");
                add(&mut rx_a, expected(&receives, &ports_a));
                add(&mut rx_b, expected(&receives, &ports_b));
            }
        }
    }
    assert!(tx_a.packets > 0 && rx_b.packets > 0, "the traffic hits bound ports");
    let a = pw::endpoint_stats(&s, ea);
    assert_eq!((a.bound_ports, a.tx, a.rx), (2, tx_a, rx_a), "endpoint A");
    let b = pw::endpoint_stats(&s, eb);
    assert_eq!((b.bound_ports, b.tx, b.rx), (3, tx_b, rx_b), "endpoint B");
    let only_a: BTreeSet<(u8, u16)> = [(PROTO_TCP, 80)].into();
    let p80 = pw::port_stats(&s, ea, PROTO_TCP, 80);
    assert_eq!(p80.endpoints, 1);
    let mut tx80 = Counters::default();
    for _ in 0..6 {
        add(&mut tx80, expected(&send_nbls(&frames), &only_a));
    }
    assert_eq!(p80.tx, tx80, "TCP/80 is bound by A only");
    assert_eq!(pw::port_stats(&s, eb, PROTO_UDP, 53).endpoints, 2);
    let report = s.report();
    assert_eq!(report.ndis.frames_modified, 0, "PortWatch never modifies traffic");
    s.close(ea).unwrap();
    s.close(eb).unwrap();
    for a in adapters {
        s.pause(a).unwrap();
        s.detach(a).unwrap();
    }
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.leaked.is_empty(), "{report}");
}

#[test]
fn counts_exactly_with_deferred_completion() {
    run(Completion::Deferred);
}

#[test]
fn counts_exactly_with_inline_completion() {
    run(Completion::Inline);
}

#[test]
fn counts_exactly_with_completion_from_another_thread() {
    run(Completion::OtherThread);
}

/// The INF's `FilterType`: 1 monitoring, 2 modifying.
fn inf_filter_type() -> u32 {
    let inx = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inf/portwatch.inx");
    let text = std::fs::read_to_string(&inx).expect("read inf/portwatch.inx");
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.starts_with(';') && l.replace(' ', "").contains("Ndi,FilterType,"))
        .expect("the INF sets Ndi\\FilterType");
    line.rsplit(',').next().and_then(|v| v.trim().parse().ok()).expect("FilterType value")
}

/// An adapter whose stack already holds two other modifying filters: the
/// filter type the INF installs decides how many PortWatch modules NDIS
/// binds (a monitoring filter gets one above each modifying filter), and
/// every packet must be counted exactly once.
#[test]
fn counts_each_packet_once_in_a_stack_with_other_filters() {
    let filter_type = inf_filter_type();
    assert_eq!(filter_type, 2, "PortWatch installs as a modifying filter");
    let s = pw::load(Options::default());
    let spec =
        AdapterSpec { other_modifying_filters: 2, driver_monitors: filter_type == 1, ..AdapterSpec::named("eth0") };
    let a = s.add_adapter(spec);
    s.start(a).unwrap();
    assert_eq!(s.modules(a).len(), 1, "one PortWatch module on the adapter");
    let e = pw::open(&s);
    let ports: BTreeSet<(u8, u16)> = [(PROTO_TCP, 80), (PROTO_UDP, 53)].into();
    for &(p, n) in &ports {
        pw::bind(&s, e, p, n);
    }
    let frames = traffic();
    let sends = send_nbls(&frames);
    s.send(a, sends.clone(), At::Dispatch).unwrap();
    let receives = receive_nbls(&frames);
    s.receive(a, receives.clone(), At::Dispatch, false).unwrap();
    let stats = pw::endpoint_stats(&s, e);
    assert_eq!(stats.tx, expected(&sends, &ports), "each sent packet counted once");
    assert_eq!(stats.rx, expected(&receives, &ports), "each received packet counted once");
    s.close(e).unwrap();
    s.pause(a).unwrap();
    s.detach(a).unwrap();
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.leaked.is_empty(), "{report}");
}
