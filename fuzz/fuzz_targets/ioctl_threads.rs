//! Concurrent IOCTL programs against the real `portwatch.sys` in the
//! harness, under the verifier, with real interleaving.
//!
//! An input is
//!
//! * a header byte, read only for the verifier options (special pool and
//!   allocation failures, each for one header in eight, independently: see
//!   `portwatch_scenarios::fuzz_options`);
//! * a byte choosing 2 to 4 threads;
//! * for every thread but the last, a little-endian u16 length and that
//!   many bytes of its program; the last thread's program is the rest.
//!
//! The threads start together (a barrier) on one loaded driver with two
//! adapters, each with handles of its own, and run their programs: opens,
//! closes, IOCTLs of any code and bytes, well-formed port requests on a
//! small shared set of ports (so bindings of different threads meet in the
//! port table and in the counting), packets both ways at either IRQL, and
//! adapter state changes (pause, restart, detach, attach; one change at a
//! time per adapter, in the order NDIS makes them).
//!
//! What is checked holds whatever the interleaving: every completion
//! status is one the contract (`portwatch_scenarios::expect`) allows for
//! that request, every reply is well formed, each endpoint agrees with its
//! owner's model (bindings, local address, counters never going down), and
//! a packet injected while its adapter's state held is delivered as that
//! state requires. Every input ends with an unload that must show no
//! violation, no leaked pool, every NBL returned and every IRP completed.
//!
//! Programs also enable the event stream, start reads (each on a thread
//! of its own: it may pend until an event, a cancel or the close) and
//! cancel them (CancelIoEx); closing a handle completes its pending reads.
//!
//! A crash may depend on the interleaving: replay its artifact with
//! `-runs=N` to run it N times.
#![no_main]

use std::sync::Barrier;

use libfuzzer_sys::fuzz_target;
use portwatch_fuzz::{finish, ioctl_step, load, options_of, port_step, read_traffic, AdapterStates, Handles, Program};
use portwatch_scenarios::fuzz_options::FuzzOptions;
use portwatch_scenarios::target::Target;

const ADAPTERS: usize = 2;
const MAX_HANDLES: usize = 3;
const MAX_STEPS: usize = 48;
/// Reads each program starts (each a thread until it completes).
const MAX_READS: usize = 8;

/// Splits the programs: a thread count byte, then a length before every
/// program but the last.
fn programs<'a>(p: &mut Program<'a>) -> Option<Vec<&'a [u8]>> {
    let threads = 2 + usize::from(p.byte()? % 3);
    let mut out = Vec::with_capacity(threads);
    for _ in 1..threads {
        let len = usize::from(p.u16()?);
        out.push(p.bytes(len));
    }
    Some(out)
}

fn run_thread<'s>(
    t: &'s dyn Target,
    options: &FuzzOptions,
    adapters: &AdapterStates,
    mut p: Program<'_>,
    scope: &'s std::thread::Scope<'s, '_>,
) {
    let mut handles = Handles::new(MAX_HANDLES, MAX_READS);
    for _ in 0..MAX_STEPS {
        let Some(op) = p.byte() else { break };
        let any_open = !handles.endpoints.is_empty();
        let step = handles.shared_step(op % 11, t, options, &mut p, scope).unwrap_or_else(|| match op % 11 {
            2 | 3 if any_open => ioctl_step(t, options, &mut handles.endpoints, &mut p),
            4 if any_open => port_step(t, options, &mut handles.endpoints, &mut p),
            5 | 6 => p.byte().and_then(|a| {
                let traffic = read_traffic(&mut p)?;
                adapters.inject(t, usize::from(a) % ADAPTERS, &traffic);
                Some(())
            }),
            7 => p.byte().map(|b| match b % 4 {
                0 => std::thread::yield_now(),
                _ => adapters.step(t, usize::from(b >> 2) % ADAPTERS, b & 0x80 != 0),
            }),
            _ => Some(()),
        });
        if step.is_none() {
            break;
        }
    }
    handles.close_all(t);
}

fuzz_target!(|data: &[u8]| {
    let Some(options) = options_of(data) else { return };
    let mut p = Program::new(&data[1..]);
    let Some(mut programs) = programs(&mut p) else { return };
    programs.push(p.rest());
    let Some(t) = load(&options, ADAPTERS) else { return };
    let adapters = AdapterStates::bring_up(&t, &options);
    let start = Barrier::new(programs.len());
    std::thread::scope(|s| {
        for program in &programs {
            let (t, options, adapters, start) = (&t, &options, &adapters, &start);
            s.spawn(move || {
                start.wait();
                run_thread(t, options, adapters, Program::new(program), s);
            });
        }
    });
    finish(t);
});
