//! Reads callgrind dumps (`--dump-instr=yes --compress-pos=no`) made by
//! `portwatch-bench datapath` and reports instructions per packet executed
//! in the driver image.
//!
//! The harness maps the driver into anonymous memory, which callgrind
//! names `???`; everything else in the process (the harness, its NDIS
//! model, libc) is in named objects. So "instructions in object `???`" is
//! the driver's own code.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// The object name callgrind gives anonymous mappings.
pub const ANONYMOUS: &str = "???";

/// One dump: its label and instructions (self cost) per object.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    /// The `DUMP_STATS_AT` label.
    pub label: String,
    /// Instructions executed in each object.
    pub by_object: HashMap<String, u64>,
}

impl Dump {
    /// Parses one callgrind output file.
    pub fn parse(text: &str) -> Dump {
        let mut dump = Dump::default();
        let mut names: HashMap<String, String> = HashMap::new();
        let mut object = String::new();
        let mut skip_next = false;
        let mut positions = 1;
        for line in text.lines() {
            if let Some(kinds) = line.strip_prefix("positions:") {
                positions = kinds.split_whitespace().count();
            } else if let Some(label) = line.strip_prefix("desc: Trigger: Client Request: ") {
                dump.label = label.to_string();
            } else if let Some(spec) = line.strip_prefix("ob=") {
                object = resolve(&mut names, spec);
            } else if line.starts_with("cob=") || line.starts_with("cfi=") || line.starts_with("cfn=") {
                if let Some(spec) = line.split_once('=').map(|(_, s)| s) {
                    if line.starts_with("cob=") {
                        resolve(&mut names, spec);
                    }
                }
            } else if line.starts_with("calls=") {
                skip_next = true; // the next line is the call's inclusive cost
            } else if line.starts_with("0x") {
                if std::mem::take(&mut skip_next) {
                    continue;
                }
                let ir = line.split_whitespace().nth(positions).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                *dump.by_object.entry(object.clone()).or_default() += ir;
            }
        }
        dump
    }

    /// Instructions in the driver image.
    pub fn driver_instructions(&self) -> u64 {
        self.by_object.get(ANONYMOUS).copied().unwrap_or(0)
    }

    /// Instructions in every object: the whole process.
    pub fn total_instructions(&self) -> u64 {
        self.by_object.values().sum()
    }

    /// The `packets=N` of the label.
    pub fn packets(&self) -> Option<u64> {
        self.label.split_whitespace().find_map(|w| w.strip_prefix("packets=")?.parse().ok())
    }
}

/// `(id) name` defines an id, `(id)` uses one, a bare name is a name.
fn resolve(names: &mut HashMap<String, String>, spec: &str) -> String {
    match spec.strip_prefix('(').and_then(|s| s.split_once(')')) {
        Some((id, name)) if !name.trim().is_empty() => {
            names.insert(id.to_string(), name.trim().to_string());
            name.trim().to_string()
        }
        Some((id, _)) => names.get(id).cloned().unwrap_or_default(),
        None => spec.to_string(),
    }
}

/// One measured configuration: (path, bound ports) and instructions per
/// packet in driver code, by driver.
type Rows = BTreeMap<(String, u32), BTreeMap<String, f64>>;

/// Instructions per packet in the driver image of every labelled dump
/// among `files`, by (path, bound ports) and driver.
pub fn per_packet(files: &[PathBuf]) -> Rows {
    let mut rows = Rows::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let dump = Dump::parse(&text);
        let (Some(packets), Some(rest)) = (dump.packets(), dump.label.strip_prefix("bench ")) else { continue };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let [driver, way, ports, ..] = words[..] else { continue };
        let Ok(ports) = ports.trim_start_matches("ports=").parse::<u32>() else { continue };
        let per_packet = dump.driver_instructions() as f64 / packets as f64;
        rows.entry((way.to_string(), ports)).or_default().insert(driver.to_string(), per_packet);
    }
    rows
}

/// Whole-process instructions per packet of one `portwatch-bench overhead`
/// configuration, and the driver's share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overhead {
    /// Every instruction of the process, per packet.
    pub total: f64,
    /// Instructions in the driver image, per packet.
    pub driver: f64,
}

impl Overhead {
    /// The harness's own cost per packet: everything but the driver.
    pub fn harness(&self) -> f64 {
        self.total - self.driver
    }
}

/// Every `overhead <driver> <way> packets=N` dump among `files`, by
/// (driver, way).
pub fn overhead(files: &[PathBuf]) -> BTreeMap<(String, String), Overhead> {
    let mut rows = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let dump = Dump::parse(&text);
        let (Some(packets), Some(rest)) = (dump.packets(), dump.label.strip_prefix("overhead ")) else { continue };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let [driver, way, ..] = words[..] else { continue };
        let per = |n: u64| n as f64 / packets as f64;
        let row = Overhead { total: per(dump.total_instructions()), driver: per(dump.driver_instructions()) };
        rows.insert((driver.to_string(), way.to_string()), row);
    }
    rows
}

