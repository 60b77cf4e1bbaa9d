//! Every external command `portwatch.exe` runs, built by pure functions so
//! that each argument vector can be checked on any machine against the
//! syntax Microsoft documents for the tool, and the parsers of their
//! output.
//!
//! | Tool | Documented syntax used here |
//! |---|---|
//! | `bcdedit` | `bcdedit /enum {current}` (its `testsigning Yes` line) |
//! | `certutil` | `certutil -addstore CertificateStoreName InFile` (local machine stores `Root`, `TrustedPublisher`) |
//! | `netcfg` | `netcfg -v -l <inf> -c s -i <comp-ID>`, `netcfg -v -u <comp-ID>` |
//! | `pnputil` | `pnputil /enum-drivers`, `pnputil /delete-driver <oem#.inf> /uninstall` (Windows 10 1607 and later) |
//! | `verifier` | `verifier /standard /driver NAME`, `verifier /ruleclasses <ruleclass_1> ... /driver NAME`, `verifier /reset`, `verifier /querysettings`, `verifier /query` |

use std::ffi::OsString;
use std::path::Path;

/// One command line: the program and its arguments, exactly as they are
/// passed to `CreateProcess` (no shell in between).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The program (`bcdedit.exe`, ...), found on `PATH`.
    pub program: &'static str,
    /// Its arguments.
    pub args: Vec<OsString>,
}

impl Invocation {
    fn new<I, S>(program: &'static str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Invocation { program, args: args.into_iter().map(Into::into).collect() }
    }

    /// The arguments as strings (lossy), for tests and messages.
    pub fn argv(&self) -> Vec<String> {
        self.args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    /// The whole command line as a user would type it (for messages).
    pub fn display(&self) -> String {
        let mut s = self.program.trim_end_matches(".exe").to_owned();
        for a in self.argv() {
            s.push(' ');
            if a.contains(' ') {
                s.push('"');
                s.push_str(&a);
                s.push('"');
            } else {
                s.push_str(&a);
            }
        }
        s
    }
}

/// `bcdedit /enum {current}`: the boot entry in use, whose `testsigning`
/// line says whether test-signed drivers load.
pub fn bcdedit_enum_current() -> Invocation {
    Invocation::new("bcdedit.exe", ["/enum", "{current}"])
}

/// `bcdedit /set testsigning on` (only ever printed as advice: turning test
/// signing on is the user's decision, and needs Secure Boot off).
pub fn bcdedit_testsigning_on() -> Invocation {
    Invocation::new("bcdedit.exe", ["/set", "testsigning", "on"])
}

/// Whether `bcdedit /enum {current}` output says `testsigning Yes`.
/// bcdedit prints element names in English whatever the display language.
pub fn testsigning_enabled(bcdedit_output: &str) -> bool {
    bcdedit_output.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.next().is_some_and(|w| w.eq_ignore_ascii_case("testsigning"))
            && words.next().is_some_and(|w| w.eq_ignore_ascii_case("yes"))
    })
}

/// The certificate stores of the local machine the test certificate goes
/// into: `Root` (trusted root authorities) and `TrustedPublisher`.
pub const CERT_STORES: [&str; 2] = ["Root", "TrustedPublisher"];

/// `certutil -addstore STORE CERT`: imports `certificate` into the local
/// machine's `store`.
pub fn certutil_addstore(store: &str, certificate: &Path) -> Invocation {
    Invocation::new("certutil.exe", [OsString::from("-addstore"), store.into(), certificate.into()])
}

/// `netcfg -v -l INF -c s -i COMPONENT`: installs the network service
/// (class `s`) `component_id` from `inf`.
pub fn netcfg_install(inf: &Path, component_id: &str) -> Invocation {
    Invocation::new(
        "netcfg.exe",
        [OsString::from("-v"), "-l".into(), inf.into(), "-c".into(), "s".into(), "-i".into(), component_id.into()],
    )
}

/// `netcfg -v -u COMPONENT`: uninstalls `component_id`.
pub fn netcfg_uninstall(component_id: &str) -> Invocation {
    Invocation::new("netcfg.exe", ["-v", "-u", component_id])
}

/// `pnputil /enum-drivers`: the third-party packages in the driver store.
pub fn pnputil_enum_drivers() -> Invocation {
    Invocation::new("pnputil.exe", ["/enum-drivers"])
}

