//! Recursive-descent disassembly of one function of an [`Image`]: every
//! instruction reachable from its entry through branches (not through
//! calls), and every call it makes, resolved to an import or an address.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Formatter, Instruction, InstructionInfoFactory, IntelFormatter, Mnemonic,
    OpAccess, OpKind, Register,
};

use crate::pe::Image;

/// Where a call (or tail jump) goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// An import, through its IAT slot: `"dll!name"`.
    Import(String),
    /// Code of the image at this address.
    Internal(u64),
    /// A register or a memory operand that is not an IAT slot.
    Indirect(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Import(name) => f.write_str(name),
            Target::Internal(va) => write!(f, "{va:#x}"),
            Target::Indirect(how) => write!(f, "indirect {how}"),
        }
    }
}

/// One call or tail jump out of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Address of the call instruction.
    pub at: u64,
    /// Where it goes.
    pub target: Target,
    /// `true` for a tail jump (`jmp`), `false` for a `call`.
    pub tail: bool,
}

/// The reachable code of one function.
pub struct Function {
    /// Entry address.
    pub entry: u64,
    /// Every reachable instruction, by address.
    pub instructions: BTreeMap<u64, Instruction>,
    /// Every call and tail jump, in address order.
    pub calls: Vec<Call>,
    /// Indirect jumps that are not tail calls (jump tables): their targets
    /// are unknown, so the analysis is incomplete if this is not empty.
    pub unresolved: Vec<u64>,
}

/// Why a function could not be disassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisasmError(pub String);

impl fmt::Display for DisasmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DisasmError {}

impl Function {
    /// Disassembles the function at `entry`. A direct `jmp` whose target is
    /// the start of another `.pdata` function is a tail call; every other
    /// direct branch stays inside the function.
    pub fn analyze(image: &Image, entry: u64) -> Result<Function, DisasmError> {
        let mut f = Function { entry, instructions: BTreeMap::new(), calls: Vec::new(), unresolved: Vec::new() };
        let mut work = vec![entry];
        while let Some(va) = work.pop() {
            f.walk_block(image, va, &mut work)?;
        }
        f.resolve_hoisted_imports(image);
        f.calls.sort_by_key(|c| c.at);
        Ok(f)
    }

    /// Resolves `call reg` where the compiler hoisted an IAT load into a
    /// callee-saved register (`mov rbp, [rip+slot]` before a loop): if the
    /// register is written only by loads of one IAT slot in the whole
    /// function (epilogue `pop`s aside), the call goes to that import.
    fn resolve_hoisted_imports(&mut self, image: &Image) {
        let mut factory = InstructionInfoFactory::new();
        for i in 0..self.calls.len() {
            let Some(insn) = self.instructions.get(&self.calls[i].at) else { continue };
            if insn.op0_kind() != OpKind::Register || !matches!(self.calls[i].target, Target::Indirect(_)) {
                continue;
            }
            let reg = insn.op0_register().full_register();
            let mut sources = BTreeSet::new();
            // `pop` in an epilogue restores the caller's value on the way out.
            for other in self.instructions.values().filter(|o| o.mnemonic() != Mnemonic::Pop) {
                let writes = factory.info(other).used_registers().iter().any(|u| {
                    u.register().full_register() == reg
                        && matches!(
                            u.access(),
                            OpAccess::Write | OpAccess::ReadWrite | OpAccess::CondWrite | OpAccess::ReadCondWrite
                        )
                });
                if writes {
                    let is_load = other.mnemonic() == Mnemonic::Mov && other.op1_kind() == OpKind::Memory;
                    sources.insert(if is_load { slot_of(other).and_then(|s| image.import_at_slot(s)) } else { None });
                }
            }
            if let [Some(name)] = sources.into_iter().collect::<Vec<_>>()[..] {
                self.calls[i].target = Target::Import(name.to_string());
            }
        }
    }

    /// Decodes straight-line code from `va` until control leaves it,
    /// queueing branch targets.
    fn walk_block(&mut self, image: &Image, mut va: u64, work: &mut Vec<u64>) -> Result<(), DisasmError> {
        loop {
            if self.instructions.contains_key(&va) {
                return Ok(());
            }
            let insn = decode_one(image, va)?;
            self.instructions.insert(va, insn);
            va = insn.next_ip();
            match insn.flow_control() {
                FlowControl::Next => {}
                FlowControl::ConditionalBranch => work.push(insn.near_branch_target()),
                FlowControl::UnconditionalBranch => {
                    let target = insn.near_branch_target();
                    if self.is_tail_call(image, target) {
                        self.calls.push(Call { at: insn.ip(), target: Target::Internal(target), tail: true });
                    } else {
                        work.push(target);
                    }
                    return Ok(());
                }
                FlowControl::IndirectBranch => {
                    match indirect_target(image, &insn) {
                        Target::Indirect(_) => self.unresolved.push(insn.ip()),
                        target => self.calls.push(Call { at: insn.ip(), target, tail: true }),
                    }
                    return Ok(());
                }
                FlowControl::Call => {
                    let target = Target::Internal(insn.near_branch_target());
                    self.calls.push(Call { at: insn.ip(), target, tail: false });
                }
                FlowControl::IndirectCall => {
                    self.calls.push(Call { at: insn.ip(), target: indirect_target(image, &insn), tail: false });
                }
                FlowControl::Return | FlowControl::Interrupt | FlowControl::Exception => return Ok(()),
                FlowControl::XbeginXabortXend => {
                    return Err(DisasmError(format!("transactional instruction at {:#x}", insn.ip())))
                }
            }
        }
    }

