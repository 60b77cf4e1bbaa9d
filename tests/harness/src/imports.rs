//! The registry of modelled imports: every function the harness can bind a
//! driver import to, named by the DLL that exports it on Windows.

/// One modelled import: `dll!name` is bound to the `extern "win64"`
/// function at `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Import {
    /// Exporting module as written in the driver's import table
    /// (`ntoskrnl.exe`, `ndis.sys`, `hal.dll`); compared case-insensitively.
    pub dll: &'static str,
    /// Exported function name.
    pub name: &'static str,
    /// Address of the model function.
    pub addr: usize,
}

impl Import {
    /// An `ntoskrnl.exe` import.
    pub const fn ntoskrnl(name: &'static str, addr: usize) -> Self {
        Self { dll: "ntoskrnl.exe", name, addr }
    }

    /// A `hal.dll` import.
    pub const fn hal(name: &'static str, addr: usize) -> Self {
        Self { dll: "hal.dll", name, addr }
    }

    /// An `ndis.sys` import.
    pub const fn ndis(name: &'static str, addr: usize) -> Self {
        Self { dll: "ndis.sys", name, addr }
    }

    /// Whether this entry binds `dll!name`.
    pub fn matches(&self, dll: &str, name: &str) -> bool {
        self.dll.eq_ignore_ascii_case(dll) && self.name == name
    }
}

/// Every modelled import of the harness.
pub fn registry() -> Vec<Import> {
    let mut all = crate::kernel::imports();
    all.extend(crate::locks::imports());
    all.extend(crate::wait::imports());
    all.extend(crate::kmutex::imports());
    all.extend(crate::registry::imports());
    all.extend(crate::pool::imports());
    all.extend(crate::processor::imports());
    all.extend(crate::io::imports());
    all.extend(crate::cancel::imports());
    all.extend(crate::time::imports());
    all.extend(crate::ndis::imports());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_has_no_duplicate_names() {
        let all = registry();
        for (i, a) in all.iter().enumerate() {
            let dup = all[i + 1..].iter().any(|b| b.matches(a.dll, a.name));
            assert!(!dup, "{}!{} registered twice", a.dll, a.name);
        }
    }

    #[test]
    fn dll_match_is_case_insensitive() {
        let imp = Import::ntoskrnl("memcpy", 1);
        assert!(imp.matches("NTOSKRNL.EXE", "memcpy"));
        assert!(!imp.matches("ntoskrnl.exe", "memmove"));
    }
}
