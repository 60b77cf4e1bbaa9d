//! Filter modules (one per adapter) and the list IOCTL_ENUM_FILTER_MODULES
//! walks.
//!
//! Microsoft's sample filter looks a module up under its list lock and then
//! uses it after dropping the lock with no reference held, racing
//! FilterDetach. Here every module carries a [`Rundown`]: the enumeration
//! takes rundown protection on each module *while holding the list lock*,
//! drops the lock, reads the modules, and releases; FilterDetach removes the
//! module from the list, then runs it down (waiting for those readers), and
//! only then frees it.
//!
//! The data path does not take the module's rundown protection: NDIS calls
//! no send or receive handler of a module once its FilterDetach has begun,
//! so the module outlives every data-path call without a shared counter
//! being written per packet.

use alloc::vec::Vec;
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use ndis_sync::{init_from_closure, AtMostDispatch, Passive, PinInit, Rundown, RwLock, SpinLock};
use portwatch_proto::{ModuleInfo, ModuleState, Wire, MODULE_NAME_CHARS};

use crate::ioctl::{self, Error, Reply};
use crate::ports::PortTable;

/// NDIS's opaque handle of a filter module (`NdisFilterHandle`).
#[derive(Debug, Clone, Copy)]
pub struct NdisHandle(pub *mut c_void);

// SAFETY: the handle is an opaque token NDIS hands out for the module's
// lifetime; the NdisF* functions that take it may be called from any thread.
unsafe impl Send for NdisHandle {}
// SAFETY: as above; the handle is never dereferenced by the driver.
unsafe impl Sync for NdisHandle {}

/// One filter module.
pub struct Module {
    /// NDIS's handle for this module.
    pub ndis_handle: NdisHandle,
    /// The driver-wide port table (`globals().ports`), reached from the
    /// module so that the data path does not check, per chain, that the
    /// driver state exists: it outlives every module (modules exist only
    /// between FilterAttach and FilterDetach, both inside the life of the
    /// filter driver's registration, and the state is freed only after
    /// NdisFDeregisterFilterDriver returned).
    pub ports: &'static RwLock<PortTable>,
    /// `BaseMiniportIfIndex` of its adapter.
    pub if_index: u32,
    /// The adapter's name, UTF-16, zero padded, truncated.
    pub name: [u16; MODULE_NAME_CHARS],
    /// The module's state. The data path reads it under the port table's
    /// read lock; FilterPause moves it to Paused under the write lock.
    state: AtomicU32,
    /// Held by readers that reached the module through the list.
    pub rundown: Rundown<()>,
}

impl Module {
    /// A module in the Attaching state.
    ///
    /// An initialiser: the rundown reference is initialised where the module
    /// will live (it is identified by that address).
    pub fn new<'a>(
        irql: &'a Passive,
        ndis_handle: NdisHandle,
        ports: &'static RwLock<PortTable>,
        if_index: u32,
        name: [u16; MODULE_NAME_CHARS],
    ) -> impl PinInit<Self> + 'a {
        let init = move |slot: *mut Self| {
            // SAFETY: `slot` is valid for writes and pinned (the initialiser's
            // contract); each field is written once, the rundown in place.
            unsafe {
                (&raw mut (*slot).ndis_handle).write(ndis_handle);
                (&raw mut (*slot).ports).write(ports);
                (&raw mut (*slot).if_index).write(if_index);
                (&raw mut (*slot).name).write(name);
                (&raw mut (*slot).state).write(AtomicU32::new(ModuleState::Attaching as u32));
                Rundown::new(irql, ()).__pinned_init(&raw mut (*slot).rundown);
            }
        };
        // SAFETY: the closure initialises every field.
        unsafe { init_from_closure(init) }
    }

    /// FilterRestart: runs.
    pub fn start_running(&self) {
        self.set_state(ModuleState::Running);
    }

    /// The current state. Read once per chain on the data path: one load.
    /// NDIS serializes the state changes themselves (they all run at
    /// PASSIVE_LEVEL in FilterAttach/Restart/Pause/Detach).
    pub fn state(&self) -> ModuleState {
        ModuleState::from_u32(self.state.load(Ordering::Acquire)).unwrap_or(ModuleState::Paused)
    }

    /// Moves to `state`.
    pub fn set_state(&self, state: ModuleState) {
        self.state.store(state as u32, Ordering::Release);
    }

    /// Whether the data path may pass traffic on.
    pub fn is_running(&self) -> bool {
        self.state() == ModuleState::Running
    }

    fn info(&self) -> ModuleInfo {
        ModuleInfo { if_index: self.if_index, state: self.state() as u32, name: self.name }
    }
}

