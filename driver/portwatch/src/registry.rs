//! The global port name's persistent copy: the `PortName` value (`REG_SZ`)
//! under the service's `Parameters` key, so a name set by IOCTL survives a
//! reboot.
//!
//! Every function here runs at `PASSIVE_LEVEL` with special kernel APCs
//! enabled (the `Zw*` functions' requirement, Driver Verifier's
//! IrqlZwPassive rule): each takes an [`AtPassive`] token, which a held
//! [`PassiveMutex`](ndis_sync::PassiveMutex) lends and a spin lock, an RW
//! lock or a fast mutex does not. Handles are kernel handles
//! (`OBJ_KERNEL_HANDLE`: the IOCTL runs in the caller's process) and are
//! closed before the function returns.
//!
//! Built for Windows the functions call ntoskrnl; elsewhere (unit tests of
//! the IOCTL logic) the value lives in the [`ParametersKey`] itself, and
//! [`ParametersKey::fail_next_write`] injects a `ZwSetValueKey` failure.

use alloc::vec::Vec;

use ndis_sync::AtPassive;
use ndis_sys::NTSTATUS;

/// `\Parameters`, appended to the service's registry path.
const PARAMETERS: &str = "\\Parameters";
/// The value's name, UTF-16 (a constant: nothing allocates it).
#[cfg(target_os = "windows")]
static VALUE_NAME: [u16; 8] = {
    let ascii = b"PortName";
    let mut utf16 = [0u16; 8];
    let mut i = 0;
    while i < ascii.len() {
        utf16[i] = ascii[i] as u16;
        i += 1;
    }
    utf16
};

/// The service's `Parameters` key: its full path, copied from DriverEntry's
/// `RegistryPath` (which is not valid after DriverEntry returns).
pub struct ParametersKey {
    path: Vec<u16>,
    #[cfg(not(target_os = "windows"))]
    host: host::Value,
}

impl ParametersKey {
    /// Copies `registry_path` and appends `\Parameters`.
    /// `STATUS_INSUFFICIENT_RESOURCES` if the copy cannot be allocated,
    /// `STATUS_NAME_TOO_LONG` if the result does not fit a `UNICODE_STRING`.
    pub fn try_new(registry_path: &[u16]) -> Result<Self, NTSTATUS> {
        use windows_sys::Win32::Foundation::{STATUS_INSUFFICIENT_RESOURCES, STATUS_NAME_TOO_LONG};
        let len = registry_path.len() + PARAMETERS.len();
        if len * 2 > usize::from(u16::MAX) {
            return Err(STATUS_NAME_TOO_LONG);
        }
        let mut path = Vec::new();
        path.try_reserve_exact(len).map_err(|_| STATUS_INSUFFICIENT_RESOURCES)?;
        path.extend_from_slice(registry_path);
        path.extend(PARAMETERS.encode_utf16());
        Ok(Self {
            path,
            #[cfg(not(target_os = "windows"))]
            host: host::Value::default(),
        })
    }

    /// The key's path (UTF-16, no terminator).
    pub fn path(&self) -> &[u16] {
        &self.path
    }

    /// Writes `PortName` = `value`, which must end with its NUL (`REG_SZ`
    /// data includes the terminator): creates the key if needed, sets the
    /// value, closes the key. The first failing function's status.
    pub fn write_port_name(&self, irql: &impl AtPassive, value: &[u16]) -> Result<(), NTSTATUS> {
        debug_assert_eq!(value.last(), Some(&0), "REG_SZ data ends with its NUL");
        #[cfg(target_os = "windows")]
        return zw::write(irql, &self.path, value);
        #[cfg(not(target_os = "windows"))]
        return self.host.write(irql, value);
    }

