//! The driver-facing subcommands (`status`, `bind`, `unbind`, `port-name`,
//! `local-address`, `watch`) against the real portwatch.sys in the harness:
//! the same code `portwatch.exe` runs on Windows against `\\.\PortWatch`.
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::time::Duration;

use portwatch_cli::cli::PortSpec;
use portwatch_cli::device;
use portwatch_scenarios::harness_target::{driver_path, HarnessConfig, HarnessTarget};
use portwatch_scenarios::Target;

fn target() -> HarnessTarget {
    HarnessTarget::load(HarnessConfig::new(&driver_path(), 2)).expect("the driver loads in the harness")
}

fn output(f: impl FnOnce(&mut Vec<u8>) -> Result<(), portwatch_cli::Failure>) -> String {
    let mut out = Vec::new();
    f(&mut out).unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8(out).expect("UTF-8")
}

/// Runs `watch` for 4 events while another thread sends UDP packets to
/// port 5000 until it returns.
fn watch_with_traffic(t: &HarnessTarget, ports: &[PortSpec], json: bool) -> String {
    use portwatch_scenarios::target::{Adapter, Direction, Level, NblSpec, PacketSpec};
    let done = std::sync::atomic::AtomicBool::new(false);
    let options = device::WatchOptions { pending: 3, ring: 16, count: Some(4), duration: None, json };
    std::thread::scope(|s| {
        s.spawn(|| {
            let p = PacketSpec {
                protocol: portwatch_proto::PROTO_UDP,
                src_port: 9,
                dst_port: 5000,
                ipv6: false,
                vlan: false,
                payload_len: 8,
                truncate_to: None,
            };
            let nbl = NblSpec { packets: vec![p], loopback: false, fragmented: false };
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                t.inject(Adapter(0), Direction::Send, std::slice::from_ref(&nbl), Level::Dispatch, false).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let out = output(|o| device::watch(t, ports, &options, &|| false, o));
        done.store(true, std::sync::atomic::Ordering::Release);
        out
    })
}

#[test]
fn subcommands_against_the_real_driver() {
    let t = target();
    let udp: PortSpec = "udp:5000".parse().unwrap();
    let tcp: PortSpec = "tcp:443".parse().unwrap();

    let status = output(|o| device::status(&t, &[udp], o));
    assert!(status.starts_with("PortWatch driver "), "{status}");
    assert!(status.contains("filter modules: 2"), "{status}");
    assert_eq!(status.matches("Running").count(), 2, "{status}");
    assert!(status.contains("udp:5000   endpoints   0"), "{status}");

    let bound = output(|o| device::bind(&t, &[udp, tcp], 0, o));
    assert!(bound.contains("bound udp:5000\nbound tcp:443\nendpoint: 2 ports bound"), "{bound}");

    let unbound = output(|o| device::unbind(&t, &[udp], o));
    assert!(unbound.contains("a second unbind answered STATUS_NOT_FOUND"), "{unbound}");

    assert_eq!(output(|o| device::port_name(&t, Some("lab port"), o)), "port name: \"lab port\"\n");
    assert_eq!(output(|o| device::port_name(&t, None, o)), "port name: \"lab port\"\n");

    let address = output(|o| device::local_address(&t, "[fe80::1]:443".parse().unwrap(), o));
    assert_eq!(address, "local address: [fe80::1]:443 (read back)\n");

    for json in [false, true] {
        let watched = watch_with_traffic(&t, &[udp, tcp], json);
        assert_eq!(watched.lines().count(), 4, "{watched}");
        let want =
            if json { "\"src\":\"10.0.0.1:9\",\"dst\":\"10.0.0.2:5000\"" } else { "udp 10.0.0.1:9 -> 10.0.0.2:5000" };
        assert!(watched.lines().all(|l| l.contains(want) && l.contains("5000")), "{watched}");
    }

    // --duration with no traffic: 16 reads pend, the time runs out, every
    // read is cancelled and waited for (unload below finds no IRP left).
    let options = device::WatchOptions {
        pending: 16,
        ring: 16,
        count: None,
        duration: Some(Duration::from_millis(300)),
        json: false,
    };
    let started = std::time::Instant::now();
    assert_eq!(output(|o| device::watch(&t, &[udp], &options, &|| false, o)), "");
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    // A stop request (Ctrl+C) ends it the same way.
    let options = device::WatchOptions { duration: None, ..options };
    assert_eq!(output(|o| device::watch(&t, &[udp], &options, &|| true, o)), "");

    let too_long = "x".repeat(300);
    let mut sink = Vec::new();
    let e = device::port_name(&t, Some(&too_long), &mut sink).unwrap_err();
    assert!(e.message.contains("STATUS_INVALID_PARAMETER"), "{e}");

    let health = t.unload().expect("unload");
    assert!(health.problems().is_empty(), "{:?}", health.problems());
}
