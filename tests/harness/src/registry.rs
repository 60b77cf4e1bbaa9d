//! The registry a driver reads and writes with `ZwCreateKey`, `ZwOpenKey`,
//! `ZwSetValueKey`, `ZwQueryValueKey` and `ZwClose`, with the checks of
//! Driver Verifier and of the functions themselves. Every rule is raised
//! here, once:
//!
//! | rule | verdict | source |
//! |---|---|---|
//! | any of the five above PASSIVE_LEVEL | 0xC4 / 0x2001F | DDI rule IrqlZwPassive (`devtest/wdm-irqlzwpassive.md`); each function's page: "IRQL: PASSIVE_LEVEL" |
//! | a key opened without `OBJ_KERNEL_HANDLE` | 0xC4 / 0xF6 | ZwCreateKey's and ZwOpenKey's ObjectAttributes parameter: "If the caller is not running in a system thread context, it must set the OBJ_KERNEL_HANDLE attribute"; [C4] 0xF6: a driver references a user-mode handle as kernel mode. Harness choice to stop at the open: the handle is a user handle from then on |
//! | `ZwClose`, `ZwSetValueKey` or `ZwQueryValueKey` on a handle the driver does not hold | 0x93 | [0x93] INVALID_KERNEL_HANDLE |
//! | a key handle still open at unload | 0xC4 / 0x62 | harness choice: Windows raises nothing at once, but the handle keeps the key object (pool) alive; 0x62 is Verifier's "unloaded with allocations outstanding" |
//! | `OBJECT_ATTRIBUTES.Length` wrong, a malformed `UNICODE_STRING` (odd length, `Length` > `MaximumLength`, no buffer) | `STATUS_INVALID_PARAMETER` returned | what the object manager returns; not a bug check |
//! | `ZwSetValueKey` on a handle without `KEY_SET_VALUE`, `ZwQueryValueKey` without `KEY_QUERY_VALUE` | `STATUS_ACCESS_DENIED` returned | ZwSetValueKey remarks; ZwQueryValueKey remarks |
//!
//! The values live in a [`Hive`]: one "machine's" registry. A test that
//! keeps the hive across [`Session`](crate::session::Session)s (pass the
//! same one in [`Options`](crate::session::Options)) sees what the driver
//! wrote before it was unloaded, as after a reboot. Names compare without
//! case. Only `KeyValuePartialInformation` queries are modelled.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use ndis_sys::{
    HANDLE, KEY_QUERY_VALUE, KEY_SET_VALUE, KEY_VALUE_PARTIAL_INFORMATION, NTSTATUS, OBJECT_ATTRIBUTES,
    OBJ_KERNEL_HANDLE, REG_CREATED_NEW_KEY, REG_OPENED_EXISTING_KEY, UNICODE_STRING,
};
use windows_sys::Win32::Foundation::{
    STATUS_ACCESS_DENIED, STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_PARAMETER,
    STATUS_OBJECT_NAME_NOT_FOUND,
};

use crate::imports::Import;
use crate::irql::{self, PASSIVE};
use crate::stack::on_host;
use crate::verifier::{self, codes, Violation};

/// 0xC4/0x2001F: DDI compliance rule IrqlZwPassive, a `Zw*` registry
/// function called above PASSIVE_LEVEL (the rule's page).
pub const C4_IRQL_ZW_PASSIVE: u64 = 0x0002_001F;
/// 0xC4/0xF6: a driver references a user-mode handle as kernel mode. `[C4]`
pub const C4_USER_HANDLE_AS_KERNEL: u64 = 0xF6;
/// INVALID_KERNEL_HANDLE: a handle that is not valid was closed or used. `[0x93]`
pub const INVALID_KERNEL_HANDLE: u32 = 0x93;
/// `KeyValuePartialInformation` (`KEY_VALUE_INFORMATION_CLASS`).
const KEY_VALUE_PARTIAL: i32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Value {
    kind: u32,
    data: Vec<u8>,
}

#[derive(Default)]
struct HiveData {
    /// Keys by lower-case path; each key's values by lower-case name.
    keys: BTreeMap<String, BTreeMap<String, Value>>,
    /// A status the next `ZwSetValueKey` returns instead of writing.
    fail_next_set: Option<NTSTATUS>,
    /// `ZwSetValueKey` calls that wrote.
    writes: u64,
}

/// One machine's registry. Clones share it.
#[derive(Clone, Default)]
pub struct Hive(Arc<Mutex<HiveData>>);

