//! `portwatch-harness run <scenario> [--driver PATH] [--threads N] [--rounds N]`
//!
//! Runs a scenario against portwatch.sys (or another driver with the same
//! control device) under the model and prints what happened: entry points
//! called with their peak stack use, IRPs, NBLs, allocations, violations.
//! Exit status 0 when the run ended with no violation and no leak.
//!
//! Scenarios:
//! * `smoke`: load, two adapters, traffic both ways at both IRQLs, the
//!   control device's IOCTLs, pause, detach, unload.
//! * `traffic`: `--threads` threads sending and receiving on two adapters
//!   for `--rounds` rounds each while pause/restart cycles run.

use std::path::PathBuf;
use std::process::ExitCode;

use portwatch_harness::frames::{self, FrameSpec};
use portwatch_harness::nbl::{Layout, NblSpec};
use portwatch_harness::ndis::{AdapterId, AdapterSpec, At, Completion};
use portwatch_harness::session::{find_driver, Options, Report, Session};
use portwatch_harness::verifier::Violation;
use portwatch_proto as proto;
use proto::Wire;

struct Args {
    scenario: String,
    driver: Option<PathBuf>,
    threads: usize,
    rounds: usize,
}

fn usage() -> ExitCode {
    eprintln!("usage: portwatch-harness run <smoke|traffic> [--driver PATH] [--threads N] [--rounds N]");
    ExitCode::from(2)
}

fn parse() -> Option<Args> {
    let mut it = std::env::args().skip(1);
    if it.next()? != "run" {
        return None;
    }
    let mut args = Args { scenario: it.next()?, driver: None, threads: 4, rounds: 50 };
    while let Some(flag) = it.next() {
        let value = it.next()?;
        match flag.as_str() {
            "--driver" => args.driver = Some(value.into()),
            "--threads" => args.threads = value.parse().ok()?,
            "--rounds" => args.rounds = value.parse().ok()?,
            _ => return None,
        }
    }
    Some(args)
}

fn main() -> ExitCode {
    let Some(args) = parse() else { return usage() };
    let path = args.driver.clone().unwrap_or_else(|| {
        find_driver(
            "PORTWATCH_SYS",
            "portwatch.dll",
            "cargo build -p portwatch --target x86_64-pc-windows-msvc --profile driver",
        )
    });
    let session = match Session::load(&path, Options { completion: Completion::OtherThread, ..Options::default() }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    println!("driver {} registered {:?}", path.display(), session.filter());
    let outcome = match args.scenario.as_str() {
        "smoke" => smoke(&session),
        "traffic" => traffic(&session, args.threads, args.rounds),
        _ => return usage(),
    };
    if let Err(v) = &outcome {
        println!("stopped: {v}");
    }
    let report: Report = session.unload();
    println!("{report}");
    if outcome.is_ok() && report.violations.is_empty() && report.leaked.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn frames() -> Vec<frames::Frame> {
    let ports = [(proto::PROTO_TCP, 80), (proto::PROTO_UDP, 53), (proto::PROTO_TCP, 443)];
    frames::mixed(&ports, 40000).iter().map(FrameSpec::build).collect()
}

fn nbls(frames: &[frames::Frame]) -> Vec<NblSpec> {
    frames.chunks(2).map(|c| NblSpec { frames: c.to_vec(), layout: Layout::every(9, 200), loopback: false }).collect()
}

fn adapters(s: &Session) -> Result<[AdapterId; 2], Violation> {
    let a = [s.add_adapter(AdapterSpec::named("eth0")), s.add_adapter(AdapterSpec::named("eth1"))];
    for id in a {
        s.start(id)?;
    }
    Ok(a)
}

fn round(s: &Session, a: AdapterId, frames: &[frames::Frame], i: usize) -> Result<(), Violation> {
    let at = [At::Passive, At::Dispatch, At::DispatchUnflagged][i % 3];
    s.send(a, nbls(frames), at)?;
    s.receive(a, nbls(frames), At::Dispatch, i % 2 == 0)?;
    Ok(())
}

fn smoke(s: &Session) -> Result<(), Violation> {
    let ids = adapters(s)?;
    let h = s.open(proto::USER_DEVICE_PATH).map_err(|e| Violation::new("open failed", 0, [0; 4], format!("{e:?}")))?;
    let mut req = vec![0u8; proto::PortRequest::SIZE];
    proto::PortRequest { version: proto::PROTOCOL_VERSION, protocol: proto::PROTO_TCP, reserved: 0, port: 80 }
        .write(&mut req);
    let bind = s.ioctl(h, proto::IOCTL_BIND_PORT, &req, 0);
    println!("bind TCP/80: {bind:?}");
    let f = frames();
    for (i, a) in ids.iter().enumerate() {
        for r in 0..3 {
            round(s, *a, &f, i + r)?;
        }
    }
    let stats = s.ioctl(h, proto::IOCTL_GET_ENDPOINT_STATS, &[], proto::EndpointStats::SIZE as u32);
    if let Ok(r) = &stats {
        println!("endpoint stats: {:?}", proto::EndpointStats::read(&r.output));
    }
    let _ = s.close(h);
    for a in ids {
        s.pause(a)?;
        s.detach(a)?;
    }
    Ok(())
}

fn traffic(s: &Session, threads: usize, rounds: usize) -> Result<(), Violation> {
    let ids = adapters(s)?;
    let f = frames();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                scope.spawn(move || (0..rounds).try_for_each(|i| round(s, ids[t % 2], f, i)))
            })
            .collect();
        for _ in 0..rounds / 10 {
            s.pause(ids[0])?;
            s.restart(ids[0])?;
        }
        workers.into_iter().try_for_each(|w| w.join().expect("worker panicked"))
    })
}
