//! IOCTL decoding and reply encoding (METHOD_BUFFERED).
//!
//! Input and output share one system buffer, so a request is handled in two
//! steps that never overlap: [`decode`] turns the input bytes into an owned
//! [`Request`] (validating lengths, versions and fields, and checking that the
//! output buffer can take the reply *before* anything changes), then the
//! caller executes it and encodes the reply into the output bytes.

use alloc::vec::Vec;

use portwatch_proto as proto;
use proto::Wire;

use crate::ports::PortKey;

/// Why a request failed. Every variant maps to one NTSTATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Unknown IOCTL code: `STATUS_INVALID_DEVICE_REQUEST`.
    UnknownCode,
    /// Wrong input length or a bad field: `STATUS_INVALID_PARAMETER`.
    InvalidParameter,
    /// `version` is not ours: `STATUS_REVISION_MISMATCH`.
    RevisionMismatch,
    /// Fixed-size output does not fit: `STATUS_BUFFER_TOO_SMALL`.
    BufferTooSmall,
    /// Port already bound by this endpoint: `STATUS_DUPLICATE_OBJECTID`.
    AlreadyBound,
    /// Port not bound by this endpoint: `STATUS_NOT_FOUND`.
    NotBound,
    /// Binding limit reached: `STATUS_QUOTA_EXCEEDED`.
    TooManyBindings,
    /// Pool allocation failed: `STATUS_INSUFFICIENT_RESOURCES`.
    NoMemory,
    /// The handle is being cleaned up: `STATUS_DELETE_PENDING`.
    Closing,
    /// Too many snapshot replies being built; waited and gave up:
    /// `STATUS_DEVICE_BUSY`.
    Busy,
    /// A registry function failed: its status, unchanged.
    Registry(i32),
    /// Events not enabled (a read), or enabled already (an enable):
    /// `STATUS_INVALID_DEVICE_STATE`.
    EventsState,
    /// [`proto::MAX_PENDING_READS`] reads pending on the handle, or
    /// [`crate::events::MAX_EVENT_ENDPOINTS`] handles with events enabled:
    /// `STATUS_QUOTA_EXCEEDED`.
    EventQuota,
}

impl Error {
    /// The NTSTATUS to complete the IRP with.
    pub fn ntstatus(self) -> i32 {
        use windows_sys::Win32::Foundation as st;
        match self {
            Error::UnknownCode => st::STATUS_INVALID_DEVICE_REQUEST,
            Error::InvalidParameter => st::STATUS_INVALID_PARAMETER,
            Error::RevisionMismatch => st::STATUS_REVISION_MISMATCH,
            Error::BufferTooSmall => st::STATUS_BUFFER_TOO_SMALL,
            Error::AlreadyBound => st::STATUS_DUPLICATE_OBJECTID,
            Error::NotBound => st::STATUS_NOT_FOUND,
            Error::TooManyBindings => st::STATUS_QUOTA_EXCEEDED,
            Error::NoMemory => st::STATUS_INSUFFICIENT_RESOURCES,
            Error::Closing => st::STATUS_DELETE_PENDING,
            Error::Busy => st::STATUS_DEVICE_BUSY,
            Error::Registry(status) => status,
            Error::EventsState => st::STATUS_INVALID_DEVICE_STATE,
            Error::EventQuota => st::STATUS_QUOTA_EXCEEDED,
        }
    }
}

/// A decoded request: an owned copy of everything the input said.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// [`proto::IOCTL_GET_VERSION`].
    GetVersion,
    /// [`proto::IOCTL_SET_LOCAL_ADDRESS`] with the new address.
    SetLocalAddress(Vec<u8>),
    /// [`proto::IOCTL_GET_LOCAL_ADDRESS`].
    GetLocalAddress,
    /// [`proto::IOCTL_BIND_PORT`].
    BindPort(PortKey),
    /// [`proto::IOCTL_UNBIND_PORT`].
    UnbindPort(PortKey),
    /// [`proto::IOCTL_GET_ENDPOINT_STATS`].
    GetEndpointStats,
    /// [`proto::IOCTL_GET_PORT_STATS`].
    GetPortStats(PortKey),
    /// [`proto::IOCTL_SET_PORT_NAME`] with the new name (UTF-16 code units).
    SetPortName(Vec<u16>),
    /// [`proto::IOCTL_GET_PORT_NAME`].
    GetPortName,
    /// [`proto::IOCTL_ENUM_FILTER_MODULES`].
    EnumFilterModules,
    /// [`proto::IOCTL_ENABLE_EVENTS`] with the ring's size in records.
    EnableEvents(u32),
    /// [`proto::IOCTL_READ_EVENTS`]: handled by the dispatch routine, which
    /// owns the IRP it may pend.
    ReadEvents,
}

