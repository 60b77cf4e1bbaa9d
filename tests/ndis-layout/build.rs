//! With the `wdk-headers` feature: runs bindgen over the WDK's ndis.h (as an
//! NDIS 6.30 WDM filter compiles it, for x64) and writes the bindings of the
//! types ndis-sys writes by hand to `$OUT_DIR/ndis.rs`. Without the feature
//! it does nothing.
//!
//! Environment:
//! * `PORTWATCH_WDK_INCLUDE`: the WDK's `Include\<version>` folder (with
//!   `km`, `shared`, `um`). On Windows it defaults to the newest version
//!   under `C:\Program Files (x86)\Windows Kits\10\Include` that has
//!   `km\ndis.h`; elsewhere it is required.
//! * `PORTWATCH_WDK_EXTRA_CLANG_ARGS`: more clang arguments, split like a
//!   shell command line, placed before the WDK include folders (extra
//!   include folders, `-include` files).

fn main() {
    #[cfg(feature = "wdk-headers")]
    ndis_bindings::generate();
}

#[cfg(feature = "wdk-headers")]
mod ndis_bindings {
    use std::env;
    use std::path::{Path, PathBuf};

    /// The hand-written types of ndis-sys (structs and the scalar typedefs
    /// their fields use), by their C typedef names. IO_STACK_LOCATION is
    /// there for ndis-sys's views of its `Parameters` arms.
    const TYPES: &[&str] = &[
        "NDIS_OBJECT_HEADER",
        "NDIS_DEVICE_OBJECT_ATTRIBUTES",
        "NDIS_FILTER_DRIVER_CHARACTERISTICS",
        "NDIS_FILTER_ATTACH_PARAMETERS",
        "NDIS_FILTER_ATTRIBUTES",
        "NDIS_FILTER_RESTART_PARAMETERS",
        "NDIS_FILTER_PAUSE_PARAMETERS",
        "NDIS_STATUS_INDICATION",
        "NET_BUFFER_DATA_LENGTH",
        "NET_BUFFER_DATA",
        "NET_BUFFER_HEADER",
        "NET_BUFFER",
        "NET_BUFFER_LIST",
        "NET_LUID",
        "NDIS_SPIN_LOCK",
        "LOCK_STATE_EX",
        "IO_STACK_LOCATION",
        "NET_IFINDEX",
        "NDIS_PORT_NUMBER",
        "NDIS_MEDIUM",
        "NDIS_PHYSICAL_MEDIUM",
        "NDIS_MEDIA_CONNECT_STATE",
        "NET_IF_MEDIA_DUPLEX_STATE",
        "NDIS_PHYSICAL_ADDRESS",
        "NDIS_HANDLE",
        "NDIS_STATUS",
        "KIRQL",
        "KSPIN_LOCK",
        "KPROCESSOR_MODE",
        "EX_POOL_PRIORITY",
    ];

    /// How Microsoft's NDIS 6.30 filter sample compiles ndis.h, for x64
    /// kernel mode, as clang arguments; parsed as C++ because ndis.h only
    /// names some members in C++ (`NET_BUFFER_DATA::NbDataLength`,
    /// `NET_BUFFER_HEADER::NetBufferData`): in C they are anonymous members
    /// of a typedef'd type, which bindgen drops, leaving for instance
    /// NET_BUFFER_HEADER without its 48-byte arm. These structs are plain
    /// data: their layout is the same in C and C++.
    const CLANG_ARGS: &[&str] = &[
        "-xc++",
        "--target=x86_64-pc-windows-msvc",
        "-fms-extensions",
        "-fms-compatibility",
        "-fno-builtin",
        "-DNDIS630=1",
        "-DNDIS_WDM=1",
        "-D_AMD64_",
        "-D_WIN64",
        "-D_KERNEL_MODE",
    ];

    const INCLUDE_VAR: &str = "PORTWATCH_WDK_INCLUDE";
    const EXTRA_ARGS_VAR: &str = "PORTWATCH_WDK_EXTRA_CLANG_ARGS";

