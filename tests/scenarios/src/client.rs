//! Typed IOCTL calls over any [`Target`], encoded with the wire structs of
//! `portwatch-proto`.

use portwatch_proto::{self as proto, Wire};

use crate::target::{Handle, NtStatus, Reply, Target, TargetError};

/// The NTSTATUS values the control interface documents.
pub mod status {
    use super::NtStatus;
    /// STATUS_SUCCESS.
    pub const SUCCESS: NtStatus = 0;
    /// STATUS_BUFFER_OVERFLOW (a warning: the header is copied back).
    pub const BUFFER_OVERFLOW: NtStatus = 0x8000_0005_u32 as i32;
    /// STATUS_INVALID_HANDLE.
    pub const INVALID_HANDLE: NtStatus = 0xC000_0008_u32 as i32;
    /// STATUS_INVALID_PARAMETER.
    pub const INVALID_PARAMETER: NtStatus = 0xC000_000D_u32 as i32;
    /// STATUS_INVALID_DEVICE_REQUEST.
    pub const INVALID_DEVICE_REQUEST: NtStatus = 0xC000_0010_u32 as i32;
    /// STATUS_BUFFER_TOO_SMALL.
    pub const BUFFER_TOO_SMALL: NtStatus = 0xC000_0023_u32 as i32;
    /// STATUS_QUOTA_EXCEEDED.
    pub const QUOTA_EXCEEDED: NtStatus = 0xC000_0044_u32 as i32;
    /// STATUS_DELETE_PENDING.
    pub const DELETE_PENDING: NtStatus = 0xC000_0056_u32 as i32;
    /// STATUS_REVISION_MISMATCH.
    pub const REVISION_MISMATCH: NtStatus = 0xC000_0059_u32 as i32;
    /// STATUS_INSUFFICIENT_RESOURCES.
    pub const INSUFFICIENT_RESOURCES: NtStatus = 0xC000_009A_u32 as i32;
    /// STATUS_DUPLICATE_OBJECTID.
    pub const DUPLICATE_OBJECTID: NtStatus = 0xC000_022A_u32 as i32;
    /// STATUS_NOT_FOUND.
    pub const NOT_FOUND: NtStatus = 0xC000_0225_u32 as i32;
    /// STATUS_DEVICE_BUSY (a warning: nothing is copied back with it).
    pub const DEVICE_BUSY: NtStatus = 0x8000_0011_u32 as i32;
    /// STATUS_CANCELLED: a pending IOCTL_READ_EVENTS cancelled.
    pub const CANCELLED: NtStatus = 0xC000_0120_u32 as i32;
    /// STATUS_INVALID_DEVICE_STATE: events not enabled, or enabled twice.
    pub const INVALID_DEVICE_STATE: NtStatus = 0xC000_0184_u32 as i32;

    /// Every status the driver may complete a PortWatch IOCTL with.
    pub const DOCUMENTED: [NtStatus; 14] = [
        CANCELLED,
        INVALID_DEVICE_STATE,
        SUCCESS,
        BUFFER_OVERFLOW,
        INVALID_PARAMETER,
        INVALID_DEVICE_REQUEST,
        BUFFER_TOO_SMALL,
        QUOTA_EXCEEDED,
        DELETE_PENDING,
        REVISION_MISMATCH,
        INSUFFICIENT_RESOURCES,
        DUPLICATE_OBJECTID,
        NOT_FOUND,
        DEVICE_BUSY,
    ];
}

/// The reply's status as a `Result`: success is `Ok`.
fn ok(reply: Reply) -> Result<Reply, TargetError> {
    if reply.status == status::SUCCESS {
        Ok(reply)
    } else {
        Err(TargetError::Status(reply.status))
    }
}

fn decode<T: Wire>(reply: &Reply) -> Result<T, TargetError> {
    T::read(&reply.output)
        .ok_or_else(|| TargetError::Os(format!("reply of {} bytes, expected {}", reply.output.len(), T::SIZE)))
}

fn port_request(protocol: u8, port: u16) -> [u8; 8] {
    let mut b = [0u8; 8];
    proto::PortRequest { version: proto::PROTOCOL_VERSION, protocol, reserved: 0, port }.write(&mut b);
    b
}

