//! Drives a driver through the harness for the data-path benchmarks: load,
//! one adapter, N bound UDP ports, then packets sent or received one NBL
//! (one NET_BUFFER) at a time at DISPATCH_LEVEL.

use std::path::Path;
use std::time::{Duration, Instant};

use portwatch_harness::frames::{FrameSpec, IPPROTO_UDP};
use portwatch_harness::io::Handle;
use portwatch_harness::nbl::NblSpec;
use portwatch_harness::ndis::{AdapterId, AdapterSpec, At};
use portwatch_harness::session::{Options, Session};
use portwatch_proto::{
    EnableEvents, Wire, IOCTL_BIND_PORT, IOCTL_ENABLE_EVENTS, MAX_BINDINGS_PER_ENDPOINT, MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION, PROTO_UDP,
};

/// The first bound port; ports `BASE_PORT .. BASE_PORT + n` are bound.
pub const BASE_PORT: u16 = 20_000;
/// The peer port of every packet (never bound).
pub const PEER_PORT: u16 = 9;

/// Which way packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// FilterSendNetBufferLists.
    Send,
    /// FilterReceiveNetBufferLists.
    Receive,
}

impl Way {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Way::Send => "send",
            Way::Receive => "receive",
        }
    }
}

/// A loaded driver with one running adapter and its bound ports.
pub struct Bench {
    /// The session.
    pub session: Session,
    /// The adapter packets go through.
    pub adapter: AdapterId,
    handles: Vec<Handle>,
}

impl Bench {
    /// Loads `driver`, starts one adapter, and (for PortWatch,
    /// `control_device`) binds `ports` UDP ports from [`BASE_PORT`].
    pub fn start(driver: &Path, control_device: bool, ports: u16) -> Bench {
        let options = Options { require_device: control_device, ..Options::default() };
        let session = Session::load(driver, options).unwrap_or_else(|e| panic!("load {}: {e}", driver.display()));
        let adapter = session.add_adapter(AdapterSpec::named("bench0"));
        session.start(adapter).expect("attach and restart");
        let mut bench = Bench { session, adapter, handles: Vec::new() };
        if control_device {
            bench.bind(ports);
        }
        bench
    }

    fn bind(&mut self, ports: u16) {
        let per_handle = MAX_BINDINGS_PER_ENDPOINT as u16;
        for port in BASE_PORT..BASE_PORT + ports {
            if (port - BASE_PORT) % per_handle == 0 {
                self.handles.push(self.session.open(r"\\.\PortWatch").expect("open the control device"));
            }
            let handle = *self.handles.last().expect("opened");
            let result = self.session.ioctl(handle, IOCTL_BIND_PORT, &port_request(port), 0).expect("bind IOCTL");
            assert_eq!(result.status, 0, "binding UDP port {port} failed with {:#x}", result.status);
        }
    }

    /// Enables events, with a ring of `records`, on the handle that bound
    /// `port`.
    pub fn enable_events(&self, port: u16, records: u32) {
        let handle = self.handles[usize::from((port - BASE_PORT) / MAX_BINDINGS_PER_ENDPOINT as u16)];
        let mut input = vec![0; EnableEvents::SIZE];
        EnableEvents { version: PROTOCOL_VERSION, ring_records: records }.write(&mut input);
        let result = self.session.ioctl(handle, IOCTL_ENABLE_EVENTS, &input, 0).expect("enable IOCTL");
        assert_eq!(result.status, 0, "enabling events failed with {:#x}", result.status);
    }

    /// Passes one packet (a one-NBL chain) through the driver.
    pub fn packet(&self, way: Way, nbl: &NblSpec) {
        self.chain(way, std::slice::from_ref(nbl));
    }

    /// Passes one chain of NBLs through the driver in one call (the specs
    /// are borrowed: sending them costs the caller no copy).
    pub fn chain(&self, way: Way, nbls: &[NblSpec]) {
        let outcome = match way {
            Way::Send => self.session.send_slice(self.adapter, nbls, At::Dispatch),
            Way::Receive => self.session.receive_slice(self.adapter, nbls, At::Dispatch, false),
        }
        .expect("no verifier violation");
        assert!(outcome.iter().all(|o| o.delivered), "the filter dropped a packet");
    }

    /// Closes every handle, unloads, and fails on any violation or leak.
    pub fn finish(self) {
        for h in &self.handles {
            self.session.close(*h).expect("close");
        }
        let report = self.session.unload();
        assert!(report.violations.is_empty() && report.leaked.is_empty(), "{report}");
    }
}

/// One UDP packet from [`PEER_PORT`] to `dst_port`, as a one-NET_BUFFER NBL.
pub fn udp_packet(dst_port: u16) -> NblSpec {
    NblSpec::of(vec![FrameSpec::ipv4(IPPROTO_UDP, PEER_PORT, dst_port).build()])
}

/// The wire form of a `PortRequest` for UDP `port`, in the oldest revision
/// still accepted, so that older builds of the driver can be measured too.
fn port_request(port: u16) -> Vec<u8> {
    let mut out = MIN_PROTOCOL_VERSION.to_le_bytes().to_vec();
    out.extend_from_slice(&[PROTO_UDP, 0]);
    out.extend_from_slice(&port.to_le_bytes());
    out
}

/// Packets per second through `bench` with `threads` threads, each sending
/// `way` packets to a bound port, in chains of `chain` NBLs, for
/// `duration`.
pub fn throughput(bench: &Bench, way: Way, threads: usize, chain: usize, duration: Duration) -> f64 {
    let start = Instant::now();
    let packets: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let specs = vec![udp_packet(BASE_PORT); chain];
                    let mut n = 0u64;
                    while start.elapsed() < duration {
                        for _ in 0..64 {
                            bench.chain(way, &specs);
                        }
                        n += 64 * chain as u64;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    packets as f64 / start.elapsed().as_secs_f64()
}
