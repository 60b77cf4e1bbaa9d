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
use core::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

use ndis_sync::{init_from_closure, AtMostDispatch, Passive, PinInit, Rundown, SpinLock};
use portwatch_proto::{ModuleInfo, ModuleState, Wire, MODULE_NAME_CHARS};

use crate::ioctl::{self, Error, Reply};
use crate::percpu::{add_local, Cpu, PerCpu};

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
    /// `BaseMiniportIfIndex` of its adapter.
    pub if_index: u32,
    /// The adapter's name, UTF-16, zero padded, truncated.
    pub name: [u16; MODULE_NAME_CHARS],
    state: AtomicU32,
    /// The pause gate: NBLs this module passed on (sends down, receives up)
    /// minus those that came back, per processor (an NBL may leave on one
    /// processor and come back on another, so one slot can go "negative";
    /// the sum, wrapping, is what is outstanding). NDIS may call FilterPause
    /// while some are still outstanding; the pause completes when the sum
    /// is zero ("Pausing a Driver Stack"). Each slot is written only by its
    /// processor, under the port table's read lock (see [`Module::enter`]).
    in_flight: PerCpu<AtomicU64>,
    /// A pause is pending: whoever finds the sum at zero, and takes this
    /// flag, completes it.
    pause_pending: AtomicBool,
    /// Held by readers that reached the module through the list.
    pub rundown: Rundown<()>,
}

