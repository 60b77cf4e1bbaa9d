//! The two package recipes -- `scripts/package.sh` (Linux) and the
//! cargo-make flow of `Makefile.toml` (Windows, WDK) -- agree with each
//! other, with the INF and with the driver's version. The Windows flow
//! cannot run here, so its task definitions are read and checked:
//!
//! - one certificate file name, the one the install script imports;
//! - one version: Cargo's, stamped into the INF's DriverVer by both;
//! - infverif's `/wbuild` sits between the INF's DIRID 12 and DIRID 13
//!   models, inf2cat's `/os` is the catalog's OS for the lowest model.

use portwatch_package_tests::inf::Inf;
use portwatch_package_tests::paths;
use std::path::Path;

fn read(relative: &str) -> String {
    let path = paths::workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn makefile() -> toml::Table {
    read("Makefile.toml").parse().expect("Makefile.toml is TOML")
}

/// A task of Makefile.toml.
fn task<'a>(makefile: &'a toml::Table, name: &str) -> &'a toml::Table {
    makefile
        .get("tasks")
        .and_then(|tasks| tasks.get(name))
        .and_then(|task| task.as_table())
        .unwrap_or_else(|| panic!("no [tasks.{name}] in Makefile.toml"))
}

fn args(task: &toml::Table) -> Vec<String> {
    task["args"].as_array().expect("args").iter().map(|a| a.as_str().expect("string arg").to_string()).collect()
}

/// The workspace's version, which the driver crate inherits.
fn cargo_version() -> String {
    let driver: toml::Table = read("driver/portwatch/Cargo.toml").parse().expect("TOML");
    assert_eq!(
        driver["package"]["version"].get("workspace").and_then(|w| w.as_bool()),
        Some(true),
        "driver/portwatch takes the workspace's version"
    );
    let workspace: toml::Table = read("Cargo.toml").parse().expect("TOML");
    workspace["workspace"]["package"]["version"].as_str().expect("workspace.package.version").to_string()
}

const CERTIFICATE: &str = "portwatch-test.cer";

#[test]
fn both_recipes_name_the_certificate_the_install_script_imports() {
    let package_sh = read("scripts/package.sh");
    assert!(package_sh.contains(&format!("\"$package_dir/{CERTIFICATE}\"")), "package.sh writes {CERTIFICATE}");
    let makefile = makefile();
    let copy = task(&makefile, "copy-certificate-to-package");
    assert_eq!(copy.get("clear").and_then(|c| c.as_bool()), Some(true), "wdk-build's copy task is replaced");
    let script = copy["script"].as_str().expect("a script");
    assert!(
        script.contains(&format!("${{package}}/{CERTIFICATE}")),
        "the Windows flow writes {CERTIFICATE}:\n{script}"
    );
    // The tests' default certificate path is the package's, on both hosts.
    let test_env = task(&makefile, "test").get("windows").and_then(|w| w.get("env"));
    assert!(
        test_env.and_then(|e| e.get(paths::TEST_CER_OVERRIDE_VAR)).is_none(),
        "the Windows test task points the tests at another certificate"
    );
    assert!(paths::test_certificate().ends_with(CERTIFICATE));
    let install = read("scripts/install.ps1");
    assert!(install.contains(CERTIFICATE), "scripts/install.ps1 imports {CERTIFICATE}");
}

#[test]
fn the_packaged_inf_carries_cargos_version() {
    let text = String::from_utf8(paths::read_package_file(&paths::package_dir().join("portwatch.inf"))).expect("UTF-8");
    let inf = Inf::parse(&text).expect("the INF parses");
    let driver_ver = inf.value("Version", "DriverVer").expect("DriverVer");
    assert_eq!(driver_ver.get(1), Some(&format!("{}.0", cargo_version())), "DriverVer {driver_ver:?}");
}

