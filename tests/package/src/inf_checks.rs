//! Cross-reference checks of the PortWatch INF against the driver's
//! constants (`portwatch_proto`) and the rules for an NDIS lightweight
//! filter INF (Microsoft's netlwf.inf shape).
//!
//! Every check panics with a message naming the INF line at fault; the
//! tests call [`assert_driver_inf`] on the `.inx` source and on the stamped
//! `.inf`.

use crate::inf::{parse_number, Inf, RegLine};
use portwatch_proto::{BINARY_NAME, FILTER_FRIENDLY_NAME, FILTER_UNIQUE_NAME, HARDWARE_ID, SERVICE_NAME};

/// The NetService setup class GUID.
pub const NET_SERVICE_CLASS_GUID: &str = "{4D36E974-E325-11CE-BFC1-08002BE10318}";
/// NCF_LW_FILTER, the characteristics of every lightweight filter.
pub const NCF_LW_FILTER: u32 = 0x40000;
/// First Windows build on which the network install UI installs from the
/// driver store (DIRID 13), per Microsoft's netlwf.inf sample.
pub const DRIVER_STORE_BUILD: &str = "25319";
/// The oldest build the driver loads on: ExAllocatePool2 is Windows 10 2004's.
pub const MIN_BUILD: &str = "19041";
/// FilterClass values documented for modifying filters.
pub const FILTER_CLASSES: [&str; 9] = [
    "scheduler",
    "encryption",
    "compression",
    "vpn",
    "loadbalance",
    "failover",
    "diagnostic",
    "custom",
    "provider_address",
];

/// One model line: which install section a Windows build range uses, and
/// the destination DIRID that range requires.
struct Model {
    install_section: String,
    dirid: u32,
}

/// Checks the whole INF. `arch` is the architecture decoration as it
/// appears in this file: `$ARCH$` in the `.inx`, `amd64` once stamped.
pub fn assert_driver_inf(inf: &Inf, arch: &str) {
    assert_version_section(inf);
    let models = models(inf, arch);
    assert_eq!(models.len(), 2, "one model for builds >= {DRIVER_STORE_BUILD}, one for older builds");
    for model in &models {
        assert_install_section(inf, model);
    }
    assert_source_disks(inf);
}

fn single(inf: &Inf, section: &str, key: &str) -> String {
    let mut fields = inf.value(section, key).unwrap_or_else(|| panic!("[{section}] has no {key}"));
    assert_eq!(fields.len(), 1, "[{section}] {key} has one field: {fields:?}");
    fields.remove(0)
}

fn number(inf: &Inf, section: &str, key: &str) -> u32 {
    let text = single(inf, section, key);
    parse_number(&text).unwrap_or_else(|| panic!("[{section}] {key} = {text} is not a number"))
}

fn assert_version_section(inf: &Inf) {
    assert_eq!(single(inf, "Version", "Signature"), "$Windows NT$");
    assert_eq!(single(inf, "Version", "Class"), "NetService");
    assert!(
        single(inf, "Version", "ClassGUID").eq_ignore_ascii_case(NET_SERVICE_CLASS_GUID),
        "ClassGUID is NetService's"
    );
    let binary_stem = BINARY_NAME.trim_end_matches(".sys");
    assert_eq!(single(inf, "Version", "CatalogFile"), format!("{binary_stem}.cat"));
    assert_eq!(number(inf, "Version", "PnpLockdown"), 1);
    assert!(inf.value("Version", "DriverVer").is_some(), "[Version] has DriverVer");
}

/// Reads [Manufacturer] and its models sections.
fn models(inf: &Inf, arch: &str) -> Vec<Model> {
    let manufacturer = inf.require_section("Manufacturer").expect("[Manufacturer]");
    assert_eq!(manufacturer.entries.len(), 1, "one manufacturer");
    let fields = &manufacturer.entries[0].fields;
    let (base, decorations) = fields.split_first().expect("a models section name");
    let store = format!("NT{arch}.10.0...{DRIVER_STORE_BUILD}");
    // The driver imports ExAllocatePool2 (Windows 10 2004, build 19041):
    // no model may match an older build.
    let legacy = format!("NT{arch}.10.0...{MIN_BUILD}");
    let mut found = Vec::new();
    for decoration in decorations {
        let dirid = if decoration.eq_ignore_ascii_case(&store) {
            13
        } else if decoration.eq_ignore_ascii_case(&legacy) {
            12
        } else {
            panic!("unexpected models decoration {decoration}");
        };
        let section = format!("{base}.{decoration}");
        found.push(Model { install_section: model_install_section(inf, &section), dirid });
    }
    found
}

/// The install section that a models section maps the hardware ID to.
fn model_install_section(inf: &Inf, section: &str) -> String {
    let models = inf.require_section(section).expect("models section");
    assert_eq!(models.entries.len(), 1, "[{section}] has one model");
    let entry = &models.entries[0];
    let description = inf.expand(entry.key.as_deref().expect("a device description"));
    assert_eq!(description, FILTER_FRIENDLY_NAME, "[{section}] description");
    assert_eq!(entry.fields.len(), 2, "[{section}] install section, hardware ID");
    assert_eq!(entry.fields[1], HARDWARE_ID, "[{section}] hardware ID");
    entry.fields[0].clone()
}

