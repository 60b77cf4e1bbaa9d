//! IOCTL sequences against the real `portwatch.sys` in the harness, under
//! the verifier. An input is a header byte, read only for the verifier
//! options (special pool for one header in eight, allocation failures for
//! another one in eight, independently: see
//! `portwatch_scenarios::fuzz_options` and `portwatch_fuzz::options_of`),
//! then a little program of opens,
//! closes, IOCTLs (code, input bytes, output length) and packets. Each
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
use portwatch_fuzz::{
    close, finish, ioctl_step, load, open, options_of, read_traffic, AdapterStates, Endpoint, Program,
};
use portwatch_scenarios::fuzz_options::FuzzOptions;
use portwatch_scenarios::target::Target;

const MAX_HANDLES: usize = 4;
const MAX_STEPS: usize = 64;

fn run_program(t: &dyn Target, options: &FuzzOptions, adapters: &AdapterStates, mut p: Program<'_>) {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for _ in 0..MAX_STEPS {
        let Some(op) = p.byte() else { break };
        let step = match op % 8 {
            0 if endpoints.len() < MAX_HANDLES => {
                endpoints.extend(open(t, options));
                Some(())
            }
            1 if !endpoints.is_empty() => {
                p.byte().map(|i| close(t, endpoints.swap_remove(usize::from(i) % endpoints.len())))
            }
            7 => read_traffic(&mut p).map(|traffic| adapters.inject(t, 0, &traffic)),
            _ if !endpoints.is_empty() => ioctl_step(t, options, &mut endpoints, &mut p),
            _ => Some(()),
        };
        if step.is_none() {
            break;
        }
    }
    for e in endpoints {
        close(t, e);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(options) = options_of(data) else { return };
    let Some(t) = load(&options, 1) else { return };
    let adapters = AdapterStates::bring_up(&t, &options);
    run_program(&t, &options, &adapters, Program::new(&data[1..]));
    finish(t);
});
