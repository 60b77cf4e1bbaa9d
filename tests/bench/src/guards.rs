//! Guard overhead: each `guard_*` export of the fixture against its
//! `raw_*` twin, from the disassembly.

use std::fmt;

use crate::disasm::{CallGraph, DisasmError, Function};
use crate::panic_paths::Split;
use crate::pe::Image;
use crate::reentry::{self, HotPaths};

/// What a guard may add to its raw twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Nothing that calls: the same imports in the same order, no other
    /// call, no extra reachable import.
    SameCalls,
    /// The `RwLock` re-entry check and nothing else ([`reentry`]); `write`
    /// when the flag is also raised and lowered.
    ReentryCheck {
        /// The sequence takes the write lock.
        write: bool,
    },
    /// The "initialised in place" check of `Mutex`, `PassiveMutex` and
    /// `Semaphore`: the
    /// same shape as a read's re-entry check (one byte load, compare, one
    /// branch into the only panic path) and nothing else.
    InitCheck,
}

/// The sequences the fixture implements twice (export suffixes), with what
/// each guard may add.
pub const SEQUENCES: &[(&str, Allowance)] = &[
    ("spin", Allowance::SameCalls),
    ("spin_dpr", Allowance::SameCalls),
    ("spin_nested", Allowance::SameCalls),
    ("rw_read", Allowance::ReentryCheck { write: false }),
    ("rw_read_dispatch", Allowance::ReentryCheck { write: false }),
    ("rw_write", Allowance::ReentryCheck { write: true }),
    ("rundown", Allowance::SameCalls),
    ("mutex", Allowance::InitCheck),
    ("passive_mutex", Allowance::InitCheck),
    ("semaphore", Allowance::InitCheck),
];

/// One sequence, guard against raw.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The sequence (export suffix).
    pub name: String,
    /// What the guard may add.
    pub allowance: Allowance,
    /// Imports the raw version calls, in address order.
    pub raw_imports: Vec<String>,
    /// Imports the guard version calls, in address order.
    pub guard_imports: Vec<String>,
    /// Calls of the guard version that go anywhere but an import.
    pub guard_other_calls: Vec<String>,
    /// Imports reachable from the guard version's call graph (panic paths
    /// included) that the raw version never reaches.
    pub guard_extra_reachable: Vec<String>,
    /// Instructions of the raw export outside panic paths: per acquire /
    /// release pair for the straight-line sequences.
    pub raw_path: usize,
    /// The same for the guard export.
    pub guard_path: usize,
    /// The [`Allowance::ReentryCheck`] analysis (None for the others).
    pub reentry: Option<HotPaths>,
    /// Reachable instructions of the raw export.
    pub raw_instructions: usize,
    /// Reachable instructions of the guard export's whole call graph.
    pub guard_instructions: usize,
    /// Locked read-modify-write instructions (`lock` prefix or `xchg` with
    /// memory) in the raw and the guard version.
    pub locked: (usize, usize),
    /// The linker folded both exports into one function (identical code).
    pub folded: bool,
}

impl Comparison {
    /// `true` when the guard adds only what its [`Allowance`] permits.
    pub fn accepted(&self) -> bool {
        self.differences().is_empty()
    }

    /// `true` when the guard adds nothing but plain instructions: the same
    /// imports in the same order, no other call, no extra reachable import.
    pub fn same_calls(&self) -> bool {
        self.raw_imports == self.guard_imports
            && self.guard_other_calls.is_empty()
            && self.guard_extra_reachable.is_empty()
    }

    /// Why the guard is not [`accepted`](Self::accepted), in words.
    pub fn differences(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.raw_imports != self.guard_imports {
            out.push(format!("imports differ: raw {:?}, guard {:?}", self.raw_imports, self.guard_imports));
        }
        match &self.reentry {
            None => {
                for c in &self.guard_other_calls {
                    out.push(format!("guard makes a non-import call: {c}"));
                }
                for i in &self.guard_extra_reachable {
                    out.push(format!("guard reaches an import the raw code never calls: {i}"));
                }
            }
            Some(hot) => {
                // Calls are checked by `reentry` (only inside the panic path).
                for i in self.guard_extra_reachable.iter().filter(|i| short(i) != crate::handlers::PANIC_IMPORT) {
                    out.push(format!("guard reaches an import the raw code never calls: {i}"));
                }
                out.extend(hot.violations.iter().cloned());
            }
        }
        out
    }

