//! `portwatch.exe`, cross-built for `x86_64-pc-windows-gnu` with mingw-w64,
//! run under Wine: `--help` and `stress --help` print and exit 0, `status`
//! (and `stress`, `watch`) fail cleanly with "PortWatch is not installed"
//! (CreateFile's error on `\\.\PortWatch`, exit 4), `install` checks the
//! package and the INF's component id before running its first tool, a
//! missing tool is a message; never a panic.
//!
//! Needs Wine (`apt-get install wine wine64`), mingw-w64
//! (`apt-get install gcc-mingw-w64-x86-64`) and the Rust target
//! (`rustup target add x86_64-pc-windows-gnu`); scripts/test.sh installs
//! them. A missing one fails the test with the command that installs it.
//!
//! Uses `$PORTWATCH_EXE` when set (scripts/test.sh builds it first);
//! otherwise builds it into `target/wine/`.
//!
//! Debian 12's Wine 8 has no `bcryptprimitives.dll`, from which Rust's
//! standard library imports `ProcessPrng` on Windows; the test compiles a
//! stand-in (`tests/wine/bcryptprimitives.c`) next to its copy of the exe.
//! Windows 10 and 11 have the real one; the stand-in is never packaged.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TRIPLE: &str = "x86_64-pc-windows-gnu";
const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

fn require(program: &str, install: &str) {
    assert!(on_path(program), "{program} is not installed; install it with: {install}");
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The cross-built exe: `$PORTWATCH_EXE`, or built now.
fn exe() -> PathBuf {
    if let Some(p) = std::env::var_os("PORTWATCH_EXE") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "PORTWATCH_EXE={} does not exist", p.display());
        return p;
    }
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output().expect("rustc");
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    assert!(
        sysroot.join("lib/rustlib").join(TRIPLE).is_dir(),
        "the Rust target {TRIPLE} is not installed; install it with: rustup target add {TRIPLE}"
    );
    let target_dir = workspace().join("target/wine");
    let status = Command::new(cargo())
        .current_dir(workspace())
        .args(["build", "-p", "portwatch-cli", "--bin", "portwatch", "--target", TRIPLE, "--target-dir"])
        .arg(&target_dir)
        .status()
        .expect("cargo");
    assert!(status.success(), "cross-building portwatch.exe failed");
    target_dir.join(TRIPLE).join("debug/portwatch.exe")
}

/// A folder with a copy of the exe and the stand-in DLL, and a Wine
/// prefix of its own.
struct WineRun {
    dir: PathBuf,
    prefix: PathBuf,
}

impl WineRun {
    fn new() -> Self {
        require("wine", "apt-get install -y --no-install-recommends wine wine64");
        require(MINGW_GCC, "apt-get install -y --no-install-recommends gcc-mingw-w64-x86-64");
        let exe = exe();
        let dir = workspace().join("target/wine/run");
        std::fs::create_dir_all(&dir).expect("target/wine/run");
        std::fs::copy(&exe, dir.join("portwatch.exe")).expect("copying portwatch.exe");
        let shim = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wine/bcryptprimitives.c");
        let status = Command::new(MINGW_GCC)
            .args(["-shared", "-O2", "-o"])
            .arg(dir.join("bcryptprimitives.dll"))
            .arg(&shim)
            .arg("-ladvapi32")
            .status()
            .expect(MINGW_GCC);
        assert!(status.success(), "building the bcryptprimitives.dll stand-in failed");
        WineRun { dir, prefix: workspace().join("target/wine/prefix") }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("wine")
            .arg(self.dir.join("portwatch.exe"))
            .args(args)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY")
            .output()
            .expect("wine")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace("\r\n", "\n")
}

#[test]
fn help_and_status_under_wine() {
    let wine = WineRun::new();

    let help = wine.run(&["--help"]);
    let stdout = text(&help.stdout);
    assert_eq!(help.status.code(), Some(0), "--help: {stdout}{}", text(&help.stderr));
    assert!(stdout.contains("Usage: portwatch.exe <COMMAND>"), "{stdout}");
    for sub in portwatch_cli::cli::command().get_subcommands() {
        assert!(stdout.contains(sub.get_name()), "--help does not list {}: {stdout}", sub.get_name());
    }
    std::fs::write(wine.dir.join("help.txt"), &stdout).expect("help.txt");

    let stress = wine.run(&["stress", "--help"]);
    let stress_help = text(&stress.stdout);
    assert_eq!(stress.status.code(), Some(0));
    for scenario in ["lwf-logo", "ioctl-storm", "datapath", "lifecycle", "races"] {
        assert!(stress_help.contains(scenario), "stress --help lacks {scenario}: {stress_help}");
    }
    assert!(stress_help.contains("portwatch.exe stress lwf-logo --duration 600"), "{stress_help}");

    let watch = wine.run(&["watch", "--help"]);
    let watch_help = text(&watch.stdout);
    assert_eq!(watch.status.code(), Some(0));
    for flag in ["--pending <N>", "--duration <SECONDS>", "--count <N>"] {
        assert!(watch_help.contains(flag), "watch --help lacks {flag}: {watch_help}");
    }
    let too_many = wine.run(&["watch", "udp:5000", "--pending", "17"]);
    assert_eq!(too_many.status.code(), Some(2), "more reads than the driver allows: {}", text(&too_many.stderr));

    let status = wine.run(&["status"]);
    let stderr = text(&status.stderr);
    assert_eq!(status.status.code(), Some(4), "status: {stderr}");
    assert!(stderr.contains("PortWatch is not installed"), "{stderr}");
    assert!(stderr.contains("CreateFile failed with Win32 error 2"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The Windows-only subcommands fail cleanly where their tools or the
    // driver are missing (Wine has neither; it reports the process as
    // elevated, so the elevation check passes).
    for (args, code, message) in [
        (&["stress", "--no-traffic"][..], 4, "PortWatch is not installed"),
        (&["watch", "udp:5000", "--count", "1"][..], 4, "PortWatch is not installed"),
        (&["watch", "udp:5000", "--pending", "16", "--duration", "1"][..], 4, "PortWatch is not installed"),
        (&["install"][..], 1, "the package is incomplete: missing "),
        (&["verifier", "status"][..], 1, "could not run verifier.exe"),
    ] {
        let out = wine.run(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }

    // A complete package (placeholder binaries, the real INF source): the
    // INF's component id passes, then the first external command runs.
    let package = wine.dir.join("package");
    std::fs::create_dir_all(&package).expect("package folder");
    let inx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inf/portwatch.inx");
    std::fs::copy(inx, package.join("portwatch.inf")).expect("portwatch.inf");
    for file in ["portwatch.sys", "portwatch.cat", "portwatch-test.cer"] {
        std::fs::write(package.join(file), b"placeholder").expect("placeholder");
    }
    let install = wine.run(&["install", "--package", package.to_str().expect("UTF-8 path")]);
    let stderr = text(&install.stderr);
    assert_eq!(install.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("> bcdedit /enum {current}\n"), "{stderr}");
    assert!(stderr.contains("could not run bcdedit.exe"), "{stderr}");

    let usage = wine.run(&["stress", "data-path"]);
    assert_eq!(usage.status.code(), Some(2), "a wrong scenario name is a usage error");
    assert!(text(&usage.stderr).contains("invalid value 'data-path'"), "{}", text(&usage.stderr));
}
