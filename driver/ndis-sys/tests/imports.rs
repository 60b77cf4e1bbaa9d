//! Every kernel function declared in `src/` is really exported on x64 by the
//! module it is imported from.
//!
//! The declarations are read textually from the sources: each
//! `#[link(name = "<module>", kind = "raw-dylib", modifiers = "+verbatim")]`
//! followed by an `extern` block, and every `pub fn` in that block. The
//! exports come from mingw-w64's x64 import libraries (Debian package
//! `mingw-w64-x86-64-dev`), read with the `object` crate: each import library
//! member defines `__imp_<name>` for one export.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use object::read::archive::ArchiveFile;
use object::{Object, ObjectSection, ObjectSymbol};

/// Declared imports the import libraries do not list, each checked against
/// Microsoft's documentation instead. The test below also fails if a name
/// here is exported by the library after all (the entry is then stale).
const NOT_IN_IMPORT_LIBRARIES: &[(&str, &str)] = &[
    // ExAllocatePool2: exported by ntoskrnl.exe since Windows 10 version 2004
    // ("Minimum supported client: Windows 10, version 2004", "Library:
    // NtosKrnl.lib", Microsoft's ExAllocatePool2 reference page). Debian's
    // mingw-w64 import library predates it.
    ("ntoskrnl.exe", "ExAllocatePool2"),
];

/// Where mingw-w64's x64 import libraries live (override with
/// `NDIS_SYS_MINGW_LIB_DIR`).
fn mingw_lib_dir() -> PathBuf {
    std::env::var_os("NDIS_SYS_MINGW_LIB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/x86_64-w64-mingw32/lib"))
}

/// The import library describing a kernel module's exports.
fn import_library(module: &str) -> PathBuf {
    let stem = match module {
        "ndis.sys" => "ndis",
        "ntoskrnl.exe" => "ntoskrnl",
        "hal.dll" => "hal",
        other => panic!("imports from {other:?}: a driver imports only from ntoskrnl.exe, ndis.sys and hal.dll"),
    };
    mingw_lib_dir().join(format!("lib{stem}.a"))
}

/// A kernel function declared in the sources.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    module: String,
    name: String,
    file: String,
}

/// Extracts the imports declared in one source file.
///
/// Panics on an `extern` block without a `#[link]` (an import whose module
/// nothing checks) and on a `#[link]` that is not raw-dylib + verbatim.
fn declared_imports(file: &str, source: &str) -> Vec<Import> {
    let mut imports = Vec::new();
    let mut pending_module: Option<String> = None;
    let mut current_module: Option<String> = None;
    for (number, line) in source.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("#[link(name = \"") {
            assert!(
                trimmed.contains("kind = \"raw-dylib\"") && trimmed.contains("modifiers = \"+verbatim\""),
                "{file}:{}: #[link] must be raw-dylib with +verbatim",
                number + 1
            );
            pending_module = Some(rest.split('"').next().unwrap_or_default().to_owned());
        } else if trimmed.starts_with("extern \"") && trimmed.ends_with('{') {
            current_module = Some(
                pending_module
                    .take()
                    .unwrap_or_else(|| panic!("{file}:{}: extern block without #[link(name = ...)]", number + 1)),
            );
        } else if current_module.is_some() && line.starts_with('}') {
            current_module = None;
        } else if let (Some(module), Some(rest)) = (&current_module, trimmed.strip_prefix("pub fn ")) {
            let name = rest.split(['(', '<']).next().unwrap_or_default().trim();
            imports.push(Import { module: module.clone(), name: name.to_owned(), file: file.to_owned() });
        }
    }
    imports
}

/// Every import declared under `src/`.
fn all_declared_imports() -> Vec<Import> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut imports = Vec::new();
    for entry in fs::read_dir(&src).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let source = fs::read_to_string(&path).expect("read source");
            let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            imports.extend(declared_imports(&file, &source));
        }
    }
    imports.sort();
    imports
}

/// What an import library says about its module: the DLL name it names and
/// the functions it exports.
struct ImportLibrary {
    dll_names: BTreeSet<String>,
    exports: HashSet<String>,
}