/// Input of IOCTL_SET_LOCAL_ADDRESS.
pub fn local_address_input(address: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 8];
    proto::LocalAddressHeader { version: proto::PROTOCOL_VERSION, length: address.len() as u32 }.write(&mut b);
    b.extend_from_slice(address);
    b
}

/// Input of IOCTL_SET_PORT_NAME.
pub fn port_name_input(name: &[u16]) -> Vec<u8> {
    let mut b = vec![0u8; 8];
    proto::PortNameHeader { version: proto::PROTOCOL_VERSION, chars: name.len() as u32 }.write(&mut b);
    b.extend(name.iter().flat_map(|c| c.to_le_bytes()));
    b
}

/// Splits a variable-length reply into its header and body, checking that
/// the body is exactly `count * unit` bytes.
pub fn variable_reply(reply: &Reply, unit: usize) -> Result<(proto::VarHeader, &[u8]), TargetError> {
    let bad = |why: &str| TargetError::Os(format!("malformed variable reply: {why}"));
    let header =
        reply.output.get(..proto::VarHeader::SIZE).and_then(proto::VarHeader::read).ok_or_else(|| bad("short"))?;
    let body = &reply.output[proto::VarHeader::SIZE..];
    if body.len() != header.count as usize * unit || header.needed as usize != reply.output.len() {
        return Err(bad("count, needed and length disagree"));
    }
    Ok((header, body))
}

/// IOCTL_GET_VERSION.
pub fn version(t: &dyn Target, h: Handle) -> Result<proto::VersionInfo, TargetError> {
    decode(&ok(t.ioctl(h, proto::IOCTL_GET_VERSION, &[], proto::VersionInfo::SIZE as u32)?)?)
}

/// IOCTL_SET_LOCAL_ADDRESS.
pub fn set_local_address(t: &dyn Target, h: Handle, address: &[u8]) -> Result<(), TargetError> {
    ok(t.ioctl(h, proto::IOCTL_SET_LOCAL_ADDRESS, &local_address_input(address), 0)?).map(drop)
}

/// IOCTL_GET_LOCAL_ADDRESS with room for the largest address.
pub fn local_address(t: &dyn Target, h: Handle) -> Result<Vec<u8>, TargetError> {
    let room = (proto::VarHeader::SIZE + proto::MAX_LOCAL_ADDRESS as usize) as u32;
    let reply = ok(t.ioctl(h, proto::IOCTL_GET_LOCAL_ADDRESS, &[], room)?)?;
    Ok(variable_reply(&reply, 1)?.1.to_vec())
}

/// IOCTL_ENABLE_EVENTS with a ring of `records`.
pub fn enable_events(t: &dyn Target, h: Handle, records: u32) -> Result<(), TargetError> {
    let mut input = vec![0; proto::EnableEvents::SIZE];
    proto::EnableEvents { version: proto::PROTOCOL_VERSION, ring_records: records }.write(&mut input);
    ok(t.ioctl(h, proto::IOCTL_ENABLE_EVENTS, &input, 0)?).map(drop)
}

/// IOCTL_READ_EVENTS with room for `room` records: the batch header and
/// the records (at least one), or the error status (STATUS_CANCELLED when
/// cancelled while pending).
pub fn read_events(
    t: &dyn Target,
    h: Handle,
    room: usize,
) -> Result<(proto::EventBatchHeader, Vec<proto::EventRecord>), TargetError> {
    let len = proto::EventBatchHeader::SIZE + room * proto::EventRecord::SIZE;
    let reply = ok(t.ioctl(h, proto::IOCTL_READ_EVENTS, &[], len as u32)?)?;
    parse_events(&reply.output)
}

/// The batch header and records of a completed IOCTL_READ_EVENTS whose
/// output is `output` (the bytes the driver returned, no more).
pub fn parse_events(output: &[u8]) -> Result<(proto::EventBatchHeader, Vec<proto::EventRecord>), TargetError> {
    let bad = |what: &str| TargetError::Os(format!("IOCTL_READ_EVENTS reply: {what}"));
    let header_bytes = output.get(..proto::EventBatchHeader::SIZE).ok_or_else(|| bad("short"))?;
    let header = proto::EventBatchHeader::read(header_bytes).ok_or_else(|| bad("header"))?;
    let body = &output[proto::EventBatchHeader::SIZE..];
    if header.count == 0 || body.len() != header.count as usize * proto::EventRecord::SIZE {
        return Err(bad("count and length disagree"));
    }
    let records = body.chunks_exact(proto::EventRecord::SIZE).filter_map(proto::EventRecord::read).collect();
    Ok((header, records))
}

