//! The data path of `portwatch.sys`, found without symbols.
//!
//! Heuristic (symbol-free): the send handler is the one `.pdata` function
//! that calls `NdisFSendNetBufferLists`, the receive handler the one that
//! calls `NdisFIndicateReceiveNetBufferLists` — a filter passes a chain on
//! only from the handler that received it, and PortWatch does so nowhere
//! else. [`find_handler`] fails unless exactly one function matches, so a
//! driver where the heuristic no longer holds fails loudly rather than
//! checking the wrong code. The data path is then the handler's call graph
//! ([`CallGraph`]).

use std::collections::BTreeSet;
use std::fmt;

use iced_x86::{Formatter, InstructionInfoFactory, IntelFormatter, OpAccess, Register};

use crate::disasm::{CallGraph, DisasmError, Function};
use crate::guards::is_locked_rmw;
use crate::pe::Image;

/// A data-path handler and what it may call.
#[derive(Debug, Clone, Copy)]
pub struct Handler {
    /// Its name in the filter characteristics.
    pub name: &'static str,
    /// The import only this handler calls: how it is found.
    pub forwards_with: &'static str,
    /// An import the handler does not call, which tells it from another
    /// handler that also calls `forwards_with` (a send handler completes
    /// the sends it refuses, as the send-complete handler does).
    pub not_with: Option<&'static str>,
    /// Every import the handler may reach, panic paths aside.
    pub expected: &'static [&'static str],
}

/// FilterSendNetBufferLists.
pub const SEND: Handler = Handler {
    name: "FilterSendNetBufferLists",
    forwards_with: "NdisFSendNetBufferLists",
    not_with: None,
    expected: &[
        "NdisAcquireRWLockRead",
        "NdisReleaseRWLock",
        "NdisGetDataBuffer",
        "NdisFSendNetBufferLists",
        "NdisFSendNetBufferListsComplete",
        // The per-processor counters: the slot's index.
        "KeGetCurrentProcessorNumberEx",
        // The event stream, for packets on a port whose endpoint enabled
        // events: the endpoint's event lock, the clock, and completing a
        // pending read (events.rs, irp.rs).
        "NdisDprAcquireSpinLock",
        "NdisDprReleaseSpinLock",
        "KeQueryPerformanceCounter",
        "IofCompleteRequest",
        // Copies of a 64-byte record into the ring or a read's buffer, and
        // the pending-read queue closing up after a removal.
        "memcpy",
        "memmove",
    ],
};

/// FilterReceiveNetBufferLists.
pub const RECEIVE: Handler = Handler {
    name: "FilterReceiveNetBufferLists",
    forwards_with: "NdisFIndicateReceiveNetBufferLists",
    not_with: None,
    expected: &[
        "NdisAcquireRWLockRead",
        "NdisReleaseRWLock",
        "NdisGetDataBuffer",
        "NdisFIndicateReceiveNetBufferLists",
        "NdisFReturnNetBufferLists",
        // The per-processor counters: the slot's index.
        "KeGetCurrentProcessorNumberEx",
        // The event stream, for packets on a port whose endpoint enabled
        // events: the endpoint's event lock, the clock, and completing a
        // pending read (events.rs, irp.rs).
        "NdisDprAcquireSpinLock",
        "NdisDprReleaseSpinLock",
        "KeQueryPerformanceCounter",
        "IofCompleteRequest",
        // Copies of a 64-byte record into the ring or a read's buffer, and
        // the pending-read queue closing up after a removal.
        "memcpy",
        "memmove",
    ],
};

/// FilterSendNetBufferListsComplete: completes up, nothing else.
pub const SEND_COMPLETE: Handler = Handler {
    name: "FilterSendNetBufferListsComplete",
    forwards_with: "NdisFSendNetBufferListsComplete",
    not_with: Some("NdisFSendNetBufferLists"),
    expected: &["NdisFSendNetBufferListsComplete"],
};

