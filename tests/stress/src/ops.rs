//! What each subcommand does. External tools run through
//! [`crate::commands`]' argument vectors; driver-facing subcommands go
//! through [`crate::device`] on the installed driver.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use portwatch_scenarios::{Budget, Params, Summary, Target};

use crate::cli::{Cli, Command, InstallArgs, StressArgs, TargetKind, UninstallArgs, VerifierCommand, VerifierOnArgs};
use crate::commands::{self, Invocation, VerifierOptions};
use crate::exit::{self, Failure};

/// The certificate `install` trusts when `--certificate` is not given.
pub const DEFAULT_CERTIFICATE: &str = "portwatch-test.cer";
/// The files a package must hold, besides the certificate.
pub const PACKAGE_FILES: [&str; 3] = ["portwatch.inf", "portwatch.sys", "portwatch.cat"];

/// The reboot notice of `verifier on` and `verifier off`.
pub const REBOOT_NOTICE: &str = "Driver Verifier settings change at the next boot: reboot now (shutdown /r /t 0).";

/// What the failure to open `\\.\PortWatch` with Win32 error `code` means.
pub fn open_error(code: u32) -> Failure {
    match code {
        2 | 3 => Failure {
            code: exit::NOT_INSTALLED,
            message: format!(
                "PortWatch is not installed: \\\\.\\PortWatch does not exist (CreateFile failed with Win32 error \
                 {code}). Install it with `portwatch.exe install`; if it is installed, it is bound to no enabled \
                 adapter (Get-NetAdapterBinding -ComponentID {})",
                portwatch_proto::HARDWARE_ID
            ),
        },
        5 => Failure::refused(
            "access denied to \\\\.\\PortWatch (CreateFile failed with Win32 error 5): it is for administrators; \
             run portwatch.exe from an elevated prompt",
        ),
        other => Failure::failed(format!("opening \\\\.\\PortWatch: CreateFile failed with Win32 error {other}")),
    }
}

/// Refuses anything but Windows.
fn windows_only(what: &str) -> Result<(), Failure> {
    if cfg!(windows) {
        Ok(())
    } else {
        Err(Failure::refused(format!(
            "`portwatch.exe {what}` runs on the Windows test machine (this is {}); on Linux only \
             `stress --target harness` runs",
            std::env::consts::OS
        )))
    }
}

/// Refuses when this process is not elevated.
fn require_elevation(what: &str) -> Result<(), Failure> {
    windows_only(what)?;
    #[cfg(windows)]
    if !crate::win::is_elevated() {
        return Err(Failure::refused(format!(
            "`portwatch.exe {what}` needs an elevated prompt: this one is not. Open PowerShell or cmd with \
             \"Run as administrator\" and run it again"
        )));
    }
    Ok(())
}

/// Runs `inv`, echoing it on stderr, and returns its output (whatever its
/// exit status).
fn run_tool(inv: &Invocation) -> Result<Output, Failure> {
    eprintln!("> {}", inv.display());
    std::process::Command::new(inv.program)
        .args(&inv.args)
        .output()
        .map_err(|e| Failure::failed(format!("could not run {}: {e}", inv.program)))
}

/// Runs `inv` and requires one of `ok_codes`; its stdout.
fn run_checked(inv: &Invocation, ok_codes: &[i32]) -> Result<String, Failure> {
    let out = run_tool(inv)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(c) if ok_codes.contains(&c) => Ok(stdout),
        code => Err(Failure::failed(format!(
            "`{}` failed (exit status {}):\n{}{}",
            inv.display(),
            code.map_or_else(|| "none".to_owned(), |c| c.to_string()),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ))),
    }
}

fn package_dir(given: Option<&Path>) -> Result<PathBuf, Failure> {
    match given {
        Some(p) => Ok(p.to_path_buf()),
        None => std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
            .ok_or_else(|| Failure::failed("cannot tell where portwatch.exe is: pass --package DIR")),
    }
}

/// The package's files that are missing from `dir`.
pub fn missing_package_files(dir: &Path, certificate: &Path) -> Vec<PathBuf> {
    PACKAGE_FILES.iter().map(|f| dir.join(f)).chain([certificate.to_path_buf()]).filter(|p| !p.is_file()).collect()
}

