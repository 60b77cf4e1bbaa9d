//! PowerShell syntax check on Linux.
//!
//! PowerShell itself is not installable here, so the scripts in `scripts/`
//! are parsed with the tree-sitter PowerShell grammar. A syntax error shows
//! up as an `ERROR` node or a `MISSING` node (a token the parser had to
//! invent, such as a closing brace). This checks syntax only: cmdlet names,
//! parameters and run-time behaviour are not checked.
//!
//! ```
//! use portwatch_package_tests::powershell::syntax_errors;
//!
//! assert!(syntax_errors("Get-Item -Path $env:TEMP | Out-Null").is_empty());
//! assert!(!syntax_errors("if ($x) { Write-Host 'open'").is_empty());
//! ```

use std::fmt;

/// One syntax problem, with a 1-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in bytes).
    pub column: usize,
    /// What the parser found: `ERROR`, or `MISSING <kind>`.
    pub what: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.what)
    }
}

/// Parses `source` as PowerShell and returns every syntax problem found
/// (empty when the script parses cleanly).
pub fn syntax_errors(source: &str) -> Vec<SyntaxError> {
    let mut parser = tree_sitter::Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .expect("the grammar matches the tree-sitter runtime's ABI");
    let tree = parser.parse(source, None).expect("parsing without a timeout or cancellation returns a tree");
    let mut errors = Vec::new();
    collect_errors(tree.root_node(), &mut errors);
    errors
}

fn collect_errors(node: tree_sitter::Node<'_>, errors: &mut Vec<SyntaxError>) {
    if !node.has_error() {
        return;
    }
    if node.is_error() || node.is_missing() {
        let start = node.start_position();
        let what = if node.is_missing() { format!("MISSING {}", node.kind()) } else { "ERROR".to_owned() };
        errors.push(SyntaxError { line: start.row + 1, column: start.column + 1, what });
    }
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        collect_errors(child, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_script_constructs() {
        let script = r#"
<#
.SYNOPSIS
    Example.
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)] [string] $Path,
    [ValidateRange(1, 64)] [int] $Threads = 4,
    [switch] $Force
)
$ErrorActionPreference = 'Stop'
function Test-Thing([string] $Name) {
    try { & netcfg.exe -q $Name } catch { Write-Warning "failed: $($_.Exception.Message)" }
    foreach ($a in Get-NetAdapter) { if ($a.Status -eq 'Up') { $a.Name } }
    return @{ Name = $Name; Count = 3 }
}
"#;
        assert_eq!(syntax_errors(script), []);
    }

    #[test]
    fn reports_an_unclosed_block() {
        let errors = syntax_errors("function f {\n  if ($x) {\n    1\n}\n");
        assert!(!errors.is_empty());
    }

    #[test]
    fn reports_a_stray_token_with_its_line() {
        let errors = syntax_errors("$a = 1\n$b = (2 +)\n");
        assert!(errors.iter().any(|e| e.line == 2), "{errors:?}");
    }
}