/// FilterReturnNetBufferLists: returns down, nothing else.
pub const RETURN: Handler = Handler {
    name: "FilterReturnNetBufferLists",
    forwards_with: "NdisFReturnNetBufferLists",
    not_with: Some("NdisFIndicateReceiveNetBufferLists"),
    expected: &["NdisFReturnNetBufferLists"],
};

/// The import a panic ends in (the panic handler bug-checks).
pub const PANIC_IMPORT: &str = "KeBugCheckEx";

/// Where a function may begin: every `.pdata` function, and every code
/// address a `.pdata` function takes with a RIP-relative `lea` (a callback
/// registered by address: a leaf handler that only tail-jumps to an import
/// needs no unwind data, so it has no `.pdata` entry of its own).
fn candidate_entries(image: &Image) -> Result<BTreeSet<u64>, DisasmError> {
    let mut entries: BTreeSet<u64> = image.functions().iter().map(|(begin, _)| *begin).collect();
    for (begin, _) in image.functions() {
        let f = Function::analyze(image, *begin)?;
        for insn in f.instructions.values() {
            if insn.mnemonic() == iced_x86::Mnemonic::Lea && insn.is_ip_rel_memory_operand() {
                let target = insn.ip_rel_memory_address();
                if image.code_at(target).is_some() && image.function_containing(target).is_none_or(|(b, _)| b == target)
                {
                    entries.insert(target);
                }
            }
        }
    }
    Ok(entries)
}

/// The entry of the one function (see [`candidate_entries`]) that calls
/// `handler.forwards_with`.
pub fn find_handler(image: &Image, handler: &Handler) -> Result<u64, DisasmError> {
    let mut found = BTreeSet::new();
    for begin in &candidate_entries(image)? {
        let f = Function::analyze(image, *begin)?;
        let calls = |name: &str| f.imports().iter().any(|i| short(i) == name);
        if calls(handler.forwards_with) && !handler.not_with.is_some_and(calls) {
            found.insert(*begin);
        }
    }
    match found.len() {
        1 => Ok(*found.first().expect("one")),
        n => Err(DisasmError(format!(
            "{n} functions call {} (expected exactly one, the {}); the handler heuristic no longer holds",
            handler.forwards_with, handler.name
        ))),
    }
}

/// The name of an import without its DLL.
pub fn short(import: &str) -> &str {
    import.rsplit('!').next().unwrap_or(import)
}

/// What one handler's call graph reaches.
pub struct DataPath {
    /// The handler.
    pub handler: Handler,
    /// Its entry address.
    pub entry: u64,
    /// Its call graph.
    pub graph: CallGraph,
}

impl DataPath {
    /// Finds and disassembles `handler` in `image`.
    pub fn of(image: &Image, handler: Handler) -> Result<DataPath, DisasmError> {
        let entry = find_handler(image, &handler)?;
        Ok(DataPath { handler, entry, graph: CallGraph::from_root(image, entry)? })
    }

    /// Reachable imports outside `expected` (the panic import aside).
    pub fn unexpected_imports(&self) -> Vec<String> {
        let allowed = |i: &str| self.handler.expected.contains(&i) || i == PANIC_IMPORT;
        self.graph.imports().into_iter().map(short).filter(|i| !allowed(i)).map(String::from).collect()
    }