/// `pnputil /delete-driver OEM.INF /uninstall`: removes a package from the
/// driver store, uninstalling it from devices that use it.
pub fn pnputil_delete_driver(published_name: &str) -> Invocation {
    Invocation::new("pnputil.exe", ["/delete-driver", published_name, "/uninstall"])
}

/// The published names (`oemNN.inf`) of the driver-store packages whose
/// original INF is `original_inf`, from `pnputil /enum-drivers` output
/// (blocks of `Name: value` lines; the first line of a block is
/// `Published Name`). Only the English labels are understood.
pub fn driver_store_packages(pnputil_output: &str, original_inf: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut published: Option<String> = None;
    for line in pnputil_output.lines() {
        let Some((label, value)) = line.split_once(':') else { continue };
        let (label, value) = (label.trim(), value.trim());
        if label.eq_ignore_ascii_case("Published Name") {
            published = Some(value.to_owned());
        } else if label.eq_ignore_ascii_case("Original Name") && value.eq_ignore_ascii_case(original_inf) {
            if let Some(p) = published.take() {
                found.push(p);
            }
        }
    }
    found
}

/// The INF's component ids (the hardware ids of its models, what
/// `netcfg -i` takes): the second field of every `desc = section, id` line
/// in the models sections that `[Manufacturer]` names (with any
/// platform decoration, `Models.NTamd64...`).
pub fn inf_component_ids(inf_text: &str) -> Vec<String> {
    let lines: Vec<&str> = inf_text.lines().map(|l| l.split(';').next().unwrap_or("").trim()).collect();
    let section_of =
        |l: &str| l.strip_prefix('[').and_then(|l| l.strip_suffix(']')).map(|s| s.trim().to_ascii_lowercase());
    let mut models: Vec<String> = Vec::new();
    let mut section = String::new();
    for l in &lines {
        if let Some(s) = section_of(l) {
            section = s;
        } else if section == "manufacturer" {
            if let Some((_, v)) = l.split_once('=') {
                models.extend(v.split(',').next().map(|m| m.trim().to_ascii_lowercase()));
            }
        }
    }
    let mut ids: Vec<String> = Vec::new();
    for l in &lines {
        if let Some(s) = section_of(l) {
            section = s;
        } else if models.iter().any(|m| section == *m || section.starts_with(&format!("{m}.nt"))) {
            if let Some(id) = l.split_once('=').and_then(|(_, v)| v.split(',').nth(1)).map(str::trim) {
                if !ids.iter().any(|i| i == id) {
                    ids.push(id.to_owned());
                }
            }
        }
    }
    ids
}

/// Driver Verifier's rule classes (decimal IDs of `verifier /ruleclasses`,
/// "Driver Verifier options and rule classes"): the standard set that
/// `verifier /standard` selects.
pub const STANDARD_RULE_CLASSES: [u32; 9] = [
    1,  // special pool
    2,  // force IRQL checking
    4,  // pool tracking
    5,  // I/O verification
    6,  // deadlock detection
    8,  // DMA checking
    9,  // security checks
    12, // miscellaneous checks
    18, // DDI compliance checking
];
/// Rule class "NDIS/WIFI verification".
pub const NDIS_WIFI_RULE_CLASS: u32 = 22;
/// Rule class "Randomized low resources simulation".
pub const LOW_RESOURCES_RULE_CLASS: u32 = 3;

/// What `verifier on` turns on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifierOptions {
    /// Add NDIS/WIFI verification to the standard checks.
    pub ndis_wifi: bool,
    /// Add randomized low resources simulation.
    pub low_resources: bool,
}

/// The `verifier` command that turns Driver Verifier on for `driver`:
/// `verifier /standard /driver NAME` for the standard checks alone, or
/// `verifier /ruleclasses 1 2 4 5 6 8 9 12 18 [22] [3] /driver NAME`
/// (the standard classes plus the extra ones: `/standard` and
/// `/ruleclasses` do not combine on one command line). `/ruleclasses`
/// exists from Windows 10 build 17627; PortWatch needs 19041 or later.
pub fn verifier_on(driver: &str, options: VerifierOptions) -> Invocation {
    if !options.ndis_wifi && !options.low_resources {
        return Invocation::new("verifier.exe", ["/standard", "/driver", driver]);
    }
    let mut classes: Vec<u32> = STANDARD_RULE_CLASSES.to_vec();
    if options.ndis_wifi {
        classes.push(NDIS_WIFI_RULE_CLASS);
    }
    if options.low_resources {
        classes.push(LOW_RESOURCES_RULE_CLASS);
    }
    let mut args = vec!["/ruleclasses".to_owned()];
    args.extend(classes.iter().map(u32::to_string));
    args.extend(["/driver".to_owned(), driver.to_owned()]);
    Invocation::new("verifier.exe", args)
}

