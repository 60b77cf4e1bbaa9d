//! What this process holds — resident memory, mappings, threads, open file
//! descriptors — read from `/proc/self`, and the bounds a long run must stay
//! within: in the harness the driver, its pool (special pool included), the
//! model's NBLs, IRPs and guarded buffers all live in this process, so a
//! leak of any of them shows here.
//!
//! One thing grows on purpose: special pool keeps the driver's freed
//! allocations mapped and inaccessible in a quarantine of at most
//! [`QUARANTINE_MAPPINGS`] mappings (a use after free then faults), which
//! fills as the driver frees (each detach frees a module's context). That
//! growth is bounded by the quarantine itself, checked here on its own; the
//! mappings beyond it must stay flat.

use std::fmt;

pub use portwatch_harness::pool::QUARANTINE_MAPPINGS;

/// Process mappings one special-pool allocation may take: its data pages
/// and the guard page (two protections).
pub const MAPPINGS_PER_SPECIAL: u64 = 2;

/// One sample of the process's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Resident set, KiB (`VmRSS` of `/proc/self/status`).
    pub resident_kib: u64,
    /// Memory mappings (lines of `/proc/self/maps`).
    pub mappings: u64,
    /// Threads (entries of `/proc/self/task`).
    pub threads: u64,
    /// Open file descriptors (entries of `/proc/self/fd`).
    pub fds: u64,
    /// Special-pool mappings, live and quarantined
    /// (`portwatch_harness::pool::special_mappings`).
    pub special_pool: u64,
}

/// How much each figure may grow between two samples of a healthy run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// KiB of resident memory (the allocator's free lists and the model's
    /// bounded caches and quarantines may still fill up).
    pub resident_kib: u64,
    /// Mappings beyond those of special pool (guarded buffers and lent
    /// pages are mapped too; their caches and quarantines are bounded).
    pub mappings: u64,
    /// Threads.
    pub threads: u64,
    /// File descriptors.
    pub fds: u64,
}

impl Bounds {
    /// The bounds of a long run in the harness: 16 MiB, 64 mappings, no
    /// thread and no descriptor more.
    pub const LONG_RUN: Bounds = Bounds { resident_kib: 16 * 1024, mappings: 64, threads: 0, fds: 0 };
}

fn entries(dir: &str) -> std::io::Result<u64> {
    Ok(std::fs::read_dir(dir)?.count() as u64)
}

impl Sample {
    /// The process now.
    pub fn now() -> std::io::Result<Sample> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let resident_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| std::io::Error::other("no VmRSS in /proc/self/status"))?;
        let mappings = std::fs::read_to_string("/proc/self/maps")?.lines().count() as u64;
        // The directory listing itself holds one descriptor while it is read.
        let fds = entries("/proc/self/fd")?.saturating_sub(1);
        let threads = entries("/proc/self/task")?;
        let special_pool = portwatch_harness::pool::special_mappings() as u64;
        Ok(Sample { resident_kib, mappings, threads, fds, special_pool })
    }

    /// What grew past `bounds` from `self` to `later`, one line each. The
    /// mappings' bound is raised by what special pool's own mappings grew
    /// (at most [`MAPPINGS_PER_SPECIAL`] each), and those may never exceed
    /// the quarantine plus 64 live allocations.
    pub fn growth_beyond(&self, later: &Sample, bounds: &Bounds) -> Vec<String> {
        let special = later.special_pool.saturating_sub(self.special_pool) * MAPPINGS_PER_SPECIAL;
        let mut grown: Vec<String> = Vec::new();
        let ceiling = QUARANTINE_MAPPINGS as u64 + 64;
        if later.special_pool > ceiling {
            grown.push(format!("special pool holds {} mappings (bound: {ceiling})", later.special_pool));
        }
        let figures = [
            ("resident KiB", self.resident_kib, later.resident_kib, bounds.resident_kib),
            ("mappings", self.mappings, later.mappings, bounds.mappings + special),
            ("threads", self.threads, later.threads, bounds.threads),
            ("file descriptors", self.fds, later.fds, bounds.fds),
        ];
        figures
            .into_iter()
            .filter(|&(_, a, b, bound)| b > a.saturating_add(bound))
            .map(|(what, a, b, bound)| format!("{what} grew from {a} to {b} (bound: +{bound})"))
            .for_each(|g| grown.push(g));
        grown
    }
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} KiB resident, {} mappings ({} of special pool), {} threads, {} file descriptors",
            self.resident_kib, self.mappings, self.special_pool, self.threads, self.fds
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_each_bound_is_named_and_shrinking_is_not() {
        let a = Sample { resident_kib: 1000, mappings: 50, threads: 5, fds: 3, special_pool: 10 };
        let b = Bounds { resident_kib: 100, mappings: 2, threads: 0, fds: 0 };
        let same = Sample { resident_kib: 1100, mappings: 52, threads: 4, fds: 1, special_pool: 10 };
        assert!(a.growth_beyond(&same, &b).is_empty());
        let grown = a.growth_beyond(&Sample { resident_kib: 1101, mappings: 53, threads: 6, fds: 4, ..same }, &b);
        assert_eq!(grown.len(), 4, "{grown:?}");
        assert!(grown[0].starts_with("resident KiB grew from 1000 to 1101"), "{grown:?}");
        // Three more special-pool mappings allow six more process mappings.
        assert!(a.growth_beyond(&Sample { mappings: 58, special_pool: 13, ..same }, &b).is_empty());
        let grown = a.growth_beyond(&Sample { mappings: 59, special_pool: 13, ..same }, &b);
        assert_eq!(grown, ["mappings grew from 50 to 59 (bound: +8)"]);
        let over = QUARANTINE_MAPPINGS as u64 + 65;
        let grown = a.growth_beyond(&Sample { mappings: 50 + 2 * (over - 10), special_pool: over, ..same }, &b);
        assert_eq!(grown.len(), 1, "{grown:?}");
        assert!(grown[0].starts_with("special pool holds"), "{grown:?}");
    }

    #[test]
    fn a_sample_reads_every_figure() {
        let file = std::fs::File::open("/proc/self/status").expect("open");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        let s = Sample::now().expect("/proc/self");
        drop(tx);
        t.join().expect("join").ok();
        drop(file);
        assert!(s.resident_kib > 0 && s.mappings > 0, "{s}");
        assert!(s.threads >= 2 && s.fds >= 1, "{s}");
    }
}
