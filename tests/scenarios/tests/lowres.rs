//! Low-resources simulation: every allocation of the script fails once.

use portwatch_scenarios::harness_target::driver_path;
use portwatch_scenarios::lowres::{self, RunOutcome};

#[test]
fn every_allocation_failure_is_survived_and_reported() {
    let report = lowres::sweep(&driver_path(), 2, None);
    eprintln!("{} allocations; first degraded step per failing allocation: {:?}", report.allocations, report.sites());
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert!(report.allocations > 10, "the script should reach many allocation sites");
    assert_eq!(report.outcomes.len() as u64, report.allocations);
    assert!(report.outcomes.values().any(|o| *o == RunOutcome::LoadFailed), "DriverEntry's allocations");
    assert!(
        report.outcomes.values().any(|o| matches!(o, RunOutcome::Degraded(s) if s.contains(&"attach"))),
        "FilterAttach's"
    );
    assert!(
        report.outcomes.values().any(|o| matches!(o, RunOutcome::Degraded(s) if s.contains(&"open"))),
        "IRP_MJ_CREATE's"
    );
}
