//! Which stores of the data path go to per-processor slots: a must-dataflow
//! over the call graph that follows the value `KeGetCurrentProcessorNumberEx`
//! returns (the current processor's index) through registers and stack
//! slots, and the multiplier it is scaled by on the way to an address.
//!
//! A store is a *per-processor slot store* when, on every path to it, its
//! address is `base + index × scale + displacement` with `index` the value
//! that call returned and `scale ≥ 64` (a cache line): two processors'
//! addresses are then at least a line apart, so no line is written by two
//! processors. A store whose address register holds the index on only some
//! paths, or with a smaller scale, is not recognised.
//!
//! The lattice per location (a register, or a stack slot by its offset
//! from the function's entry `rsp`) is "holds `index × k`" for one `k`, or
//! nothing; at control-flow joins two states keep only the locations on
//! which they agree (a *must* analysis). Transfer:
//!
//! * the call to `KeGetCurrentProcessorNumberEx` sets `rax` to `index × 1`;
//!   every call clears the volatile registers (rax, rcx, rdx, r8–r11);
//! * `mov`/`movzx`/`movsxd` copy a location's fact; `lea`, `add`, `shl`,
//!   `imul` by a constant combine them: a base plus `index × k` is a
//!   pointer into the block (`k` kept), a shift or multiplication scales
//!   `k`; a conditional move keeps the fact of its source when its
//!   destination has none (the driver's fallback to slot 0 for an index
//!   past the block, which the DDI contract rules out);
//! * any other write to a location clears it;
//! * a callee starts with the facts of its argument registers (rcx, rdx,
//!   r8, r9) and stack arguments, met over every call site.

use std::collections::{BTreeMap, BTreeSet};

use iced_x86::{FlowControl, Instruction, Mnemonic, OpKind, Register};

use crate::disasm::{CallGraph, Function, Target};
use crate::handlers::short;

/// The import whose result is the processor index.
pub const PROCESSOR_INDEX: &str = "KeGetCurrentProcessorNumberEx";

/// The smallest scale that keeps two processors' slots on distinct lines.
pub const CACHE_LINE: u64 = 64;

/// A location: a 64-bit register, or a stack slot by entry-relative offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Loc {
    Reg(Register),
    Stack(i64),
}

/// Facts: location -> the multiplier of the index it holds.
type State = BTreeMap<Loc, u64>;

const VOLATILE: [Register; 7] =
    [Register::RAX, Register::RCX, Register::RDX, Register::R8, Register::R9, Register::R10, Register::R11];
const ARGS: [Register; 4] = [Register::RCX, Register::RDX, Register::R8, Register::R9];

fn full(r: Register) -> Register {
    r.full_register()
}

fn meet(a: &State, b: &State) -> State {
    a.iter().filter(|(l, k)| b.get(l) == Some(k)).map(|(l, k)| (*l, *k)).collect()
}

/// Per-function result: the state at each instruction, the stack depth
/// (entry `rsp` minus current) at each, and the states handed to callees.
struct Analysis {
    before: BTreeMap<u64, (State, i64)>,
}

