//! `portwatch-bench datapath | guards | contention | scaling`: the
//! benchmarks of docs/benchmarks.md.
//!
//! * `guards`: guard vs raw sequences from the fixture's disassembly.
//! * `contention`: every non-stack store and locked instruction on the
//!   data path of `portwatch.sys`.
//! * `datapath [packets]`: sends and receives `packets` (default 2000)
//!   packets per configuration; run it under
//!   `valgrind --tool=callgrind --dump-instr=yes` and summarise with
//!   `portwatch-bench summarize callgrind.out.*` for instructions per packet.
//! * `datapath-events [packets]`: the event stream's cost (see
//!   `live::datapath_events`), summarised the same way.
//! * `scaling [max_threads] [seconds] [portwatch|passthrough]`: packets/s
//!   with 1.. threads.
//! * `overhead [packets]`: the same packets through both drivers, labelled
//!   for `portwatch-bench overhead-summary callgrind.out.*`: whole-process
//!   instructions per packet, the driver's and the harness's share.

use std::path::PathBuf;
use std::process::ExitCode;

use portwatch_bench::artifacts::Artifact;
use portwatch_bench::guards::{self, TABLE_HEADER};
use portwatch_bench::handlers::{classify, DataPath, RECEIVE, SEND};
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
        Some("datapath-events") => live::datapath_events(rest),
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        Some("scaling") => live::scaling(rest),
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        Some("overhead") => live::overhead(rest),
        Some("overhead-summary") => {
            portwatch_bench::callgrind::print_overhead(&rest.iter().map(PathBuf::from).collect::<Vec<_>>())
        }
        Some("summarize") => {
            portwatch_bench::callgrind::print_summary(&rest.iter().map(PathBuf::from).collect::<Vec<_>>())
        }
        _ => {
            eprintln!("usage: portwatch-bench guards | contention | datapath [packets] | datapath-events [packets] | scaling [max_threads] [seconds] [portwatch|passthrough] | overhead [packets] | summarize <callgrind.out...> | overhead-summary <callgrind.out...>");
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
    for handler in [SEND, RECEIVE] {
        let path = DataPath::of(&image, handler).expect("find the handler");
        println!(
            "{} ({:#x}): {} reachable instructions; imports {:?}",
            handler.name,
            path.entry,
            path.graph.len(),
            path.graph.imports()
        );
        println!("  bug-check call sites: {:x?}", path.panic_sites());
        for (w, kind) in classify(&path.shared_writes()) {
            println!("  {kind:?}: {w}");
        }
    }
}
