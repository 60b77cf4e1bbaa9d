//! `portwatch-bench datapath | guards | contention | scaling`: the
//! benchmarks of docs/benchmarks.md.
//!
//! * `guards`: guard vs raw sequences from the fixture's disassembly.
//! * `contention`: every non-stack store and locked instruction on the
//!   data path of `portwatch.sys`.
//! * `datapath [packets] [--before IMAGE] [--ports N,..]`: sends and
//!   receives `packets` (default 2000) packets per configuration (table
//!   sizes, chain lengths, the event stream's: `live::datapath`), with
//!   `--before` on a second image too; run it under
//!   `valgrind --tool=callgrind --dump-instr=yes` and summarise with
//!   `portwatch-bench summarize callgrind.out.*` for instructions per packet.
//! * `profile <image> <driver> <callgrind.out...>`: the dumps of `driver`
//!   (a label's driver name) per function and per source line of `image`,
//!   which must be the image that ran, built with line tables.
//! * `scaling [max_threads] [seconds] [portwatch|passthrough] [--chain N]`: packets/s
//!   with 1.. threads.
//! * `retire-scaling [seconds]`: the operating system's part of NBL
//!   retirement alone (`mprotect` per run of pages), 1 and 2 threads.
//! * `overhead [packets]`: the same packets through both drivers, labelled
//!   for `portwatch-bench overhead-summary callgrind.out.*`: whole-process
//!   instructions per packet, the driver's and the harness's share.

use std::path::PathBuf;
use std::process::ExitCode;

use portwatch_bench::artifacts::Artifact;
use portwatch_bench::guards::{self, TABLE_HEADER};
use portwatch_bench::handlers::{DataPath, RECEIVE, RETURN, SEND, SEND_COMPLETE};
use portwatch_bench::pe::Image;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod live;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = &args[1.min(args.len())..];
    match args.first().map(String::as_str) {
        Some("guards") => guards_table(),
        Some("contention") => contention(),
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        Some("datapath") => live::datapath(rest),
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        Some("scaling") => live::scaling(rest),
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        Some("overhead") => live::overhead(rest),
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        Some("retire-scaling") => retire_scaling(rest),
        Some("overhead-summary") => {
            portwatch_bench::callgrind::print_overhead(&rest.iter().map(PathBuf::from).collect::<Vec<_>>())
        }
        Some("profile") => {
            let [image, driver, files @ ..] = rest else {
                eprintln!("usage: portwatch-bench profile <image.dll> <driver label> <callgrind.out...>");
                return ExitCode::FAILURE;
            };
            let dumps = portwatch_bench::callgrind::read_dumps(&files.iter().map(PathBuf::from).collect::<Vec<_>>());
            match portwatch_bench::profile::profile(&PathBuf::from(image), driver, &dumps) {
                Ok(p) => portwatch_bench::profile::print(&p, 25),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Some("summarize") => {
            portwatch_bench::callgrind::print_summary(&rest.iter().map(PathBuf::from).collect::<Vec<_>>())
        }
        _ => {
            eprintln!("usage: portwatch-bench guards | contention | datapath [packets] [--before IMAGE] | profile <image> <driver> <callgrind.out...> | scaling [max_threads] [seconds] [portwatch|passthrough] [--chain N] | overhead [packets] | retire-scaling [seconds] | summarize <callgrind.out...> | overhead-summary <callgrind.out...>");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn guards_table() {
    let image = Image::open(&Artifact::Fixture.path()).expect("read the fixture");
    println!("{TABLE_HEADER}");
    for c in guards::compare_all(&image).expect("disassemble") {
        println!("{c}");
    }
}

fn contention() {
    let image = Image::open(&Artifact::Driver.path()).expect("read portwatch");
    for handler in [SEND, RECEIVE, SEND_COMPLETE, RETURN] {
        let path = DataPath::of(&image, handler).expect("find the handler");
        println!(
            "{} ({:#x}): {} reachable instructions; imports {:?}",
            handler.name,
            path.entry,
            path.graph.len(),
            path.graph.imports()
        );
        println!("  bug-check call sites: {:x?}", path.panic_sites());
        for (w, kind) in path.classified_writes() {
            println!("  {kind:?}: {w}");
        }
        // Listed apart: reached only for a watched packet (events.rs).
        for w in path.event_writes() {
            println!("  event stream: {w}");
        }
    }
}

/// `retire-scaling [seconds]`: pages retired per second by the operating
/// system's calls alone, 1 and 2 threads, runs of 1, 8 and 64 pages.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn retire_scaling(args: &[String]) {
    use portwatch_bench::retire_cost::pages_per_second;
    let seconds: f64 = args.first().map_or(2.0, |a| a.parse().expect("seconds: a number"));
    let d = std::time::Duration::from_secs_f64(seconds);
    println!("| pages per system call | 1 thread, pages/s | 2 threads, pages/s | ratio |\n|---|---|---|---|");
    for chain in [1, 8, 64] {
        let one = pages_per_second(1, chain, d);
        let two = pages_per_second(2, chain, d);
        println!("| {chain} | {one:.0} | {two:.0} | {:.2} |", two / one);
    }
}