/// The per-processor slot stores of `graph`: (instruction address, scale).
pub fn slot_stores(graph: &CallGraph) -> BTreeMap<u64, u64> {
    // Entry facts per function, refined until stable.
    let mut entry: BTreeMap<u64, Option<State>> = graph.functions.keys().map(|&f| (f, None)).collect();
    if let Some(root) = graph.order.first() {
        entry.insert(*root, Some(State::new()));
    }
    let mut results = BTreeMap::new();
    for _round in 0..16 {
        let mut incoming: BTreeMap<u64, Option<State>> = BTreeMap::new();
        for (addr, f) in &graph.functions {
            let Some(start) = entry.get(addr).cloned().flatten() else { continue };
            let analysis = analyze(f, start);
            for call in &f.calls {
                let Target::Internal(callee) = call.target else { continue };
                let Some((state, depth)) = analysis.before.get(&call.at) else { continue };
                let mut callee_state = State::new();
                for r in ARGS {
                    if let Some(k) = state.get(&Loc::Reg(r)) {
                        callee_state.insert(Loc::Reg(r), *k);
                    }
                }
                // The caller's stack slot at depth d (entry-relative -d)
                // is, for a callee entered with the return address pushed,
                // at callee offset (caller offset + depth + 8).
                let return_address = if call.tail { 0 } else { 8 };
                for (loc, k) in state {
                    if let Loc::Stack(off) = loc {
                        let callee_off = off + depth + return_address;
                        if callee_off > 0 {
                            callee_state.insert(Loc::Stack(callee_off), *k);
                        }
                    }
                }
                let slot = incoming.entry(callee).or_insert(None);
                *slot = Some(match slot.take() {
                    None => callee_state,
                    Some(prev) => meet(&prev, &callee_state),
                });
            }
            results.insert(*addr, analysis);
        }
        let mut changed = false;
        for (f, state) in incoming {
            if graph.order.first() == Some(&f) {
                continue;
            }
            if entry.get(&f) != Some(&state) {
                entry.insert(f, state);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut stores = BTreeMap::new();
    for (addr, f) in &graph.functions {
        let Some(analysis) = results.get(addr) else { continue };
        for (va, insn) in &f.instructions {
            let Some((state, _)) = analysis.before.get(va) else { continue };
            if let Some(scale) = store_scale(insn, state) {
                stores.insert(*va, scale);
            }
        }
    }
    stores
}

/// The scale of `insn`'s memory destination when it is `base + index × k`
/// (`k ≥` [`CACHE_LINE`]) in `state`.
fn store_scale(insn: &Instruction, state: &State) -> Option<u64> {
    let writes = (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory) && writes_memory(insn);
    if !writes {
        return None;
    }
    let k = address_fact(insn, state)?;
    (k >= CACHE_LINE).then_some(k)
}

/// The fact of a memory operand's address `base + index × s + d`: the sum
/// of the base's and the (scaled) index's multipliers, when either has one
/// (`lea r, [i + i*2]` is `index × 3`).
fn address_fact(insn: &Instruction, state: &State) -> Option<u64> {
    let of = |r: Register| if r == Register::None { None } else { state.get(&Loc::Reg(full(r))).copied() };
    let base = of(insn.memory_base());
    let index = of(insn.memory_index()).map(|k| k * u64::from(insn.memory_index_scale()));
    match (base, index) {
        (Some(a), Some(b)) => Some(a + b),
        (Some(a), None) | (None, Some(a)) => Some(a),
        (None, None) => None,
    }
}

fn writes_memory(insn: &Instruction) -> bool {
    let mut factory = iced_x86::InstructionInfoFactory::new();
    factory.info(insn).used_memory().iter().any(|m| {
        matches!(
            m.access(),
            iced_x86::OpAccess::Write
                | iced_x86::OpAccess::ReadWrite
                | iced_x86::OpAccess::CondWrite
                | iced_x86::OpAccess::ReadCondWrite
        )
    })
}

/// Forward must-analysis of one function from `start`.
fn analyze(f: &Function, start: State) -> Analysis {
    let mut before: BTreeMap<u64, (State, i64)> = BTreeMap::new();
    let mut work: BTreeSet<u64> = BTreeSet::new();
    before.insert(f.entry, (start, 0));
    work.insert(f.entry);
    let calls: BTreeMap<u64, &Target> = f.calls.iter().map(|c| (c.at, &c.target)).collect();
    let mut steps = 0;
    while let Some(va) = work.pop_first() {
        steps += 1;
        if steps > 200_000 {
            break; // bounded: the lattice is finite, this is a safety net
        }
        let Some(insn) = f.instructions.get(&va) else { continue };
        let (state, depth) = before[&va].clone();
        let (after, depth_after) = transfer(insn, &state, depth, calls.get(&va).copied());
        for succ in successors(f, insn) {
            let merged = match before.get(&succ) {
                None => (after.clone(), depth_after),
                Some((prev, d)) => (meet(prev, &after), *d),
            };
            if before.get(&succ) != Some(&merged) {
                before.insert(succ, merged);
                work.insert(succ);
            }
        }
    }
    Analysis { before }
}

fn successors(f: &Function, insn: &Instruction) -> Vec<u64> {
    let next = insn.next_ip();
    let inside = |va: u64| f.instructions.contains_key(&va);
    match insn.flow_control() {
        FlowControl::Next | FlowControl::Call | FlowControl::IndirectCall => vec![next],
        FlowControl::ConditionalBranch => {
            [next, insn.near_branch_target()].into_iter().filter(|v| inside(*v)).collect()
        }
        FlowControl::UnconditionalBranch => [insn.near_branch_target()].into_iter().filter(|v| inside(*v)).collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|v| inside(*v))
    .collect()
}

/// The location of a memory operand when it is a stack slot.
fn stack_slot(insn: &Instruction, depth: i64) -> Option<Loc> {
    (insn.memory_base() == Register::RSP && insn.memory_index() == Register::None)
        .then(|| Loc::Stack(insn.memory_displacement64() as i64 - depth))
}

fn source_fact(insn: &Instruction, op: u32, state: &State, depth: i64) -> Option<u64> {
    match insn.op_kind(op) {
        OpKind::Register => state.get(&Loc::Reg(full(insn.op_register(op)))).copied(),
        OpKind::Memory => stack_slot(insn, depth).and_then(|l| state.get(&l).copied()),
        _ => None,
    }
}

fn immediate(insn: &Instruction, op: u32) -> Option<u64> {
    matches!(
        insn.op_kind(op),
        OpKind::Immediate8
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32
            | OpKind::Immediate32to64
            | OpKind::Immediate16
    )
    .then(|| insn.immediate(op))
}

fn transfer(insn: &Instruction, state: &State, depth: i64, call: Option<&Target>) -> (State, i64) {
    let mut s = state.clone();
    let mut depth = depth;
    let m = insn.mnemonic();
    // Stack depth; a pushed register's fact goes to its slot and back.
    match m {
        Mnemonic::Push => {
            depth += 8;
            let fact = source_fact(insn, 0, state, depth);
            match fact {
                Some(k) => s.insert(Loc::Stack(-depth), k),
                None => s.remove(&Loc::Stack(-depth)),
            };
            return (s, depth);
        }
        Mnemonic::Pop => {
            if insn.op0_kind() == OpKind::Register {
                let dst = Loc::Reg(full(insn.op0_register()));
                match state.get(&Loc::Stack(-depth)).copied() {
                    Some(k) => s.insert(dst, k),
                    None => s.remove(&dst),
                };
            }
            return (s, depth - 8);
        }
        Mnemonic::Sub | Mnemonic::Add
            if insn.op0_kind() == OpKind::Register && insn.op0_register() == Register::RSP =>
        {
            if let Some(v) = immediate(insn, 1) {
                depth += if m == Mnemonic::Sub { v as i64 } else { -(v as i64) };
            }
            return (s, depth);
        }
        _ => {}
    }
    if matches!(insn.flow_control(), FlowControl::Call | FlowControl::IndirectCall) {
        for r in VOLATILE {
            s.remove(&Loc::Reg(r));
        }
        if let Some(Target::Import(name)) = call {
            if short(name) == PROCESSOR_INDEX {
                s.insert(Loc::Reg(Register::RAX), 1);
            }
        }
        return (s, depth);
    }
    // The destination.
    let dst = match insn.op_count() {
        0 => None,
        _ => match insn.op0_kind() {
            OpKind::Register => Some(Loc::Reg(full(insn.op0_register()))),
            OpKind::Memory => stack_slot(insn, depth),
            _ => None,
        },
    };
    let Some(dst) = dst else {
        return (s, depth);
    };
    let old = s.get(&dst).copied();
    let fact = match m {
        Mnemonic::Mov | Mnemonic::Movzx | Mnemonic::Movsxd => source_fact(insn, 1, state, depth),
        Mnemonic::Lea => address_fact(insn, state),
        Mnemonic::Shl => match (old, immediate(insn, 1)) {
            (Some(k), Some(n)) if n < 32 => Some(k << n),
            _ => None,
        },
        Mnemonic::Imul if insn.op_count() == 3 => match (source_fact(insn, 1, state, depth), immediate(insn, 2)) {
            (Some(k), Some(n)) => Some(k * n),
            _ => None,
        },
        Mnemonic::Add => match (old, source_fact(insn, 1, state, depth)) {
            (Some(a), Some(b)) => Some(a + b),
            (Some(a), None) | (None, Some(a)) => Some(a),
            _ => None,
        },
        Mnemonic::Cmova
        | Mnemonic::Cmovae
        | Mnemonic::Cmovb
        | Mnemonic::Cmovbe
        | Mnemonic::Cmove
        | Mnemonic::Cmovne => old.or(source_fact(insn, 1, state, depth)),
        Mnemonic::Cmp | Mnemonic::Test => return (s, depth),
        _ => None,
    };
    match fact {
        Some(k) => s.insert(dst, k),
        None => s.remove(&dst),
    };
    (s, depth)
}