impl std::fmt::Debug for Hive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hive").field("keys", &self.data().keys.len()).finish()
    }
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

impl Hive {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn data(&self) -> MutexGuard<'_, HiveData> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates `path` and every key above it (what setup does for a
    /// service key).
    pub fn ensure_key(&self, path: &str) {
        let mut d = self.data();
        let mut at = String::new();
        for part in path.split('\\').filter(|p| !p.is_empty()) {
            at.push('\\');
            at.push_str(part);
            d.keys.entry(lower(&at)).or_default();
        }
    }

    /// Whether the key exists.
    pub fn has_key(&self, path: &str) -> bool {
        self.data().keys.contains_key(&lower(path))
    }

    /// A value's type and data.
    pub fn value(&self, key: &str, name: &str) -> Option<(u32, Vec<u8>)> {
        self.data().keys.get(&lower(key))?.get(&lower(name)).map(|v| (v.kind, v.data.clone()))
    }

    /// A `REG_SZ` value as a string (without its terminator).
    pub fn string(&self, key: &str, name: &str) -> Option<String> {
        let (kind, data) = self.value(key, name)?;
        assert_eq!(kind, ndis_sys::REG_SZ, "{key}\\{name} is not REG_SZ");
        let units: Vec<u16> = data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        let end = units.iter().position(|&c| c == 0).unwrap_or(units.len());
        Some(String::from_utf16_lossy(&units[..end]))
    }

    /// Sets a value, as an administrator with regedit would.
    pub fn set_value(&self, key: &str, name: &str, kind: u32, data: &[u8]) {
        self.ensure_key(key);
        self.data()
            .keys
            .get_mut(&lower(key))
            .expect("ensured")
            .insert(lower(name), Value { kind, data: data.to_vec() });
    }

    /// Makes the next `ZwSetValueKey` fail with `status` (fault injection).
    pub fn fail_next_set(&self, status: NTSTATUS) {
        self.data().fail_next_set = Some(status);
    }

    /// `ZwSetValueKey` calls that wrote a value.
    pub fn writes(&self) -> u64 {
        self.data().writes
    }
}

/// An open key handle: its key's path and granted access.
struct Open {
    path: String,
    access: u32,
}

#[derive(Default)]
struct Handles {
    hive: Hive,
    open: HashMap<u64, Open>,
}

static HANDLES: LazyLock<Mutex<Handles>> = LazyLock::new(Mutex::default);
/// Kernel handles have the top bit set; each one is new.
static NEXT_HANDLE: AtomicU64 = AtomicU64::new(0xFFFF_FFFF_8000_0004);

fn handles() -> MutexGuard<'static, Handles> {
    HANDLES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Session reset: no handle open, a fresh hive until [`install`].
pub(crate) fn reset_handles() {
    *handles() = Handles::default();
}

/// Makes `hive` the registry the driver of this session sees.
pub(crate) fn install(hive: &Hive) {
    handles().hive = hive.clone();
}

/// Makes `hive` the registry of the current verifier session, for model
/// tests that run without [`Session`](crate::session::Session) (which
/// installs [`Options::registry`](crate::session::Options::registry)).
pub fn install_for_tests(hive: &Hive) {
    install(hive);
}

/// Key handles the driver holds.
pub fn open_handles() -> usize {
    handles().open.len()
}

/// At unload: every key handle the driver opened must be closed (the
/// session runs it after DriverUnload).
pub fn leak_check() -> Result<(), Violation> {
    let h = handles();
    let Some((&handle, open)) = h.open.iter().next() else { return Ok(()) };
    let v = Violation::c4(
        "registry key handle open at unload",
        codes::C4_POOL_LEAK_AT_UNLOAD,
        handle,
        h.open.len() as u64,
        0,
        format!("{} key handle(s) never closed, first {handle:#x} on {}", h.open.len(), open.path),
    );
    drop(h);
    verifier::record(v.clone());
    Err(v)
}

fn require_passive(function: &str) {
    let now = irql::current();
    if now != PASSIVE {
        verifier::violation(Violation::c4(
            "Zw registry function above PASSIVE_LEVEL (IrqlZwPassive)",
            C4_IRQL_ZW_PASSIVE,
            u64::from(now),
            0,
            0,
            format!("{function} at {}: the registry functions are PASSIVE_LEVEL only", irql::name(now)),
        ));
    }
}

