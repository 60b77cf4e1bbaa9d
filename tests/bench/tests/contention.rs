//! What a packet writes that other processors also write: on the data path
//! of `portwatch.sys` (the send and receive handlers and the completion
//! handlers), every store outside the stack frame must be the packet's own
//! NBL status or a plain store to a per-processor slot (its address the
//! current processor's index times at least a cache line, recognised by the
//! dataflow of `portwatch_bench::percpu`): the counters. No locked
//! instruction at all (not even a fence on the own stack) and no other
//! store; the completion handlers write nothing outside their frame. NDIS's
//! own RW lock (inside `NdisAcquireRWLockRead` / `NdisReleaseRWLock`) is not
//! the driver's code.
//!
//! The event stream's writes (the endpoint's ring and pending-read queue
//! under its event spin lock, the claim of a pending read's cancel routine,
//! the read's buffer) are in the functions that take the event lock or
//! complete the read, reached only through the out-of-line event path for
//! packets on a port whose endpoint enabled events; they are listed apart,
//! and the rules above hold for everything else.

use portwatch_bench::artifacts::Artifact;
use portwatch_bench::handlers::{DataPath, Handler, WriteKind, RECEIVE, RETURN, SEND, SEND_COMPLETE};
use portwatch_bench::pe::Image;

/// The kinds a data-path write may be: its own NBL or a per-processor slot.
fn allowed(kind: WriteKind) -> bool {
    matches!(kind, WriteKind::NblStatus | WriteKind::PerCpuSlot)
}

/// `counts`: whether the handler counts packets (then it must update a
/// per-processor slot; otherwise it must write nothing outside its frame).
fn check(handler: Handler, counts: bool) {
    let image = Image::open(&Artifact::Driver.path()).expect("read portwatch.dll");
    let path = DataPath::of(&image, handler).expect("find the handler");
    let events = path.event_writes();
    for w in &events {
        println!("Event stream: {w}");
    }
    if counts {
        assert!(!path.event_functions().is_empty(), "{}: the event stream's functions were not found", handler.name);
        assert!(!events.is_empty(), "{}: the event stream writes nothing", handler.name);
    } else {
        assert!(events.is_empty(), "{}: event stream writes in a completion handler", handler.name);
    }
    let classified = path.classified_writes();
    for (w, kind) in &classified {
        println!("{kind:?}: {w}");
    }
    let slots = classified.iter().filter(|(_, k)| *k == WriteKind::PerCpuSlot).count();
    if counts {
        assert!(slots > 0, "{}: no per-processor slot update found", handler.name);
    } else {
        assert!(classified.is_empty(), "{}: writes outside its frame: {}", handler.name, classified.len());
    }
    let others: Vec<String> =
        classified.iter().filter(|(_, k)| !allowed(*k)).map(|(w, k)| format!("{k:?}: {w}")).collect();
    assert!(others.is_empty(), "{}: writes to shared memory:\n{}", handler.name, others.join("\n"));
}

#[test]
fn send_writes_only_per_processor_slots_and_its_own_nbls() {
    check(SEND, true);
}

#[test]
fn receive_writes_only_per_processor_slots() {
    check(RECEIVE, true);
}

#[test]
fn completions_write_nothing_shared() {
    check(SEND_COMPLETE, false);
    check(RETURN, false);
}
