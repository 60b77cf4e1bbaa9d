//! Negative tests of the I/O manager and NDIS checks with a built driver:
//! `lwf_fixture.sys` breaks one rule on purpose once `IOCTL_LWF_MISBEHAVE`
//! selects a misbehaviour. Each test first runs the same path correctly on
//! the same loaded driver (no violation: the check can pass), then selects
//! the misbehaviour and asserts the exact rule and bug check the verifier
//! reports, recorded as the session's bug check.

mod common;

use ndis_sys::{NDIS_STATUS_PAUSED, NDIS_STATUS_SUCCESS};
use portwatch_harness::frames::{FrameSpec, IPPROTO_UDP};
use portwatch_harness::io::{c9, Handle, IoError, MULTIPLE_IRP_COMPLETE_REQUESTS};
use portwatch_harness::nbl::NblSpec;
use portwatch_harness::ndis::{subcodes, AdapterId, AdapterSpec, At};
use portwatch_harness::session::{Options, Session};
use portwatch_harness::verifier::{codes, Violation};

/// `IOCTL_LWF_MISBEHAVE` of the fixture.
const IOCTL_LWF_MISBEHAVE: u32 = 0x0012_2008;
const STATUS_INVALID_PARAMETER: i32 = 0xC000_000D_u32 as i32;
const STATUS_UNSUCCESSFUL: i32 = 0xC000_0001_u32 as i32;
const STATUS_PENDING: i32 = 0x103;
const C4: u32 = codes::DRIVER_VERIFIER_DETECTED_VIOLATION;
const C9: u32 = codes::DRIVER_VERIFIER_IOMANAGER_VIOLATION;

/// The fixture's `Misbehaviour` codes.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
enum Bug {
    None = 0,
    IrpCompletedTwice = 1,
    IrpNotCompleted = 2,
    IrpCompletedPending = 3,
    IrpInformationTooLarge = 4,
    IrpStatusMismatch = 5,
    IrpPendingNotMarked = 6,
    SendSwallowed = 7,
    SendCompletedTwice = 8,
    SendWhilePaused = 9,
    SendPausedWrongStatus = 10,
    ReceiveDroppedIgnoringResources = 11,
    ReceiveWrongCount = 12,
    ReceiveSwallowed = 13,
    StatusIrqlNotRestored = 14,
    SendFromAttach = 15,
    StatusFromAttach = 16,
    ReceiveResourcesFlagDropped = 17,
}

/// Selects `bug` in the driver (a correct IOCTL of its own).
fn misbehave(s: &Session, bug: Bug) {
    let h = s.open(common::DEVICE).expect("open");
    let r = s.ioctl(h, IOCTL_LWF_MISBEHAVE, &(bug as u32).to_le_bytes(), 0).expect("misbehave IOCTL");
    assert_eq!(r.status, 0, "{bug:?} refused");
    s.close(h).expect("close");
}

/// Asserts nothing was caught so far (the correct path passed the checks).
fn clean(s: &Session) {
    let report = s.report();
    assert!(report.violations.is_empty(), "the correct path raised a violation:\n{report}");
}

/// Asserts `v` is `rule` with `bugcheck` and parameter 1 `p1`, and is the
/// session's only violation: its bug check.
fn caught(s: &Session, v: &Violation, rule: &str, bugcheck: u32, p1: u64) {
    assert_eq!((v.rule, v.bugcheck, v.params[0]), (rule, bugcheck, p1), "{v}");
    assert_eq!(s.report().violations, vec![v.clone()], "recorded once, as the bug check");
}

fn frame() -> Vec<NblSpec> {
    vec![NblSpec::of(vec![FrameSpec::ipv4(IPPROTO_UDP, 5000, 53).build()])]
}

// ---------------------------------------------------------------------------
// IRPs: the echo IOCTL.

