//! Scenario 7 at CI size: ten million packets through the real driver
//! under special pool, counted exactly per endpoint, port and direction,
//! with the process's memory, mappings, threads and descriptors flat.

mod common;

use portwatch_scenarios::scenarios::flood::PACKETS_PER_OP;
use portwatch_scenarios::{Params, Scenario};

/// Packets through the driver in the CI run (`PORTWATCH_FLOOD_PACKETS`
/// overrides).
const PACKETS: u64 = 10_000_000;

#[test]
fn ten_million_packets_count_exactly_in_flat_memory() {
    let packets = std::env::var("PORTWATCH_FLOOD_PACKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(PACKETS);
    // A worker may see the budget spent while another gives an operation
    // back: a few operations more cover that.
    let ops = packets.div_ceil(PACKETS_PER_OP) + 8;
    let t = common::target();
    let s = Scenario::Flood.run(&t, &Params::ops(2, ops, 11));
    common::assert_clean(&s, ops);
    assert!(s.packets >= packets, "only {} packets through the driver\n{s}", s.packets);
    for figure in ["resident KiB near the end", "mappings near the end", "threads near the end"] {
        assert!(s.model_count(figure) > 0, "no resource sample: {figure}\n{s}");
    }
}