/// Prints the table of [`overhead`].
pub fn print_overhead(files: &[PathBuf]) {
    println!("| driver | path | whole process | driver's code | harness |\n|---|---|---|---|---|");
    for ((driver, way), o) in overhead(files) {
        println!("| {driver} | {way} | {:.0} | {:.0} | {:.0} |", o.total, o.driver, o.harness());
    }
}

/// Prints a markdown table of instructions per packet in the driver image,
/// PortWatch next to the pass-through baseline, for every labelled dump
/// among `files`.
/// Images labelled otherwise (`baseline`: another build of PortWatch) get a
/// column of their own after these.
pub fn print_summary(files: &[PathBuf]) {
    let rows = per_packet(files);
    let others: std::collections::BTreeSet<String> =
        rows.values().flat_map(|d| d.keys()).filter(|d| *d != "portwatch" && *d != "passthrough").cloned().collect();
    if !others.is_empty() {
        let names: Vec<_> = others.iter().map(String::as_str).collect();
        println!(
            "| path | bound ports | PortWatch | {} |\n|---|---|---|{}",
            names.join(" | "),
            "---|".repeat(names.len())
        );
        for ((way, ports), by_driver) in &rows {
            let cell = |d: &str| by_driver.get(d).map_or("-".to_string(), |v| format!("{v:.1}"));
            let rest: Vec<_> = names.iter().map(|d| cell(d)).collect();
            println!("| {way} | {ports} | {} | {} |", cell("portwatch"), rest.join(" | "));
        }
        return;
    }
    println!("| path | bound ports | pass-through | PortWatch | PortWatch - pass-through |\n|---|---|---|---|---|");
    for ((way, ports), by_driver) in rows {
        let cell = |d: &str| by_driver.get(d).map_or("-".to_string(), |v| format!("{v:.1}"));
        let delta = match (by_driver.get("portwatch"), by_driver.get("passthrough")) {
            (Some(p), Some(b)) => format!("{:.1}", p - b),
            _ => "-".into(),
        };
        println!("| {way} | {ports} | {} | {} | {delta} |", cell("passthrough"), cell("portwatch"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape callgrind writes with `--dump-instr=yes --compress-pos=no
    /// --compress-strings=no`: self costs per instruction, and `calls=`
    /// lines whose following line is the callee's inclusive cost.
    const SAMPLE: &str = "\
version: 1
desc: Trigger: Client Request: bench portwatch send ports=100 packets=4
positions: instr line
events: Ir
ob=/tmp/portwatch-bench
fl=run.rs
fn=portwatch_bench::run::Bench::packet
0x10 0 40
cob=???
cfn=0x4000
calls=4 0x4000 0
0x14 0 400
ob=???
fl=???
fn=0x4000
0x4000 0 12
0x4004 0 8
cob=/tmp/portwatch-bench
cfn=portwatch_harness::ndis::data::NdisFSendNetBufferLists
calls=4 0x90 0
0x4008 0 1000
0x4008 0 4
";

    #[test]
    fn counts_self_cost_of_the_anonymous_object_only() {
        let dump = Dump::parse(SAMPLE);
        assert_eq!(dump.packets(), Some(4));
        assert_eq!(dump.driver_instructions(), 12 + 8 + 4);
        assert_eq!(dump.by_object["/tmp/portwatch-bench"], 40);
    }

    #[test]
    fn overhead_counts_every_object_and_the_driver_apart() {
        let dir = std::env::temp_dir().join(format!("pw-overhead-parse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("a");
        std::fs::write(&file, SAMPLE.replace("bench portwatch send ports=100", "overhead portwatch send"))
            .expect("write");
        let rows = overhead(std::slice::from_ref(&file));
        std::fs::remove_dir_all(&dir).ok();
        let o = rows[&("portwatch".to_string(), "send".to_string())];
        assert_eq!(o.total, (40.0 + 12.0 + 8.0 + 4.0) / 4.0);
        assert_eq!(o.driver, 24.0 / 4.0);
        assert_eq!(o.harness(), 40.0 / 4.0);
    }

    #[test]
    fn pairs_each_configuration_with_the_baseline() {
        let dir = std::env::temp_dir().join(format!("pw-callgrind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let baseline = SAMPLE.replace("bench portwatch send ports=100", "bench passthrough send ports=100");
        let files = [dir.join("a"), dir.join("b")];
        std::fs::write(&files[0], SAMPLE).expect("write");
        std::fs::write(&files[1], baseline.replace("0x4000 0 12", "0x4000 0 0")).expect("write");
        let rows = per_packet(&files);
        std::fs::remove_dir_all(&dir).ok();
        let row = &rows[&("send".to_string(), 100)];
        assert_eq!(row["portwatch"], 24.0 / 4.0);
        assert_eq!(row["passthrough"], 12.0 / 4.0);
        assert_eq!(rows.len(), 1);
    }
}