fn no_input(input: &[u8]) -> Result<(), Error> {
    if input.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidParameter)
    }
}

fn output_at_least(output_len: usize, size: usize) -> Result<(), Error> {
    if output_len >= size {
        Ok(())
    } else {
        Err(Error::BufferTooSmall)
    }
}

/// Revision 1's structs are unchanged in revision 2 (see
/// [`proto::PROTOCOL_VERSION`]'s rules): both are accepted.
fn check_version(version: u32) -> Result<(), Error> {
    if (proto::MIN_PROTOCOL_VERSION..=proto::PROTOCOL_VERSION).contains(&version) {
        Ok(())
    } else {
        Err(Error::RevisionMismatch)
    }
}

fn port_key(input: &[u8]) -> Result<PortKey, Error> {
    let req = proto::PortRequest::read(input).ok_or(Error::InvalidParameter)?;
    check_version(req.version)?;
    let valid_protocol = req.protocol == proto::PROTO_TCP || req.protocol == proto::PROTO_UDP;
    if !valid_protocol || req.reserved != 0 || req.port == 0 {
        return Err(Error::InvalidParameter);
    }
    Ok(PortKey { protocol: req.protocol, port: req.port })
}

/// Splits variable-length input into its 8-byte header and the rest, checking
/// that the rest is exactly `count * unit` bytes and `count <= max`.
fn variable_input(input: &[u8], unit: usize, max: u32) -> Result<&[u8], Error> {
    let (header, body) = input.split_at_checked(8).ok_or(Error::InvalidParameter)?;
    let version = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let count = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    check_version(version)?;
    if count > max {
        return Err(Error::InvalidParameter);
    }
    // count <= max <= a few hundred: no overflow.
    if body.len() != count as usize * unit {
        return Err(Error::InvalidParameter);
    }
    Ok(body)
}

fn copy_bytes(body: &[u8]) -> Result<Vec<u8>, Error> {
    let mut v = Vec::new();
    v.try_reserve_exact(body.len()).map_err(|_| Error::NoMemory)?;
    v.extend_from_slice(body);
    Ok(v)
}

fn copy_utf16(body: &[u8]) -> Result<Vec<u16>, Error> {
    let mut v = Vec::new();
    v.try_reserve_exact(body.len() / 2).map_err(|_| Error::NoMemory)?;
    v.extend(body.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])));
    Ok(v)
}

/// Decodes a request. `input` is exactly the caller's InputBufferLength bytes;
/// `output_len` its OutputBufferLength. Nothing has changed when this fails.
pub fn decode(code: u32, input: &[u8], output_len: usize) -> Result<Request, Error> {
    match code {
        proto::IOCTL_GET_VERSION => {
            no_input(input)?;
            output_at_least(output_len, proto::VersionInfo::SIZE)?;
            Ok(Request::GetVersion)
        }
        proto::IOCTL_SET_LOCAL_ADDRESS => {
            let body = variable_input(input, 1, proto::MAX_LOCAL_ADDRESS)?;
            Ok(Request::SetLocalAddress(copy_bytes(body)?))
        }
        proto::IOCTL_GET_LOCAL_ADDRESS => {
            no_input(input)?;
            output_at_least(output_len, proto::VarHeader::SIZE)?;
            Ok(Request::GetLocalAddress)
        }
        proto::IOCTL_BIND_PORT => Ok(Request::BindPort(port_key(input)?)),
        proto::IOCTL_UNBIND_PORT => Ok(Request::UnbindPort(port_key(input)?)),
        proto::IOCTL_GET_ENDPOINT_STATS => {
            no_input(input)?;
            output_at_least(output_len, proto::EndpointStats::SIZE)?;
            Ok(Request::GetEndpointStats)
        }
        proto::IOCTL_GET_PORT_STATS => {
            let key = port_key(input)?;
            output_at_least(output_len, proto::PortStats::SIZE)?;
            Ok(Request::GetPortStats(key))
        }
        proto::IOCTL_SET_PORT_NAME => {
            let body = variable_input(input, 2, proto::MAX_PORT_NAME_CHARS)?;
            // Saved as REG_SZ, which ends at its first NUL: one inside
            // would come back shorter after a reboot.
            if body.chunks_exact(2).any(|c| c == [0, 0]) {
                return Err(Error::InvalidParameter);
            }
            Ok(Request::SetPortName(copy_utf16(body)?))
        }
        proto::IOCTL_GET_PORT_NAME => {
            no_input(input)?;
            output_at_least(output_len, proto::VarHeader::SIZE)?;
            Ok(Request::GetPortName)
        }
        proto::IOCTL_ENUM_FILTER_MODULES => {
            no_input(input)?;
            output_at_least(output_len, proto::VarHeader::SIZE)?;
            Ok(Request::EnumFilterModules)
        }
        proto::IOCTL_ENABLE_EVENTS => {
            let req = proto::EnableEvents::read(input).ok_or(Error::InvalidParameter)?;
            if !(proto::EVENTS_PROTOCOL_VERSION..=proto::PROTOCOL_VERSION).contains(&req.version) {
                return Err(Error::RevisionMismatch);
            }
            if req.ring_records == 0 || req.ring_records > proto::MAX_EVENT_RING_RECORDS {
                return Err(Error::InvalidParameter);
            }
            Ok(Request::EnableEvents(req.ring_records))
        }
        proto::IOCTL_READ_EVENTS => {
            no_input(input)?;
            output_at_least(output_len, crate::events::MIN_READ_BYTES)?;
            Ok(Request::ReadEvents)
        }
        _ => Err(Error::UnknownCode),
    }
}