/// The fixture loaded, its device open, one correct echo done.
fn device() -> (Session, Handle) {
    let s = common::load(Options::default());
    let h = s.open(common::DEVICE).expect("open");
    let r = s.ioctl(h, common::IOCTL_LWF_ECHO, &[1, 2, 3, 4], 4).expect("echo");
    assert_eq!((r.status, r.information, r.output), (0, 4, vec![!1, !2, !3, !4]));
    clean(&s);
    (s, h)
}

/// The echo IOCTL under `bug`: the violation that stopped it.
fn echo_violation(bug: Bug) -> (Session, Violation) {
    let (s, h) = device();
    misbehave(&s, bug);
    match s.ioctl(h, common::IOCTL_LWF_ECHO, &[1, 2, 3, 4], 4) {
        Err(IoError::Violation(v)) => (s, v),
        other => panic!("{bug:?}: expected a violation, got {other:?}"),
    }
}

#[test]
fn misbehave_ioctl_checks_its_input_and_none_restores_the_correct_driver() {
    let (s, h) = device();
    for input in [&[][..], &[1, 0, 0][..], &99u32.to_le_bytes()[..], &[2, 0, 0, 0, 0][..]] {
        let r = s.ioctl(h, IOCTL_LWF_MISBEHAVE, input, 0).unwrap();
        assert_eq!(r.status, STATUS_INVALID_PARAMETER, "{input:?}");
    }
    misbehave(&s, Bug::IrpNotCompleted);
    misbehave(&s, Bug::None);
    assert_eq!(s.ioctl(h, common::IOCTL_LWF_ECHO, &[7], 1).unwrap().output, vec![!7]);
    s.close(h).unwrap();
    let report = s.unload();
    assert!(report.violations.is_empty() && report.leaked.is_empty(), "{report}");
}

#[test]
fn irp_completed_twice() {
    let (s, v) = echo_violation(Bug::IrpCompletedTwice);
    caught(&s, &v, "IRP completed twice or unknown", MULTIPLE_IRP_COMPLETE_REQUESTS, v.params[0]);
    assert_ne!(v.params[0], 0, "parameter 1 is the IRP");
    assert_eq!(v.function, "IRP_MJ_DEVICE_CONTROL", "stopped inside the dispatch routine");
}

#[test]
fn irp_neither_completed_nor_pending() {
    let (s, v) = echo_violation(Bug::IrpNotCompleted);
    caught(&s, &v, "IRP neither completed nor pending", C9, c9::NOT_COMPLETED);
    assert_eq!(v.params[2], 0, "the status it returned: STATUS_SUCCESS");
}

#[test]
fn irp_completed_with_status_pending() {
    let (s, v) = echo_violation(Bug::IrpCompletedPending);
    caught(&s, &v, "IRP completed with STATUS_PENDING", C9, c9::COMPLETE_PENDING);
    assert_eq!(v.params[1], STATUS_PENDING as u64);
    assert_eq!(v.function, "IRP_MJ_DEVICE_CONTROL");
}

#[test]
fn irp_information_larger_than_the_output_buffer() {
    let (s, v) = echo_violation(Bug::IrpInformationTooLarge);
    caught(&s, &v, "Information larger than the output buffer", C9, c9::INFORMATION_TOO_LARGE);
    assert_eq!(v.params[2], 4 + 16, "the Information it completed with");
}

#[test]
fn irp_returned_status_differs_from_completion_status() {
    let (s, v) = echo_violation(Bug::IrpStatusMismatch);
    caught(&s, &v, "dispatch status differs from completion status", C9, c9::STATUS_MISMATCH);
    assert_eq!(v.params[2], STATUS_UNSUCCESSFUL as u32 as u64, "the status it returned");
}

#[test]
fn irp_pending_returned_without_mark() {
    let (s, v) = echo_violation(Bug::IrpPendingNotMarked);
    caught(&s, &v, "STATUS_PENDING returned without IoMarkIrpPending", C9, c9::PENDING_NOT_MARKED);
}

// ---------------------------------------------------------------------------
// Sends.