/// IOCTL_BIND_PORT.
pub fn bind(t: &dyn Target, h: Handle, protocol: u8, port: u16) -> Result<(), TargetError> {
    ok(t.ioctl(h, proto::IOCTL_BIND_PORT, &port_request(protocol, port), 0)?).map(drop)
}

/// IOCTL_UNBIND_PORT.
pub fn unbind(t: &dyn Target, h: Handle, protocol: u8, port: u16) -> Result<(), TargetError> {
    ok(t.ioctl(h, proto::IOCTL_UNBIND_PORT, &port_request(protocol, port), 0)?).map(drop)
}

/// IOCTL_GET_ENDPOINT_STATS.
pub fn endpoint_stats(t: &dyn Target, h: Handle) -> Result<proto::EndpointStats, TargetError> {
    decode(&ok(t.ioctl(h, proto::IOCTL_GET_ENDPOINT_STATS, &[], proto::EndpointStats::SIZE as u32)?)?)
}

/// IOCTL_GET_PORT_STATS.
pub fn port_stats(t: &dyn Target, h: Handle, protocol: u8, port: u16) -> Result<proto::PortStats, TargetError> {
    let reply =
        t.ioctl(h, proto::IOCTL_GET_PORT_STATS, &port_request(protocol, port), proto::PortStats::SIZE as u32)?;
    decode(&ok(reply)?)
}

/// IOCTL_SET_PORT_NAME.
pub fn set_port_name(t: &dyn Target, h: Handle, name: &[u16]) -> Result<(), TargetError> {
    ok(t.ioctl(h, proto::IOCTL_SET_PORT_NAME, &port_name_input(name), 0)?).map(drop)
}

/// IOCTL_GET_PORT_NAME with room for the longest name.
pub fn port_name(t: &dyn Target, h: Handle) -> Result<Vec<u16>, TargetError> {
    let room = (proto::VarHeader::SIZE + 2 * proto::MAX_PORT_NAME_CHARS as usize) as u32;
    let reply = ok(t.ioctl(h, proto::IOCTL_GET_PORT_NAME, &[], room)?)?;
    Ok(variable_reply(&reply, 2)?.1.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())
}

/// IOCTL_ENUM_FILTER_MODULES with room for `room` modules.
pub fn modules(t: &dyn Target, h: Handle, room: usize) -> Result<Vec<proto::ModuleInfo>, TargetError> {
    let out = (proto::VarHeader::SIZE + room * proto::ModuleInfo::SIZE) as u32;
    let reply = ok(t.ioctl(h, proto::IOCTL_ENUM_FILTER_MODULES, &[], out)?)?;
    let (_, body) = variable_reply(&reply, proto::ModuleInfo::SIZE)?;
    Ok(body.chunks_exact(proto::ModuleInfo::SIZE).filter_map(proto::ModuleInfo::read).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_carry_version_and_length() {
        let v = proto::PROTOCOL_VERSION as u8;
        assert_eq!(local_address_input(&[9, 8]), vec![v, 0, 0, 0, 2, 0, 0, 0, 9, 8]);
        assert_eq!(port_name_input(&[0x41]), vec![v, 0, 0, 0, 1, 0, 0, 0, 0x41, 0]);
        assert_eq!(port_request(6, 0x1234), [v, 0, 0, 0, 6, 0, 0x34, 0x12]);
    }

    #[test]
    fn variable_reply_rejects_inconsistent_lengths() {
        let mut out = vec![0u8; 12];
        proto::VarHeader { version: 1, needed: 14, count: 2 }.write(&mut out);
        out.extend_from_slice(&[5, 6]);
        let good = Reply { status: 0, output: out.clone() };
        assert_eq!(variable_reply(&good, 1).unwrap().1, &[5, 6]);
        out.pop();
        assert!(variable_reply(&Reply { status: 0, output: out }, 1).is_err());
    }

    #[test]
    fn documented_statuses_are_distinct() {
        let mut s = status::DOCUMENTED.to_vec();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), status::DOCUMENTED.len());
    }
}
