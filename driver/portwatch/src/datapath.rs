//! Per-packet counting, shared by the send and receive paths.

use core::cell::Cell;

use ndis_sync::Dispatch;

use crate::parse::{self, Flow};
use crate::percpu::{Cpu, NoSlot};
use crate::ports::{Direction, PortKey, PortTable, Protocol, Watch};

/// Counts one packet whose first bytes are `prefix` and whose full length is
/// `bytes`: once for every endpoint bound to its destination port and once
/// for every endpoint bound to its source port (once only when the two ports
/// are equal), in `cpu`'s counters. Called under the port table's read
/// lock, at DISPATCH_LEVEL on processor `cpu`. `watched` notes whether the
/// packet is watched (an endpoint bound to one of its ports enabled
/// events; see [`Watch`]): the caller then records its events with
/// [`record_packet`] after counting, out of line, so that nothing the event
/// stream needs is kept alive here. [`NoSlot`]: `cpu` has no slot (the
/// caller bug-checks).
#[inline(always)]
pub fn count_packet<W: Watch>(
    table: &PortTable,
    prefix: &[u8],
    bytes: u64,
    direction: Direction,
    cpu: Cpu<'_>,
    watched: &W,
) -> Result<(), NoSlot> {
    // The general path: the common frame is counted by the data path's
    // own loop (`count_plain_ipv4`, from nbl.rs), so one copy of the
    // counting serves every frame that comes here.
    match parse::classify(prefix) {
        Some(flow) => count_flow_into(table, flow, bytes, direction, cpu, watched),
        None => Ok(()),
    }
}

/// Counts a packet whose first bytes are `header` if it is the common frame
/// (untagged Ethernet, IPv4 without options, not a later fragment; see
/// [`parse::plain_ipv4_unchecked_protocol`]), as [`count_packet`] would,
/// and returns true; returns false, having counted nothing, for any other
/// frame (the caller then takes the general path). [`NoSlot`]: `cpu` has
/// no slot (the caller bug-checks).
#[inline(always)]
pub fn count_plain_ipv4<W: Watch>(
    table: &PortTable,
    header: &[u8; parse::PLAIN_IPV4],
    bytes: u64,
    direction: Direction,
    cpu: Cpu<'_>,
    watched: &W,
) -> Result<bool, NoSlot> {
    let Some(flow) = parse::plain_ipv4_unchecked_protocol(header) else { return Ok(false) };
    count_flow_into(table, flow, bytes, direction, cpu, watched)?;
    Ok(true)
}

/// Counts a classified packet; see [`count_packet`].
#[inline(always)]
/// Returns whether it is watched.
pub fn count_flow(table: &PortTable, flow: Flow, bytes: u64, direction: Direction, cpu: Cpu<'_>) -> bool {
    let watched = Cell::new(false);
    match count_flow_into(table, flow, bytes, direction, cpu, &watched) {
        Ok(()) => watched.get(),
        Err(no_slot) => no_slot.bug_check(),
    }
}

/// [`count_flow`], noting in `watched` whether the packet is watched.
#[inline(always)]
fn count_flow_into<W: Watch>(
    table: &PortTable,
    flow: Flow,
    bytes: u64,
    direction: Direction,
    cpu: Cpu<'_>,
    watched: &W,
) -> Result<(), NoSlot> {
    match Protocol::of(flow.protocol) {
        Some(protocol) => table.count_flow(protocol, flow.src_port, flow.dst_port, direction, bytes, cpu, watched),
        None => Ok(()),
    }
}

/// Records the events of a packet [`count_packet`] said is watched: one per
/// endpoint with events enabled bound to its destination port, one per such
/// endpoint bound to its source port (once when the ports are equal).
/// `if_index` is the module's. Called under the same hold of the read lock
/// (the bindings' sinks are valid only under it).
pub fn record_packet(
    table: &PortTable,
    prefix: &[u8],
    bytes: u64,
    direction: Direction,
    if_index: u32,
    dispatch: &mut Dispatch,
) {
    let Some(flow) = parse::classify(prefix) else { return };
    let tap = Tap { prefix, if_index };
    let mut keys = [PortKey { protocol: flow.protocol, port: flow.dst_port }; 2];
    keys[1].port = flow.src_port;
    let n = if flow.src_port == flow.dst_port { 1 } else { 2 };
    for key in &keys[..n] {
        for sink in table.bound(*key).into_iter().flat_map(|b| b.sinks()) {
            crate::events::packet(sink, dispatch, &tap, flow, bytes, direction, *key);
        }
    }
}

