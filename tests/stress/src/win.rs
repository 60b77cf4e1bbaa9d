//! The little that needs Windows APIs directly: whether this process is
//! elevated, whether `\\.\PortWatch` can be opened (with the Win32
//! error when not), Ctrl+C, and `watch`'s overlapped reads (the thin layer
//! under the portable pool of `reads.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use portwatch_proto::{self as proto, Wire};
use portwatch_scenarios::client;
use portwatch_scenarios::target::{Handle, TargetError};
use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_IO_INCOMPLETE, ERROR_IO_PENDING, ERROR_NOT_FOUND, GENERIC_READ, GENERIC_WRITE,
    HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::{GetTokenInformation, TokenElevation, TOKEN_ELEVATION, TOKEN_QUERY};
use windows_sys::Win32::Storage::FileSystem::{CreateFileW, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING};
use windows_sys::Win32::System::Console::{SetConsoleCtrlHandler, CTRL_BREAK_EVENT, CTRL_C_EVENT};
use windows_sys::Win32::System::Threading::{
    CreateEventW, GetCurrentProcess, OpenProcessToken, WaitForMultipleObjects,
};
use windows_sys::Win32::System::IO::{CancelIoEx, DeviceIoControl, GetOverlappedResult, OVERLAPPED};

use crate::reads::{Batch, ReadQueue, READ_ROOM};

/// Whether this process runs elevated (its token's `TokenElevation`).
pub fn is_elevated() -> bool {
    let mut token: HANDLE = core::ptr::null_mut();
    // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no
    // closing; `token` is a valid place for the new handle.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return false;
    }
    let mut elevation = TOKEN_ELEVATION { TokenIsElevated: 0 };
    let mut returned = 0u32;
    // SAFETY: `token` was opened with TOKEN_QUERY; the buffer is a
    // TOKEN_ELEVATION of exactly the size passed.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenElevation,
            (&mut elevation as *mut TOKEN_ELEVATION).cast(),
            core::mem::size_of::<TOKEN_ELEVATION>() as u32,
            &mut returned,
        )
    };
    // SAFETY: closing the token handle opened above, once.
    unsafe { CloseHandle(token) };
    ok != 0 && elevation.TokenIsElevated != 0
}

/// Opens and closes `\\.\PortWatch`; the Win32 error of CreateFile when it
/// cannot be opened.
pub fn probe_device() -> Result<(), u32> {
    let path: Vec<u16> = portwatch_proto::USER_DEVICE_PATH.encode_utf16().chain([0]).collect();
    // SAFETY: `path` is NUL-terminated and outlives the call; no security
    // attributes, no template handle.
    let h = unsafe {
        CreateFileW(
            path.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            core::ptr::null(),
            OPEN_EXISTING,
            0,
            core::ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        // SAFETY: GetLastError has no preconditions.
        return Err(unsafe { GetLastError() });
    }
    // SAFETY: `h` is the valid handle opened above, closed once.
    unsafe { CloseHandle(h) };
    Ok(())
}

/// Set once Ctrl+C (or Ctrl+Break) was pressed, after [`ctrl_c_flag`]
/// installed the handler.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

unsafe extern "system" fn on_ctrl(kind: u32) -> BOOL {
    if kind == CTRL_C_EVENT || kind == CTRL_BREAK_EVENT {
        INTERRUPTED.store(true, Ordering::Relaxed);
        return 1;
    }
    0
}

/// Makes Ctrl+C and Ctrl+Break set the returned flag instead of ending the
/// process (so that `watch` can cancel and wait for its reads).
pub fn ctrl_c_flag() -> &'static AtomicBool {
    // SAFETY: `on_ctrl` only stores to a static atomic; it stays valid for
    // the whole process.
    unsafe { SetConsoleCtrlHandler(Some(on_ctrl), 1) };
    &INTERRUPTED
}

/// One read slot: its OVERLAPPED (with its own manual-reset event) and its
/// buffer, both boxed so that their addresses stay put while the kernel
/// holds them.
struct Slot {
    overlapped: Box<OVERLAPPED>,
    buffer: Box<[u8]>,
    pending: bool,
}

/// [`ReadQueue`] over an overlapped `\\.\PortWatch` handle: each slot's
/// IOCTL_READ_EVENTS is issued with DeviceIoControl and its OVERLAPPED,
/// completions are awaited with WaitForMultipleObjects on the slots'
/// events, CancelIoEx cancels. A slot still pending when this is dropped
/// (the pool's drain gave up) is leaked, never freed.
pub struct OverlappedReads {
    handle: HANDLE,
    slots: Vec<Slot>,
    /// The slot whose event goes first in the next wait: the wait reports
    /// the first signalled handle of its array, so the array is rotated to
    /// give every completed slot its turn.
    turn: usize,
}

