//! Splits a function into the code that can return and its panic paths.
//!
//! A *panic path* is the code behind one successor of a conditional branch
//! that can never return: it reaches no `ret`, calls no import but
//! [`PANIC_IMPORT`], and every function it calls (or tail-jumps to) reaches
//! [`PANIC_IMPORT`] and no other import. What remains — the *hot path* — is
//! the code a call that does not bug-check runs through.

use std::collections::{BTreeMap, BTreeSet};

use iced_x86::{FlowControl, Instruction};

use crate::disasm::{CallGraph, DisasmError, Function, Target};
use crate::handlers::{short, PANIC_IMPORT};
use crate::pe::Image;

/// A conditional branch one of whose successors is a panic path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanicEdge {
    /// Address of the conditional branch.
    pub branch: u64,
    /// The successor that only bug-checks.
    pub target: u64,
    /// Addresses of the instructions of that panic path.
    pub block: BTreeSet<u64>,
}

/// One function, split.
pub struct Split {
    /// Instructions outside every panic path, by address.
    pub hot: BTreeMap<u64, Instruction>,
    /// The branches into panic paths, by branch address.
    pub edges: Vec<PanicEdge>,
}

impl Split {
    /// Splits `f` (a function of `image`).
    pub fn of(image: &Image, f: &Function) -> Result<Split, DisasmError> {
        let mut edges = Vec::new();
        for (va, insn) in &f.instructions {
            if insn.flow_control() != FlowControl::ConditionalBranch {
                continue;
            }
            for successor in [insn.near_branch_target(), insn.next_ip()] {
                if let Some(block) = panic_block(image, f, successor)? {
                    edges.push(PanicEdge { branch: *va, target: successor, block });
                }
            }
        }
        let hot = hot_path(f, &edges);
        Ok(Split { hot, edges })
    }

    /// `true` when `va` lies in a panic path.
    pub fn in_panic_path(&self, va: u64) -> bool {
        !self.hot.contains_key(&va)
    }
}

/// The instructions of `f` reachable from `start` through its own control
/// flow (calls return; tail jumps leave), or None unless they form a panic
/// path.
fn panic_block(image: &Image, f: &Function, start: u64) -> Result<Option<BTreeSet<u64>>, DisasmError> {
    let block = reachable(f, start, |_, _| true);
    let mut reaches_panic = false;
    for call in f.calls.iter().filter(|c| block.contains(&c.at)) {
        match &call.target {
            Target::Import(name) if short(name) == PANIC_IMPORT => reaches_panic = true,
            Target::Import(_) | Target::Indirect(_) => return Ok(None),
            Target::Internal(va) => {
                let graph = CallGraph::from_root(image, *va)?;
                let imports: Vec<&str> = graph.imports().into_iter().map(short).collect();
                if imports.iter().any(|i| *i != PANIC_IMPORT) {
                    return Ok(None);
                }
                reaches_panic |= !imports.is_empty();
            }
        }
    }
    let returns = block.iter().any(|va| f.instructions[va].flow_control() == FlowControl::Return);
    Ok((reaches_panic && !returns).then_some(block))
}

/// The instructions of `f` reachable from its entry without entering a
/// panic path.
fn hot_path(f: &Function, edges: &[PanicEdge]) -> BTreeMap<u64, Instruction> {
    let skip: BTreeSet<(u64, u64)> = edges.iter().map(|e| (e.branch, e.target)).collect();
    reachable(f, f.entry, |from, to| !skip.contains(&(from, to)))
        .into_iter()
        .map(|va| (va, f.instructions[&va]))
        .collect()
}

/// Addresses of `f` reachable from `start` through edges `follow` accepts.
fn reachable(f: &Function, start: u64, follow: impl Fn(u64, u64) -> bool) -> BTreeSet<u64> {
    let mut seen = BTreeSet::new();
    let mut work = vec![start];
    while let Some(va) = work.pop() {
        let Some(insn) = f.instructions.get(&va) else { continue };
        if !seen.insert(va) {
            continue;
        }
        let successors: Vec<u64> = match insn.flow_control() {
            FlowControl::Next | FlowControl::Call | FlowControl::IndirectCall => vec![insn.next_ip()],
            FlowControl::ConditionalBranch => vec![insn.near_branch_target(), insn.next_ip()],
            FlowControl::UnconditionalBranch => vec![insn.near_branch_target()],
            _ => Vec::new(),
        };
        work.extend(successors.into_iter().filter(|to| f.instructions.contains_key(to) && follow(va, *to)));
    }
    seen
}