/// `verifier /reset`: removes every Driver Verifier setting (takes effect
/// at the next boot).
pub fn verifier_reset() -> Invocation {
    Invocation::new("verifier.exe", ["/reset"])
}

/// `verifier /querysettings`: the settings that apply from the next boot.
pub fn verifier_querysettings() -> Invocation {
    Invocation::new("verifier.exe", ["/querysettings"])
}

/// `verifier /query`: statistics of the drivers verified now.
pub fn verifier_query() -> Invocation {
    Invocation::new("verifier.exe", ["/query"])
}

/// The PowerShell one-liner that lists the adapters PortWatch is bound to
/// and enabled on, one name a line.
pub fn powershell_bound_adapters(component_id: &str) -> Invocation {
    Invocation::new(
        "powershell.exe",
        [
            "-NoProfile".to_owned(),
            "-NonInteractive".to_owned(),
            "-Command".to_owned(),
            format!(
                "Get-NetAdapterBinding -ComponentID '{}' | Where-Object {{ $_.Enabled }} | \
                 ForEach-Object {{ $_.Name }}",
                component_id.replace('\'', "''")
            ),
        ],
    )
}

/// The PowerShell one-liner that prints the IPv4 default gateways of
/// adapter `name`, one a line (the obvious peer for UDP traffic).
pub fn powershell_default_gateways(adapter: &str) -> Invocation {
    Invocation::new(
        "powershell.exe",
        [
            "-NoProfile".to_owned(),
            "-NonInteractive".to_owned(),
            "-Command".to_owned(),
            format!(
                "Get-NetRoute -InterfaceAlias '{}' -DestinationPrefix '0.0.0.0/0' -ErrorAction SilentlyContinue | \
                 ForEach-Object {{ $_.NextHop }}",
                adapter.replace('\'', "''")
            ),
        ],
    )
}

