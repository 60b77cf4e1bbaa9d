//! The scenario set as one verdict: run every scenario against a driver
//! image under the harness, then the low-resources sweep, and name the
//! first thing that went wrong (the verifier rule and its message, a leak,
//! or the broken invariant), so that
//! a one-line answer says what caught a bug. `scripts/mutants.sh` runs it
//! against each planted bug (`portwatch-check` is the command).

use std::fmt;
use std::path::Path;

use crate::harness_target::{HarnessConfig, HarnessTarget};
use crate::run::{Params, Summary};
use crate::scenarios::Scenario;

/// What went wrong first in a run of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The scenario that found it.
    pub scenario: String,
    /// The verifier rule (`verifier::Violation::rule`), `pool leaked at
    /// unload`, or `scenario check` for a broken invariant.
    pub rule: String,
    /// The bug check and where it happened, or the invariant's message.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} — {} [{}]", self.rule, self.message, self.scenario)
    }
}

/// Splits a violation as `verifier::Violation` displays it —
/// `bug check 0xC4 (0x62, …) in FUNCTION: RULE: DETAIL` — into the rule and
/// `bug check 0xC4/0x62 in FUNCTION: DETAIL`. A string of another shape is
/// returned whole as the message, with the rule `violation`.
pub fn split_violation(v: &str) -> (String, String) {
    let parsed = (|| {
        let rest = v.strip_prefix("bug check ")?;
        let (code, rest) = rest.split_once(' ')?;
        let (params, rest) = rest.strip_prefix('(')?.split_once(") in ")?;
        let p1 = params.split(", ").next().unwrap_or("");
        let (function, rest) = rest.split_once(": ")?;
        let (rule, detail) = rest.split_once(": ").unwrap_or((rest, ""));
        let function = if function.is_empty() { "the harness" } else { function };
        Some((rule.to_owned(), format!("bug check {code}/{p1} in {function}: {detail}")))
    })();
    parsed.unwrap_or_else(|| ("violation".to_owned(), v.to_owned()))
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}

/// The first finding of a scenario's summary: its first violation (the
/// session's bug check), else its first leak, else its first broken
/// invariant. `None` when the summary is clean.
pub fn first_finding(s: &Summary) -> Option<Finding> {
    let (rule, message) = if let Some(v) = s.violations.first() {
        split_violation(v)
    } else if let Some(l) = s.leaks.first() {
        ("pool leaked at unload".to_owned(), l.clone())
    } else {
        ("scenario check".to_owned(), s.failures.first()?.clone())
    };
    Some(Finding { scenario: s.scenario.clone(), rule, message: one_line(&message, 300) })
}

/// The order the set runs in: cheapest and broadest first.
pub const ORDER: [Scenario; 5] =
    [Scenario::IoctlStorm, Scenario::DataPath, Scenario::Races, Scenario::Lifecycle, Scenario::Events];

/// The set of a long run (`portwatch-check --duration`): [`ORDER`], then
/// the packet flood.
pub const LONG: [Scenario; 6] =
    [Scenario::IoctlStorm, Scenario::DataPath, Scenario::Races, Scenario::Lifecycle, Scenario::Events, Scenario::Flood];

/// The low-resources sweep ([`crate::lowres::sweep`]: each allocation of a
/// scripted run fails in turn) as a finding: its first failure, split into
/// rule and message when it is a verifier violation.
pub fn lowres_finding(driver: &Path) -> Option<Finding> {
    let report = crate::lowres::sweep(driver, 2, None);
    let f = report.failures.first()?;
    let (rule, message) = match f.find("bug check ") {
        Some(at) => {
            let (rule, message) = split_violation(&f[at..]);
            let context = f[..at].trim_end_matches([' ', ':']);
            let context = context.strip_suffix("violation").unwrap_or(context).trim_end_matches([' ', ':']);
            (rule, format!("{context}: {message}"))
        }
        None => ("low-resources check".to_owned(), f.clone()),
    };
    Some(Finding { scenario: "lowres".to_owned(), rule, message: one_line(&message, 300) })
}

/// Loads `driver` (special pool on, two adapters) for each scenario in
/// `scenarios` and runs it with `params` (the seed offset by the
/// scenario's place); stops at the first scenario that finds something.
/// A driver that cannot even be loaded is a finding too (the load's
/// violation or error).
pub fn run_set(driver: &Path, scenarios: &[Scenario], params: &Params) -> Option<Finding> {
    for (i, &scenario) in scenarios.iter().enumerate() {
        let target = match HarnessTarget::load(HarnessConfig::new(driver, 2)) {
            Ok(t) => t,
            Err(e) => {
                let (rule, message) = match &e {
                    crate::target::TargetError::Violation(v) => split_violation(v),
                    other => ("load failed".to_owned(), other.to_string()),
                };
                return Some(Finding { scenario: scenario.name().to_owned(), rule, message: one_line(&message, 300) });
            }
        };
        let p = Params { seed: params.seed + i as u64, ..params.clone() };
        let summary = scenario.run(&target, &p);
        eprintln!(
            "portwatch-check: {} {:.1} s, {} ops, {} packets",
            scenario,
            summary.elapsed.as_secs_f64(),
            summary.operations,
            summary.packets
        );
        if scenario == Scenario::Flood {
            for (name, n) in
                summary.model.iter().filter(|m| m.0.ends_with("after the warm-up") || m.0.ends_with("near the end"))
            {
                eprintln!("portwatch-check:   {name}: {n}");
            }
        }
        if let Some(f) = first_finding(&summary) {
            return Some(f);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_violation_into_rule_and_message() {
        let v = "bug check 0xC4 (0x62, 0x2, 0x0, 0x0) in DriverUnload: pool leaked at unload: 2 allocations";
        assert_eq!(
            split_violation(v),
            ("pool leaked at unload".to_owned(), "bug check 0xC4/0x62 in DriverUnload: 2 allocations".to_owned())
        );
        assert_eq!(split_violation("odd"), ("violation".to_owned(), "odd".to_owned()));
    }

    #[test]
    fn the_first_violation_wins_over_leaks_and_failures() {
        let mut s = Summary {
            scenario: "x".into(),
            operations: 0,
            packets: 0,
            violations: vec![],
            leaks: vec!["leak".into()],
            failures: vec!["fail".into()],
            elapsed: std::time::Duration::ZERO,
            allocations: 0,
            peak_stack: 0,
            unobservable: false,
            model: Vec::new(),
        };
        assert_eq!(first_finding(&s).unwrap().rule, "pool leaked at unload");
        s.violations.push("bug check 0x44 (0x1, 0x0, 0x0, 0x0) in IRP_MJ_CREATE: irp completed twice: x".into());
        assert_eq!(first_finding(&s).unwrap().rule, "irp completed twice");
        s.violations.clear();
        s.leaks.clear();
        assert_eq!(first_finding(&s).unwrap().message, "fail");
        s.failures.clear();
        assert_eq!(first_finding(&s), None);
    }
}