/// Reads a counted string; `None` if malformed.
///
/// # Safety
/// `s` is null or points to a `UNICODE_STRING` whose buffer holds `Length` bytes.
unsafe fn read_unicode(s: *const UNICODE_STRING) -> Option<String> {
    if s.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    let s = unsafe { &*s };
    if s.Length % 2 != 0 || s.Length > s.MaximumLength || (s.Length > 0 && s.Buffer.is_null()) {
        return None;
    }
    let units = if s.Length == 0 {
        &[][..]
    } else {
        // SAFETY: checked non-null; the caller's contract gives Length bytes.
        unsafe { std::slice::from_raw_parts(s.Buffer, usize::from(s.Length / 2)) }
    };
    Some(String::from_utf16_lossy(units))
}

/// The path an `OBJECT_ATTRIBUTES` names (absolute paths only: the driver
/// opens no key relative to another), or the status Windows returns.
///
/// # Safety
/// `attributes` points to an `OBJECT_ATTRIBUTES` as the driver passes it.
unsafe fn path_of(function: &str, attributes: *const OBJECT_ATTRIBUTES) -> Result<String, NTSTATUS> {
    if attributes.is_null() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: the caller's contract.
    let a = unsafe { &*attributes };
    if a.Length as usize != std::mem::size_of::<OBJECT_ATTRIBUTES>() || !a.RootDirectory.is_null() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    if a.Attributes & OBJ_KERNEL_HANDLE == 0 {
        verifier::violation(Violation::c4(
            "registry key opened without OBJ_KERNEL_HANDLE",
            C4_USER_HANDLE_AS_KERNEL,
            0,
            u64::from(a.Attributes),
            0,
            format!("{function}: the handle would belong to the calling process (set OBJ_KERNEL_HANDLE)"),
        ));
    }
    // SAFETY: a UNICODE_STRING the driver built.
    unsafe { read_unicode(a.ObjectName) }.ok_or(STATUS_INVALID_PARAMETER)
}

fn new_handle(path: String, access: u32) -> u64 {
    let handle = NEXT_HANDLE.fetch_add(4, Ordering::Relaxed);
    handles().open.insert(handle, Open { path, access });
    handle
}

/// The key a handle refers to, with its access; 0x93 for a handle the
/// driver does not hold.
fn key_of(function: &str, handle: HANDLE) -> (String, u32) {
    let h = handles();
    if let Some(open) = h.open.get(&(handle as u64)) {
        return (open.path.clone(), open.access);
    }
    drop(h);
    verifier::violation(Violation::new(
        "invalid kernel handle",
        INVALID_KERNEL_HANDLE,
        [handle as u64, 0, 0, 0],
        format!("{function}({:#x}): not a key handle the driver holds", handle as u64),
    ))
}

extern "win64" fn zw_create_key(
    key: *mut HANDLE,
    access: u32,
    attributes: *const OBJECT_ATTRIBUTES,
    _title_index: u32,
    _class: *const UNICODE_STRING,
    _options: u32,
    disposition: *mut u32,
) -> NTSTATUS {
    on_host(|| {
        const F: &str = "ZwCreateKey";
        require_passive(F);
        // SAFETY: the driver's OBJECT_ATTRIBUTES.
        let path = match unsafe { path_of(F, attributes) } {
            Ok(p) => p,
            Err(status) => return status,
        };
        let hive = handles().hive.clone();
        let created = {
            let mut d = hive.data();
            let parent = path.rsplit_once('\\').map_or("", |(p, _)| p);
            if !d.keys.contains_key(&lower(parent)) {
                return STATUS_OBJECT_NAME_NOT_FOUND;
            }
            let created = !d.keys.contains_key(&lower(&path));
            d.keys.entry(lower(&path)).or_default();
            created
        };
        let handle = new_handle(path, access);
        // SAFETY: the driver's out pointers (Disposition is optional).
        unsafe {
            key.write(handle as HANDLE);
            if !disposition.is_null() {
                disposition.write(if created { REG_CREATED_NEW_KEY } else { REG_OPENED_EXISTING_KEY });
            }
        }
        0
    })
}