    fn verdict(&self) -> &'static str {
        match (self.accepted(), self.folded, self.allowance) {
            (false, _, _) => "REJECTED",
            (true, true, _) => "identical code",
            (true, false, Allowance::SameCalls) => "same calls",
            (true, false, Allowance::ReentryCheck { write: false }) => "+ re-entry check",
            (true, false, Allowance::ReentryCheck { write: true }) => "+ re-entry check, flag set/clear",
            (true, false, Allowance::InitCheck) => "+ init check",
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "| {:<16} | {:>3} | {:>5} | {:>+5} | {:>3} / {:<3} | {:>2} / {:<2} | {} | {} |",
            self.name,
            self.raw_path,
            self.guard_path,
            self.guard_path as i64 - self.raw_path as i64,
            self.raw_instructions,
            self.guard_instructions,
            self.locked.0,
            self.locked.1,
            self.verdict(),
            self.guard_imports.iter().map(|s| short(s)).collect::<Vec<_>>().join(", ")
        )
    }
}

/// The table header matching [`Comparison`]'s `Display`.
pub const TABLE_HEADER: &str = "| sequence         | raw | guard | added | reachable r / g | locked r/g | verdict | imports (in order) |\n|---|---|---|---|---|---|---|---|";

fn short(import: &str) -> &str {
    import.rsplit('!').next().unwrap_or(import)
}

/// Compares `guard_<name>` with `raw_<name>` in `image`.
pub fn compare(image: &Image, name: &str, allowance: Allowance) -> Result<Comparison, DisasmError> {
    compare_exports(image, name, &format!("raw_{name}"), &format!("guard_{name}"), allowance)
}

/// Compares the export `guard` with the export `raw`, reported as `name`.
pub fn compare_exports(
    image: &Image,
    name: &str,
    raw: &str,
    guard: &str,
    allowance: Allowance,
) -> Result<Comparison, DisasmError> {
    let entry =
        |export: &str| image.export(export).ok_or_else(|| DisasmError(format!("the fixture does not export {export}")));
    let (raw_va, guard_va) = (entry(raw)?, entry(guard)?);
    let raw = CallGraph::from_root(image, raw_va)?;
    let guard = CallGraph::from_root(image, guard_va)?;
    let (raw_root, guard_root) = (&raw.functions[&raw_va], &guard.functions[&guard_va]);
    let raw_reach = raw.imports();
    let (raw_split, guard_split) = (Split::of(image, raw_root)?, Split::of(image, guard_root)?);
    let reentry = match allowance {
        Allowance::SameCalls => None,
        Allowance::ReentryCheck { write } => Some(reentry::compare(image, raw_root, guard_root, write)?),
        Allowance::InitCheck => Some(reentry::compare(image, raw_root, guard_root, false)?),
    };
    Ok(Comparison {
        name: name.to_string(),
        allowance,
        raw_path: raw_split.hot.len(),
        guard_path: guard_split.hot.len(),
        reentry,
        raw_imports: owned(raw_root.imports()),
        guard_imports: owned(guard_root.imports()),
        guard_other_calls: guard_root
            .other_calls()
            .iter()
            .map(|c| format!("{:#x}: {}{}", c.at, if c.tail { "jmp " } else { "call " }, c.target))
            .collect(),
        guard_extra_reachable: guard.imports().difference(&raw_reach).map(|s| s.to_string()).collect(),
        raw_instructions: raw.len(),
        guard_instructions: guard.len(),
        locked: (locked_count(raw_root), locked_count(guard_root)),
        folded: raw_va == guard_va,
    })
}

fn owned(v: Vec<&str>) -> Vec<String> {
    v.into_iter().map(String::from).collect()
}

/// Locked read-modify-writes: what makes a cache line bounce between CPUs.
pub fn locked_count(f: &Function) -> usize {
    f.instructions.values().filter(|i| is_locked_rmw(i)).count()
}

/// `lock`-prefixed, or `xchg` with a memory operand (implicitly locked).
pub fn is_locked_rmw(insn: &iced_x86::Instruction) -> bool {
    let xchg_mem = insn.mnemonic() == iced_x86::Mnemonic::Xchg
        && (0..insn.op_count()).any(|i| insn.op_kind(i) == iced_x86::OpKind::Memory);
    insn.has_lock_prefix() || xchg_mem
}

/// Every sequence of [`SEQUENCES`].
pub fn compare_all(image: &Image) -> Result<Vec<Comparison>, DisasmError> {
    SEQUENCES.iter().map(|(name, allowance)| compare(image, name, *allowance)).collect()
}
