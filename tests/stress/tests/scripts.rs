//! The PowerShell scripts run on Windows PowerShell 5.1 as well as
//! PowerShell 7: with `$ErrorActionPreference = 'Stop'`, Windows PowerShell
//! 5.1 turns the first line a native tool writes to stderr into a
//! terminating error when that stderr is redirected through PowerShell
//! (`2>&1`, `2>file`, `*>`). So no script that sets 'Stop' may redirect
//! stderr at all (portwatch.exe's progress goes to stderr), and every
//! script calls portwatch.exe rather than the tools it wraps.

use std::path::Path;

fn scripts() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts");
    let mut found: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("scripts/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "ps1"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("script"))
        })
        .collect();
    found.sort();
    found
}

/// Code lines (outside comments and the help block) with a stderr
/// redirection, in a script that sets `$ErrorActionPreference = 'Stop'`.
fn stderr_redirections(text: &str) -> Vec<usize> {
    if !text.contains("$ErrorActionPreference = 'Stop'") {
        return Vec::new();
    }
    let mut in_help = false;
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("<#") || in_help {
            in_help = !t.contains("#>");
            continue;
        }
        let code = t.split(" #").next().unwrap_or("");
        if t.starts_with('#') {
            continue;
        }
        if code.contains("2>") || code.contains("*>") {
            found.push(i + 1);
        }
    }
    found
}

#[test]
fn no_script_redirects_native_stderr_under_stop() {
    for (name, text) in scripts() {
        let lines = stderr_redirections(&text);
        assert!(lines.is_empty(), "{name}: stderr redirected under 'Stop' on line(s) {lines:?}");
    }
}

#[test]
fn the_check_sees_redirections() {
    let bad = "$ErrorActionPreference = 'Stop'\n& $Exe @arguments 2>&1 | Tee-Object -FilePath $log\n";
    assert_eq!(stderr_redirections(bad), [2]);
    assert_eq!(stderr_redirections("$ErrorActionPreference = 'Stop'\n& verifier.exe /query *> $path\n"), [2]);
    assert!(stderr_redirections("# 2>&1 in a comment\n$ErrorActionPreference = 'Stop'\n").is_empty());
}

#[test]
fn every_script_calls_portwatch_exe() {
    for (name, text) in scripts() {
        assert!(text.contains("& $PortWatchExe "), "{name} does not call portwatch.exe");
        for tool in ["netcfg.exe", "verifier.exe", "bcdedit.exe", "certutil.exe", "pnputil.exe"] {
            assert!(!text.contains(&format!("& {tool}")), "{name} runs {tool} itself: portwatch.exe does that");
        }
    }
}