#[test]
fn both_recipes_stamp_cargos_version() {
    let package_sh = read("scripts/package.sh");
    assert!(package_sh.contains("\"$(crate_version)\" amd64"), "package.sh stamps the crate version");
    let makefile = makefile();
    let stampinf = args(task(&makefile, "stampinf"));
    let v = stampinf.iter().position(|a| a == "-v").expect("stampinf -v");
    assert_eq!(stampinf[v + 1], "${CARGO_MAKE_CRATE_VERSION}.0", "the Windows flow's stampinf version");
}

/// (build, DIRID) of each decorated model of the INF source.
fn model_dirids() -> Vec<(u32, u32)> {
    let inf = Inf::parse(&read("inf/portwatch.inx").replace("$ARCH$", "amd64")).expect("the INX parses");
    let manufacturer = inf.section("Manufacturer").expect("[Manufacturer]");
    let entry = manufacturer.entries.first().expect("a manufacturer");
    let (models, decorations) = entry.fields.split_first().expect("models and decorations");
    decorations
        .iter()
        .map(|decoration| {
            let build = portwatch_catalog::inf::decoration_build(decoration).expect("a decorated build");
            let model = inf.section(&format!("{models}.{decoration}")).expect("the model section");
            let install = &model.entries[0].fields[0];
            let copy_files = inf.value(install, "CopyFiles").expect("CopyFiles");
            let dirid = inf.value("DestinationDirs", &copy_files[0]).expect("a DestinationDirs entry");
            (build, dirid[0].parse().expect("a DIRID"))
        })
        .collect()
}

#[test]
fn infverif_enforces_the_driver_store_rule_from_the_dirid_13_model_on() {
    let models = model_dirids();
    let system32 = models.iter().filter(|(_, d)| *d == 12).map(|(b, _)| *b).max().expect("a DIRID 12 model");
    let store = models.iter().filter(|(_, d)| *d == 13).map(|(b, _)| *b).min().expect("a DIRID 13 model");
    let infverif = args(task(&makefile(), "infverif"));
    assert!(infverif.contains(&"/w".to_string()), "infverif runs in /w mode: {infverif:?}");
    let w = infverif.iter().position(|a| a == "/wbuild").expect("infverif /wbuild (the INF has a DIRID 12 model)");
    let build: u32 = infverif[w + 1].rsplit('.').next().and_then(|b| b.parse().ok()).expect("/wbuild 10.0.<build>");
    assert!(
        system32 < build && build <= store,
        "/wbuild {build} must exempt the DIRID 12 model ({system32}) and cover the DIRID 13 model ({store})"
    );
}

#[test]
fn inf2cat_targets_the_catalogs_os() {
    let lowest = model_dirids().iter().map(|(b, _)| *b).min().expect("models");
    let (code, _) = portwatch_catalog::inf2cat_os_for_build(lowest).expect("an Inf2Cat OS code");
    let inf2cat = args(task(&makefile(), "inf2cat"));
    assert!(inf2cat.contains(&format!("/os:{code}")), "inf2cat {inf2cat:?} should target {code}");
}

#[test]
fn the_package_holds_the_files_the_readme_lists() {
    let readme = String::from_utf8(paths::read_package_file(&paths::package_dir().join("README.txt"))).expect("UTF-8");
    assert!(readme.contains(&cargo_version()), "README.txt names the version");
    for file in ["portwatch.sys", "portwatch.inf", "portwatch.cat", "portwatch.pdb", "portwatch.exe", CERTIFICATE] {
        assert!(readme.contains(file), "README.txt lists {file}");
        assert!(Path::new(&paths::package_dir().join(file)).is_file(), "the package lacks {file}");
    }
    for step in [
        "testsigning",
        "portwatch.exe install",
        "portwatch.exe verifier on",
        "portwatch.exe stress",
        "portwatch.exe uninstall",
    ] {
        assert!(readme.contains(step), "README.txt does not mention {step}");
    }
}
