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
    /// Instructions executed at each address of the anonymous object (the
    /// driver image), for [`crate::profile`].
    pub by_address: HashMap<u64, u64>,
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
                let mut words = line.split_whitespace();
                let address = words.next().and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
                let ir = words.nth(positions - 1).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                *dump.by_object.entry(object.clone()).or_default() += ir;
                if let (ANONYMOUS, Some(address)) = (object.as_str(), address) {
                    *dump.by_address.entry(address).or_default() += ir;
                }
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

    /// Instructions inside the driver image proper (`base=`/`size=` of the
    /// label): the anonymous object also holds code that is not the
    /// driver's (the harness's call trampolines). `None` without a range.
    pub fn image_instructions(&self) -> Option<u64> {
        let hex = |name| self.field(name).and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok());
        let (base, size) = (hex("base")?, hex("size")?);
        Some(self.by_address.iter().filter(|(a, _)| (base..base + size).contains(*a)).map(|(_, n)| n).sum())
    }

    /// The `packets=N` of the label.
    pub fn packets(&self) -> Option<u64> {
        self.field("packets")?.parse().ok()
    }

    /// The value of `name=value` in the label.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.label.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
    }

    /// The label's configuration: (driver, way, bound ports, NBLs per chain).
    pub fn configuration(&self) -> Option<(String, String, u32, u32)> {
        let rest = self.label.strip_prefix("bench ")?;
        let words: Vec<&str> = rest.split_whitespace().collect();
        let [driver, way, ..] = words[..] else { return None };
        let ports = self.field("ports")?.parse().ok()?;
        // Dumps from before chains were measured pass one NBL at a time.
        let chain = self.field("chain").map_or(Some(1), |c| c.parse().ok())?;
        Some((driver.to_string(), way.to_string(), ports, chain))
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

/// One measured configuration: (path, bound ports, NBLs per chain) and
/// instructions per packet (per NBL) in driver code, by driver.
pub type Rows = BTreeMap<(String, u32, u32), BTreeMap<String, f64>>;

/// Reads and parses every callgrind file among `files`.
pub fn read_dumps(files: &[PathBuf]) -> Vec<Dump> {
    files
        .iter()
        .map(|f| Dump::parse(&std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()))))
        .collect()
}

/// Instructions per packet in the anonymous object (the driver image and
/// the harness's trampolines: the method of the first tables) of every
/// labelled dump among `files`, by (path, bound ports, chain length) and
/// driver.
pub fn per_packet(files: &[PathBuf]) -> Rows {
    rows(&read_dumps(files), |d| Some(d.driver_instructions()))
}

/// Instructions per packet inside the driver image only.
pub fn per_packet_in_image(dumps: &[Dump]) -> Rows {
    rows(dumps, Dump::image_instructions)
}

fn rows(dumps: &[Dump], count: impl Fn(&Dump) -> Option<u64>) -> Rows {
    let mut rows = Rows::new();
    for dump in dumps {
        let (Some(packets), Some((driver, way, ports, chain)), Some(n)) =
            (dump.packets(), dump.configuration(), count(dump))
        else {
            continue;
        };
        rows.entry((way, ports, chain)).or_default().insert(driver, n as f64 / packets as f64);
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
/// PortWatch (and, when measured, the `portwatch-before` image) next to the
/// pass-through baseline, for every labelled dump among `files`.
pub fn print_summary(files: &[PathBuf]) {
    println!("All anonymous memory (the driver image and the harness's trampolines):\n");
    print_rows(&per_packet(files));
    println!("\nThe driver image only:\n");
    print_rows(&per_packet_in_image(&read_dumps(files)));
}

fn print_rows(rows: &Rows) {
    let before = rows.values().any(|r| r.contains_key("portwatch-before"));
    let cell = |r: &BTreeMap<String, f64>, d: &str| r.get(d).map_or("-".to_string(), |v| format!("{v:.1}"));
    if before {
        println!("| path | bound ports | NBLs per chain | pass-through | PortWatch before | PortWatch | PortWatch - pass-through |\n|---|---|---|---|---|---|---|");
    } else {
        println!("| path | bound ports | NBLs per chain | pass-through | PortWatch | PortWatch - pass-through |\n|---|---|---|---|---|---|");
    }
    for ((way, ports, chain), by_driver) in rows {
        let delta = match (by_driver.get("portwatch"), by_driver.get("passthrough")) {
            (Some(p), Some(b)) => format!("{:.1}", p - b),
            _ => "-".into(),
        };
        let old = if before { format!(" {} |", cell(by_driver, "portwatch-before")) } else { String::new() };
        println!(
            "| {way} | {ports} | {chain} | {} |{old} {} | {delta} |",
            cell(by_driver, "passthrough"),
            cell(by_driver, "portwatch")
        );
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
        assert_eq!(dump.by_address[&0x4000], 12);
        assert_eq!(dump.by_address[&0x4008], 4, "the call's inclusive cost is not the driver's");
        assert_eq!(dump.configuration(), Some(("portwatch".into(), "send".into(), 100, 1)));
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
        let row = &rows[&("send".to_string(), 100, 1)];
        assert_eq!(row["portwatch"], 24.0 / 4.0);
        assert_eq!(row["passthrough"], 12.0 / 4.0);
        assert_eq!(rows.len(), 1);
    }
}