fn assert_install_section(inf: &Inf, model: &Model) {
    let install = model.install_section.as_str();
    assert_eq!(number(inf, install, "Characteristics"), NCF_LW_FILTER, "[{install}]");
    assert_eq!(single(inf, install, "NetCfgInstanceId"), FILTER_UNIQUE_NAME, "[{install}]");
    assert_ndi_registry(inf, &single(inf, install, "AddReg"));
    assert_copy_files(inf, &single(inf, install, "CopyFiles"), model.dirid);
    assert_services(inf, install, model.dirid);
}

fn reg<'a>(lines: &'a [RegLine], subkey: &str, name: &str) -> &'a RegLine {
    let mut matching =
        lines.iter().filter(|l| l.subkey.eq_ignore_ascii_case(subkey) && l.value_name.eq_ignore_ascii_case(name));
    let line = matching.next().unwrap_or_else(|| panic!("no HKR {subkey} {name}"));
    assert!(matching.next().is_none(), "HKR {subkey} {name} set twice");
    assert_eq!(line.root, "HKR");
    line
}

fn reg_dword(lines: &[RegLine], subkey: &str, name: &str) -> u32 {
    let line = reg(lines, subkey, name);
    // FLG_ADDREG_TYPE_DWORD
    assert_eq!(line.flags, 0x0001_0001, "{subkey} {name} is a REG_DWORD");
    parse_number(&line.value.concat()).expect("a number")
}

fn reg_string(lines: &[RegLine], subkey: &str, name: &str) -> String {
    let line = reg(lines, subkey, name);
    assert_eq!(line.flags, 0, "{subkey} {name} is a REG_SZ");
    assert_eq!(line.value.len(), 1, "{subkey} {name} has one value");
    line.value[0].clone()
}

fn assert_ndi_registry(inf: &Inf, section: &str) {
    let lines = inf.registry_lines(section).expect("the Ndi AddReg section");
    assert_eq!(reg_string(&lines, "Ndi", "Service"), SERVICE_NAME);
    let co_services = reg(&lines, "Ndi", "CoServices");
    // FLG_ADDREG_TYPE_MULTI_SZ
    assert_eq!(co_services.flags, 0x0001_0000, "CoServices is a REG_MULTI_SZ");
    assert!(co_services.value.iter().any(|s| s == SERVICE_NAME), "CoServices names the service");
    assert_eq!(reg_dword(&lines, "Ndi", "FilterType"), 2, "a modifying filter");
    let class = reg_string(&lines, "Ndi", "FilterClass");
    assert!(FILTER_CLASSES.contains(&class.as_str()), "documented FilterClass, not {class}");
    assert_eq!(reg_dword(&lines, "Ndi", "FilterRunType"), 2, "an optional filter");
    assert_eq!(reg_string(&lines, "Ndi\\Interfaces", "UpperRange"), "noupper");
    assert_eq!(reg_string(&lines, "Ndi\\Interfaces", "LowerRange"), "nolower");
    let media = reg_string(&lines, "Ndi\\Interfaces", "FilterMediaTypes");
    assert!(media.split(',').any(|m| m.trim() == "ethernet"), "binds to ethernet: {media}");
}

fn assert_copy_files(inf: &Inf, section: &str, dirid: u32) {
    let files = inf.require_section(section).expect("the CopyFiles section");
    assert_eq!(files.entries.len(), 1, "[{section}] copies one file");
    assert_eq!(files.entries[0].fields[0], BINARY_NAME, "[{section}]");
    assert_eq!(number(inf, "DestinationDirs", section), dirid, "DestinationDirs of {section}");
}

fn assert_services(inf: &Inf, install: &str, dirid: u32) {
    let services = format!("{install}.Services");
    let add = inf.value(&services, "AddService").unwrap_or_else(|| panic!("[{services}] has AddService"));
    assert_eq!(add[0], SERVICE_NAME, "[{services}] service name");
    let service = add.get(2).unwrap_or_else(|| panic!("[{services}] names a service-install section"));
    assert_eq!(single(inf, service, "ServiceBinary"), format!("%{dirid}%\\{BINARY_NAME}"));
    assert_eq!(number(inf, service, "ServiceType"), 1, "SERVICE_KERNEL_DRIVER");
    assert_eq!(number(inf, service, "StartType"), 1, "SERVICE_SYSTEM_START");
    assert_eq!(single(inf, service, "LoadOrderGroup"), "NDIS");
    let remove = format!("{install}.Remove.Services");
    let delete = inf.value(&remove, "DelService").unwrap_or_else(|| panic!("[{remove}] has DelService"));
    assert_eq!(delete[0], SERVICE_NAME, "[{remove}]");
}

fn assert_source_disks(inf: &Inf) {
    let files = inf.require_section("SourceDisksFiles").expect("[SourceDisksFiles]");
    assert!(files.first(BINARY_NAME).is_some(), "[SourceDisksFiles] lists {BINARY_NAME}");
    assert!(inf.section("SourceDisksNames").is_some(), "[SourceDisksNames]");
}