/// The fixture loaded and Running on one adapter.
fn running() -> (Session, AdapterId) {
    let s = common::load(Options::default());
    let a = s.add_adapter(AdapterSpec::named("eth0"));
    s.start(a).unwrap();
    (s, a)
}

/// One correct send and two correct receives (RESOURCES clear and set)
/// through the Running fixture: no violation.
fn traffic_ok(s: &Session, a: AdapterId) {
    let sent = s.send(a, frame(), At::Dispatch).unwrap();
    assert_eq!((sent[0].delivered, sent[0].status), (true, NDIS_STATUS_SUCCESS));
    let got = s.receive(a, frame(), At::Dispatch, false).unwrap();
    assert!(got[0].delivered);
    let got = s.receive(a, frame(), At::Dispatch, true).unwrap();
    assert!(got[0].delivered);
    clean(s);
}

#[test]
fn send_never_completed() {
    let (s, a) = running();
    traffic_ok(&s, a);
    misbehave(&s, Bug::SendSwallowed);
    let v = s.send(a, frame(), At::Passive).unwrap_err();
    caught(&s, &v, "send NBL never completed", C4, subcodes::SEND_NBL_HELD);
    assert_eq!(s.report().ndis.callbacks.get("FilterSendNetBufferLists"), Some(&2), "the filter saw both sends");
}

#[test]
fn send_completed_twice() {
    let (s, a) = running();
    traffic_ok(&s, a);
    misbehave(&s, Bug::SendCompletedTwice);
    let v = s.send(a, frame(), At::Dispatch).unwrap_err();
    caught(&s, &v, "send NBL completed twice or not owned", C4, subcodes::NBL_NOT_OWNED);
    assert_eq!(v.function, "FilterSendNetBufferListsComplete");
}

/// The fixture Paused after a Running phase, a send completed correctly
/// (NDIS_STATUS_PAUSED) while paused.
fn paused() -> (Session, AdapterId) {
    let (s, a) = running();
    traffic_ok(&s, a);
    s.pause(a).unwrap();
    let sent = s.send(a, frame(), At::Dispatch).unwrap();
    assert_eq!((sent[0].delivered, sent[0].status), (false, NDIS_STATUS_PAUSED));
    clean(&s);
    (s, a)
}

#[test]
fn send_passed_down_while_paused() {
    let (s, a) = paused();
    misbehave(&s, Bug::SendWhilePaused);
    let v = s.send(a, frame(), At::Dispatch).unwrap_err();
    caught(&s, &v, "NBL forwarded after the filter's pause completed", C4, subcodes::FORWARDED_AFTER_PAUSE);
    assert!(v.detail.contains("is Paused"), "{v}");
    assert_eq!(v.function, "FilterSendNetBufferLists");
}

#[test]
fn send_completed_while_paused_without_paused_status() {
    let (s, a) = paused();
    misbehave(&s, Bug::SendPausedWrongStatus);
    let v = s.send(a, frame(), At::Dispatch).unwrap_err();
    caught(&s, &v, "send completed while paused without NDIS_STATUS_PAUSED", C4, subcodes::NOT_PAUSED_STATUS);
    assert_eq!(v.params[2], NDIS_STATUS_SUCCESS as u32 as u64, "the status it completed with");
}

/// FilterAttach under `bug` on a fresh adapter: the violation that stopped
/// it (the same driver attached a first adapter cleanly before).
fn attach_violation(bug: Bug) -> (Session, Violation) {
    let s = common::load(Options::default());
    let first = s.add_adapter(AdapterSpec::named("eth0"));
    s.start(first).unwrap();
    clean(&s);
    misbehave(&s, bug);
    let a = s.add_adapter(AdapterSpec::named("eth1"));
    match s.attach(a) {
        Err(v) => (s, v),
        other => panic!("{bug:?}: expected a violation, got {other:?}"),
    }
}