/// How a successful request completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `STATUS_SUCCESS` with `Information` = this many bytes written.
    Done(usize),
    /// `STATUS_BUFFER_OVERFLOW`: only the [`proto::VarHeader`] (with `needed`)
    /// was written.
    Overflow,
}

/// Writes a fixed-size reply. [`decode`] already checked the size.
pub fn write_fixed<T: Wire>(value: &T, output: &mut [u8]) -> Reply {
    let written = value.write(output);
    debug_assert!(written, "decode checked the output length");
    Reply::Done(T::SIZE)
}

/// Writes a variable-length reply of `count` items of `unit` bytes each,
/// produced by `fill` into the item area. If it does not fit, writes only the
/// header with `needed` and `count = 0`.
pub fn write_variable(output: &mut [u8], count: usize, unit: usize, fill: impl FnOnce(&mut [u8])) -> Reply {
    let body = count * unit;
    let needed = proto::VarHeader::SIZE + body;
    let needed_u32 = u32::try_from(needed).unwrap_or(u32::MAX);
    let (header, rest) = output.split_at_mut(proto::VarHeader::SIZE);
    if rest.len() < body {
        proto::VarHeader { version: proto::PROTOCOL_VERSION, needed: needed_u32, count: 0 }.write(header);
        return Reply::Overflow;
    }
    let count_u32 = u32::try_from(count).unwrap_or(u32::MAX);
    proto::VarHeader { version: proto::PROTOCOL_VERSION, needed: needed_u32, count: count_u32 }.write(header);
    fill(&mut rest[..body]);
    Reply::Done(needed)
}

/// The driver's version as [`proto::VersionInfo::driver_version`] encodes it:
/// Cargo's version ([`crate::version`]).
pub fn driver_version() -> u32 {
    crate::version::DRIVER_VERSION
}