/// A list entry.
// INVARIANT: points to a `Module` that stays allocated while the entry is in
// the list, and afterwards until every guard taken on its `rundown` has been
// released (`ModuleList::insert`'s contract).
struct Entry(NonNull<Module>);

// SAFETY: `Module` is Sync (atomics, a rundown reference and plain data), so
// sharing a pointer to it across threads is sound; the list never gives out
// `&mut`.
unsafe impl Send for Entry {}

/// The attached modules, under an NDIS spin lock.
pub struct ModuleList {
    list: SpinLock<Vec<Entry>>,
}

impl ModuleList {
    /// An initialiser of an empty list (its spin lock initialised in place).
    pub fn new() -> impl PinInit<Self> {
        let init = |slot: *mut Self| {
            // SAFETY: `slot` is valid for writes and pinned (the initialiser's contract).
            unsafe { SpinLock::new(Vec::new()).__pinned_init(&raw mut (*slot).list) }
        };
        // SAFETY: the closure initialises the only field.
        unsafe { init_from_closure(init) }
    }

    /// Adds a module. Fails only when the list cannot grow.
    ///
    /// # Safety
    ///
    /// `module` must stay allocated, at the same address, until it has been
    /// [`remove`](Self::remove)d from the list and then its `rundown` run
    /// down.
    pub unsafe fn insert<I: AtMostDispatch>(&self, irql: &mut I, module: &Module) -> Result<(), Error> {
        let mut list = self.list.lock(irql);
        list.try_reserve(1).map_err(|_| Error::NoMemory)?;
        // INVARIANT: the caller keeps `module` allocated as `Entry` requires.
        list.push(Entry(NonNull::from(module)));
        Ok(())
    }

    /// Removes a module; afterwards no new reader can reach it through the
    /// list. Returns whether it was there.
    pub fn remove<I: AtMostDispatch>(&self, irql: &mut I, module: &Module) -> bool {
        let mut list = self.list.lock(irql);
        let target = NonNull::from(module);
        let Some(at) = list.iter().position(|e| e.0 == target) else { return false };
        list.swap_remove(at);
        true
    }

    /// Number of modules in the list.
    pub fn len<I: AtMostDispatch>(&self, irql: &mut I) -> usize {
        self.list.lock(irql).len()
    }

    /// Whether the list is empty.
    pub fn is_empty<I: AtMostDispatch>(&self, irql: &mut I) -> bool {
        self.len(irql) == 0
    }

    /// IOCTL_ENUM_FILTER_MODULES: writes a [`proto::VarHeader`] and one
    /// [`ModuleInfo`] per module into `output`.
    pub fn enumerate(&self, irql: &mut Passive, output: &mut [u8]) -> Result<Reply, Error> {
        // Room for the guards is allocated before the lock is taken; a module
        // attached in between is simply not listed this time.
        let expected = self.len(irql);
        let mut guards = Vec::new();
        guards.try_reserve_exact(expected).map_err(|_| Error::NoMemory)?;
        {
            let list = self.list.lock(irql);
            for entry in list.iter().take(expected) {
                // SAFETY: the entry is in the list, so by `Entry`'s invariant
                // the module is allocated now. The reference is only kept
                // past the list lock inside a rundown guard, and FilterDetach
                // waits for every guard before it frees the module.
                let module = unsafe { entry.0.as_ref() };
                if let Some(guard) = module.rundown.try_acquire() {
                    guards.push((module, guard));
                }
            }
        }
        Ok(ioctl::write_variable(output, guards.len(), ModuleInfo::SIZE, |body| {
            for ((module, _guard), slot) in guards.iter().zip(body.chunks_exact_mut(ModuleInfo::SIZE)) {
                module.info().write(slot);
            }
        }))
    }
}