impl OverlappedReads {
    /// `slots` slots on `handle`, which must have been opened with
    /// FILE_FLAG_OVERLAPPED and outlive this.
    pub fn new(handle: Handle, slots: usize) -> Result<Self, TargetError> {
        let mut reads =
            OverlappedReads { handle: handle.0 as usize as HANDLE, slots: Vec::with_capacity(slots), turn: 0 };
        let room = proto::EventBatchHeader::SIZE + READ_ROOM * proto::EventRecord::SIZE;
        for _ in 0..slots {
            // SAFETY: no security attributes, no name; manual reset, not
            // signalled.
            let event = unsafe { CreateEventW(core::ptr::null(), 1, 0, core::ptr::null()) };
            if event.is_null() {
                return Err(last_error("CreateEventW"));
            }
            let overlapped = Box::new(OVERLAPPED { hEvent: event, ..Default::default() });
            reads.slots.push(Slot { overlapped, buffer: vec![0; room].into_boxed_slice(), pending: false });
        }
        Ok(reads)
    }
}

fn last_error(what: &str) -> TargetError {
    // SAFETY: GetLastError has no preconditions.
    TargetError::Os(format!("{what} failed with Win32 error {}", unsafe { GetLastError() }))
}

impl ReadQueue for OverlappedReads {
    fn start(&mut self, slot: usize) -> Result<(), TargetError> {
        let s = self.slots.get_mut(slot).ok_or_else(|| TargetError::Os(format!("no slot {slot}")))?;
        assert!(!s.pending, "slot {slot} reused while its read is pending");
        let event = s.overlapped.hEvent;
        *s.overlapped = OVERLAPPED { hEvent: event, ..Default::default() };
        // SAFETY: the handle is open and overlapped; the OVERLAPPED and the
        // buffer are boxed in this slot and stay allocated until the read
        // is seen complete (wait) or, failing that, are leaked (Drop).
        let ok = unsafe {
            DeviceIoControl(
                self.handle,
                proto::IOCTL_READ_EVENTS,
                core::ptr::null(),
                0,
                s.buffer.as_mut_ptr().cast(),
                s.buffer.len() as u32,
                core::ptr::null_mut(),
                &mut *s.overlapped,
            )
        };
        // SAFETY: GetLastError has no preconditions.
        if ok != 0 || unsafe { GetLastError() } == ERROR_IO_PENDING {
            // Completed at once or pending: either way the event is
            // signalled at completion and `wait` collects it.
            s.pending = true;
            return Ok(());
        }
        // Failed before pending: the NTSTATUS is in Internal when the
        // request reached the driver.
        match s.overlapped.Internal as u32 as i32 {
            0 => Err(last_error("DeviceIoControl(IOCTL_READ_EVENTS)")),
            status => Err(TargetError::Status(status)),
        }
    }

    fn wait(&mut self, timeout: Duration) -> Result<Option<(usize, Batch)>, TargetError> {
        let n = self.slots.len();
        let (slots, events): (Vec<usize>, Vec<HANDLE>) = (0..n)
            .map(|i| (self.turn + i) % n)
            .filter(|&i| self.slots[i].pending)
            .map(|i| (i, self.slots[i].overlapped.hEvent))
            .unzip();
        if events.is_empty() {
            return Ok(None);
        }
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX - 1);
        // SAFETY: `events` holds valid event handles, at most
        // MAX_PENDING_READS (below MAXIMUM_WAIT_OBJECTS).
        let woke = unsafe { WaitForMultipleObjects(events.len() as u32, events.as_ptr(), 0, ms) };
        if woke == WAIT_TIMEOUT {
            return Ok(None);
        }
        let index = woke.wrapping_sub(WAIT_OBJECT_0) as usize;
        let Some(&slot) = slots.get(index) else { return Err(last_error("WaitForMultipleObjects")) };
        self.turn = slot + 1;
        let s = &mut self.slots[slot];
        let mut bytes = 0u32;
        // SAFETY: the OVERLAPPED of a read issued on this handle, whose
        // event is signalled; bWait FALSE.
        let ok = unsafe { GetOverlappedResult(self.handle, &*s.overlapped, &mut bytes, 0) };
        if ok == 0 {
            // SAFETY: GetLastError has no preconditions.
            if unsafe { GetLastError() } == ERROR_IO_INCOMPLETE {
                return Ok(None);
            }
            s.pending = false;
            // The IRP's NTSTATUS (STATUS_CANCELLED for a cancelled read).
            return Ok(Some((slot, Err(TargetError::Status(s.overlapped.Internal as u32 as i32)))));
        }
        s.pending = false;
        let len = (bytes as usize).min(s.buffer.len());
        Ok(Some((slot, client::parse_events(&s.buffer[..len]))))
    }

    fn cancel(&mut self) -> Result<(), TargetError> {
        // SAFETY: the open handle; NULL cancels every request on it.
        if unsafe { CancelIoEx(self.handle, core::ptr::null()) } == 0 {
            // SAFETY: GetLastError has no preconditions.
            if unsafe { GetLastError() } != ERROR_NOT_FOUND {
                return Err(last_error("CancelIoEx"));
            }
        }
        Ok(())
    }
}

impl Drop for OverlappedReads {
    fn drop(&mut self) {
        for s in self.slots.drain(..) {
            if s.pending {
                // The kernel may still write these: never free them.
                Box::leak(s.overlapped);
                Box::leak(s.buffer);
            } else {
                // SAFETY: the slot's event, created in `new`, closed once.
                unsafe { CloseHandle(s.overlapped.hEvent) };
            }
        }
    }
}