fn install(a: &InstallArgs) -> Result<(), Failure> {
    require_elevation("install")?;
    let dir = package_dir(a.package.as_deref())?;
    let certificate = a.certificate.clone().unwrap_or_else(|| dir.join(DEFAULT_CERTIFICATE));
    let missing = missing_package_files(&dir, &certificate);
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
        return Err(Failure::failed(format!("the package is incomplete: missing {}", names.join(", "))));
    }
    let inf = dir.join("portwatch.inf");
    let inf_text = std::fs::read_to_string(&inf).map_err(|e| Failure::failed(format!("{}: {e}", inf.display())))?;
    let ids = commands::inf_component_ids(&inf_text);
    if !ids.iter().any(|i| i.eq_ignore_ascii_case(portwatch_proto::HARDWARE_ID)) {
        return Err(Failure::failed(format!(
            "{} installs {:?}, not {}: is this PortWatch's INF?",
            inf.display(),
            ids,
            portwatch_proto::HARDWARE_ID
        )));
    }
    let boot = run_checked(&commands::bcdedit_enum_current(), &[0])?;
    if !commands::testsigning_enabled(&boot) {
        return Err(Failure::refused(format!(
            "test signing is off (`bcdedit /enum {{current}}` shows no `testsigning Yes`): Windows will not load \
             the test-signed portwatch.sys. Turn Secure Boot off in the VM's firmware settings, run `{}`, \
             reboot, then run `portwatch.exe install` again",
            commands::bcdedit_testsigning_on().display()
        )));
    }
    for store in commands::CERT_STORES {
        run_checked(&commands::certutil_addstore(store, &certificate), &[0])?;
    }
    run_checked(&commands::netcfg_install(&inf, portwatch_proto::HARDWARE_ID), &[0])?;
    let adapters = bound_adapters()?;
    println!("PortWatch is installed and bound to {} adapter(s): {}", adapters.len(), adapters.join(", "));
    println!("Next: `portwatch.exe status`, `portwatch.exe verifier on` (then reboot), `portwatch.exe stress`.");
    Ok(())
}

fn uninstall(a: &UninstallArgs) -> Result<(), Failure> {
    require_elevation("uninstall")?;
    if let Err(e) = run_checked(&commands::netcfg_uninstall(portwatch_proto::HARDWARE_ID), &[0]) {
        eprintln!("warning: {e}");
    }
    if !a.keep_driver_store {
        let listing = run_checked(&commands::pnputil_enum_drivers(), &[0])?;
        let packages = commands::driver_store_packages(&listing, "portwatch.inf");
        if packages.is_empty() {
            println!("no PortWatch package in the driver store");
        }
        for p in packages {
            run_checked(&commands::pnputil_delete_driver(&p), &[0])?;
            println!("deleted {p} from the driver store");
        }
    }
    println!("PortWatch is uninstalled. The test certificate stays trusted; test signing stays as it is.");
    Ok(())
}

/// Exit statuses of `verifier` taken as success. Microsoft documents none;
/// 2 follows the earlier verifier.ps1, which took it for "reboot needed".
/// Whatever the status, `verifier status` shows what was saved.
const VERIFIER_OK: [i32; 2] = [0, 2];

