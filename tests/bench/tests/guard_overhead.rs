//! The guards cost nothing: every `guard_*` export of the fixture calls the
//! same NDIS/Ex imports in the same order as its hand-written `raw_*` twin.
//! The spin lock and rundown guards reach nothing else (no panic path, no
//! helper call); the RW lock guards add exactly their documented re-entry
//! check (one flag load, compare and branch to a bug-check path; a writer
//! also raises and lowers the flag) and nothing else.

use portwatch_bench::artifacts::Artifact;
use portwatch_bench::disasm::Function;
use portwatch_bench::guards::{self, Allowance, TABLE_HEADER};
use portwatch_bench::pe::Image;

fn fixture() -> Image {
    Image::open(&Artifact::Fixture.path()).expect("read bench_fixture.dll")
}

const READ: Allowance = Allowance::ReentryCheck { write: false };

#[test]
fn every_guard_adds_only_what_it_is_allowed() {
    let image = fixture();
    let all = guards::compare_all(&image).expect("disassemble the fixture");
    println!("{TABLE_HEADER}");
    for c in &all {
        println!("{c}");
    }
    let failures: Vec<String> =
        all.iter().flat_map(|c| c.differences().into_iter().map(move |d| format!("{}: {d}", c.name))).collect();
    assert!(failures.is_empty(), "guards add more than allowed:\n{}", failures.join("\n"));
}

#[test]
fn the_rw_guards_add_exactly_one_flag_check() {
    // Pins the allowance down: for each RW sequence the check was found
    // (load, compare, branch on one byte), with the flag stores a write
    // needs and no more, and the hot path is the raw one plus those.
    let image = fixture();
    for (name, allowance) in guards::SEQUENCES.iter().filter(|(_, a)| *a != Allowance::SameCalls) {
        let c = guards::compare(&image, name, *allowance).expect("disassemble");
        let hot = c.reentry.as_ref().expect("analysed");
        let check =
            hot.check.as_ref().unwrap_or_else(|| panic!("{name}: no re-entry check found: {:?}", hot.violations));
        let write = *allowance == (Allowance::ReentryCheck { write: true });
        // The Mutex/Semaphore init check has the same shape as a read's.
        assert_eq!(check.flag_stores.len(), if write { 2 } else { 0 }, "{name}");
        assert!((2..=3).contains(&check.instructions.len()), "{name}: {check:?}");
        assert!(c.guard_path <= c.raw_path + check.instructions.len() + check.flag_stores.len(), "{c}");
        assert_eq!(c.locked.1, c.locked.0, "{name}: added locked instructions");
    }
}

#[test]
fn the_raw_sequences_call_the_documented_functions() {
    // Guards the comparison itself: if the raw side were wrong (or the
    // disassembler lost calls), "same as raw" would prove nothing.
    let image = fixture();
    let expect = [
        ("spin", &["NdisAcquireSpinLock", "NdisReleaseSpinLock"][..]),
        ("spin_dpr", &["NdisDprAcquireSpinLock", "NdisDprReleaseSpinLock"]),
        (
            "spin_nested",
            &["NdisAcquireSpinLock", "NdisDprAcquireSpinLock", "NdisDprReleaseSpinLock", "NdisReleaseSpinLock"],
        ),
        ("rw_read", &["NdisAcquireRWLockRead", "NdisReleaseRWLock"]),
        ("rw_read_dispatch", &["NdisAcquireRWLockRead", "NdisReleaseRWLock"]),
        ("rw_write", &["NdisAcquireRWLockWrite", "NdisReleaseRWLock"]),
        ("rundown", &["ExAcquireRundownProtection", "ExReleaseRundownProtection"]),
        ("mutex", &["ExAcquireFastMutex", "ExReleaseFastMutex"]),
        ("passive_mutex", &["KeWaitForSingleObject", "KeReleaseMutex"]),
        ("semaphore", &["KeWaitForSingleObject", "KeReleaseSemaphore"]),
    ];
    for (name, imports) in expect {
        let va = image.export(&format!("raw_{name}")).expect("raw export");
        let f = Function::analyze(&image, va).expect("disassemble");
        let got: Vec<&str> = f.imports().into_iter().map(|i| i.rsplit('!').next().unwrap()).collect();
        assert_eq!(got, imports, "raw_{name}");
        assert!(f.other_calls().is_empty() && f.unresolved.is_empty(), "raw_{name} makes other calls");
    }
}

#[test]
fn an_added_panic_path_is_reported() {
    // The check must be able to fail: `control_spin_checked` is `raw_spin`
    // plus an overflow check that bug-checks.
    let image = fixture();
    let c = guards::compare_exports(&image, "control", "raw_spin", "control_spin_checked", Allowance::SameCalls)
        .expect("disassemble");
    assert!(!c.accepted(), "the extra panic path went unnoticed: {c}");
    assert!(c.differences().iter().any(|d| d.contains("KeBugCheckEx")), "{:?}", c.differences());
}

#[test]
fn a_holder_count_on_the_read_path_is_reported() {
    // The re-entry check plus a locked increment and decrement of a holder
    // count: shared writes on every read, outside the allowance.
    let image = fixture();
    let c = guards::compare_exports(&image, "control", "raw_rw_read", "control_rw_read_counted", READ)
        .expect("disassemble");
    println!("{c}");
    assert!(c.reentry.as_ref().is_some_and(|h| h.check.is_some()), "the check itself was recognised: {c:?}");
    assert!(c.differences().iter().any(|d| d.contains("other stores")), "{:?}", c.differences());
    assert!(c.differences().iter().any(|d| d.contains("locked")), "{:?}", c.differences());
}

#[test]
fn a_second_check_is_reported() {
    let image = fixture();
    let c = guards::compare_exports(&image, "control", "raw_rw_read", "control_rw_read_checked_twice", READ)
        .expect("disassemble");
    println!("{c}");
    assert!(c.differences().iter().any(|d| d.contains("2 panic branches")), "{:?}", c.differences());
}