impl Module {
    /// A module in the Attaching state.
    ///
    /// An initialiser: the rundown reference is initialised where the module
    /// will live (it is identified by that address).
    pub fn new(
        irql: &Passive,
        ndis_handle: NdisHandle,
        if_index: u32,
        name: [u16; MODULE_NAME_CHARS],
        in_flight: PerCpu<AtomicU64>,
    ) -> impl PinInit<Self> + '_ {
        let init = move |slot: *mut Self| {
            // SAFETY: `slot` is valid for writes and pinned (the initialiser's
            // contract); each field is written once, the rundown in place.
            unsafe {
                (&raw mut (*slot).ndis_handle).write(ndis_handle);
                (&raw mut (*slot).if_index).write(if_index);
                (&raw mut (*slot).name).write(name);
                (&raw mut (*slot).state).write(AtomicU32::new(ModuleState::Attaching as u32));
                (&raw mut (*slot).in_flight).write(in_flight);
                (&raw mut (*slot).pause_pending).write(AtomicBool::new(false));
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

    /// FilterPause (PASSIVE_LEVEL): stops passing traffic on. True: nothing
    /// is outstanding and the module is Paused (return
    /// NDIS_STATUS_SUCCESS); false: the last NBL to come back completes the
    /// pause ([`Module::leave`] says so, once).
    ///
    /// `barrier` must acquire and release the port table's write lock, the
    /// lock [`Module::enter`] and [`Module::leave`] run under: after it,
    /// every `enter` that saw the module running has added its NBLs, every
    /// later one sees it pausing, and every `leave` either has subtracted
    /// its NBLs or will see the pause pending.
    pub fn begin_pause(&self, barrier: impl FnOnce()) -> bool {
        self.set_state(ModuleState::Pausing);
        self.pause_pending.store(true, Ordering::SeqCst);
        barrier();
        self.try_complete_pause()
    }

    /// Under the port table's read lock, before passing `n` NBLs on from
    /// processor `cpu`: counts them as outstanding and returns true if the
    /// module is running; false (nothing counted) if not: refuse them.
    /// Plain loads and a store to this processor's slot.
    #[must_use]
    pub fn enter(&self, cpu: Cpu<'_>, n: usize) -> bool {
        if !self.is_running() {
            return false;
        }
        add_local(self.in_flight.get(cpu), n as u64);
        true
    }

    /// Under the port table's read lock, on processor `cpu`: `n` NBLs passed
    /// on came back. True when they were the last ones of a pending pause:
    /// the module is now Paused and the caller must call
    /// NdisFPauseComplete. Without a pending pause: a store to this
    /// processor's slot and one load.
    #[must_use]
    pub fn leave(&self, cpu: Cpu<'_>, n: usize) -> bool {
        add_local(self.in_flight.get(cpu), (n as u64).wrapping_neg());
        if !self.pause_pending.load(Ordering::Relaxed) {
            return false;
        }
        self.try_complete_pause()
    }

    /// With a pause pending: completes it if nothing is outstanding.
    ///
    /// Why it completes exactly once, when the last NBL is back: after the
    /// pause's barrier no slot grows (no `enter` succeeds), so each slot
    /// only decreases, and a sum read slot by slot is at least what is
    /// outstanding when the reading ends; a sum of zero means everything is
    /// back. Whoever subtracts last then finds zero: the full fence orders
    /// each caller's subtraction before its reads, so of two callers
    /// subtracting at once at least one sees the other's subtraction (the
    /// pause itself subtracts nothing; a `leave` before its barrier is
    /// visible to it through the lock). The swap lets only one of those who
    /// find zero complete the pause.
    fn try_complete_pause(&self) -> bool {
        fence(Ordering::SeqCst);
        let outstanding = self.in_flight.iter().fold(0u64, |sum, slot| sum.wrapping_add(slot.load(Ordering::Relaxed)));
        if outstanding != 0 || !self.pause_pending.swap(false, Ordering::SeqCst) {
            return false;
        }
        self.set_state(ModuleState::Paused);
        true
    }

    /// The current state. Read on every packet: one relaxed load, no lock.
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
        let in_flight = PerCpu::try_new().unwrap();
        crate::pool::try_pin_box(Module::new(
            &irql,
            NdisHandle(core::ptr::null_mut()),
            if_index,
            fixed_name(&name),
            in_flight,
        ))
        .unwrap()
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

#[cfg(test)]
mod pause_tests {
    use super::*;

    fn module() -> core::pin::Pin<alloc::boxed::Box<Module>> {
        // SAFETY: host tests run at the modelled PASSIVE_LEVEL.
        let passive = unsafe { Passive::new_unchecked() };
        let in_flight = PerCpu::try_with_slots(4).unwrap();
        let m = Module::new(&passive, NdisHandle(core::ptr::null_mut()), 1, [0; MODULE_NAME_CHARS], in_flight);
        let m = crate::pool::try_pin_box(m).unwrap();
        m.set_state(ModuleState::Paused);
        m
    }

    fn cpu(i: usize) -> Cpu<'static> {
        Cpu::for_test(i)
    }

    #[test]
    fn a_pause_with_nothing_outstanding_completes_at_once() {
        let m = module();
        m.start_running();
        assert!(m.enter(cpu(0), 2));
        assert!(!m.leave(cpu(3), 2), "back on another processor; no pause pending");
        assert!(m.begin_pause(|| ()));
        assert_eq!(m.state(), ModuleState::Paused);
        assert!(!m.enter(cpu(0), 2), "a paused module refuses");
    }

    #[test]
    fn a_pause_waits_for_the_last_nbl_and_completes_once() {
        let m = module();
        m.start_running();
        assert!(m.enter(cpu(0), 2));
        assert!(m.enter(cpu(1), 1));
        assert!(!m.begin_pause(|| ()), "three NBLs are out: the pause pends");
        assert_eq!(m.state(), ModuleState::Pausing);
        assert!(!m.enter(cpu(2), 4), "a pausing module forwards nothing new");
        assert!(!m.leave(cpu(2), 2), "two back on a third processor: one still out");
        assert!(m.leave(cpu(3), 1), "the last one completes the pause");
        assert_eq!(m.state(), ModuleState::Paused);
        assert!(!m.enter(cpu(0), 1));
        m.start_running();
        assert!(m.enter(cpu(0), 1), "restart resumes");
        assert!(!m.leave(cpu(1), 1), "no pause pending: nothing to complete");
    }

    #[test]
    fn the_barrier_runs_between_the_pending_flag_and_the_sum() {
        let m = module();
        m.start_running();
        assert!(m.enter(cpu(1), 1));
        // An NBL that comes back while the pause waits at its barrier
        // (before the pause reads the slots) lets the pause complete at
        // once; the leave itself finds the pause pending but the flag is
        // taken by one of them only.
        let mut left = false;
        let completed = m.begin_pause(|| left = m.leave(cpu(2), 1));
        assert!(left ^ completed, "exactly one completes the pause (leave {left}, pause {completed})");
        assert_eq!(m.state(), ModuleState::Paused);
    }
}