extern "win64" fn zw_open_key(key: *mut HANDLE, access: u32, attributes: *const OBJECT_ATTRIBUTES) -> NTSTATUS {
    on_host(|| {
        const F: &str = "ZwOpenKey";
        require_passive(F);
        // SAFETY: the driver's OBJECT_ATTRIBUTES.
        let path = match unsafe { path_of(F, attributes) } {
            Ok(p) => p,
            Err(status) => return status,
        };
        if !handles().hive.has_key(&path) {
            return STATUS_OBJECT_NAME_NOT_FOUND;
        }
        let handle = new_handle(path, access);
        // SAFETY: the driver's out pointer.
        unsafe { key.write(handle as HANDLE) };
        0
    })
}

extern "win64" fn zw_set_value_key(
    key: HANDLE,
    name: *const UNICODE_STRING,
    _title_index: u32,
    kind: u32,
    data: *const core::ffi::c_void,
    size: u32,
) -> NTSTATUS {
    on_host(|| {
        const F: &str = "ZwSetValueKey";
        require_passive(F);
        let (path, access) = key_of(F, key);
        if access & KEY_SET_VALUE == 0 {
            return STATUS_ACCESS_DENIED;
        }
        // SAFETY: the driver's value name.
        let Some(name) = (unsafe { read_unicode(name) }) else { return STATUS_INVALID_PARAMETER };
        if size > 0 && data.is_null() {
            return STATUS_INVALID_PARAMETER;
        }
        let bytes = if size == 0 {
            Vec::new()
        } else {
            // SAFETY: the driver passes `size` readable bytes at `data`.
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size as usize) }.to_vec()
        };
        let hive = handles().hive.clone();
        let mut d = hive.data();
        if let Some(status) = d.fail_next_set.take() {
            return status;
        }
        let Some(values) = d.keys.get_mut(&lower(&path)) else { return STATUS_OBJECT_NAME_NOT_FOUND };
        values.insert(lower(&name), Value { kind, data: bytes });
        d.writes += 1;
        0
    })
}

extern "win64" fn zw_query_value_key(
    key: HANDLE,
    name: *const UNICODE_STRING,
    class: i32,
    buffer: *mut core::ffi::c_void,
    length: u32,
    result_length: *mut u32,
) -> NTSTATUS {
    on_host(|| {
        const F: &str = "ZwQueryValueKey";
        require_passive(F);
        let (path, access) = key_of(F, key);
        if access & KEY_QUERY_VALUE == 0 {
            return STATUS_ACCESS_DENIED;
        }
        if class != KEY_VALUE_PARTIAL {
            return STATUS_INVALID_PARAMETER;
        }
        // SAFETY: the driver's value name.
        let Some(name) = (unsafe { read_unicode(name) }) else { return STATUS_INVALID_PARAMETER };
        let Some(value) = handles().hive.value(&path, &name) else { return STATUS_OBJECT_NAME_NOT_FOUND };
        let header = std::mem::offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data);
        let needed = header + value.1.len();
        // SAFETY: the driver's out pointer.
        unsafe { result_length.write(needed as u32) };
        let length = length as usize;
        if length < header {
            return STATUS_BUFFER_TOO_SMALL;
        }
        let info =
            KEY_VALUE_PARTIAL_INFORMATION { TitleIndex: 0, Type: value.0, DataLength: value.1.len() as u32, Data: [0] };
        // SAFETY: the driver's buffer holds `length` >= header bytes; the
        // header's fields are written without assuming alignment.
        unsafe {
            std::ptr::copy_nonoverlapping((&raw const info).cast::<u8>(), buffer.cast::<u8>(), header);
        }
        if length < needed {
            return STATUS_BUFFER_OVERFLOW;
        }
        // SAFETY: `needed` <= `length` bytes are writable.
        unsafe { std::ptr::copy_nonoverlapping(value.1.as_ptr(), buffer.cast::<u8>().add(header), value.1.len()) };
        0
    })
}

extern "win64" fn zw_close(handle: HANDLE) -> NTSTATUS {
    on_host(|| {
        const F: &str = "ZwClose";
        require_passive(F);
        let _ = key_of(F, handle);
        handles().open.remove(&(handle as u64));
        0
    })
}

pub(crate) fn imports() -> Vec<Import> {
    vec![
        Import::ntoskrnl("ZwCreateKey", zw_create_key as *const () as usize),
        Import::ntoskrnl("ZwOpenKey", zw_open_key as *const () as usize),
        Import::ntoskrnl("ZwSetValueKey", zw_set_value_key as *const () as usize),
        Import::ntoskrnl("ZwQueryValueKey", zw_query_value_key as *const () as usize),
        Import::ntoskrnl("ZwClose", zw_close as *const () as usize),
    ]
}
