//! [`DeviceTarget`]: the driver installed on this Windows machine, through
//! `\\.\PortWatch`.
//!
//! IOCTLs go through `NtDeviceIoControlFile`, which returns the IRP's own
//! NTSTATUS and `Information` (DeviceIoControl would fold statuses into
//! Win32 error codes). Handles are opened with `FILE_FLAG_OVERLAPPED`, so
//! that the I/O manager does not serialise the requests of one handle
//! (`watch` keeps several reads pending on one); [`Target::ioctl`] stays
//! blocking by waiting on its own event when the driver pends the request. Adapters are restarted as a whole with PowerShell's
//! `Restart-NetAdapter` (NDIS pauses, detaches, re-attaches and restarts
//! every filter); single state changes cannot be driven from user mode.
//! Traffic is sent as UDP datagrams to a peer on the adapter's network, so
//! only the send path is exercised, and counters are checked as lower
//! bounds: other traffic on the machine may use the same ports. Driver
//! Verifier runs in the kernel: a violation bug-checks the machine, so a
//! scenario that returns found none.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use windows_sys::Wdk::System::IO::NtDeviceIoControlFile;
use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, GENERIC_READ, GENERIC_WRITE, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_OVERLAPPED, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::Threading::{CreateEventW, WaitForSingleObject, INFINITE};
use windows_sys::Win32::System::IO::IO_STATUS_BLOCK;

use crate::target::{
    Adapter, AdapterOp, Direction, Handle, Health, Level, NblResult, NblSpec, Reply, Target, TargetError,
};

/// Which machine resources the device target uses.
#[derive(Debug, Clone, Default)]
pub struct DeviceConfig {
    /// Adapter names (`Get-NetAdapter`) the scenarios may restart.
    pub adapters: Vec<String>,
    /// An IPv4 peer on one of those adapters' networks that UDP traffic
    /// is sent to; without it the data path is not exercised.
    pub peer: Option<Ipv4Addr>,
}

/// The installed driver. See the module docs.
pub struct DeviceTarget {
    config: DeviceConfig,
    sockets: Mutex<HashMap<u16, UdpSocket>>,
    open: Mutex<Vec<u64>>,
}

fn last_error(what: &str) -> TargetError {
    // SAFETY: GetLastError has no preconditions.
    TargetError::Os(format!("{what} failed with Win32 error {}", unsafe { GetLastError() }))
}

/// STATUS_PENDING: the request is pending (overlapped handle).
const STATUS_PENDING: i32 = 0x0000_0103;

fn is_error(status: i32) -> bool {
    (status as u32) >> 30 == 3
}

/// Bytes of an Ethernet + IPv4 + UDP frame carrying `payload` bytes.
fn udp_frame_len(payload: u16) -> u64 {
    14 + 20 + 8 + u64::from(payload)
}

impl DeviceTarget {
    /// A target for the driver installed here.
    pub fn new(config: DeviceConfig) -> Self {
        DeviceTarget { config, sockets: Mutex::new(HashMap::new()), open: Mutex::new(Vec::new()) }
    }

    fn raw(handle: Handle) -> HANDLE {
        handle.0 as usize as HANDLE
    }