    /// Expected imports the graph never reaches (the heuristic found the
    /// wrong function, or the driver changed).
    pub fn missing_imports(&self) -> Vec<&'static str> {
        let reached: BTreeSet<&str> = self.graph.imports().into_iter().map(short).collect();
        self.handler.expected.iter().copied().filter(|i| !reached.contains(i)).collect()
    }

    /// Call sites of the panic import: the bug checks reachable from the
    /// data path.
    pub fn panic_sites(&self) -> Vec<u64> {
        self.call_sites(PANIC_IMPORT)
    }

    fn call_sites(&self, import: &str) -> Vec<u64> {
        let calls = self.graph.functions.values().flat_map(|f| f.calls.iter());
        calls
            .filter(|c| matches!(&c.target, crate::disasm::Target::Import(n) if short(n) == import))
            .map(|c| c.at)
            .collect()
    }

    /// Entries of the functions of the event stream: those that take the
    /// endpoint's event lock or complete a read (events.rs, irp.rs), and the
    /// functions only they reach (the data path reaches them only for
    /// packets on a port whose endpoint enabled events).
    pub fn event_functions(&self) -> BTreeSet<u64> {
        use crate::disasm::Target;
        const EVENT_IMPORTS: [&str; 2] = ["NdisDprAcquireSpinLock", "IofCompleteRequest"];
        let functions = &self.graph.functions;
        let callees = |entry: u64| -> Vec<u64> {
            functions.get(&entry).map_or(Vec::new(), |f| {
                f.calls.iter().filter_map(|c| if let Target::Internal(a) = c.target { Some(a) } else { None }).collect()
            })
        };
        let roots: BTreeSet<u64> = functions
            .values()
            .filter(|f| {
                f.calls.iter().any(|c| matches!(&c.target, Target::Import(n) if EVENT_IMPORTS.contains(&short(n))))
            })
            .map(|f| f.entry)
            .collect();
        // The callers of the event functions: whatever calls one of them
        // and calls nothing else of the event path only holds the branch.
        let reach = |from: Vec<u64>, avoid: &BTreeSet<u64>| {
            let mut seen = BTreeSet::new();
            let mut todo = from;
            while let Some(f) = todo.pop() {
                if avoid.contains(&f) || !seen.insert(f) {
                    continue;
                }
                todo.extend(callees(f));
            }
            seen
        };
        // Functions that call an event root and are only called from
        // functions outside the handler's direct body: the out-of-line
        // event entry (`#[cold]`) and what it calls.
        let mut entries = roots.clone();
        for f in functions.values() {
            let calls_root = callees(f.entry).iter().any(|c| roots.contains(c));
            if calls_root && f.entry != self.entry {
                entries.insert(f.entry);
            }
        }
        let outside = reach(vec![self.entry], &entries);
        let inside = reach(entries.iter().copied().collect(), &BTreeSet::new());
        inside.difference(&outside).copied().collect()
    }

    /// [`Self::shared_writes`] in the event stream's functions
    /// ([`Self::event_functions`]): listed apart from the others.
    pub fn event_writes(&self) -> Vec<Write> {
        let events = self.event_functions();
        self.shared_writes().into_iter().filter(|w| events.contains(&w.function)).collect()
    }

    /// [`Self::shared_writes`] outside the event stream's functions,
    /// classified ([`classify`]), with the per-processor slot stores found
    /// by [`crate::percpu::slot_stores`].
    pub fn classified_writes(&self) -> Vec<(Write, WriteKind)> {
        let events = self.event_functions();
        let writes: Vec<Write> = self.shared_writes().into_iter().filter(|w| !events.contains(&w.function)).collect();
        classify(&writes, &crate::percpu::slot_stores(&self.graph))
    }

    /// Every instruction of the data path that writes memory other than
    /// its own stack frame, or is a locked read-modify-write.
    pub fn shared_writes(&self) -> Vec<Write> {
        let mut factory = InstructionInfoFactory::new();
        let mut formatter = IntelFormatter::new();
        let mut out = Vec::new();
        for f in self.graph.functions.values() {
            for (va, insn) in &f.instructions {
                let writes_memory = stores_outside_stack(&mut factory, insn);
                let locked = is_locked_rmw(insn);
                if writes_memory || locked {
                    let mut text = String::new();
                    formatter.format(insn, &mut text);
                    out.push(Write { at: *va, function: f.entry, text, locked, insn: *insn });
                }
            }
        }
        out
    }
}

