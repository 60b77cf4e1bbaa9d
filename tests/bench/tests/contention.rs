//! What a packet writes that other CPUs also write: on the data path of
//! `portwatch.sys`, every store outside the stack frame must be either the
//! packet's own NBL status or a monotonic per-binding counter (a locked
//! `inc`/`add` that nothing on the path decrements). A location that is
//! both incremented and decremented — a holder or reference count on
//! shared state — is written by every packet on every CPU and fails.

use portwatch_bench::artifacts::Artifact;
use portwatch_bench::handlers::{classify, DataPath, WriteKind, RECEIVE, SEND};
use portwatch_bench::pe::Image;

fn check(handler: portwatch_bench::handlers::Handler) {
    let image = Image::open(&Artifact::Driver.path()).expect("read portwatch.dll");
    let path = DataPath::of(&image, handler).expect("find the handler");
    let classified = classify(&path.shared_writes());
    for (w, kind) in &classified {
        println!("{kind:?}: {w}");
    }
    assert!(classified.iter().any(|(_, k)| *k == WriteKind::Counter), "{}: no counter update found", handler.name);
    let bad: Vec<String> = classified
        .iter()
        .filter(|(_, k)| matches!(k, WriteKind::SharedCount | WriteKind::Other))
        .map(|(w, k)| format!("{k:?}: {w}"))
        .collect();
    assert!(bad.is_empty(), "{}: writes to shared memory besides the counters:\n{}", handler.name, bad.join("\n"));
}

#[test]
fn send_writes_only_counters_and_its_own_nbls() {
    check(SEND);
}

#[test]
fn receive_writes_only_counters_and_its_own_nbls() {
    check(RECEIVE);
}