fn verifier(c: &VerifierCommand) -> Result<(), Failure> {
    match c {
        VerifierCommand::On(VerifierOnArgs { no_ndis_wifi, low_resources, driver }) => {
            require_elevation("verifier on")?;
            let options = VerifierOptions { ndis_wifi: !no_ndis_wifi, low_resources: *low_resources };
            print!("{}", run_checked(&commands::verifier_on(driver, options), &VERIFIER_OK)?);
            println!("Driver Verifier is set for {driver}. {REBOOT_NOTICE}");
        }
        VerifierCommand::Off => {
            require_elevation("verifier off")?;
            print!("{}", run_checked(&commands::verifier_reset(), &VERIFIER_OK)?);
            println!("Driver Verifier settings are removed. {REBOOT_NOTICE}");
        }
        VerifierCommand::Status => {
            require_elevation("verifier status")?;
            print!("{}", run_checked(&commands::verifier_querysettings(), &VERIFIER_OK)?);
            // Informational: /query fails when no verified driver is loaded.
            let out = run_tool(&commands::verifier_query())?;
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
    }
    Ok(())
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

fn bound_adapters() -> Result<Vec<String>, Failure> {
    Ok(lines(&run_checked(&commands::powershell_bound_adapters(portwatch_proto::HARDWARE_ID), &[0])?))
}

fn params(a: &StressArgs) -> Params {
    Params {
        threads: usize::from(a.threads),
        budget: match a.duration {
            Some(s) => Budget::Duration(Duration::from_secs_f64(s)),
            None => Budget::Ops(a.ops),
        },
        seed: a.seed,
        progress: !a.quiet,
    }
}

fn run_on(target: &dyn Target, a: &StressArgs) -> Summary {
    let p = params(a);
    eprintln!(
        "portwatch stress: {} on {} ({:?}, {} threads, seed {})",
        a.scenario.scenario(),
        target.describe(),
        p.budget,
        p.threads,
        p.seed
    );
    a.scenario.scenario().run(target, &p)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn harness(a: &StressArgs) -> Result<Summary, Failure> {
    use portwatch_scenarios::harness_target::{driver_path, Completion, HarnessConfig, HarnessTarget};
    let driver = a.driver.clone().unwrap_or_else(driver_path);
    let mut config =
        HarnessConfig { special_pool: a.special_pool, ..HarnessConfig::new(&driver, usize::from(a.adapters)) };
    if a.scenario.scenario() == portwatch_scenarios::Scenario::LwfLogo {
        // Sends complete late, concurrently with pauses, as on Windows.
        config.completion = Completion::Delayed(Duration::from_micros(200));
    }
    let target =
        HarnessTarget::load(config).map_err(|e| Failure::failed(format!("loading {}: {e}", driver.display())))?;
    Ok(run_on(&target, a))
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn harness(_: &StressArgs) -> Result<Summary, Failure> {
    Err(Failure::refused("the harness target runs on x86_64 Linux only; use --target device"))
}

#[cfg(windows)]
fn device_target(adapters: Vec<String>, peer: Option<std::net::Ipv4Addr>) -> Result<impl Target, Failure> {
    use portwatch_scenarios::device_target::{DeviceConfig, DeviceTarget};
    crate::win::probe_device().map_err(open_error)?;
    Ok(DeviceTarget::new(DeviceConfig { adapters, peer }))
}

#[cfg(windows)]
fn device_stress(a: &StressArgs) -> Result<Summary, Failure> {
    if a.special_pool {
        eprintln!("--special-pool: on Windows special pool comes from Driver Verifier (`portwatch.exe verifier on`)");
    }
    crate::win::probe_device().map_err(open_error)?;
    let adapters = if a.adapter.is_empty() {
        vec![commands::only_choice("adapter bound to PortWatch", "--adapter NAME", &bound_adapters()?)
            .map_err(Failure::failed)?]
    } else {
        a.adapter.clone()
    };
    let peer = match (a.peer, a.no_traffic) {
        (Some(p), _) => Some(p),
        (None, true) => None,
        (None, false) => {
            let mut gateways: Vec<std::net::Ipv4Addr> = Vec::new();
            for adapter in &adapters {
                let out = run_checked(&commands::powershell_default_gateways(adapter), &[0])?;
                for g in lines(&out).iter().filter_map(|l| l.parse().ok()) {
                    if crate::device::usable_peer(std::net::IpAddr::V4(g)) && !gateways.contains(&g) {
                        gateways.push(g);
                    }
                }
            }
            let peer = commands::only_choice("default gateway", "--peer IPV4 (or --no-traffic)", &gateways)
                .map_err(Failure::failed)?;
            Some(peer)
        }
    };
    eprintln!("adapters {adapters:?}, peer {peer:?}");
    Ok(run_on(&device_target(adapters, peer)?, a))
}

#[cfg(not(windows))]
fn device_stress(_: &StressArgs) -> Result<Summary, Failure> {
    windows_only("stress --target device")?;
    unreachable!("windows_only refuses here")
}

fn stress(a: &StressArgs) -> Result<(), Failure> {
    let summary = match a.target {
        TargetKind::Harness => harness(a)?,
        TargetKind::Device => device_stress(a)?,
    };
    print!("{summary}");
    if summary.is_clean() {
        Ok(())
    } else {
        Err(Failure::failed(format!("{}: problems found (see the summary above)", summary.scenario)))
    }
}

/// Runs `f` on the installed driver.
fn on_device(what: &str, f: impl FnOnce(&dyn Target, &mut dyn Write) -> Result<(), Failure>) -> Result<(), Failure> {
    windows_only(what)?;
    #[cfg(windows)]
    {
        let target = device_target(Vec::new(), None)?;
        let stdout = std::io::stdout();
        return f(&target, &mut stdout.lock());
    }
    #[cfg(not(windows))]
    {
        let _ = f;
        unreachable!("windows_only refuses here")
    }
}

/// `watch` on the installed driver: overlapped reads on the endpoint's
/// handle, Ctrl+C ends it.
#[cfg(windows)]
fn watch_device(
    t: &dyn Target,
    ports: &[crate::cli::PortSpec],
    options: &crate::device::WatchOptions,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let interrupted = crate::win::ctrl_c_flag();
    let stop = || interrupted.load(std::sync::atomic::Ordering::Relaxed);
    crate::device::watch_with(t, ports, options, &stop, out, &mut |handle, body| {
        let mut queue = crate::win::OverlappedReads::new(handle, options.pending)
            .map_err(|e| Failure::failed(format!("preparing the reads: {e}")))?;
        body(&mut queue)
    })
}

#[cfg(not(windows))]
fn watch_device(
    t: &dyn Target,
    ports: &[crate::cli::PortSpec],
    options: &crate::device::WatchOptions,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    crate::device::watch(t, ports, options, &|| false, out)
}

/// Runs the subcommand of `cli`.
pub fn run(cli: &Cli) -> Result<(), Failure> {
    use crate::device;
    match &cli.command {
        Command::Install(a) => install(a),
        Command::Uninstall(a) => uninstall(a),
        Command::Verifier(c) => verifier(c),
        Command::Stress(a) => stress(a),
        Command::Status(a) => on_device("status", |t, out| device::status(t, &a.port, out)),
        Command::Bind(a) => on_device("bind", |t, out| device::bind(t, &a.ports, a.hold, out)),
        Command::Unbind(a) => on_device("unbind", |t, out| device::unbind(t, &a.ports, out)),
        Command::PortName(a) => on_device("port-name", |t, out| device::port_name(t, a.name.as_deref(), out)),
        Command::LocalAddress(a) => on_device("local-address", |t, out| device::local_address(t, a.address, out)),
        Command::Watch(a) => {
            let options = device::WatchOptions {
                pending: a.pending as usize,
                ring: a.ring,
                count: a.count,
                duration: a.duration.map(std::time::Duration::from_secs_f64),
                json: a.json,
            };
            on_device("watch", |t, out| watch_device(t, &a.ports, &options, out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_errors_say_what_to_do() {
        let e = open_error(2);
        assert_eq!(e.code, exit::NOT_INSTALLED);
        assert!(e.message.starts_with("PortWatch is not installed"), "{e}");
        assert!(e.message.contains("Win32 error 2"));
        assert_eq!(open_error(5).code, exit::REFUSED);
        assert_eq!(open_error(1).code, exit::FAILED);
    }

    #[test]
    fn a_package_lists_what_it_lacks() {
        let dir = std::env::temp_dir().join(format!("portwatch-cli-pkg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("portwatch.inf"), "").unwrap();
        let cer = dir.join(DEFAULT_CERTIFICATE);
        let missing = missing_package_files(&dir, &cer);
        assert_eq!(missing, [dir.join("portwatch.sys"), dir.join("portwatch.cat"), cer]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(not(windows))]
    #[test]
    fn windows_subcommands_refuse_elsewhere() {
        let e = require_elevation("install").unwrap_err();
        assert_eq!(e.code, exit::REFUSED);
        assert!(e.message.contains("runs on the Windows test machine"), "{e}");
    }

    #[test]
    fn stress_budget_is_a_total() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["portwatch.exe", "stress", "races", "--ops", "500", "--threads", "8"]).unwrap();
        let Command::Stress(a) = cli.command else { panic!("stress") };
        let p = params(&a);
        assert_eq!((p.threads, p.budget), (8, Budget::Ops(500)), "--ops counts operations in all");
    }
}
