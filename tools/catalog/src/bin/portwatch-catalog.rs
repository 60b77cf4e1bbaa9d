//! `portwatch-catalog`: makes and lists driver package catalogs.
//!
//! ```text
//! portwatch-catalog make <package-dir> <inf-name> <unsigned.cat> <unix-time>
//! portwatch-catalog list <catalog.cat>
//! ```
//!
//! `make` writes the unsigned catalog of the package (sign it with
//! `osslsigncode sign -in unsigned.cat`); `list` prints what a catalog holds.

use portwatch_catalog::{read, Catalog, Error};
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: portwatch-catalog make <package-dir> <inf-name> <unsigned.cat> <unix-time>\n       portwatch-catalog list <catalog.cat>";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn run(args: &[String]) -> Result<(), Error> {
    match args {
        [cmd, dir, inf, out, time] if cmd == "make" => {
            let made_at: u64 = time.parse().map_err(|e| format!("unix time {time:?}: {e}"))?;
            let catalog = Catalog::for_package(Path::new(dir), inf, made_at)?;
            std::fs::write(out, catalog.to_unsigned_der()?).map_err(|e| format!("{out}: {e}"))?;
            for member in &catalog.members {
                println!("portwatch-catalog: {} {:?} {}", member.name, member.kind, hex(&member.hash));
            }
            Ok(())
        }
        [cmd, cat] if cmd == "list" => {
            let listing = read(&std::fs::read(cat).map_err(|e| format!("{cat}: {e}"))?)?;
            for (name, value) in &listing.attributes {
                println!("attribute {name} = {value}");
            }
            for member in &listing.members {
                println!(
                    "member {} tag {} kind {:?} OSAttr {}",
                    member.file.as_deref().unwrap_or("?"),
                    hex(&member.tag),
                    member.kind,
                    member.os_attr.as_deref().unwrap_or("?"),
                );
            }
            println!("signers {} certificates {}", listing.signers, listing.certificates.len());
            Ok(())
        }
        _ => Err(USAGE.into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("portwatch-catalog: {err}");
            ExitCode::FAILURE
        }
    }
}