    /// Reads `PortName`: `Ok(None)` when the key or the value does not
    /// exist; `Err(STATUS_OBJECT_TYPE_MISMATCH)` for a value that is not
    /// `REG_SZ`, `Err(STATUS_BUFFER_OVERFLOW)` for one longer than
    /// [`MAX_PORT_NAME_CHARS`](portwatch_proto::MAX_PORT_NAME_CHARS); the name ends at its first NUL.
    pub fn read_port_name(&self, irql: &impl AtPassive) -> Result<Option<Vec<u16>>, NTSTATUS> {
        #[cfg(target_os = "windows")]
        let data = zw::read(irql, &self.path)?;
        #[cfg(not(target_os = "windows"))]
        let data = self.host.read(irql)?;
        let Some(mut name) = data else { return Ok(None) };
        if let Some(end) = name.iter().position(|&c| c == 0) {
            name.truncate(end);
        }
        if name.len() > portwatch_proto::MAX_PORT_NAME_CHARS as usize {
            return Err(windows_sys::Win32::Foundation::STATUS_BUFFER_OVERFLOW);
        }
        Ok(Some(name))
    }

    /// Makes the next [`write_port_name`](Self::write_port_name) fail with
    /// `status` (host builds: tests of the IOCTL's failure path).
    #[cfg(not(target_os = "windows"))]
    pub fn fail_next_write(&self, status: NTSTATUS) {
        self.host.fail_next(status);
    }
}

#[cfg(target_os = "windows")]
mod zw {
    use alloc::vec::Vec;
    use core::marker::PhantomData;
    use core::ptr::null_mut;

    use ndis_sync::AtPassive;
    use ndis_sys::*;
    use windows_sys::Win32::Foundation::{
        STATUS_BUFFER_OVERFLOW, STATUS_INSUFFICIENT_RESOURCES, STATUS_OBJECT_NAME_NOT_FOUND,
        STATUS_OBJECT_TYPE_MISMATCH, STATUS_SUCCESS,
    };

    use super::VALUE_NAME;
    use portwatch_proto as proto;

    /// The largest value accepted back: the longest name plus its NUL.
    const MAX_DATA_BYTES: usize = (proto::MAX_PORT_NAME_CHARS as usize + 1) * 2;

    /// A counted string over `s` (its length checked by
    /// [`ParametersKey::try_new`](super::ParametersKey::try_new) or a constant).
    fn counted(s: &[u16]) -> UNICODE_STRING {
        let bytes = (s.len() * 2) as u16;
        UNICODE_STRING { Length: bytes, MaximumLength: bytes, Buffer: s.as_ptr().cast_mut() }
    }

