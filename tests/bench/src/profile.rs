//! Where the driver's instructions go: attributes the per-address costs of
//! `portwatch-bench datapath` callgrind dumps to the driver's functions and
//! source lines.
//!
//! The harness maps the driver into anonymous memory, so callgrind knows
//! only addresses. Each dump's label carries the mapping's base
//! (`base=0x…`, from `Session::image_range`); an address minus that base is
//! an offset into the image, and the image's preferred base plus the offset
//! is the address its PDB describes. `llvm-symbolizer` (LLVM's native PDB
//! reader) turns those into inlined call stacks: the outermost frame is the
//! compiled function (one `.pdata` entry), the innermost the source line.
//! The image must be built with line tables
//! (`CARGO_PROFILE_DRIVER_DEBUG=line-tables-only`, which leaves the code as
//! it is: only the PDB grows).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::callgrind::Dump;

/// One symbolized address: its frames, innermost first, as
/// (function, "file:line").
type Frames = Vec<(String, String)>;

/// Symbolizes `addresses` (preferred-base addresses of `image`) with
/// `llvm-symbolizer`, which reads the PDB next to the image.
pub fn symbolize(image: &Path, addresses: &[u64]) -> Result<HashMap<u64, Frames>, String> {
    let mut child = Command::new("llvm-symbolizer")
        .arg(format!("--obj={}", image.display()))
        .args(["--inlining", "--demangle", "--output-style=LLVM"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("llvm-symbolizer: {e} (install llvm)"))?;
    let input: String = addresses.iter().map(|a| format!("{a:#x}\n")).collect();
    child.stdin.take().ok_or("stdin")?.write_all(input.as_bytes()).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let blocks = text.split("\n\n").filter(|b| !b.trim().is_empty());
    let mut result = HashMap::new();
    for (address, block) in addresses.iter().zip(blocks) {
        let lines: Vec<&str> = block.lines().collect();
        let frames =
            lines.chunks(2).map(|pair| (pair[0].to_string(), short_path(pair.get(1).unwrap_or(&"")))).collect();
        result.insert(*address, frames);
    }
    Ok(result)
}

/// `/…/driver/portwatch/src/x.rs:12:0` -> `portwatch/src/x.rs:12`;
/// `/rustc/<hash>/library\core\src\x.rs:3:0` -> `core/src/x.rs:3`.
fn short_path(location: &str) -> String {
    let location = location.replace('\\', "/");
    let location = location.strip_suffix(":0").unwrap_or(&location);
    for marker in ["/driver/", "/library/"] {
        if let Some((_, rest)) = location.split_once(marker) {
            return rest.to_string();
        }
    }
    location.to_string()
}

/// Instructions per packet of one configuration, by function and by line.
#[derive(Debug, Default)]
pub struct Profile {
    /// The dump's configuration (driver, way, ports, chain).
    pub label: String,
    /// Per compiled function (outermost frame).
    pub functions: BTreeMap<String, f64>,
    /// Per source function (innermost inlined frame).
    pub inlined: BTreeMap<String, f64>,
    /// Per source line (innermost frame: "function @ file:line").
    pub lines: BTreeMap<String, f64>,
    /// Total per packet in the image.
    pub total: f64,
    /// Per packet in anonymous memory outside the image (not the driver's).
    pub outside: f64,
}

/// Profiles every dump of `driver` (the label's driver name) in `dumps`,
/// attributing addresses with `image` (the very image that ran).
pub fn profile(image: &Path, driver: &str, dumps: &[Dump]) -> Result<Vec<Profile>, String> {
    let preferred = crate::pe::Image::open(image).map_err(|e| e.to_string())?.base();
    let mut profiles = Vec::new();
    for dump in dumps {
        let Some((d, way, ports, chain)) = dump.configuration() else { continue };
        if d != driver {
            continue;
        }
        let hex = |name| dump.field(name).and_then(|b| u64::from_str_radix(b.trim_start_matches("0x"), 16).ok());
        let (Some(base), Some(size), Some(packets)) = (hex("base"), hex("size"), dump.packets()) else {
            return Err(format!("{}: no base=, size= or packets= in the label", dump.label));
        };
        let inside = |a: &u64| (base..base + size).contains(a);
        let mut addresses: Vec<u64> =
            dump.by_address.keys().filter(|a| inside(a)).map(|a| a - base + preferred).collect();
        addresses.sort_unstable();
        let frames = symbolize(image, &addresses)?;
        let mut p = Profile { label: format!("{d} {way} ports={ports} chain={chain}"), ..Profile::default() };
        for (address, ir) in &dump.by_address {
            let per = *ir as f64 / packets as f64;
            if !inside(address) {
                p.outside += per;
                continue;
            }
            p.total += per;
            let unknown = vec![("??".to_string(), "??".to_string())];
            let f = frames.get(&(address - base + preferred)).filter(|f| !f.is_empty()).unwrap_or(&unknown);
            let outer = &f[f.len() - 1].0;
            let (inner, line) = &f[0];
            *p.functions.entry(outer.clone()).or_default() += per;
            *p.lines.entry(format!("{inner} @ {line}")).or_default() += per;
            *p.inlined.entry(inner.clone()).or_default() += per;
        }
        profiles.push(p);
    }
    Ok(profiles)
}

/// Prints each profile: functions, then the `top` source lines.
pub fn print(profiles: &[Profile], top: usize) {
    for p in profiles {
        println!(
            "#### {} ({:.1} instructions per packet in the image; {:.1} in other anonymous memory)\n",
            p.label, p.total, p.outside
        );
        println!("| function | per packet |\n|---|---|");
        for (name, per) in sorted(&p.functions) {
            println!("| `{name}` | {per:.1} |");
        }
        println!("\n| source function (innermost inlined frame) | per packet |\n|---|---|");
        for (name, per) in sorted(&p.inlined) {
            println!("| `{name}` | {per:.1} |");
        }
        println!("\n| source line (innermost inlined frame) | per packet |\n|---|---|");
        for (name, per) in sorted(&p.lines).into_iter().take(top) {
            println!("| `{name}` | {per:.1} |");
        }
        println!();
    }
}

fn sorted(map: &BTreeMap<String, f64>) -> Vec<(&String, f64)> {
    let mut v: Vec<(&String, f64)> = map.iter().map(|(k, v)| (k, *v)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shortened() {
        assert_eq!(short_path("/work/x/driver/portwatch/src/nbl.rs:12:0"), "portwatch/src/nbl.rs:12");
        assert_eq!(short_path("/rustc/abc/library\\core\\src\\ptr\\mod.rs:805:0"), "core/src/ptr/mod.rs:805");
    }
}