/// Picks the one obvious candidate: `Ok(x)` when there is exactly one,
/// otherwise an error that names the choices and the flag that settles it.
pub fn only_choice<T: Clone + std::fmt::Display>(what: &str, flag: &str, candidates: &[T]) -> Result<T, String> {
    match candidates {
        [one] => Ok(one.clone()),
        [] => Err(format!("no {what} found: pass {flag}")),
        many => {
            let names: Vec<String> = many.iter().map(ToString::to_string).collect();
            Err(format!("{} {what}s found ({}): pick one with {flag}", many.len(), names.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn bcdedit_reads_the_current_entry() {
        assert_eq!(bcdedit_enum_current().argv(), ["/enum", "{current}"]);
        assert_eq!(bcdedit_enum_current().program, "bcdedit.exe");
        assert_eq!(bcdedit_testsigning_on().display(), "bcdedit /set testsigning on");
    }

    #[test]
    fn testsigning_is_read_from_its_own_line() {
        let on = "Windows Boot Loader\n-------------------\nidentifier              {current}\n\
                  device                  partition=C:\ntestsigning             Yes\nnx OptIn\n";
        assert!(testsigning_enabled(on));
        assert!(!testsigning_enabled(&on.replace("Yes", "No")));
        assert!(!testsigning_enabled("identifier {current}\ndescription testsigning Yes\n"), "not the element");
        assert!(!testsigning_enabled(""));
    }

    #[test]
    fn certutil_imports_into_a_local_machine_store() {
        let cer = PathBuf::from(r"C:\portwatch\portwatch-test.cer");
        let i = certutil_addstore("TrustedPublisher", &cer);
        assert_eq!(i.program, "certutil.exe");
        assert_eq!(i.argv(), ["-addstore", "TrustedPublisher", r"C:\portwatch\portwatch-test.cer"]);
        assert_eq!(CERT_STORES, ["Root", "TrustedPublisher"]);
    }

    #[test]
    fn netcfg_installs_a_service_by_component_id() {
        let inf = PathBuf::from(r"C:\pw dir\portwatch.inf");
        let i = netcfg_install(&inf, "pw_portwatch");
        assert_eq!(i.program, "netcfg.exe");
        assert_eq!(i.argv(), ["-v", "-l", r"C:\pw dir\portwatch.inf", "-c", "s", "-i", "pw_portwatch"]);
        assert_eq!(i.display(), r#"netcfg -v -l "C:\pw dir\portwatch.inf" -c s -i pw_portwatch"#);
        assert_eq!(netcfg_uninstall("pw_portwatch").argv(), ["-v", "-u", "pw_portwatch"]);
    }

    #[test]
    fn pnputil_deletes_the_published_package() {
        assert_eq!(pnputil_enum_drivers().argv(), ["/enum-drivers"]);
        assert_eq!(pnputil_delete_driver("oem12.inf").argv(), ["/delete-driver", "oem12.inf", "/uninstall"]);
        assert_eq!(pnputil_delete_driver("oem12.inf").program, "pnputil.exe");
    }

    #[test]
    fn driver_store_packages_are_found_by_original_name() {
        let out = "Microsoft PnP Utility\n\n\
            Published Name:     oem3.inf\nOriginal Name:      netlwf.inf\nProvider Name:      Contoso\n\n\
            Published Name:     oem12.inf\nOriginal Name:      portwatch.inf\nProvider Name:      PortWatch\n\
            Class Name:         Network Service\n\n\
            Published Name : oem40.inf\nOriginal Name : PortWatch.INF\n";
        assert_eq!(driver_store_packages(out, "portwatch.inf"), ["oem12.inf", "oem40.inf"]);
        assert!(driver_store_packages(out, "other.inf").is_empty());
    }

    #[test]
    fn the_inf_component_id_is_the_one_netcfg_gets() {
        let inx = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../inf/portwatch.inx")).unwrap();
        assert_eq!(inf_component_ids(&inx), [portwatch_proto::HARDWARE_ID]);
        assert_eq!(netcfg_install(Path::new("x.inf"), portwatch_proto::HARDWARE_ID).argv()[6], "pw_portwatch");
    }

    #[test]
    fn verifier_standard_and_rule_classes() {
        let none = VerifierOptions { ndis_wifi: false, low_resources: false };
        assert_eq!(verifier_on("portwatch.sys", none).argv(), ["/standard", "/driver", "portwatch.sys"]);
        let ndis = VerifierOptions { ndis_wifi: true, low_resources: false };
        assert_eq!(
            verifier_on("portwatch.sys", ndis).display(),
            "verifier /ruleclasses 1 2 4 5 6 8 9 12 18 22 /driver portwatch.sys"
        );
        let all = VerifierOptions { ndis_wifi: true, low_resources: true };
        assert_eq!(
            verifier_on("portwatch.sys", all).display(),
            "verifier /ruleclasses 1 2 4 5 6 8 9 12 18 22 3 /driver portwatch.sys"
        );
        let low = VerifierOptions { ndis_wifi: false, low_resources: true };
        assert_eq!(verifier_on("portwatch.sys", low).argv()[1..11].join(" "), "1 2 4 5 6 8 9 12 18 3");
        assert_eq!(verifier_reset().argv(), ["/reset"]);
        assert_eq!(verifier_querysettings().argv(), ["/querysettings"]);
        assert_eq!(verifier_query().argv(), ["/query"]);
    }

    #[test]
    fn powershell_quotes_names() {
        let i = powershell_default_gateways("Bob's NIC");
        assert_eq!(i.argv()[..3], ["-NoProfile", "-NonInteractive", "-Command"]);
        assert!(i.argv()[3].contains("-InterfaceAlias 'Bob''s NIC'"), "{}", i.argv()[3]);
        assert!(powershell_bound_adapters("pw_portwatch").argv()[3].contains("-ComponentID 'pw_portwatch'"));
    }

    #[test]
    fn one_obvious_choice_or_a_precise_error() {
        assert_eq!(only_choice("adapter", "--adapter", &["Ethernet"]), Ok("Ethernet"));
        assert_eq!(only_choice::<&str>("adapter", "--adapter", &[]), Err("no adapter found: pass --adapter".into()));
        assert_eq!(
            only_choice("adapter", "--adapter", &["A", "B"]),
            Err("2 adapters found (A, B): pick one with --adapter".into())
        );
    }
}