#[test]
fn send_from_filter_attach() {
    let (s, v) = attach_violation(Bug::SendFromAttach);
    caught(&s, &v, "data path used in the wrong module state", C4, subcodes::WRONG_STATE);
    assert!(v.detail.starts_with("NdisFSendNetBufferLists sends before FilterAttach returned"), "{v}");
    assert_eq!(v.function, "FilterAttach");
    drop(s);
    clean_session_after(Bug::SendFromAttach);
}

#[test]
fn status_from_filter_attach() {
    let (s, v) = attach_violation(Bug::StatusFromAttach);
    caught(&s, &v, "data path used in the wrong module state", C4, subcodes::WRONG_STATE);
    assert!(v.detail.starts_with("NdisFIndicateStatus indicates a status while the module is Attaching"), "{v}");
    assert_eq!(v.function, "FilterAttach");
    drop(s);
    clean_session_after(Bug::StatusFromAttach);
}

// ---------------------------------------------------------------------------
// Receives.

#[test]
fn resources_receive_returned_by_the_filter() {
    let (s, a) = running();
    traffic_ok(&s, a);
    misbehave(&s, Bug::ReceiveDroppedIgnoringResources);
    // Without NDIS_RECEIVE_FLAGS_RESOURCES the drop is correct.
    let got = s.receive(a, frame(), At::Dispatch, false).unwrap();
    assert!(!got[0].delivered, "dropped by the filter");
    clean(&s);
    let v = s.receive(a, frame(), At::Dispatch, true).unwrap_err();
    caught(&s, &v, "RESOURCES NBL returned by the filter", C4, subcodes::RESOURCES_RETURNED);
    assert_eq!(v.function, "FilterReceiveNetBufferLists");
}

#[test]
fn resources_flag_dropped_on_the_way_up() {
    let (s, a) = running();
    traffic_ok(&s, a);
    misbehave(&s, Bug::ReceiveResourcesFlagDropped);
    // Without NDIS_RECEIVE_FLAGS_RESOURCES there is no flag to drop.
    let got = s.receive(a, frame(), At::Dispatch, false).unwrap();
    assert!(got[0].delivered, "passed up");
    clean(&s);
    let v = s.receive(a, frame(), At::Dispatch, true).unwrap_err();
    caught(&s, &v, "RESOURCES flag dropped", C4, subcodes::RESOURCES_RETURNED);
    assert!(v.detail.contains("passing it up without the flag (R18)"), "{v}");
    assert_eq!(v.function, "FilterReceiveNetBufferLists");
}

#[test]
fn receive_indicated_with_wrong_count() {
    let (s, a) = running();
    traffic_ok(&s, a);
    misbehave(&s, Bug::ReceiveWrongCount);
    let v = s.receive(a, frame(), At::Dispatch, false).unwrap_err();
    caught(&s, &v, "receive NBL count mismatch", C4, subcodes::NBL_COUNT);
    assert_eq!((v.params[1], v.params[2]), (2, 1), "NumberOfNetBufferLists, then the chain's length");
}

#[test]
fn receive_never_returned() {
    let (s, a) = running();
    traffic_ok(&s, a);
    misbehave(&s, Bug::ReceiveSwallowed);
    let v = s.receive(a, frame(), At::Dispatch, false).unwrap_err();
    caught(&s, &v, "receive NBL never returned", C4, subcodes::RECEIVE_NBL_HELD);
}

// ---------------------------------------------------------------------------
// IRQL.

