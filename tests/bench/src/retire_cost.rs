//! What the operating system's part of NBL retirement costs by itself, and
//! how it scales with threads: the harness makes an NBL's page
//! inaccessible (`mprotect(PROT_NONE)`) when the NBL is back with its
//! creator, one call per chain of consecutive pages, and makes a slab of
//! [`SLAB`] pages accessible again (one call) when all of them are back.
//! Here each thread does exactly those calls on a slab of its own, with
//! nothing else, so the figures are the ceiling the retirement puts on the
//! harness's packets per second (`portwatch-bench retire-scaling`).

use std::time::{Duration, Instant};

pub use portwatch_harness::lent::SLAB;

const PAGE: usize = 4096;

/// Pages retired per second (one page stands for one NBL) by `threads`
/// threads at once, each retiring its slab's pages in runs of `chain`
/// consecutive pages (one system call per run), then making the slab
/// accessible again, for `duration`.
pub fn pages_per_second(threads: usize, chain: usize, duration: Duration) -> f64 {
    assert!((1..=SLAB).contains(&chain), "chain: 1 to {SLAB} pages");
    let start = Instant::now();
    let pages: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads).map(|_| scope.spawn(move || retire_loop(chain, start, duration))).collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    pages as f64 / start.elapsed().as_secs_f64()
}

/// One thread's loop: touch each page (the harness zeroes an NBL's page
/// before lending it), retire the slab in runs, make it accessible again.
fn retire_loop(chain: usize, start: Instant, duration: Duration) -> u64 {
    let slab = Slab::new();
    let runs = SLAB / chain;
    let mut pages = 0u64;
    while start.elapsed() < duration {
        for run in 0..runs {
            let lo = slab.base + run * chain * PAGE;
            for p in 0..chain {
                // SAFETY: a page of this thread's slab, accessible now.
                unsafe { std::ptr::write_volatile((lo + p * PAGE) as *mut u8, 1) };
            }
            slab.protect(lo, chain * PAGE, libc::PROT_NONE);
        }
        slab.protect(slab.base, runs * chain * PAGE, libc::PROT_READ | libc::PROT_WRITE);
        pages += (runs * chain) as u64;
    }
    pages
}

/// `SLAB` anonymous pages, unmapped on drop.
struct Slab {
    base: usize,
}

impl Slab {
    fn new() -> Self {
        // SAFETY: a fresh anonymous private mapping; nothing else changes.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SLAB * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        Slab { base: p as usize }
    }

    fn protect(&self, lo: usize, len: usize, prot: i32) {
        // SAFETY: [lo, lo + len) lies in this slab; only its protection
        // changes, and nothing reads it while it is inaccessible.
        let rc = unsafe { libc::mprotect(lo as *mut libc::c_void, len, prot) };
        assert_eq!(rc, 0, "mprotect: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, used by nothing any more.
        unsafe { libc::munmap(self.base as *mut libc::c_void, SLAB * PAGE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_length_retires_whole_slabs() {
        for chain in [1, 8, 64] {
            let rate = pages_per_second(1, chain, Duration::from_millis(5));
            assert!(rate >= SLAB as f64, "chain {chain}: {rate} pages/s");
        }
    }
}