/// What an event record takes from the packet besides its flow.
pub struct Tap<'a> {
    /// The packet's first bytes (addresses are parsed from them).
    pub prefix: &'a [u8],
    /// `BaseMiniportIfIndex` of the module.
    pub if_index: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{EndpointId, NoEvents as NoEventsForTest};

    #[test]
    fn counts_both_ports_once_each() {
        let mut t = PortTable::try_new().unwrap();
        let (a, b) = (EndpointId(1), EndpointId(2));
        t.bind_now(PortKey { protocol: 6, port: 80 }, a).unwrap();
        t.bind_now(PortKey { protocol: 6, port: 5000 }, b).unwrap();
        t.bind_now(PortKey { protocol: 6, port: 7 }, a).unwrap();
        let cpu = Cpu::for_test(1);
        assert!(!count_flow(&t, Flow { protocol: 6, src_port: 5000, dst_port: 80 }, 100, Direction::Tx, cpu));
        assert!(!count_flow(&t, Flow { protocol: 6, src_port: 7, dst_port: 7 }, 10, Direction::Rx, cpu));
        assert!(!count_flow(&t, Flow { protocol: 17, src_port: 80, dst_port: 80 }, 10, Direction::Rx, cpu));
        assert_eq!(t.binding_traffic(PortKey { protocol: 6, port: 80 }, a).unwrap().tx.packets, 1);
        assert_eq!(t.binding_traffic(PortKey { protocol: 6, port: 5000 }, b).unwrap().tx.packets, 1);
        assert_eq!(t.binding_traffic(PortKey { protocol: 6, port: 7 }, a).unwrap().rx.packets, 1);
    }

    /// The common frame's path (`count_plain_ipv4`) leaves the protocol to
    /// `Protocol::of`: a plain IPv4 frame of another protocol is counted
    /// nowhere, whatever its bytes where ports would be, but is handled
    /// (not sent to the general path); the same frame as UDP is counted.
    /// The general path (`count_packet`) agrees; a frame that is not plain
    /// IPv4 is left to it.
    #[test]
    fn plain_ipv4_of_another_protocol_is_not_counted() {
        let mut t = PortTable::try_new().unwrap();
        t.bind_now(PortKey { protocol: 6, port: 80 }, EndpointId(1)).unwrap();
        t.bind_now(PortKey { protocol: 17, port: 80 }, EndpointId(1)).unwrap();
        let mut frame = [0u8; parse::PLAIN_IPV4];
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        frame[14] = 0x45;
        frame[34..36].copy_from_slice(&80u16.to_be_bytes());
        frame[36..38].copy_from_slice(&80u16.to_be_bytes());
        let udp = |t: &PortTable| t.binding_traffic(PortKey { protocol: 17, port: 80 }, EndpointId(1)).unwrap();
        let tcp = |t: &PortTable| t.binding_traffic(PortKey { protocol: 6, port: 80 }, EndpointId(1)).unwrap();
        let watched = Cell::new(false);
        let cpu = Cpu::for_test(0);
        for protocol in [1u8, 2, 47, 58, 255] {
            frame[23] = protocol;
            assert!(count_plain_ipv4(&t, &frame, 64, Direction::Rx, cpu, &watched).unwrap());
            count_packet(&t, &frame, 64, Direction::Rx, cpu, &watched).unwrap();
        }
        assert_eq!((udp(&t).rx.packets, tcp(&t).rx.packets), (0, 0));
        frame[23] = 17;
        assert!(count_plain_ipv4(&t, &frame, 64, Direction::Rx, cpu, &watched).unwrap());
        count_packet(&t, &frame, 64, Direction::Rx, cpu, &watched).unwrap();
        assert_eq!((udp(&t).rx.packets, tcp(&t).rx.packets), (2, 0));
        assert!(!watched.get());
        // Tagged, options, a later fragment: left to the general path.
        for (at, value) in [(12, 0x81), (14, 0x46), (21, 1)] {
            let mut other = frame;
            other[at] = value;
            assert!(!count_plain_ipv4(&t, &other, 64, Direction::Rx, cpu, &watched).unwrap());
        }
        assert_eq!(udp(&t).rx.packets, 2, "nothing counted for them");
    }

    /// A processor index past the per-processor blocks is reported, not
    /// counted into another processor's slot.
    #[test]
    fn a_processor_without_a_slot_is_reported() {
        let mut t = PortTable::try_new().unwrap();
        t.bind_now(PortKey { protocol: 17, port: 80 }, EndpointId(1)).unwrap();
        let flow = Flow { protocol: 17, src_port: 9, dst_port: 80 };
        let past = Cpu::for_test(crate::percpu::processor_count());
        assert!(count_flow_into(&t, flow, 1, Direction::Rx, past, &NoEventsForTest).is_err());
        let traffic = t.binding_traffic(PortKey { protocol: 17, port: 80 }, EndpointId(1)).unwrap();
        assert_eq!(traffic.rx.packets, 0);
    }
}