#[test]
fn status_callback_returns_at_raised_irql() {
    let (s, a) = running();
    s.indicate_status(a, 0x4001_000B, At::Passive).unwrap();
    assert_eq!(s.report().ndis.status_forwarded, 1);
    clean(&s);
    misbehave(&s, Bug::StatusIrqlNotRestored);
    // NdisAcquireSpinLock released with NdisDprReleaseSpinLock leaves the
    // IRQL raised: named at the release, before the callback returns at
    // DISPATCH_LEVEL (the IRQL check at return is the unit test
    // stack::tests::irql_change_is_caught).
    let v = s.indicate_status(a, 0x4001_000B, At::Passive).unwrap_err();
    caught(&s, &v, "spin lock released with the other form", C4, codes::C4_DDI_SPIN_LOCK_RULE);
    assert!(v.detail.contains("NdisDprReleaseSpinLock") && v.detail.contains("NdisAcquireSpinLock"), "{v}");
    assert_eq!(v.function, "FilterStatus");
}

// ---------------------------------------------------------------------------
// Nothing of a session outlives it.

/// Every operation the fixture's misbehaviours can break, in turn, until
/// one ends in the violation; deferred completions are on, so a violation
/// leaves NBLs queued on this thread.
fn provoke(s: &Session, a: AdapterId) -> Option<Violation> {
    let h = s.open(common::DEVICE).ok()?;
    let steps: [&dyn Fn() -> Result<(), Violation>; 6] = [
        &|| s.send(a, frame(), At::Passive).map(drop),
        &|| s.send(a, frame(), At::Dispatch).map(drop),
        &|| s.receive(a, frame(), At::Dispatch, false).map(drop),
        &|| s.receive(a, frame(), At::Dispatch, true).map(drop),
        &|| s.indicate_status(a, 0x4001_000B, At::Passive).map(drop),
        &|| match s.ioctl(h, common::IOCTL_LWF_ECHO, &[1, 2, 3, 4], 4) {
            Err(IoError::Violation(v)) => Err(v),
            _ => Ok(()),
        },
    ];
    steps
        .iter()
        .find_map(|step| step().err())
        .or_else(|| s.pause(a).err().or_else(|| s.send(a, frame(), At::Dispatch).err()))
}

/// A correct session on the same thread: every check passes and the
/// counts are exact.
fn clean_session_after(bug: Bug) {
    let s = common::load(Options { completion: portwatch_harness::ndis::Completion::Deferred, ..Options::default() });
    let a = s.add_adapter(AdapterSpec::named("eth0"));
    s.start(a).unwrap();
    traffic_ok(&s, a);
    let h = s.open(common::DEVICE).unwrap();
    let r = s.ioctl(h, common::IOCTL_LWF_ECHO, &[5], 1).unwrap();
    assert_eq!(r.output, vec![!5], "after {bug:?}");
    assert_eq!(common::counters(&s)[..2], [1, 2], "exact counts after {bug:?}");
    s.close(h).unwrap();
    s.pause(a).unwrap();
    s.detach(a).unwrap();
    let report = s.unload();
    assert!(report.violations.is_empty() && report.leaked.is_empty(), "after {bug:?}:\n{report}");
}

#[test]
fn a_clean_session_after_each_violation_kind_is_clean() {
    use Bug::*;
    let bugs = [
        IrpCompletedTwice,
        IrpNotCompleted,
        IrpCompletedPending,
        IrpInformationTooLarge,
        IrpStatusMismatch,
        IrpPendingNotMarked,
        SendSwallowed,
        SendCompletedTwice,
        SendWhilePaused,
        SendPausedWrongStatus,
        ReceiveDroppedIgnoringResources,
        ReceiveWrongCount,
        ReceiveSwallowed,
        StatusIrqlNotRestored,
    ];
    for bug in bugs {
        {
            let s = common::load(Options {
                completion: portwatch_harness::ndis::Completion::Deferred,
                pause_timeout: std::time::Duration::from_millis(300),
                ..Options::default()
            });
            let a = s.add_adapter(AdapterSpec::named("eth0"));
            s.start(a).unwrap();
            misbehave(&s, bug);
            let v = provoke(&s, a).unwrap_or_else(|| panic!("{bug:?} caused no violation"));
            assert_ne!(v.rule, portwatch_harness::verifier::STOPPED, "{bug:?}: {v}");
        }
        clean_session_after(bug);
    }
}
