//! What a packet writes that other processors also write: on the data path
//! of `portwatch.sys` (the send and receive handlers and the completion
//! handlers that give NBLs back), every store outside the stack frame must
//! be the packet's own NBL status or a plain store to a per-processor slot
//! (its address the current processor's index times at least a cache line,
//! recognised by the dataflow of `portwatch_bench::percpu`): the counters
//! and the pause gate's in-flight counts. No locked instruction and no
//! other store, except on the path that completes a pending pause, which a
//! packet takes at most once per pause: a full fence (`lock or [rsp], 0`,
//! on the own stack), the exchange that claims the pause and the store of
//! the Paused state, each at most once per copy of that path. NDIS's own
//! RW lock (inside `NdisAcquireRWLockRead` / `NdisReleaseRWLock`) is not
//! the driver's code.

use iced_x86::Mnemonic;
use portwatch_bench::artifacts::Artifact;
use portwatch_bench::handlers::{DataPath, Handler, WriteKind, RECEIVE, RETURN, SEND, SEND_COMPLETE};
use portwatch_bench::pe::Image;

/// The kinds a data-path write may be: its own NBL, a per-processor slot,
/// or (bounded below) one of the pause path's fence, claim and state store.
fn allowed(kind: WriteKind, m: Mnemonic) -> bool {
    match kind {
        WriteKind::NblStatus | WriteKind::PerCpuSlot | WriteKind::Fence => true,
        WriteKind::SharedCount => m == Mnemonic::Xchg,
        WriteKind::Other => m == Mnemonic::Mov,
        WriteKind::Counter => false,
    }
}

/// `pause_paths`: copies of the pause-completing path the compiler made in
/// this handler's call graph (one per IRQL variant of the gate's `leave`).
fn check(handler: Handler, pause_paths: usize) {
    let image = Image::open(&Artifact::Driver.path()).expect("read portwatch.dll");
    let path = DataPath::of(&image, handler).expect("find the handler");
    let classified = path.classified_writes();
    for (w, kind) in &classified {
        println!("{kind:?}: {w}");
    }
    let count =
        |f: &dyn Fn(&WriteKind, Mnemonic) -> bool| classified.iter().filter(|(w, k)| f(k, w.insn.mnemonic())).count();
    assert!(count(&|k, _| *k == WriteKind::PerCpuSlot) > 0, "{}: no per-processor slot update found", handler.name);
    let fences = count(&|k, _| *k == WriteKind::Fence);
    let claims = count(&|k, m| *k == WriteKind::SharedCount && m == Mnemonic::Xchg);
    let state_stores = count(&|k, m| *k == WriteKind::Other && m == Mnemonic::Mov);
    let others: Vec<String> = classified
        .iter()
        .filter(|(w, k)| !allowed(*k, w.insn.mnemonic()))
        .map(|(w, k)| format!("{k:?}: {w}"))
        .collect();
    assert!(others.is_empty(), "{}: writes to shared memory:\n{}", handler.name, others.join("\n"));
    assert!(
        fences <= pause_paths && claims <= pause_paths && state_stores <= pause_paths,
        "{}: {fences} fences, {claims} exchanges, {state_stores} other stores; the pause path allows {pause_paths} each",
        handler.name
    );
}

#[test]
fn send_writes_only_per_processor_slots_and_its_own_nbls() {
    check(SEND, 0);
}

#[test]
fn receive_writes_only_per_processor_slots() {
    check(RECEIVE, 2);
}

#[test]
fn completions_write_only_per_processor_slots() {
    check(SEND_COMPLETE, 2);
    check(RETURN, 2);
}