    /// An open key, closed on drop; borrows the PASSIVE token it was
    /// opened with, so it is closed at PASSIVE_LEVEL too.
    struct Key<'a> {
        handle: HANDLE,
        _irql: PhantomData<&'a ()>,
    }

    impl Drop for Key<'_> {
        fn drop(&mut self) {
            // SAFETY: a handle ZwCreateKey/ZwOpenKey returned, closed once,
            // at PASSIVE_LEVEL (the borrowed token).
            unsafe { ZwClose(self.handle) };
        }
    }

    fn attributes(name: &UNICODE_STRING) -> OBJECT_ATTRIBUTES {
        OBJECT_ATTRIBUTES {
            Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as u32,
            RootDirectory: null_mut(),
            ObjectName: name,
            Attributes: OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE,
            SecurityDescriptor: core::ptr::null(),
            SecurityQualityOfService: core::ptr::null(),
        }
    }

    pub(super) fn write<'a>(_irql: &'a impl AtPassive, path: &[u16], value: &[u16]) -> Result<(), NTSTATUS> {
        let name = counted(path);
        let attributes = attributes(&name);
        let mut handle: HANDLE = null_mut();
        let mut disposition = 0u32;
        // SAFETY: PASSIVE_LEVEL (the token); the attributes and the name
        // they point to live across the call; out pointers to this frame.
        let status = unsafe {
            ZwCreateKey(
                &mut handle,
                KEY_SET_VALUE,
                &attributes,
                0,
                core::ptr::null(),
                REG_OPTION_NON_VOLATILE,
                &mut disposition,
            )
        };
        if status < 0 {
            return Err(status);
        }
        let key = Key { handle, _irql: PhantomData::<&'a ()> };
        let value_name = counted(&VALUE_NAME);
        // SAFETY: an open key with KEY_SET_VALUE; `value` is `DataSize`
        // bytes (at most MAX_DATA_BYTES: the IOCTL's limit).
        let status = unsafe {
            ZwSetValueKey(key.handle, &value_name, 0, REG_SZ, value.as_ptr().cast(), (value.len() * 2) as u32)
        };
        drop(key);
        if status < 0 {
            Err(status)
        } else {
            Ok(())
        }
    }

    pub(super) fn read<'a>(_irql: &'a impl AtPassive, path: &[u16]) -> Result<Option<Vec<u16>>, NTSTATUS> {
        let name = counted(path);
        let attributes = attributes(&name);
        let mut handle: HANDLE = null_mut();
        // SAFETY: PASSIVE_LEVEL (the token); pointers into this frame.
        let status = unsafe { ZwOpenKey(&mut handle, KEY_QUERY_VALUE, &attributes) };
        if status == STATUS_OBJECT_NAME_NOT_FOUND {
            return Ok(None);
        }
        if status < 0 {
            return Err(status);
        }
        let key = Key { handle, _irql: PhantomData::<&'a ()> };
        // KEY_VALUE_PARTIAL_INFORMATION is ULONG-aligned: a Vec<u32>.
        const HEADER: usize = core::mem::offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data);
        let words = (HEADER + MAX_DATA_BYTES).div_ceil(4);
        let mut buffer: Vec<u32> = Vec::new();
        buffer.try_reserve_exact(words).map_err(|_| STATUS_INSUFFICIENT_RESOURCES)?;
        buffer.resize(words, 0);
        let value_name = counted(&VALUE_NAME);
        let mut returned = 0u32;
        // SAFETY: an open key with KEY_QUERY_VALUE; the buffer is
        // `words * 4` writable bytes, suitably aligned.
        let status = unsafe {
            ZwQueryValueKey(
                key.handle,
                &value_name,
                KeyValuePartialInformation,
                buffer.as_mut_ptr().cast(),
                (words * 4) as u32,
                &mut returned,
            )
        };
        drop(key);
        if status == STATUS_OBJECT_NAME_NOT_FOUND {
            return Ok(None);
        }
        if status == STATUS_BUFFER_OVERFLOW || status == windows_sys::Win32::Foundation::STATUS_BUFFER_TOO_SMALL {
            return Err(STATUS_BUFFER_OVERFLOW);
        }
        if status != STATUS_SUCCESS {
            return Err(status);
        }
        // SAFETY: ZwQueryValueKey filled the header at the buffer's start.
        let info = unsafe { &*buffer.as_ptr().cast::<KEY_VALUE_PARTIAL_INFORMATION>() };
        if info.Type != REG_SZ {
            return Err(STATUS_OBJECT_TYPE_MISMATCH);
        }
        let len = info.DataLength as usize;
        if len > MAX_DATA_BYTES || HEADER + len > words * 4 {
            return Err(STATUS_BUFFER_OVERFLOW);
        }
        // SAFETY: `len` bytes of data follow the header inside the buffer
        // (checked above); read as bytes, so no alignment is assumed.
        let bytes = unsafe { core::slice::from_raw_parts(buffer.as_ptr().cast::<u8>().add(HEADER), len) };
        let mut name = Vec::new();
        name.try_reserve_exact(len / 2).map_err(|_| STATUS_INSUFFICIENT_RESOURCES)?;
        name.extend(bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])));
        Ok(Some(name))
    }
}

#[cfg(not(target_os = "windows"))]
mod host {
    use alloc::vec::Vec;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::{Mutex, PoisonError};

    use ndis_sync::AtPassive;
    use ndis_sys::NTSTATUS;

    /// The value, and a failure to inject into the next write.
    #[derive(Default)]
    pub(super) struct Value {
        data: Mutex<Option<Vec<u16>>>,
        fail_next: AtomicI32,
    }

    impl Value {
        pub(super) fn write(&self, _irql: &impl AtPassive, value: &[u16]) -> Result<(), NTSTATUS> {
            let fail = self.fail_next.swap(0, Ordering::Relaxed);
            if fail < 0 {
                return Err(fail);
            }
            *self.data.lock().unwrap_or_else(PoisonError::into_inner) = Some(value.to_vec());
            Ok(())
        }

        pub(super) fn read(&self, _irql: &impl AtPassive) -> Result<Option<Vec<u16>>, NTSTATUS> {
            Ok(self.data.lock().unwrap_or_else(PoisonError::into_inner).clone())
        }

        pub(super) fn fail_next(&self, status: NTSTATUS) {
            self.fail_next.store(status, Ordering::Relaxed);
        }
    }
}
