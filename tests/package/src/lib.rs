//! Checks of the PortWatch driver package.
//!
//! The integration tests in `tests/` use these helpers:
//!
//! - [`inf`]: a small INF parser (sections, entries, `%string%` tokens,
//!   registry lines) used to cross-check `inf/portwatch.inx` and the stamped
//!   `portwatch.inf` against the driver's constants in `portwatch-proto`;
//! - [`inf_checks`]: those cross-reference checks;
//! - [`pe_checksum`]: the PE image checksum, computed the way the Windows
//!   loader and `CheckSumMappedFile` do;
//! - [`powershell`]: a PowerShell syntax check built on a tree-sitter grammar,
//!   for the scripts in `scripts/` (no PowerShell on Linux);
//! - [`osslsigncode`]: runs osslsigncode (installing it when missing);
//! - [`paths`]: where the package and the sources are.

pub mod inf;
pub mod inf_checks;
pub mod osslsigncode;
pub mod paths;
pub mod pe_checksum;
pub mod powershell;
