//! IOCTL sequences against the real `portwatch.sys` in the harness, under
//! the verifier. An input is a header byte, read only for the verifier
//! options (special pool for one header in eight, allocation failures for
//! another one in eight, independently: see
//! `portwatch_scenarios::fuzz_options` and `portwatch_fuzz::options_of`),
//! then a little program of opens,
//! closes, IOCTLs (code, input bytes, output length), event-stream enables,
//! reads (each on a thread of its own: it may pend), CancelIoEx and
//! packets. Each
//! completion is checked against the documented contract and a model of
//! its endpoint (bindings, local address, counters that never go down),
//! each packet's delivery against the adapter's state, and the driver is
//! unloaded at the end of every input, which must leave no violation, no
//! leaked pool, every NBL returned and every IRP completed. Any of those is
//! a crash.
//!
//! The driver image comes from `$PORTWATCH_DRIVER` or the usual build
//! outputs (see `portwatch_scenarios::harness_target::driver_path`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portwatch_fuzz::{finish, ioctl_step, load, options_of, read_traffic, AdapterStates, Handles, Program};
use portwatch_scenarios::fuzz_options::FuzzOptions;
use portwatch_scenarios::target::Target;

const MAX_HANDLES: usize = 4;
const MAX_STEPS: usize = 64;
/// Reads started per program (each a thread until it completes).
const MAX_READS: usize = 16;

fn run_program<'s>(
    t: &'s dyn Target,
    options: &FuzzOptions,
    adapters: &AdapterStates,
    mut p: Program<'_>,
    scope: &'s std::thread::Scope<'s, '_>,
) {
    let mut handles = Handles::new(MAX_HANDLES, MAX_READS);
    for _ in 0..MAX_STEPS {
        let Some(op) = p.byte() else { break };
        let step = handles.shared_step(op % 11, t, options, &mut p, scope).unwrap_or_else(|| match op % 11 {
            7 => read_traffic(&mut p).map(|traffic| adapters.inject(t, 0, &traffic)),
            _ if !handles.endpoints.is_empty() => ioctl_step(t, options, &mut handles.endpoints, &mut p),
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
    let Some(t) = load(&options, 1) else { return };
    let adapters = AdapterStates::bring_up(&t, &options);
    // Closing every handle at the end completes the reads still pending;
    // the scope then joins their threads.
    std::thread::scope(|s| run_program(&t, &options, &adapters, Program::new(&data[1..]), s));
    finish(t);
});
