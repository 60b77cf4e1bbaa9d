//! The control interface's contract, written from the protocol's status
//! table (not from the driver's code): what a request may complete with,
//! and whether a reply is well formed. Used by the IOCTL storm and by the
//! IOCTL fuzz target.

use portwatch_proto::{self as proto, Wire};

use crate::client::{status, variable_reply};
use crate::target::{NtStatus, Reply};

/// What a request may complete with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Exactly this status: the input is malformed and nothing may change.
    Exactly(NtStatus),
    /// One of these: the request is well formed and the outcome depends on
    /// the driver's state.
    OneOf(Vec<NtStatus>),
}

impl Expected {
    /// Whether `s` is allowed.
    pub fn allows(&self, s: NtStatus) -> bool {
        match self {
            Expected::Exactly(e) => *e == s,
            Expected::OneOf(v) => v.contains(&s),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decode errors of a request without input and with a fixed minimum output.
fn no_input(input: &[u8], out_len: u32, min_out: usize) -> Option<NtStatus> {
    if !input.is_empty() {
        Some(status::INVALID_PARAMETER)
    } else if (out_len as usize) < min_out {
        Some(status::BUFFER_TOO_SMALL)
    } else {
        None
    }
}

/// Decode errors of a [`proto::PortRequest`] input.
fn port_input(input: &[u8]) -> Option<NtStatus> {
    let Some(req) = proto::PortRequest::read(input) else { return Some(status::INVALID_PARAMETER) };
    if !(proto::MIN_PROTOCOL_VERSION..=proto::PROTOCOL_VERSION).contains(&req.version) {
        return Some(status::REVISION_MISMATCH);
    }
    let protocol_ok = req.protocol == proto::PROTO_TCP || req.protocol == proto::PROTO_UDP;
    (!protocol_ok || req.reserved != 0 || req.port == 0).then_some(status::INVALID_PARAMETER)
}

/// Decode errors of an [`proto::EnableEvents`] input.
fn enable_input(input: &[u8]) -> Option<NtStatus> {
    let Some(req) = proto::EnableEvents::read(input) else { return Some(status::INVALID_PARAMETER) };
    if !(proto::EVENTS_PROTOCOL_VERSION..=proto::PROTOCOL_VERSION).contains(&req.version) {
        return Some(status::REVISION_MISMATCH);
    }
    (req.ring_records == 0 || req.ring_records > proto::MAX_EVENT_RING_RECORDS).then_some(status::INVALID_PARAMETER)
}

/// Decode errors of a header + `count * unit` bytes input.
fn variable_input(input: &[u8], unit: usize, max: u32) -> Option<NtStatus> {
    if input.len() < 8 {
        return Some(status::INVALID_PARAMETER);
    }
    if !(proto::MIN_PROTOCOL_VERSION..=proto::PROTOCOL_VERSION).contains(&u32_at(input, 0)) {
        return Some(status::REVISION_MISMATCH);
    }
    let count = u32_at(input, 4);
    let exact = u64::from(count) * unit as u64 == (input.len() - 8) as u64;
    (count > max || !exact).then_some(status::INVALID_PARAMETER)
}

/// A well-formed port name with a zero code unit inside: refused (the name
/// is saved as REG_SZ, which would end at the NUL).
fn nul_in_name(input: &[u8]) -> Option<NtStatus> {
    input[8..].chunks_exact(2).any(|c| c == [0, 0]).then_some(status::INVALID_PARAMETER)
}

/// What `code` with `input` and `out_len` output bytes may complete with.
/// STATUS_DELETE_PENDING is allowed for every well-formed request (the
/// handle may be closing) and STATUS_INSUFFICIENT_RESOURCES for those that
/// allocate.
pub fn expected(code: u32, input: &[u8], out_len: u32) -> Expected {
    use status::*;
    let (decode_error, mut ok): (Option<NtStatus>, Vec<NtStatus>) = match code {
        proto::IOCTL_GET_VERSION => (no_input(input, out_len, proto::VersionInfo::SIZE), vec![SUCCESS]),
        proto::IOCTL_GET_ENDPOINT_STATS => (no_input(input, out_len, proto::EndpointStats::SIZE), vec![SUCCESS]),
        proto::IOCTL_GET_LOCAL_ADDRESS | proto::IOCTL_GET_PORT_NAME => {
            (no_input(input, out_len, proto::VarHeader::SIZE), vec![SUCCESS, BUFFER_OVERFLOW])
        }
        proto::IOCTL_ENUM_FILTER_MODULES => (
            no_input(input, out_len, proto::VarHeader::SIZE),
            vec![SUCCESS, BUFFER_OVERFLOW, INSUFFICIENT_RESOURCES, DEVICE_BUSY],
        ),
        proto::IOCTL_SET_LOCAL_ADDRESS => {
            (variable_input(input, 1, proto::MAX_LOCAL_ADDRESS), vec![SUCCESS, INSUFFICIENT_RESOURCES])
        }
        proto::IOCTL_SET_PORT_NAME => {
            let e = variable_input(input, 2, proto::MAX_PORT_NAME_CHARS).or_else(|| nul_in_name(input));
            (e, vec![SUCCESS, INSUFFICIENT_RESOURCES])
        }
        proto::IOCTL_BIND_PORT => {
            (port_input(input), vec![SUCCESS, DUPLICATE_OBJECTID, QUOTA_EXCEEDED, INSUFFICIENT_RESOURCES])
        }
        proto::IOCTL_UNBIND_PORT => (port_input(input), vec![SUCCESS, NOT_FOUND]),
        proto::IOCTL_GET_PORT_STATS => {
            let e =
                port_input(input).or_else(|| ((out_len as usize) < proto::PortStats::SIZE).then_some(BUFFER_TOO_SMALL));
            (e, vec![SUCCESS])
        }
        proto::IOCTL_ENABLE_EVENTS => {
            (enable_input(input), vec![SUCCESS, INVALID_DEVICE_STATE, QUOTA_EXCEEDED, INSUFFICIENT_RESOURCES])
        }
        proto::IOCTL_READ_EVENTS => {
            let min = proto::EventBatchHeader::SIZE + proto::EventRecord::SIZE;
            (no_input(input, out_len, min), vec![SUCCESS, INVALID_DEVICE_STATE, QUOTA_EXCEEDED, CANCELLED])
        }
        _ => (Some(INVALID_DEVICE_REQUEST), Vec::new()),
    };
    match decode_error {
        Some(e) => Expected::Exactly(e),
        None => {
            ok.push(DELETE_PENDING);
            Expected::OneOf(ok)
        }
    }
}

/// Checks the bytes copied back for a reply to `code` with `out_len`
/// output bytes; `None` when well formed, else what is wrong.
pub fn check_reply(code: u32, out_len: u32, reply: &Reply) -> Option<String> {
    let n = reply.output.len();
    if n > out_len as usize {
        return Some(format!("{n} bytes copied back for an output buffer of {out_len}"));
    }
    let is_error = (reply.status as u32) >> 30 == 3;
    // STATUS_DEVICE_BUSY is a warning, but a refusal: nothing comes back.
    if is_error || reply.status == status::DEVICE_BUSY {
        return (n != 0).then(|| format!("{n} bytes copied back with status {:#x}", reply.status as u32));
    }
    if reply.status == status::BUFFER_OVERFLOW {
        let header = reply.output.get(..proto::VarHeader::SIZE).and_then(proto::VarHeader::read);
        return match header {
            Some(h)
                if n == proto::VarHeader::SIZE
                    && h.count == 0
                    && h.needed > out_len
                    && h.version == proto::PROTOCOL_VERSION =>
            {
                None
            }
            _ => Some(format!("overflow reply is not a lone header with needed > {out_len}: {:?}", reply.output)),
        };
    }
    let fixed = |size: usize| (n != size).then(|| format!("{n} bytes for a {size}-byte reply"));
    match code {
        proto::IOCTL_GET_VERSION => fixed(proto::VersionInfo::SIZE).or_else(|| {
            let v = proto::VersionInfo::read(&reply.output)?;
            (v.version != proto::PROTOCOL_VERSION || v.max_local_address != proto::MAX_LOCAL_ADDRESS)
                .then(|| format!("bad version reply {v:?}"))
        }),
        proto::IOCTL_GET_ENDPOINT_STATS => fixed(proto::EndpointStats::SIZE),
        proto::IOCTL_GET_PORT_STATS => fixed(proto::PortStats::SIZE),
        proto::IOCTL_GET_LOCAL_ADDRESS => variable_reply(reply, 1).err().map(|e| e.to_string()),
        proto::IOCTL_GET_PORT_NAME => variable_reply(reply, 2).err().map(|e| e.to_string()),
        proto::IOCTL_READ_EVENTS => {
            let header = reply.output.get(..proto::EventBatchHeader::SIZE).and_then(proto::EventBatchHeader::read);
            match header {
                Some(h) if h.count >= 1 && n == proto::EventBatchHeader::SIZE + h.count as usize * 64 => None,
                _ => Some(format!("bad event batch: {n} bytes, header {header:?}")),
            }
        }
        proto::IOCTL_ENUM_FILTER_MODULES => variable_reply(reply, proto::ModuleInfo::SIZE).err().map(|e| e.to_string()),
        _ => (n != 0).then(|| format!("{n} bytes copied back for a request without output")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{local_address_input, port_name_input};

    #[test]
    fn decode_errors_are_exact() {
        assert_eq!(expected(0x1234_5678 & !3, &[], 0), Expected::Exactly(status::INVALID_DEVICE_REQUEST));
        assert_eq!(expected(proto::IOCTL_GET_VERSION, &[1], 64), Expected::Exactly(status::INVALID_PARAMETER));
        assert_eq!(expected(proto::IOCTL_GET_VERSION, &[], 19), Expected::Exactly(status::BUFFER_TOO_SMALL));
        let mut bad = local_address_input(&[1, 2]);
        bad[0] = proto::PROTOCOL_VERSION as u8 + 1;
        assert_eq!(expected(proto::IOCTL_SET_LOCAL_ADDRESS, &bad, 0), Expected::Exactly(status::REVISION_MISMATCH));
        let long = local_address_input(&[0; 129]);
        assert_eq!(expected(proto::IOCTL_SET_LOCAL_ADDRESS, &long, 0), Expected::Exactly(status::INVALID_PARAMETER));
        let mut name = port_name_input(&[1, 2]);
        name.pop();
        assert_eq!(expected(proto::IOCTL_SET_PORT_NAME, &name, 0), Expected::Exactly(status::INVALID_PARAMETER));
        let nul = port_name_input(&[0x41, 0, 0x42]);
        assert_eq!(expected(proto::IOCTL_SET_PORT_NAME, &nul, 0), Expected::Exactly(status::INVALID_PARAMETER));
        assert!(expected(proto::IOCTL_SET_PORT_NAME, &port_name_input(&[0x100, 0x41]), 0).allows(status::SUCCESS));
        let enable = |version: u32, ring_records: u32| {
            let mut b = vec![0; 8];
            proto::EnableEvents { version, ring_records }.write(&mut b);
            b
        };
        assert!(matches!(expected(proto::IOCTL_ENABLE_EVENTS, &enable(2, 8), 0), Expected::OneOf(_)));
        assert_eq!(
            expected(proto::IOCTL_ENABLE_EVENTS, &enable(1, 8), 0),
            Expected::Exactly(status::REVISION_MISMATCH)
        );
        assert_eq!(
            expected(proto::IOCTL_ENABLE_EVENTS, &enable(2, 0), 0),
            Expected::Exactly(status::INVALID_PARAMETER)
        );
        assert_eq!(expected(proto::IOCTL_READ_EVENTS, &[], 95), Expected::Exactly(status::BUFFER_TOO_SMALL));
        assert_eq!(expected(proto::IOCTL_READ_EVENTS, &[0], 96), Expected::Exactly(status::INVALID_PARAMETER));
        let port = [1, 0, 0, 0, 6, 0, 0, 0];
        assert_eq!(expected(proto::IOCTL_BIND_PORT, &port, 0), Expected::Exactly(status::INVALID_PARAMETER));
        assert!(expected(proto::IOCTL_BIND_PORT, &[1, 0, 0, 0, 6, 0, 1, 0], 0).allows(status::DUPLICATE_OBJECTID));
    }

    #[test]
    fn replies_are_checked() {
        let ok = Reply { status: 0, output: vec![] };
        assert_eq!(check_reply(proto::IOCTL_BIND_PORT, 0, &ok), None);
        let leaked = Reply { status: status::INVALID_PARAMETER, output: vec![0] };
        assert!(check_reply(proto::IOCTL_BIND_PORT, 8, &leaked).is_some());
        let short = Reply { status: 0, output: vec![0; 19] };
        assert!(check_reply(proto::IOCTL_GET_VERSION, 20, &short).is_some());
        let mut header = vec![0u8; 12];
        proto::VarHeader { version: proto::PROTOCOL_VERSION, needed: 40, count: 0 }.write(&mut header);
        let overflow = Reply { status: status::BUFFER_OVERFLOW, output: header };
        assert_eq!(check_reply(proto::IOCTL_GET_PORT_NAME, 20, &overflow), None);
        assert!(check_reply(proto::IOCTL_GET_PORT_NAME, 40, &overflow).is_some());
    }
}