/// The [`proto::VersionInfo`] reply.
pub fn version_info() -> proto::VersionInfo {
    proto::VersionInfo {
        version: proto::PROTOCOL_VERSION,
        driver_version: driver_version(),
        max_local_address: proto::MAX_LOCAL_ADDRESS,
        max_port_name_chars: proto::MAX_PORT_NAME_CHARS,
        max_bindings: proto::MAX_BINDINGS_PER_ENDPOINT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::*;

    fn port_req(version: u32, protocol: u8, reserved: u8, port: u16) -> Vec<u8> {
        let mut b = vec![0; 8];
        PortRequest { version, protocol, reserved, port }.write(&mut b);
        b
    }

    fn var_input(version: u32, count: u32, body: &[u8]) -> Vec<u8> {
        let mut b = version.to_le_bytes().to_vec();
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn unknown_codes_are_invalid_device_request() {
        assert_eq!(decode(0, &[], 0), Err(Error::UnknownCode));
        // Same function number, different access bits or method: all 32 bits count.
        assert_eq!(decode(IOCTL_GET_VERSION ^ (3 << 14), &[], 64), Err(Error::UnknownCode));
        assert_eq!(decode(IOCTL_GET_VERSION | 3, &[], 64), Err(Error::UnknownCode));
    }

    #[test]
    fn no_input_codes_reject_input_and_small_output() {
        assert_eq!(decode(IOCTL_GET_VERSION, &[], 20), Ok(Request::GetVersion));
        assert_eq!(decode(IOCTL_GET_VERSION, &[0], 20), Err(Error::InvalidParameter));
        assert_eq!(decode(IOCTL_GET_VERSION, &[], 19), Err(Error::BufferTooSmall));
        assert_eq!(decode(IOCTL_GET_ENDPOINT_STATS, &[], 39), Err(Error::BufferTooSmall));
        for code in [IOCTL_GET_LOCAL_ADDRESS, IOCTL_GET_PORT_NAME, IOCTL_ENUM_FILTER_MODULES] {
            assert_eq!(decode(code, &[], 11), Err(Error::BufferTooSmall));
            assert!(decode(code, &[], 12).is_ok());
        }
    }

    #[test]
    fn port_requests_validate_every_field() {
        assert_eq!(
            decode(IOCTL_BIND_PORT, &port_req(1, 6, 0, 80), 0),
            Ok(Request::BindPort(PortKey { protocol: 6, port: 80 }))
        );
        assert_eq!(
            decode(IOCTL_UNBIND_PORT, &port_req(1, 17, 0, 53), 0),
            Ok(Request::UnbindPort(PortKey { protocol: 17, port: 53 }))
        );
        assert_eq!(decode(IOCTL_BIND_PORT, &port_req(3, 6, 0, 80), 0), Err(Error::RevisionMismatch));
        assert_eq!(decode(IOCTL_BIND_PORT, &port_req(0, 6, 0, 80), 0), Err(Error::RevisionMismatch));
        assert!(decode(IOCTL_BIND_PORT, &port_req(2, 6, 0, 80), 0).is_ok(), "revision 2 requests too");
        assert_eq!(decode(IOCTL_BIND_PORT, &port_req(1, 1, 0, 80), 0), Err(Error::InvalidParameter));
        assert_eq!(decode(IOCTL_BIND_PORT, &port_req(1, 6, 1, 80), 0), Err(Error::InvalidParameter));
        assert_eq!(decode(IOCTL_BIND_PORT, &port_req(1, 6, 0, 0), 0), Err(Error::InvalidParameter));
        let req = port_req(1, 6, 0, 80);
        assert_eq!(decode(IOCTL_BIND_PORT, &req[..7], 0), Err(Error::InvalidParameter));
        assert_eq!(decode(IOCTL_BIND_PORT, &[req.clone(), vec![0]].concat(), 0), Err(Error::InvalidParameter));
        assert_eq!(decode(IOCTL_GET_PORT_STATS, &req, 39), Err(Error::BufferTooSmall));
        assert!(decode(IOCTL_GET_PORT_STATS, &req, 40).is_ok());
    }

    #[test]
    fn variable_inputs_need_exact_lengths() {
        assert_eq!(
            decode(IOCTL_SET_LOCAL_ADDRESS, &var_input(1, 3, &[1, 2, 3]), 0),
            Ok(Request::SetLocalAddress(vec![1, 2, 3]))
        );
        assert_eq!(decode(IOCTL_SET_LOCAL_ADDRESS, &var_input(1, 0, &[]), 0), Ok(Request::SetLocalAddress(vec![])));
        assert_eq!(decode(IOCTL_SET_LOCAL_ADDRESS, &var_input(1, 4, &[1, 2, 3]), 0), Err(Error::InvalidParameter));
        assert_eq!(decode(IOCTL_SET_LOCAL_ADDRESS, &var_input(1, 2, &[1, 2, 3]), 0), Err(Error::InvalidParameter));
        assert_eq!(decode(IOCTL_SET_LOCAL_ADDRESS, &var_input(0, 0, &[]), 0), Err(Error::RevisionMismatch));
        assert_eq!(decode(IOCTL_SET_LOCAL_ADDRESS, &[1, 0, 0, 0, 0, 0, 0], 0), Err(Error::InvalidParameter));
        let max = vec![7u8; MAX_LOCAL_ADDRESS as usize + 1];
        assert_eq!(
            decode(IOCTL_SET_LOCAL_ADDRESS, &var_input(1, MAX_LOCAL_ADDRESS + 1, &max), 0),
            Err(Error::InvalidParameter)
        );
        // A count that would overflow 32-bit arithmetic.
        assert_eq!(decode(IOCTL_SET_PORT_NAME, &var_input(1, u32::MAX, &[]), 0), Err(Error::InvalidParameter));
        assert_eq!(
            decode(IOCTL_SET_PORT_NAME, &var_input(1, 2, &[0x41, 0, 0x42, 0]), 0),
            Ok(Request::SetPortName(vec![0x41, 0x42]))
        );
        assert_eq!(decode(IOCTL_SET_PORT_NAME, &var_input(1, 2, &[0x41, 0, 0x42]), 0), Err(Error::InvalidParameter));
        assert_eq!(decode(IOCTL_SET_PORT_NAME, &var_input(1, 2, &[0x41, 0, 0, 0]), 0), Err(Error::InvalidParameter));
        assert_eq!(
            decode(IOCTL_SET_PORT_NAME, &var_input(1, 2, &[0, 1, 0x41, 0]), 0),
            Ok(Request::SetPortName(vec![0x100, 0x41])),
            "a zero byte is not a zero code unit"
        );
    }

    #[test]
    fn variable_replies_overflow_with_needed_size() {
        let mut out = [0xEEu8; 16];
        assert_eq!(write_variable(&mut out, 5, 1, |b| b.fill(1)), Reply::Overflow);
        assert_eq!(VarHeader::read(&out[..12]), Some(VarHeader { version: PROTOCOL_VERSION, needed: 17, count: 0 }));
        assert_eq!(&out[12..], &[0xEE; 4], "nothing past the header on overflow");
        let mut out = [0u8; 17];
        assert_eq!(write_variable(&mut out, 5, 1, |b| b.fill(9)), Reply::Done(17));
        assert_eq!(VarHeader::read(&out[..12]), Some(VarHeader { version: PROTOCOL_VERSION, needed: 17, count: 5 }));
        assert_eq!(&out[12..], &[9; 5]);
    }

    #[test]
    fn event_requests_validate_every_field() {
        let enable = |version: u32, ring_records: u32| {
            let mut b = vec![0; 8];
            EnableEvents { version, ring_records }.write(&mut b);
            b
        };
        assert_eq!(decode(IOCTL_ENABLE_EVENTS, &enable(2, 1), 0), Ok(Request::EnableEvents(1)));
        assert_eq!(decode(IOCTL_ENABLE_EVENTS, &enable(2, 4096), 0), Ok(Request::EnableEvents(4096)));
        assert_eq!(decode(IOCTL_ENABLE_EVENTS, &enable(1, 8), 0), Err(Error::RevisionMismatch), "new in 2");
        assert_eq!(decode(IOCTL_ENABLE_EVENTS, &enable(3, 8), 0), Err(Error::RevisionMismatch));
        assert_eq!(decode(IOCTL_ENABLE_EVENTS, &enable(2, 0), 0), Err(Error::InvalidParameter));
        assert_eq!(decode(IOCTL_ENABLE_EVENTS, &enable(2, 4097), 0), Err(Error::InvalidParameter));
        assert_eq!(decode(IOCTL_ENABLE_EVENTS, &enable(2, 8)[..7], 0), Err(Error::InvalidParameter));
        assert_eq!(decode(IOCTL_READ_EVENTS, &[], 96), Ok(Request::ReadEvents));
        assert_eq!(decode(IOCTL_READ_EVENTS, &[], 95), Err(Error::BufferTooSmall));
        assert_eq!(decode(IOCTL_READ_EVENTS, &[0], 96), Err(Error::InvalidParameter));
    }

    #[test]
    fn every_error_is_an_nt_error() {
        let all = [
            Error::UnknownCode,
            Error::InvalidParameter,
            Error::RevisionMismatch,
            Error::BufferTooSmall,
            Error::AlreadyBound,
            Error::NotBound,
            Error::TooManyBindings,
            Error::NoMemory,
            Error::Closing,
            Error::EventsState,
            Error::EventQuota,
        ];
        for e in all {
            // NT_ERROR: severity bits 11, so the I/O manager copies nothing back.
            assert_eq!((e.ntstatus() as u32) >> 30, 3, "{e:?}");
        }
        // STATUS_DEVICE_BUSY is a warning (0x80000011): the I/O manager
        // copies Information bytes back, and an error reply sets none.
        assert_eq!(Error::Busy.ntstatus() as u32, 0x8000_0011);
        assert_eq!(Error::UnknownCode.ntstatus() as u32, 0xC000_0010);
        assert_eq!(Error::BufferTooSmall.ntstatus() as u32, 0xC000_0023);
    }

    #[test]
    fn version_reply() {
        let v = version_info();
        assert_eq!(v.version, PROTOCOL_VERSION);
        assert_eq!(v.driver_version >> 16, env!("CARGO_PKG_VERSION_MAJOR").parse::<u32>().unwrap());
        let mut out = [0u8; 20];
        assert_eq!(write_fixed(&v, &mut out), Reply::Done(20));
    }
}
