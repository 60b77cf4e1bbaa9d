//! Per-packet counting, shared by the send and receive paths.

use crate::parse::{self, Flow};
use crate::percpu::Cpu;
use crate::ports::{Direction, PortTable, Protocol};

/// Counts one packet whose first bytes are `prefix` and whose full length is
/// `bytes`: once for every endpoint bound to its destination port and once
/// for every endpoint bound to its source port (once only when the two ports
/// are equal), in `cpu`'s counters. Called under the port table's read
/// lock, at DISPATCH_LEVEL on processor `cpu`.
#[inline(always)]
pub fn count_packet(table: &PortTable, prefix: &[u8], bytes: u64, direction: Direction, cpu: Cpu<'_>) {
    // The common frame has its own straight-line copy of the counting: one
    // merged path for both parses would pass the flow through a packed
    // register and unpack it again.
    if let Some(flow) = parse::classify_plain_ipv4(prefix) {
        count_flow(table, flow, bytes, direction, cpu);
    } else if let Some(flow) = parse::classify_general(prefix) {
        count_flow(table, flow, bytes, direction, cpu);
    }
}

/// Counts a classified packet; see [`count_packet`].
#[inline(always)]
pub fn count_flow(table: &PortTable, flow: Flow, bytes: u64, direction: Direction, cpu: Cpu<'_>) {
    if let Some(protocol) = Protocol::of(flow.protocol) {
        table.count_flow(protocol, flow.src_port, flow.dst_port, direction, bytes, cpu);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{EndpointId, PortKey};

    #[test]
    fn counts_both_ports_once_each() {
        let mut t = PortTable::try_new().unwrap();
        let (a, b) = (EndpointId(1), EndpointId(2));
        t.bind_now(PortKey { protocol: 6, port: 80 }, a).unwrap();
        t.bind_now(PortKey { protocol: 6, port: 5000 }, b).unwrap();
        t.bind_now(PortKey { protocol: 6, port: 7 }, a).unwrap();
        let cpu = Cpu::for_test(1);
        count_flow(&t, Flow { protocol: 6, src_port: 5000, dst_port: 80 }, 100, Direction::Tx, cpu);
        count_flow(&t, Flow { protocol: 6, src_port: 7, dst_port: 7 }, 10, Direction::Rx, cpu);
        count_flow(&t, Flow { protocol: 17, src_port: 80, dst_port: 80 }, 10, Direction::Rx, cpu);
        assert_eq!(t.binding_traffic(PortKey { protocol: 6, port: 80 }, a).unwrap().tx.packets, 1);
        assert_eq!(t.binding_traffic(PortKey { protocol: 6, port: 5000 }, b).unwrap().tx.packets, 1);
        assert_eq!(t.binding_traffic(PortKey { protocol: 6, port: 7 }, a).unwrap().rx.packets, 1);
    }
}
