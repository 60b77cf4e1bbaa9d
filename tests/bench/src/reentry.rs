//! The one thing an `RwLock` guard may add to its raw twin: the re-entry
//! check of `ndis-sync` (see `RwLock`'s "Recursion" docs). After the
//! acquire it loads the lock's `writing` flag and branches to a panic path
//! (a bug check) when it is raised; a write closure also raises the flag
//! before running and lowers it after. So, on the path that does not
//! bug-check, the guard may add exactly:
//!
//! * a load of one byte outside the stack, a compare, and one conditional
//!   branch into a panic path (or the compare straight on memory), and
//! * for a write, two plain byte stores (raise, lower) to that same byte,
//!
//! and nothing else: no call, no other store, no locked instruction, no
//! other branch, no instruction beyond those (register allocation may save
//! some, never add any).

use iced_x86::{Instruction, InstructionInfoFactory, Mnemonic, OpKind, Register};

use crate::disasm::{DisasmError, Function};
use crate::guards::is_locked_rmw;
use crate::handlers::stores_outside_stack;
use crate::panic_paths::Split;
use crate::pe::Image;

/// A memory operand: base, index, displacement.
pub type Location = (Register, Register, u64);

/// The re-entry check found in a guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The flag the check reads.
    pub flag: Location,
    /// Addresses of the check's instructions (load, compare, branch).
    pub instructions: Vec<u64>,
    /// Addresses of the stores to the flag outside panic paths.
    pub flag_stores: Vec<u64>,
}

/// How a guard's hot path compares with its raw twin's.
#[derive(Debug, Clone)]
pub struct HotPaths {
    /// Instructions of the raw function outside panic paths.
    pub raw: usize,
    /// Instructions of the guard function outside panic paths.
    pub guard: usize,
    /// The check, when one was recognised.
    pub check: Option<Check>,
    /// Everything that breaks the rule, in words (empty: the guard adds
    /// only the check).
    pub violations: Vec<String>,
}

/// Compares the guard function `guard` with the raw function `raw` under
/// the rule above; `write` when the sequence takes the write lock (two
/// flag stores expected, else none).
pub fn compare(image: &Image, raw: &Function, guard: &Function, write: bool) -> Result<HotPaths, DisasmError> {
    let (raw_split, guard_split) = (Split::of(image, raw)?, Split::of(image, guard)?);
    let mut out =
        HotPaths { raw: raw_split.hot.len(), guard: guard_split.hot.len(), check: None, violations: Vec::new() };
    if !raw_split.edges.is_empty() {
        out.violations.push(format!("the raw code has {} panic branch(es)", raw_split.edges.len()));
    }
    for call in guard.calls.iter().filter(|c| !guard_split.in_panic_path(c.at)) {
        if !matches!(call.target, crate::disasm::Target::Import(_)) {
            out.violations.push(format!("{:#x}: a call outside the panic path to {}", call.at, call.target));
        }
    }
    let [edge] = &guard_split.edges[..] else {
        out.violations.push(format!("{} panic branches (expected exactly one)", guard_split.edges.len()));
        return Ok(out);
    };
    let hot: Vec<&Instruction> = guard_split.hot.values().collect();
    let Some(mut check) = recognise(&hot, edge.branch) else {
        out.violations.push(format!("{:#x}: the panic branch does not test one byte of memory", edge.branch));
        return Ok(out);
    };
    let mut factory = InstructionInfoFactory::new();
    let mut stores = |insns: &mut dyn Iterator<Item = &Instruction>| -> Vec<Instruction> {
        insns.filter(|i| stores_outside_stack(&mut factory, i) || is_locked_rmw(i)).copied().collect()
    };
    let raw_stores = stores(&mut raw_split.hot.values());
    let (flag_stores, other_stores): (Vec<Instruction>, Vec<Instruction>) =
        stores(&mut guard_split.hot.values()).into_iter().partition(|i| is_flag_store(i, check.flag));
    check.flag_stores = flag_stores.iter().map(Instruction::ip).collect();
    let expected_flag_stores = if write { 2 } else { 0 };
    if flag_stores.len() != expected_flag_stores {
        out.violations.push(format!("{} stores to the flag (expected {expected_flag_stores})", flag_stores.len()));
    }
    if other_stores.len() != raw_stores.len() {
        out.violations.push(format!("{} other stores (the raw code has {})", other_stores.len(), raw_stores.len()));
    }
    let locked = |v: &[Instruction]| v.iter().filter(|i| is_locked_rmw(i)).count();
    if locked(&other_stores) != locked(&raw_stores) {
        out.violations.push("a locked instruction the raw code does not have".into());
    }
    let branches = |split: &Split| {
        split.hot.values().filter(|i| i.flow_control() == iced_x86::FlowControl::ConditionalBranch).count()
    };
    if branches(&guard_split) > branches(&raw_split) + 1 {
        out.violations.push(format!(
            "{} conditional branches outside the panic path (the raw code has {}, the check adds one)",
            branches(&guard_split),
            branches(&raw_split)
        ));
    }
    let allowed = out.raw + check.instructions.len() + expected_flag_stores;
    if out.guard > allowed {
        out.violations.push(format!(
            "{} instructions outside the panic path, more than the raw {} + the check {} + flag stores {}",
            out.guard,
            out.raw,
            check.instructions.len(),
            expected_flag_stores
        ));
    }
    out.check = Some(check);
    Ok(out)
}

/// The check ending in the branch at `branch`: `cmp byte [m], 0; jcc`, or
/// `movzx r, byte [m]; test r, r; jcc` (loads outside the stack only).
fn recognise(hot: &[&Instruction], branch: u64) -> Option<Check> {
    let at = hot.iter().position(|i| i.ip() == branch)?;
    let before = |n: usize| at.checked_sub(n).map(|i| hot[i]);
    let compare = before(1)?;
    let check = |flag, insns: &[&Instruction]| Check {
        flag,
        instructions: insns.iter().map(|i| i.ip()).collect(),
        flag_stores: Vec::new(),
    };
    if compare.mnemonic() == Mnemonic::Cmp && compare.op0_kind() == OpKind::Memory && compare.immediate(1) == 0 {
        let flag = byte_outside_stack(compare)?;
        return Some(check(flag, &[compare, hot[at]]));
    }
    let register = compare.op0_register();
    let is_test = compare.mnemonic() == Mnemonic::Test
        && compare.op0_kind() == OpKind::Register
        && compare.op1_kind() == OpKind::Register
        && compare.op1_register() == register;
    let load = before(2)?;
    let loads = matches!(load.mnemonic(), Mnemonic::Movzx | Mnemonic::Mov)
        && load.op0_kind() == OpKind::Register
        && load.op0_register().full_register() == register.full_register()
        && load.op1_kind() == OpKind::Memory;
    if is_test && loads {
        return Some(check(byte_outside_stack(load)?, &[load, compare, hot[at]]));
    }
    None
}

/// The location of a one-byte memory operand that is not on the stack.
fn byte_outside_stack(insn: &Instruction) -> Option<Location> {
    let one_byte = insn.memory_size().size() == 1;
    let stack = matches!(insn.memory_base(), Register::RSP | Register::RBP);
    (one_byte && !stack).then(|| (insn.memory_base(), insn.memory_index(), insn.memory_displacement64()))
}

/// A plain `mov byte [flag], imm`.
fn is_flag_store(insn: &Instruction, flag: Location) -> bool {
    insn.mnemonic() == Mnemonic::Mov
        && insn.op0_kind() == OpKind::Memory
        && matches!(insn.op1_kind(), OpKind::Immediate8)
        && byte_outside_stack(insn) == Some(flag)
}