    pub fn generate() {
        println!("cargo:rerun-if-changed=wrapper.h");
        println!("cargo:rerun-if-env-changed={INCLUDE_VAR}");
        println!("cargo:rerun-if-env-changed={EXTRA_ARGS_VAR}");

        let include = wdk_include_dir();
        let mut builder = bindgen::Builder::default()
            .header("wrapper.h")
            .use_core()
            // Windows is LLP64 (`long` is 32 bits): the C types come from the
            // crate's `ctypes`, not from the host's core::ffi.
            .ctypes_prefix("crate::ctypes")
            // Host include folders (glibc's) must not mix with the WDK's.
            .detect_include_paths(false)
            .layout_tests(true)
            .derive_debug(false)
            .derive_default(false)
            .generate_comments(false)
            .clang_args(extra_clang_args())
            .clang_args(include_args(&include))
            .clang_args(CLANG_ARGS.iter().copied());
        for name in TYPES {
            builder = builder.allowlist_type(format!("^{name}$"));
        }
        let bindings = builder
            .generate()
            .unwrap_or_else(|error| panic!("bindgen could not parse ndis.h from {}: {error}", include.display()));
        let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("ndis.rs");
        bindings.write_to_file(&out).unwrap_or_else(|error| panic!("writing {}: {error}", out.display()));
    }

    /// `PORTWATCH_WDK_INCLUDE`, else (Windows only) the newest WDK in the
    /// standard install folder.
    fn wdk_include_dir() -> PathBuf {
        if let Some(dir) = env::var_os(INCLUDE_VAR) {
            return PathBuf::from(dir);
        }
        newest_installed_wdk().unwrap_or_else(|| {
            panic!(
                "the WDK headers were not found: set {INCLUDE_VAR} to the WDK's Include\\<version> folder \
                 (the one with km\\ndis.h)"
            )
        })
    }

    /// `C:\Program Files (x86)\Windows Kits\10\Include\<newest version>`
    /// that has `km\ndis.h`.
    fn newest_installed_wdk() -> Option<PathBuf> {
        if !cfg!(windows) {
            return None;
        }
        let program_files =
            env::var_os("ProgramFiles(x86)").map_or_else(|| PathBuf::from(r"C:\Program Files (x86)"), PathBuf::from);
        let kits = program_files.join(r"Windows Kits\10\Include");
        std::fs::read_dir(kits)
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|dir| dir.join("km").join("ndis.h").is_file())
            .max_by_key(|dir| version_key(dir))
    }

    /// `10.0.22621.0` -> [10, 0, 22621, 0], so that versions sort numerically.
    fn version_key(dir: &Path) -> Vec<u32> {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        name.split('.').map(|part| part.parse().unwrap_or(0)).collect()
    }

    /// `-I` for km/crt (kernel CRT headers, where the WDK has them), km,
    /// shared and um, in the order the WDK's kernel-mode builds use.
    fn include_args(include: &Path) -> Vec<String> {
        let ndis_h = include.join("km").join("ndis.h");
        assert!(ndis_h.is_file(), "{INCLUDE_VAR}: {} does not exist", ndis_h.display());
        ["km/crt", "km", "shared", "um"]
            .iter()
            .map(|sub| include.join(sub))
            .filter(|dir| dir.is_dir())
            .map(|dir| format!("-I{}", dir.display()))
            .collect()
    }

    /// `PORTWATCH_WDK_EXTRA_CLANG_ARGS`, split like a shell command line.
    fn extra_clang_args() -> Vec<String> {
        let Some(raw) = env::var_os(EXTRA_ARGS_VAR) else {
            return Vec::new();
        };
        let raw = raw.into_string().unwrap_or_else(|_| panic!("{EXTRA_ARGS_VAR} is not valid UTF-8"));
        shlex::split(&raw).unwrap_or_else(|| panic!("{EXTRA_ARGS_VAR}: unbalanced quotes in {raw:?}"))
    }
}
