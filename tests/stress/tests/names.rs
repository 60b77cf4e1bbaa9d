//! One source of truth for names: every `portwatch.exe` command line in
//! `scripts/*.ps1`, `docs/*.md`, `README.md` and the scenarios' README must
//! name subcommands, flags and scenarios that the tool has (checked against
//! clap's own command tree), every scenario list of a script must be the
//! tool's, and the tool's old name must be gone.

use std::path::{Path, PathBuf};

use clap::Command;
use portwatch_cli::cli::command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The files the test reads, with their text.
fn sources() -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = Vec::new();
    for (dir, ext) in [("scripts", "ps1"), ("docs", "md")] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .unwrap_or_else(|e| panic!("{dir}/: {e}"))
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect();
        found.sort();
        files.extend(found);
    }
    files.push(root().join("README.md"));
    files.push(root().join("tests/scenarios/README.md"));
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let name = p.strip_prefix(root()).unwrap_or(&p).display().to_string();
            (name, text)
        })
        .collect()
}

/// The code of a file, line by line: for Markdown the inline code spans
/// and fenced blocks, for PowerShell every line outside comments.
fn code_segments(name: &str, text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    if name.ends_with(".ps1") {
        let mut in_help = false;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if t.starts_with("<#") {
                in_help = !t.contains("#>");
                continue;
            }
            if in_help {
                in_help = !t.contains("#>");
                continue;
            }
            if !t.starts_with('#') {
                out.push((i + 1, line.to_owned()));
            }
        }
        return out;
    }
    let mut in_fence = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            out.push((i + 1, line.to_owned()));
        } else {
            out.extend(line.split('`').skip(1).step_by(2).map(|s| (i + 1, s.to_owned())));
        }
    }
    out
}

/// The argument lists after each `portwatch.exe` (or
/// `cargo run -p portwatch-cli --`) in `code`; in PowerShell (`ps1`) only
/// calls, `& $PortWatchExe ...` or `& portwatch.exe ...`.
fn invocations(code: &str, ps1: bool) -> Vec<Vec<String>> {
    let words = shell_words(code);
    let tokens: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if ps1 && (i == 0 || tokens[i - 1] != "&") {
            continue;
        }
        let word = t.trim_matches(|c| matches!(c, '"' | '\'' | '&' | '(' | ')')).to_ascii_lowercase();
        let word = word.rsplit(['\\', '/']).next().unwrap_or("");
        let start = if word == "portwatch.exe" || word == "$portwatchexe" {
            i + 1
        } else if word == "portwatch-cli" && tokens.get(i + 1) == Some(&"--") {
            i + 2
        } else {
            continue;
        };
        let mut args = Vec::new();
        for raw in &tokens[start.min(tokens.len())..] {
            if ["|", ";", "#", ">", "2>", "*>", "&&", "||", "2>&1", "}"].iter().any(|s| raw.starts_with(s)) {
                break;
            }
            args.push(raw.trim_matches(|c| matches!(c, '"' | '\'' | ',' | '[' | ']' | '(' | ')')).to_owned());
        }
        found.push(args);
    }
    found
}

/// `code` split at blanks outside quotes; a quoted word keeps its quotes
/// off ("lab port" is one word).
fn shell_words(code: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut quoted = false;
    for c in code.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                quoted = true;
            }
            None if c.is_whitespace() => {
                if !word.is_empty() || quoted {
                    words.push(std::mem::take(&mut word));
                }
                quoted = false;
            }
            None => word.push(c),
        }
    }
    if !word.is_empty() || quoted {
        words.push(word);
    }
    words
}

fn is_placeholder(t: &str) -> bool {
    t.is_empty()
        || t.starts_with(['$', '@', '<', '%'])
        || t == "..."
        || t.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '_' | ':' | '.' | '-'))
}

/// Checks one argument list against the command tree; the first problem.
fn check(root: &Command, args: &[String]) -> Result<(), String> {
    let mut cmd = root.clone();
    let mut positional = 0usize;
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = long.split_once('=').map_or((long, false), |(n, _)| (n, true));
            if name.is_empty() {
                break;
            }
            if name == "help" || (name == "version" && cmd.get_name() == root.get_name()) {
                continue;
            }
            let arg = cmd
                .get_arguments()
                .find(|x| x.get_long() == Some(name))
                .ok_or_else(|| format!("`{}` has no flag --{name}", cmd.get_name()))?;
            if arg.get_action().takes_values() && !inline {
                it.next();
            }
        } else if a.starts_with('-') && a.len() == 2 && a != "--" {
            if a != "-h" && a != "-V" {
                return Err(format!("`{}` has no flag {a}", cmd.get_name()));
            }
        } else if is_placeholder(a) {
            if cmd.has_subcommands() {
                return Ok(()); // a variable subcommand: nothing more to check
            }
            positional += 1;
        } else if cmd.has_subcommands() {
            let sub = cmd.find_subcommand(a).cloned().ok_or_else(|| {
                let names: Vec<&str> = cmd.get_subcommands().map(Command::get_name).collect();
                format!("`{}` has no subcommand '{a}' (one of: {})", cmd.get_name(), names.join(", "))
            })?;
            cmd = sub;
            positional = 0;
        } else {
            let arg = cmd
                .get_positionals()
                .nth(positional)
                .or_else(|| {
                    cmd.get_positionals().last().filter(|p| p.get_num_args().is_some_and(|n| n.max_values() > 1))
                })
                .ok_or_else(|| format!("`{}` takes no argument '{a}'", cmd.get_name()))?;
            let values = arg.get_possible_values();
            if !values.is_empty() && !values.iter().any(|v| v.matches(a, false)) {
                let names: Vec<&str> = values.iter().map(|v| v.get_name()).collect();
                return Err(format!("'{a}' is not one of `{}`'s values ({})", cmd.get_name(), names.join(", ")));
            }
            positional += 1;
        }
    }
    Ok(())
}