    fn is_tail_call(&self, image: &Image, target: u64) -> bool {
        target != self.entry && image.function_containing(target).is_some_and(|(begin, _)| begin == target)
    }

    /// The imports called (or tail-jumped to), in address order.
    pub fn imports(&self) -> Vec<&str> {
        self.calls
            .iter()
            .filter_map(|c| match &c.target {
                Target::Import(name) => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Calls that do not go to an import.
    pub fn other_calls(&self) -> Vec<&Call> {
        self.calls.iter().filter(|c| !matches!(c.target, Target::Import(_))).collect()
    }

    /// Number of reachable instructions.
    pub fn len(&self) -> usize {
        self.instructions.len()
    }

    /// `true` if no instruction was reachable (never, for a real entry).
    pub fn is_empty(&self) -> bool {
        self.instructions.is_empty()
    }

    /// The reachable code as Intel-syntax text, one instruction per line.
    pub fn listing(&self, image: &Image) -> String {
        let mut formatter = IntelFormatter::new();
        let mut out = String::new();
        for (va, insn) in &self.instructions {
            let mut text = String::new();
            formatter.format(insn, &mut text);
            if let Some(name) = slot_of(insn).and_then(|s| image.import_at_slot(s)) {
                text.push_str(&format!("    ; {name}"));
            }
            out.push_str(&format!("{va:#x}: {text}\n"));
        }
        out
    }
}

/// Decodes the instruction at `va`.
pub fn decode_one(image: &Image, va: u64) -> Result<Instruction, DisasmError> {
    let bytes = image.code_at(va).ok_or_else(|| DisasmError(format!("{va:#x} is not in executable code")))?;
    let insn = Decoder::with_ip(64, bytes, va, DecoderOptions::NONE).decode();
    if insn.is_invalid() {
        return Err(DisasmError(format!("invalid instruction at {va:#x}")));
    }
    Ok(insn)
}

/// The RIP-relative memory address an instruction reads its target from.
fn slot_of(insn: &Instruction) -> Option<u64> {
    (insn.memory_base() == Register::RIP).then(|| insn.ip_rel_memory_address())
}

fn indirect_target(image: &Image, insn: &Instruction) -> Target {
    match slot_of(insn).and_then(|slot| image.import_at_slot(slot)) {
        Some(name) => Target::Import(name.to_string()),
        None => {
            let mut text = String::new();
            IntelFormatter::new().format(insn, &mut text);
            Target::Indirect(text)
        }
    }
}

/// A function and every internal function it calls, transitively.
pub struct CallGraph {
    /// The functions, by entry address; the root first in `order`.
    pub functions: BTreeMap<u64, Function>,
    /// Entry addresses in discovery order (root first).
    pub order: Vec<u64>,
}

impl CallGraph {
    /// Disassembles `root` and everything it reaches through direct calls
    /// and tail jumps inside the image.
    pub fn from_root(image: &Image, root: u64) -> Result<CallGraph, DisasmError> {
        let mut graph = CallGraph { functions: BTreeMap::new(), order: Vec::new() };
        let mut work = vec![root];
        while let Some(entry) = work.pop() {
            if graph.functions.contains_key(&entry) {
                continue;
            }
            let f = Function::analyze(image, entry)?;
            for call in &f.calls {
                if let Target::Internal(va) = call.target {
                    work.push(va);
                }
            }
            graph.order.push(entry);
            graph.functions.insert(entry, f);
        }
        Ok(graph)
    }

    /// Every import any function of the graph calls.
    pub fn imports(&self) -> BTreeSet<&str> {
        self.functions.values().flat_map(Function::imports).collect()
    }

    /// Indirect calls and unresolved jumps anywhere in the graph.
    pub fn unknowns(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in self.functions.values() {
            for c in &f.calls {
                if let Target::Indirect(how) = &c.target {
                    out.push(format!("{:#x}: call {how}", c.at));
                }
            }
            out.extend(f.unresolved.iter().map(|va| format!("{va:#x}: indirect jump")));
        }
        out
    }

    /// Total reachable instructions.
    pub fn len(&self) -> usize {
        self.functions.values().map(Function::len).sum()
    }

    /// `true` if the graph has no instructions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
