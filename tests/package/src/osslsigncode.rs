//! Running `osslsigncode` (Debian package `osslsigncode`) from the tests.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The command that installs osslsigncode, printed when the tests cannot.
pub const INSTALL_COMMAND: &str = "sudo apt-get install -y osslsigncode";

fn present() -> bool {
    Command::new("osslsigncode").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Makes sure osslsigncode is installed: installs it with apt-get when
/// running as root (or with password-less sudo), else fails with the
/// command to run.
pub fn ensure() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        if present() {
            return Ok(());
        }
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
        let apt = |args: &[&str]| {
            let mut command = if root {
                Command::new("apt-get")
            } else {
                let mut c = Command::new("sudo");
                c.args(["-n", "apt-get"]);
                c
            };
            command.env("DEBIAN_FRONTEND", "noninteractive").args(args).status().is_ok_and(|s| s.success())
        };
        if apt(&["update"]) && apt(&["install", "-y", "--no-install-recommends", "osslsigncode"]) && present() {
            Ok(())
        } else {
            Err(format!("osslsigncode is missing and could not be installed: run `{INSTALL_COMMAND}`"))
        }
    });
    if let Err(message) = ready {
        panic!("{message}");
    }
}

/// The result of one `osslsigncode` run.
#[derive(Debug)]
pub struct Outcome {
    /// Whether it exited with 0.
    pub success: bool,
    /// stdout and stderr, together.
    pub output: String,
}

impl Outcome {
    /// Whether osslsigncode reported a verified signature.
    pub fn verified(&self) -> bool {
        self.success && self.output.contains("Signature verification: ok")
    }

    /// The value of the first `<label> : <hex>` line (e.g. "Current message digest").
    pub fn hex_field(&self, label: &str) -> Option<String> {
        self.output
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    }
}

/// Runs osslsigncode with `args`.
pub fn run(args: &[&str]) -> Outcome {
    ensure();
    let output = Command::new("osslsigncode").args(args).output().expect("osslsigncode runs");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Outcome { success: output.status.success(), output: text }
}

/// `osslsigncode verify -CAfile <ca> -catalog <cat> -in <file>`.
pub fn verify_in_catalog(ca_pem: &Path, catalog: &Path, file: &Path) -> Outcome {
    run(&[
        "verify",
        "-CAfile",
        &ca_pem.to_string_lossy(),
        "-catalog",
        &catalog.to_string_lossy(),
        "-in",
        &file.to_string_lossy(),
    ])
}

/// `osslsigncode verify -CAfile <ca> -in <file>` (the file's own signature).
pub fn verify_embedded(ca_pem: &Path, file: &Path) -> Outcome {
    run(&["verify", "-CAfile", &ca_pem.to_string_lossy(), "-in", &file.to_string_lossy()])
}
