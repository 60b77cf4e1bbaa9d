//! IOCTL sequences against the real `portwatch.sys` in the harness, under
//! the verifier (special pool for one input in eight, see `special_pool`): every input is a little program of
//! opens, closes, IOCTLs (code, input bytes, output length) and packets;
//! each completion is checked against the documented contract, and the
//! driver is unloaded at the end of every input, which must leave no
//! violation, no leaked pool, every NBL returned and every IRP completed.
//! Any of those is a crash.
//!
//! The driver image comes from `$PORTWATCH_DRIVER` or the usual build
//! outputs (see `portwatch_scenarios::harness_target::driver_path`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portwatch_proto as proto;
use portwatch_scenarios::expect::{check_reply, expected};
use portwatch_scenarios::harness_target::{driver_path, HarnessConfig, HarnessTarget};
use portwatch_scenarios::target::{Adapter, Direction, Handle, Level, NblSpec, PacketSpec, Target, TargetError};

const MAX_HANDLES: usize = 4;
const MAX_STEPS: usize = 64;

fn driver() -> &'static std::path::Path {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(driver_path)
}

/// Reads the program.
struct Program<'a> {
    data: &'a [u8],
}

impl Program<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (take, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        take
    }
}

fn code_of(selector: u8, raw: u16) -> u32 {
    match proto::ALL_IOCTLS.get(usize::from(selector) % 11) {
        Some(&code) => code,
        None => (u32::from(raw) << 8 | u32::from(selector)) & !3,
    }
}

fn ioctl_step(t: &dyn Target, handles: &[Handle], p: &mut Program<'_>) -> Option<()> {
    let h = *handles.get(usize::from(p.byte()?) % handles.len().max(1))?;
    let selector = p.byte()?;
    let raw = p.u16()?;
    let code = code_of(selector, raw);
    let out_len = u32::from(p.u16()?) % 2048;
    let len = usize::from(p.byte()?);
    let input = p.bytes(len).to_vec();
    match t.ioctl(h, code, &input, out_len) {
        Ok(reply) => {
            let contract = expected(code, &input, out_len);
            assert!(
                contract.allows(reply.status),
                "IOCTL {code:#x} in={input:02x?} out={out_len}: {:#x}, expected {contract:?}",
                reply.status as u32
            );
            if let Some(bad) = check_reply(code, out_len, &reply) {
                panic!("IOCTL {code:#x} out={out_len}: {bad}");
            }
        }
        Err(e) => panic!("IOCTL {code:#x}: {e}"),
    }
    Some(())
}

fn traffic_step(t: &dyn Target, p: &mut Program<'_>) -> Option<()> {
    let flags = p.byte()?;
    let packet = PacketSpec {
        protocol: if flags & 1 == 0 { proto::PROTO_TCP } else { proto::PROTO_UDP },
        src_port: p.u16()?,
        dst_port: 40_000 + u16::from(p.byte()? % 16),
        ipv6: flags & 2 != 0,
        vlan: flags & 4 != 0,
        payload_len: u16::from(p.byte()?),
    };
    let direction = if flags & 8 == 0 { Direction::Send } else { Direction::Receive };
    let level = if flags & 16 == 0 { Level::Passive } else { Level::Dispatch };
    let nbl = NblSpec { packets: vec![packet], loopback: flags & 32 != 0, fragmented: flags & 64 != 0 };
    if let Err(e) = t.inject(Adapter(0), direction, &[nbl], level, flags & 128 != 0) {
        panic!("inject: {e}");
    }
    Some(())
}

fn run_program(t: &dyn Target, mut p: Program<'_>) {
    let mut handles: Vec<Handle> = Vec::new();
    for _ in 0..MAX_STEPS {
        let Some(op) = p.byte() else { break };
        let step = match op % 8 {
            0 if handles.len() < MAX_HANDLES => match t.open() {
                Ok(h) => {
                    handles.push(h);
                    Some(())
                }
                Err(e) => panic!("open: {e}"),
            },
            1 if !handles.is_empty() => p.byte().map(|i| {
                let h = handles.swap_remove(usize::from(i) % handles.len());
                if let Err(e) = t.close(h) {
                    panic!("close: {e}");
                }
            }),
            7 => traffic_step(t, &mut p),
            _ if !handles.is_empty() => ioctl_step(t, &handles, &mut p),
            _ => Some(()),
        };
        if step.is_none() {
            break;
        }
    }
    for h in handles {
        if let Err(e) = t.close(h) {
            panic!("close: {e}");
        }
    }
}

/// Special pool for one input in eight (chosen by the first byte's top
/// bits, which the program does not read otherwise): the harness keeps
/// every special-pool mapping of a session inaccessible for good, so with
/// it on for every input a run exhausts the process's mappings after some
/// 20,000 inputs.
fn special_pool(data: &[u8]) -> bool {
    data.first().is_some_and(|b| b & 0xE0 == 0)
}

fuzz_target!(|data: &[u8]| {
    let config = HarnessConfig { special_pool: special_pool(data), ..HarnessConfig::new(driver(), 1) };
    let t = match HarnessTarget::load(config) {
        Ok(t) => t,
        Err(TargetError::Violation(v)) => panic!("load: {v}"),
        Err(e) => panic!("cannot load {}: {e}", driver().display()),
    };
    run_program(&t, Program { data });
    let health = t.unload().expect("unload");
    let problems = health.problems();
    assert!(problems.is_empty(), "{problems:#?}");
});