fn read_import_library(path: &Path) -> ImportLibrary {
    let data = fs::read(path).unwrap_or_else(|e| {
        panic!("{}: {e} (install the mingw-w64-x86-64-dev package, or set NDIS_SYS_MINGW_LIB_DIR)", path.display())
    });
    let archive = ArchiveFile::parse(&*data).expect("an ar archive");
    let mut library = ImportLibrary { dll_names: BTreeSet::new(), exports: HashSet::new() };
    for member in archive.members() {
        let member = member.expect("archive member");
        let bytes = member.data(&*data).expect("member data");
        // ar members are only 2-byte aligned; the COFF reader needs the
        // header's natural alignment.
        let mut buffer = vec![0u8; bytes.len() + 8];
        let start = buffer.as_ptr().align_offset(8);
        let aligned = &mut buffer[start..start + bytes.len()];
        aligned.copy_from_slice(bytes);
        let coff = object::File::parse(&*aligned)
            .unwrap_or_else(|e| panic!("{}: member {:?}: {e}", path.display(), String::from_utf8_lossy(member.name())));
        for symbol in coff.symbols().filter(|s| s.is_definition()) {
            if let Some(name) = symbol.name().ok().and_then(|n| n.strip_prefix("__imp_")) {
                library.exports.insert(name.to_owned());
            }
        }
        // The name of the imported DLL is the string in `.idata$7` of the
        // library's tail member (the other members have zeroes there).
        for section in coff.sections().filter(|s| s.name() == Ok(".idata$7")) {
            let raw = section.data().unwrap_or_default();
            let name: Vec<u8> = raw.iter().copied().take_while(|&b| b != 0).collect();
            if !name.is_empty() {
                library.dll_names.insert(String::from_utf8_lossy(&name).to_ascii_lowercase());
            }
        }
    }
    library
}

/// The declared imports that the import libraries do not export.
fn unexported(imports: &[Import]) -> Vec<Import> {
    let modules: BTreeSet<&str> = imports.iter().map(|i| i.module.as_str()).collect();
    let mut missing = Vec::new();
    for module in modules {
        let library = read_import_library(&import_library(module));
        assert!(
            library.dll_names.contains(module),
            "{} names {:?}, not {module}",
            import_library(module).display(),
            library.dll_names
        );
        missing.extend(imports.iter().filter(|i| i.module == module && !library.exports.contains(&i.name)).cloned());
    }
    missing
}

fn is_excepted(import: &Import) -> bool {
    NOT_IN_IMPORT_LIBRARIES.iter().any(|&(m, n)| m == import.module && n == import.name)
}

#[test]
fn every_declared_import_is_exported_by_its_module() {
    let imports = all_declared_imports();
    let missing: Vec<Import> = unexported(&imports).into_iter().filter(|i| !is_excepted(i)).collect();
    assert!(missing.is_empty(), "not exported on x64 by the module they are imported from: {missing:#?}");
}

#[test]
fn exceptions_are_declared_and_really_missing_from_the_libraries() {
    let imports = all_declared_imports();
    let missing = unexported(&imports);
    for &(module, name) in NOT_IN_IMPORT_LIBRARIES {
        assert!(
            imports.iter().any(|i| i.module == module && i.name == name),
            "exception {module}!{name} is not declared in src/"
        );
        assert!(
            missing.iter().any(|i| i.module == module && i.name == name),
            "exception {module}!{name} is exported by the import library: remove the exception"
        );
    }
}

#[test]
fn the_source_scan_finds_the_declarations() {
    let imports = all_declared_imports();
    let has = |module: &str, name: &str| imports.iter().any(|i| i.module == module && i.name == name);
    assert!(has("ndis.sys", "NdisFRegisterFilterDriver"), "{imports:#?}");
    assert!(has("ndis.sys", "NdisAllocateSpinLock"), "{imports:#?}");
    assert!(has("ntoskrnl.exe", "IofCompleteRequest"), "{imports:#?}");
    assert!(has("ntoskrnl.exe", "ExAcquireRundownProtection"), "{imports:#?}");
    assert!(has("ntoskrnl.exe", "DbgPrintEx"), "{imports:#?}");
    // Names are unique per module: a duplicate would be a copy-paste slip.
    let unique: BTreeSet<(&str, &str)> = imports.iter().map(|i| (i.module.as_str(), i.name.as_str())).collect();
    assert_eq!(unique.len(), imports.len(), "{imports:#?}");
}

#[test]
fn an_unexported_declaration_is_reported() {
    let source = concat!(
        "#[link(name = \"ndis.sys\", kind = \"raw-dylib\", modifiers = \"+verbatim\")]\n",
        "extern \"system\" {\n",
        "    /// Real.\n",
        "    pub fn NdisFPauseComplete(NdisFilterHandle: NDIS_HANDLE);\n",
        "    /// Not an export of ndis.sys (it is ntoskrnl's).\n",
        "    pub fn IofCompleteRequest(Irp: *mut IRP, PriorityBoost: i8);\n",
        "}\n",
    );
    let imports = declared_imports("synthetic.rs", source);
    assert_eq!(imports.len(), 2);
    let missing = unexported(&imports);
    assert_eq!(missing.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["IofCompleteRequest"]);
}

#[test]
#[should_panic(expected = "extern block without #[link")]
fn an_extern_block_without_a_link_attribute_is_rejected() {
    declared_imports("synthetic.rs", "extern \"system\" {\n    pub fn KeBugCheckEx(Code: u32) -> !;\n}\n");
}
