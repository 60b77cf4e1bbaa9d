//! Syntax check of the PowerShell scripts in `scripts/` (parsed with the
//! tree-sitter PowerShell grammar; PowerShell does not run here).

use portwatch_package_tests::{paths, powershell};

/// The Windows test-VM scripts; each must exist and parse.
const SCRIPTS: [&str; 4] = ["install.ps1", "verifier.ps1", "stress.ps1", "uninstall.ps1"];

fn script(name: &str) -> String {
    let path = paths::workspace_root().join("scripts").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn scripts_parse_without_syntax_errors() {
    for name in SCRIPTS {
        let errors = powershell::syntax_errors(&script(name));
        assert!(errors.is_empty(), "{name}: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
    }
}

#[test]
fn scripts_have_comment_based_help() {
    for name in SCRIPTS {
        let text = script(name);
        let help = text.find("<#").zip(text.find("#>")).map(|(start, end)| &text[start..end]);
        let help = help.unwrap_or_else(|| panic!("{name}: no comment-based help block"));
        for keyword in [".SYNOPSIS", ".DESCRIPTION", ".EXAMPLE"] {
            assert!(help.contains(keyword), "{name}: help has no {keyword}");
        }
    }
}

#[test]
fn every_script_in_the_folder_is_checked() {
    let mut found: Vec<String> = std::fs::read_dir(paths::workspace_root().join("scripts"))
        .expect("scripts/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ps1"))
        .collect();
    found.sort();
    let mut expected: Vec<String> = SCRIPTS.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(found, expected);
}