    /// Sends one UDP datagram from `src` to the peer's `dst`; whether it
    /// left the socket.
    fn send_udp(&self, peer: Ipv4Addr, src: u16, dst: u16, payload: u16) -> bool {
        let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        let socket = match sockets.get(&src) {
            Some(s) => s,
            None => match UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, src)) {
                Ok(s) => sockets.entry(src).or_insert(s),
                Err(_) => return false,
            },
        };
        socket.send_to(&vec![0x5A; usize::from(payload)], SocketAddrV4::new(peer, dst)).is_ok()
    }

    fn restart_adapter(&self, name: &str) -> Result<(), TargetError> {
        let quoted = name.replace('\'', "''");
        let out = Command::new("powershell")
            .args([
                "-NoProfile",
                "-NonInteractive",
                "-Command",
                &format!("Restart-NetAdapter -Name '{quoted}' -Confirm:$false"),
            ])
            .output()
            .map_err(|e| TargetError::Os(format!("powershell: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(TargetError::Os(format!("Restart-NetAdapter {name}: {}", String::from_utf8_lossy(&out.stderr))))
        }
    }
}

impl Target for DeviceTarget {
    fn describe(&self) -> String {
        format!(
            "device: {} with adapters {:?}, peer {:?}",
            portwatch_proto::USER_DEVICE_PATH,
            self.config.adapters,
            self.config.peer
        )
    }

    fn open(&self) -> Result<Handle, TargetError> {
        let path: Vec<u16> = portwatch_proto::USER_DEVICE_PATH.encode_utf16().chain([0]).collect();
        // SAFETY: `path` is NUL-terminated and outlives the call; no
        // security attributes or template handle.
        let h = unsafe {
            CreateFileW(
                path.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                FILE_SHARE_READ | FILE_SHARE_WRITE,
                core::ptr::null(),
                OPEN_EXISTING,
                FILE_FLAG_OVERLAPPED,
                core::ptr::null_mut(),
            )
        };
        if h == INVALID_HANDLE_VALUE {
            return Err(last_error("CreateFileW(\\\\.\\PortWatch)"));
        }
        self.open.lock().unwrap_or_else(PoisonError::into_inner).push(h as usize as u64);
        Ok(Handle(h as usize as u64))
    }

    fn ioctl(&self, handle: Handle, code: u32, input: &[u8], out_len: u32) -> Result<Reply, TargetError> {
        let mut output = vec![0u8; out_len as usize];
        let mut iosb = IO_STATUS_BLOCK::default();
        // SAFETY: no security attributes, no name; manual reset (the I/O
        // manager resets it when the request starts), not signalled.
        let event = unsafe { CreateEventW(core::ptr::null(), 1, 0, core::ptr::null()) };
        if event.is_null() {
            return Err(last_error("CreateEventW"));
        }
        // SAFETY: both buffers and `iosb` stay valid until the request
        // completed: on STATUS_PENDING (the handle is overlapped) the event,
        // which the I/O manager signals after writing `iosb` and the
        // output, is waited for below before any of them is touched.
        let mut status = unsafe {
            NtDeviceIoControlFile(
                Self::raw(handle),
                event,
                None,
                core::ptr::null(),
                &mut iosb,
                code,
                input.as_ptr().cast(),
                input.len() as u32,
                output.as_mut_ptr().cast(),
                out_len,
            )
        };
        if status == STATUS_PENDING {
            // SAFETY: the event created above.
            if unsafe { WaitForSingleObject(event, INFINITE) } != 0 {
                // Returning would free buffers the kernel may still write.
                eprintln!("WaitForSingleObject on a pending IOCTL failed; aborting");
                std::process::abort();
            }
            // SAFETY: the completed request's status, written before the
            // event was signalled (the union's Status member).
            status = unsafe { iosb.Anonymous.Status };
        }
        // SAFETY: the event created above, closed once.
        unsafe { CloseHandle(event) };
        if status == crate::client::status::INVALID_HANDLE {
            return Err(TargetError::Status(status));
        }
        output.truncate(if is_error(status) { 0 } else { iosb.Information.min(out_len as usize) });
        Ok(Reply { status, output })
    }

    fn close(&self, handle: Handle) -> Result<(), TargetError> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).retain(|&h| h != handle.0);
        // SAFETY: closing a handle this target opened; a stale one fails
        // with ERROR_INVALID_HANDLE, which is reported.
        if unsafe { CloseHandle(Self::raw(handle)) } == 0 {
            return Err(TargetError::Status(crate::client::status::INVALID_HANDLE));
        }
        Ok(())
    }

    fn cancel_io(&self, handle: Handle) -> Result<(), TargetError> {
        // SAFETY: a handle this target opened; NULL cancels every request
        // on it, from any thread.
        if unsafe { windows_sys::Win32::System::IO::CancelIoEx(Self::raw(handle), core::ptr::null()) } == 0 {
            // SAFETY: reads the calling thread's last error.
            let error = unsafe { windows_sys::Win32::Foundation::GetLastError() };
            if error != windows_sys::Win32::Foundation::ERROR_NOT_FOUND {
                return Err(last_error("CancelIoEx"));
            }
        }
        Ok(())
    }

    fn adapter_count(&self) -> usize {
        self.config.adapters.len()
    }

    fn supports(&self, op: AdapterOp) -> bool {
        op == AdapterOp::Cycle
    }

    fn adapter_op(&self, adapter: Adapter, op: AdapterOp) -> Result<(), TargetError> {
        let name =
            self.config.adapters.get(adapter.0).ok_or_else(|| TargetError::Os(format!("no adapter {}", adapter.0)))?;
        match op {
            AdapterOp::Cycle => self.restart_adapter(name),
            other => Err(TargetError::Unsupported(format!("{other:?} cannot be driven from user mode"))),
        }
    }

    fn inject(
        &self,
        _adapter: Adapter,
        direction: Direction,
        nbls: &[NblSpec],
        _level: Level,
        _resources: bool,
    ) -> Result<Vec<NblResult>, TargetError> {
        let Some(peer) = self.config.peer else {
            return Err(TargetError::Unsupported("no --peer: traffic is not sent".into()));
        };
        if direction == Direction::Receive {
            return Err(TargetError::Unsupported("receives cannot be injected from user mode".into()));
        }
        Ok(nbls
            .iter()
            .map(|nbl| {
                let udp4 = |p: &crate::target::PacketSpec| {
                    p.protocol == portwatch_proto::PROTO_UDP && !p.ipv6 && p.truncate_to.is_none()
                };
                let delivered = !nbl.loopback
                    && nbl.packets.iter().all(udp4)
                    && nbl.packets.iter().all(|p| self.send_udp(peer, p.src_port, p.dst_port, p.payload_len));
                NblResult { delivered, frame_bytes: nbl.packets.iter().map(|p| udp_frame_len(p.payload_len)).collect() }
            })
            .collect())
    }

    fn exact_traffic(&self) -> bool {
        false
    }

    fn reload(&self) -> Result<Health, TargetError> {
        Err(TargetError::Unsupported(
            "the installed driver is not reloaded by the stress tool (see scripts/stress.ps1)".into(),
        ))
    }

    fn unload(&self) -> Result<Health, TargetError> {
        let leftover: Vec<u64> = std::mem::take(&mut *self.open.lock().unwrap_or_else(PoisonError::into_inner));
        for h in leftover {
            // SAFETY: a handle this target opened and did not close yet.
            unsafe { CloseHandle(h as usize as HANDLE) };
        }
        Ok(Health { unobservable: true, ..Health::default() })
    }
}