fn scenario_names() -> Vec<String> {
    let stress = command().find_subcommand("stress").expect("stress").clone();
    let scenario = stress.get_positionals().next().expect("the scenario argument").clone();
    scenario.get_possible_values().iter().map(|v| v.get_name().to_owned()).collect()
}

/// Every command line in the scripts and docs names what the tool has.
#[test]
fn command_lines_in_scripts_and_docs_exist_in_the_tool() {
    let root_cmd = command();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (name, text) in sources() {
        for (line, code) in code_segments(&name, &text) {
            for args in invocations(&code, name.ends_with(".ps1")) {
                checked += 1;
                if let Err(e) = check(&root_cmd, &args) {
                    problems.push(format!("{name}:{line}: `portwatch.exe {}`: {e}", args.join(" ")));
                }
            }
        }
    }
    assert!(problems.is_empty(), "names the tool does not have:\n{}", problems.join("\n"));
    assert!(checked >= 10, "only {checked} command lines found: is the scan still finding them?");
}

/// Scenario lists in scripts (`[ValidateSet(...)] ... $Scenario`) are the
/// tool's scenario names.
#[test]
fn script_scenario_lists_are_the_tools() {
    let names = scenario_names();
    let mut problems = Vec::new();
    for (file, text) in sources().into_iter().filter(|(n, _)| n.ends_with(".ps1")) {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(start) = line.find("ValidateSet(") else { continue };
            let rest = format!("{} {}", line, lines.get(i + 1).unwrap_or(&""));
            if !rest.contains("$Scenario") {
                continue;
            }
            let set = &line[start + "ValidateSet(".len()..];
            let set = set.split(')').next().unwrap_or("");
            for v in set.split(',').map(|v| v.trim().trim_matches('\'').trim_matches('"')) {
                if !names.iter().any(|n| n == v) {
                    problems.push(format!("{file}:{}: '{v}' is not a scenario (one of: {})", i + 1, names.join(", ")));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn all_long_flags(c: &Command, into: &mut Vec<String>) {
    into.extend(c.get_arguments().filter_map(|a| a.get_long()).map(String::from));
    for s in c.get_subcommands() {
        all_long_flags(s, into);
    }
}

/// Flags that scripts pass through arrays (`@('--threads', $Threads)`,
/// splatted into portwatch.exe) exist in the tool.
#[test]
fn flags_quoted_in_scripts_exist_in_the_tool() {
    let mut flags = vec!["help".to_owned(), "version".to_owned()];
    all_long_flags(&command(), &mut flags);
    let mut problems = Vec::new();
    let mut seen = 0;
    for (file, text) in sources().into_iter().filter(|(n, _)| n.ends_with(".ps1")) {
        for (line, code) in code_segments(&file, &text) {
            for quoted in code.split('\'').skip(1).step_by(2) {
                if let Some(flag) = quoted.strip_prefix("--") {
                    seen += 1;
                    if !flags.iter().any(|f| f == flag) {
                        problems.push(format!("{file}:{line}: portwatch.exe has no flag --{flag}"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(seen >= 5, "only {seen} quoted flags found in the scripts");
}

/// The separate stress tool is gone: nothing may tell a user to run it.
#[test]
fn the_old_tool_name_is_gone() {
    let problems: Vec<String> = sources()
        .into_iter()
        .flat_map(|(name, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, l)| l.contains("portwatch-stress"))
                .map(|(i, _)| format!("{name}:{}", i + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(problems.is_empty(), "portwatch-stress is now `portwatch.exe stress`: {}", problems.join(", "));
}

#[test]
fn the_checker_catches_wrong_names() {
    let c = command();
    let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert!(check(&c, &args("stress lwf-logo --duration 600 --seed 7")).is_ok());
    assert!(check(&c, &args("verifier on --low-resources")).is_ok());
    assert!(check(&c, &args("stress $Name --threads $Threads")).is_ok());
    assert!(check(&c, &args("bind udp:5000 tcp:443 --hold 5")).is_ok());
    assert!(check(&c, &args("stress data-path")).unwrap_err().contains("'data-path' is not one of"));
    assert!(check(&c, &args("stress races --ops-per-thread 5")).unwrap_err().contains("no flag --ops-per-thread"));
    assert!(check(&c, &args("verifier query")).unwrap_err().contains("no subcommand 'query'"));
    assert!(check(&c, &args("instal")).is_err());
    let found = invocations("& $PortWatchExe stress datapath --threads 8 2>&1 | Tee-Object x", true);
    assert_eq!(found, [args("stress datapath --threads 8")]);
    assert!(invocations("$PortWatchExe = Join-Path $PSScriptRoot 'portwatch.exe'", true).is_empty());
    assert_eq!(invocations(r".\portwatch.exe verifier on", false), [args("verifier on")]);
    assert_eq!(invocations("cargo run -p portwatch-cli -- stress races", false), [args("stress races")]);
    let named = invocations(r#"portwatch.exe port-name "lab port""#, false);
    assert_eq!(named, [vec!["port-name".to_owned(), "lab port".to_owned()]]);
    assert!(check(&c, &named[0]).is_ok());
}
