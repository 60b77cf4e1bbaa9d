//! What a packet writes that other CPUs also write: on the data path of
//! `portwatch.sys`, every store outside the stack frame must be the
//! packet's own NBL status, a monotonic per-binding counter (a locked
//! `inc`/`add` that nothing on the path decrements), or the module's pause
//! gate. The pause gate (`modules.rs`: a count of the NBLs the module let
//! through, so that FilterPause completes only when they are back even if
//! NDIS pauses it while they are out) is the one shared count on the path;
//! it is bounded here: on each path that gives NBLs back to the module —
//! one in the send handler (a refused send), two in the receive handler (a
//! refused receive, a RESOURCES indication that returned) — one decrement,
//! one exchange of the pause-pending flag and one store of the Paused
//! state. Any other location that is both incremented and decremented — a
//! holder or reference count on shared state — fails.
//!
//! The event stream's writes (the endpoint's ring and pending-read queue
//! under its event lock, the claim of a pending read's cancel routine, the
//! read's buffer) are in the functions that take the event lock or complete
//! the read, reached only for packets on a port whose endpoint enabled
//! events; they are listed apart and excluded from the bound above.

use portwatch_bench::artifacts::Artifact;
use portwatch_bench::handlers::{classify, DataPath, WriteKind, RECEIVE, SEND};
use portwatch_bench::pe::Image;

fn check(handler: portwatch_bench::handlers::Handler, gate_paths: usize) {
    let image = Image::open(&Artifact::Driver.path()).expect("read portwatch.dll");
    let path = DataPath::of(&image, handler).expect("find the handler");
    let event_functions = path.event_functions();
    let (events, writes): (Vec<_>, Vec<_>) =
        path.shared_writes().into_iter().partition(|w| event_functions.contains(&w.function));
    assert!(!event_functions.is_empty(), "{}: the event stream's functions were not found", handler.name);
    for w in &events {
        println!("Event stream: {w}");
    }
    let classified = classify(&writes);
    for (w, kind) in &classified {
        println!("{kind:?}: {w}");
    }
    assert!(classified.iter().any(|(_, k)| *k == WriteKind::Counter), "{}: no counter update found", handler.name);
    let of =
        |kind: WriteKind| classified.iter().filter(|(_, k)| *k == kind).map(|(w, _)| w.to_string()).collect::<Vec<_>>();
    let (shared, other) = (of(WriteKind::SharedCount), of(WriteKind::Other));
    // Per path: a decrement and a flag exchange (shared counts), a state
    // store (other).
    assert!(
        shared.len() <= 2 * gate_paths && other.len() <= gate_paths,
        "{}: writes to shared memory besides the counters and the pause gate:\n{}\n{}",
        handler.name,
        shared.join("\n"),
        other.join("\n")
    );
}

#[test]
fn send_writes_only_counters_and_its_own_nbls() {
    check(SEND, 1);
}

#[test]
fn receive_writes_only_counters_and_its_own_nbls() {
    check(RECEIVE, 2);
}