/// `true` when `insn` writes memory other than the stack (`rsp`-based
/// operands, including the return address a `call` pushes).
pub fn stores_outside_stack(factory: &mut InstructionInfoFactory, insn: &iced_x86::Instruction) -> bool {
    factory.info(insn).used_memory().iter().any(|m| {
        let writes =
            matches!(m.access(), OpAccess::Write | OpAccess::ReadWrite | OpAccess::CondWrite | OpAccess::ReadCondWrite);
        writes
            && m.base() != Register::RSP
            && !(m.base() == Register::None && m.index() == Register::None && m.displacement() == 0)
    })
}

/// A store (or locked update) that is not to the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Instruction address.
    pub at: u64,
    /// Entry of the function it is in.
    pub function: u64,
    /// The instruction, Intel syntax.
    pub text: String,
    /// A locked read-modify-write.
    pub locked: bool,
    /// The instruction.
    pub insn: iced_x86::Instruction,
}

/// What a non-stack write on the data path is, by its instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// A plain store to `NET_BUFFER_LIST.Status`: the packet's own NBL.
    NblStatus,
    /// A plain (not locked) store to a per-processor slot: its address is
    /// the current processor's index times at least a cache line (see
    /// [`crate::percpu`]).
    PerCpuSlot,
    /// A locked no-op on the own stack (`lock or [rsp], 0`): a full fence,
    /// which writes nothing shared.
    Fence,
    /// A locked `inc`/`add` of a location nothing on the data path ever
    /// decrements: a monotonic counter.
    Counter,
    /// A locked update of a location the data path also decrements (or
    /// exchanges): a reference or holder count, which every packet writes
    /// on every CPU, twice.
    SharedCount,
    /// Anything else.
    Other,
}

/// The memory operand of `insn` as (base, index, scale, displacement).
fn operand(insn: &iced_x86::Instruction) -> (Register, Register, u32, u64) {
    (insn.memory_base(), insn.memory_index(), insn.memory_index_scale(), insn.memory_displacement64())
}

/// Classifies every write of `writes` (see [`WriteKind`]). Operands are
/// compared syntactically within one function, so a location decremented
/// through a different register is missed; the two RW-lock holder updates
/// of `ndis-sync` use the same register for both.
pub fn classify(writes: &[Write], slots: &std::collections::BTreeMap<u64, u64>) -> Vec<(Write, WriteKind)> {
    let status_offset = core::mem::offset_of!(ndis_sys::NET_BUFFER_LIST, Status) as u64;
    let decremented: BTreeSet<(u64, (Register, Register, u32, u64))> = writes
        .iter()
        .filter(|w| w.locked && !matches!(w.insn.mnemonic(), iced_x86::Mnemonic::Inc | iced_x86::Mnemonic::Add))
        .map(|w| (w.function, operand(&w.insn)))
        .collect();
    writes
        .iter()
        .map(|w| {
            let m = w.insn.mnemonic();
            let kind = if !w.locked && m == iced_x86::Mnemonic::Mov && w.insn.memory_displacement64() == status_offset {
                WriteKind::NblStatus
            } else if !w.locked && slots.contains_key(&w.at) {
                WriteKind::PerCpuSlot
            } else if w.locked && w.insn.memory_base() == Register::RSP && m == iced_x86::Mnemonic::Or {
                WriteKind::Fence
            } else if decremented.contains(&(w.function, operand(&w.insn))) {
                WriteKind::SharedCount
            } else if w.locked && matches!(m, iced_x86::Mnemonic::Inc | iced_x86::Mnemonic::Add) {
                WriteKind::Counter
            } else {
                WriteKind::Other
            };
            (w.clone(), kind)
        })
        .collect()
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x} (in {:#x}): {}{}",
            self.at,
            self.function,
            self.text,
            if self.locked { "  [locked]" } else { "" }
        )
    }
}
