//! Per-packet counting, shared by the send and receive paths.

use ndis_sync::Dispatch;

use crate::parse::{self, Flow};
use crate::ports::{Direction, PortKey, PortTable};

/// What the event stream needs to know about a packet besides its flow:
/// taken by reference, and only read for a packet on a port bound by an
/// endpoint with events enabled.
pub struct Tap<'a> {
    /// The packet's first bytes (addresses are parsed from them).
    pub prefix: &'a [u8],
    /// `BaseMiniportIfIndex` of the module.
    pub if_index: u32,
}

/// Counts one packet whose first bytes are `prefix` and whose full length is
/// `bytes`: once for every endpoint bound to its destination port and once
/// for every endpoint bound to its source port (once only when the two ports
/// are equal), and records an event for those with events enabled. Called
/// under the port table's read lock, which lent `dispatch`.
pub fn count_packet(
    table: &PortTable,
    prefix: &[u8],
    bytes: u64,
    direction: Direction,
    if_index: u32,
    dispatch: &mut Dispatch,
) {
    if let Some(flow) = parse::classify(prefix) {
        count_flow(table, flow, bytes, direction, &Tap { prefix, if_index }, dispatch);
    }
}

/// Counts a classified packet; see [`count_packet`].
pub fn count_flow(table: &PortTable, flow: Flow, bytes: u64, direction: Direction, tap: &Tap, dispatch: &mut Dispatch) {
    let dst = PortKey { protocol: flow.protocol, port: flow.dst_port };
    table.count(dst, direction, bytes, |sink| crate::events::packet(sink, dispatch, tap, flow, bytes, direction, dst));
    if flow.src_port != flow.dst_port {
        let src = PortKey { protocol: flow.protocol, port: flow.src_port };
        table.count(src, direction, bytes, |sink| {
            crate::events::packet(sink, dispatch, tap, flow, bytes, direction, src)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::EndpointId;

    #[test]
    fn counts_both_ports_once_each() {
        let mut t = PortTable::try_new().unwrap();
        let (a, b) = (EndpointId(1), EndpointId(2));
        t.bind_now(PortKey { protocol: 6, port: 80 }, a).unwrap();
        t.bind_now(PortKey { protocol: 6, port: 5000 }, b).unwrap();
        t.bind_now(PortKey { protocol: 6, port: 7 }, a).unwrap();
        let tap = Tap { prefix: &[], if_index: 1 };
        ndis_sync::host::at_irql(ndis_sync::DISPATCH_LEVEL, || {
            // SAFETY: at_irql raised this thread to DISPATCH_LEVEL.
            let d = &mut unsafe { Dispatch::new_unchecked() };
            count_flow(&t, Flow { protocol: 6, src_port: 5000, dst_port: 80 }, 100, Direction::Tx, &tap, d);
            count_flow(&t, Flow { protocol: 6, src_port: 7, dst_port: 7 }, 10, Direction::Rx, &tap, d);
            count_flow(&t, Flow { protocol: 17, src_port: 80, dst_port: 80 }, 10, Direction::Rx, &tap, d);
        });
        assert_eq!(t.binding_traffic(PortKey { protocol: 6, port: 80 }, a).unwrap().tx.packets, 1);
        assert_eq!(t.binding_traffic(PortKey { protocol: 6, port: 5000 }, b).unwrap().tx.packets, 1);
        assert_eq!(t.binding_traffic(PortKey { protocol: 6, port: 7 }, a).unwrap().rx.packets, 1);
    }
}