/// Copies a UTF-16 name into a fixed, zero-padded field, truncating.
pub fn fixed_name(name: &[u16]) -> [u16; MODULE_NAME_CHARS] {
    let mut out = [0u16; MODULE_NAME_CHARS];
    for (dst, src) in out.iter_mut().zip(name) {
        *dst = *src;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;

    fn passive() -> Passive {
        // SAFETY: host tests run at the modelled PASSIVE_LEVEL.
        unsafe { Passive::new_unchecked() }
    }

    fn module(if_index: u32) -> core::pin::Pin<Box<Module>> {
        let name: Vec<u16> = "eth".encode_utf16().collect();
        let irql = passive();
        // A table for the modules of the tests, alive as long as they are.
        let ports = Box::leak(Box::new(RwLock::new(crate::ports::PortTable::try_new().unwrap()).unwrap()));
        let handle = NdisHandle(core::ptr::null_mut());
        crate::pool::try_pin_box(Module::new(&irql, handle, ports, if_index, fixed_name(&name))).unwrap()
    }

    #[test]
    fn enumerates_live_modules_and_skips_run_down_ones() {
        let mut irql = passive();
        ndis_sync::stack_pin_init!(let list = ModuleList::new());
        let a = module(1);
        let b = module(2);
        // SAFETY: both boxes outlive the list's use of them (removed below).
        unsafe {
            list.insert(&mut irql, &a).unwrap();
            list.insert(&mut irql, &b).unwrap();
        }
        a.set_state(ModuleState::Running);
        let mut out = vec![0u8; 12 + 2 * ModuleInfo::SIZE];
        assert_eq!(list.enumerate(&mut irql, &mut out).unwrap(), Reply::Done(out.len()));
        let first = ModuleInfo::read(&out[12..12 + ModuleInfo::SIZE]).unwrap();
        assert_eq!((first.if_index, first.state), (1, ModuleState::Running as u32));
        assert_eq!(&first.name[..4], &[u16::from(b'e'), u16::from(b't'), u16::from(b'h'), 0]);

        // Too small: header only, with the size needed.
        let mut small = vec![0u8; 12 + ModuleInfo::SIZE];
        assert_eq!(list.enumerate(&mut irql, &mut small).unwrap(), Reply::Overflow);
        let header = portwatch_proto::VarHeader::read(&small[..12]).unwrap();
        assert_eq!(header.needed as usize, 12 + 2 * ModuleInfo::SIZE);

        // Detach b: remove, run down; enumeration no longer sees it.
        assert!(list.remove(&mut irql, &b));
        assert!(!list.remove(&mut irql, &b));
        assert!(b.rundown.run_down(&irql).is_some());
        let mut out = vec![0u8; 12 + 2 * ModuleInfo::SIZE];
        assert_eq!(list.enumerate(&mut irql, &mut out).unwrap(), Reply::Done(12 + ModuleInfo::SIZE));
        assert!(list.remove(&mut irql, &a));
        assert!(list.is_empty(&mut irql));
    }

    #[test]
    fn names_truncate_and_pad() {
        let long: Vec<u16> = (0..100).collect();
        let f = fixed_name(&long);
        assert_eq!(f[MODULE_NAME_CHARS - 1], (MODULE_NAME_CHARS - 1) as u16);
        let short = fixed_name(&[5]);
        assert_eq!((short[0], short[1]), (5, 0));
    }
}
