//! Checks of the built driver package (`scripts/package.sh` first):
//! the PE image of the signed `portwatch.sys`, the stamped `portwatch.inf`
//! and the test certificate. `$PORTWATCH_PACKAGE_DIR`, `$PORTWATCH_SYS` and
//! `$PORTWATCH_TEST_CER` override where they are.

use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile64};
use object::LittleEndian as LE;
use portwatch_package_tests::inf::Inf;
use portwatch_package_tests::{inf_checks, paths, pe_checksum};

/// The only modules a PortWatch driver may import from.
const ALLOWED_MODULES: [&str; 3] = ["ntoskrnl.exe", "ndis.sys", "hal.dll"];
/// Imports that prove the driver uses the NDIS locks, rundown protection,
/// the filter registration, the control device and the registry.
const REQUIRED_IMPORTS: [&str; 12] = [
    "NdisAllocateSpinLock",
    "NdisAllocateRWLock",
    "ExAcquireRundownProtection",
    "NdisFRegisterFilterDriver",
    "NdisRegisterDeviceEx",
    // The port name's mutex object and its copy under Parameters.
    "KeInitializeMutex",
    "KeReleaseMutex",
    "ZwCreateKey",
    "ZwOpenKey",
    "ZwSetValueKey",
    "ZwQueryValueKey",
    "ZwClose",
];
/// WIN_CERTIFICATE revision 2.0 and type PKCS#7 SignedData.
const WIN_CERT_REVISION_2_0: u16 = 0x0200;
const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;

fn driver_image() -> Vec<u8> {
    paths::read_package_file(&paths::driver_sys())
}

fn parse(image: &[u8]) -> PeFile64<'_> {
    PeFile64::parse(image).expect("portwatch.sys is a PE32+ image")
}

/// (module, function) pairs of the import table, names as written.
fn imports(file: &PeFile64<'_>) -> Vec<(String, String)> {
    let table = file.import_table().expect("import table").expect("the driver imports");
    let mut out = Vec::new();
    let mut descriptors = table.descriptors().expect("import descriptors");
    while let Some(descriptor) = descriptors.next().expect("import descriptor") {
        let module = String::from_utf8_lossy(table.name(descriptor.name.get(LE)).expect("module name")).into_owned();
        let lookup = match descriptor.original_first_thunk.get(LE) {
            0 => descriptor.first_thunk.get(LE),
            rva => rva,
        };
        let mut thunks = table.thunks(lookup).expect("import thunks");
        while let Some(thunk) = thunks.next::<pe::ImageNtHeaders64>().expect("thunk") {
            let function = match table.import::<pe::ImageNtHeaders64>(thunk).expect("import") {
                object::read::pe::Import::Name(_, name) => String::from_utf8_lossy(name).into_owned(),
                object::read::pe::Import::Ordinal(ordinal) => format!("#{ordinal}"),
            };
            out.push((module.clone(), function));
        }
    }
    out
}

#[test]
fn is_an_amd64_native_image() {
    let image = driver_image();
    let file = parse(&image);
    let headers = file.nt_headers();
    assert_eq!(headers.file_header().machine.get(LE), pe::IMAGE_FILE_MACHINE_AMD64);
    assert_eq!(headers.optional_header().subsystem(), pe::IMAGE_SUBSYSTEM_NATIVE);
}

#[test]
fn has_nx_compat_and_dynamic_base() {
    let image = driver_image();
    let characteristics = parse(&image).nt_headers().optional_header().dll_characteristics();
    for (flag, name) in [
        (pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT, "NX_COMPAT"),
        (pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE, "DYNAMIC_BASE"),
    ] {
        assert_ne!(characteristics & flag, 0, "{name} missing (0x{characteristics:04x})");
    }
}

#[test]
fn entry_point_is_driver_entry_in_code() {
    let image = driver_image();
    let file = parse(&image);
    let entry = file.nt_headers().optional_header().address_of_entry_point();
    let section = file
        .section_table()
        .iter()
        .find(|s| {
            let start = s.virtual_address.get(LE);
            (start..start + s.virtual_size.get(LE)).contains(&entry)
        })
        .expect("the entry point lies in a section");
    let flags = section.characteristics.get(LE);
    assert_ne!(flags & pe::IMAGE_SCN_MEM_EXECUTE, 0, "entry point in an executable section");
    assert_ne!(flags & pe::IMAGE_SCN_CNT_CODE, 0, "entry point in a code section");
    let exports = file.export_table().unwrap_or_else(|e| panic!("export table: {e}")).expect("DriverEntry is exported");
    let driver_entry = exports
        .exports()
        .expect("exports")
        .into_iter()
        .find(|e| e.name == Some(&b"DriverEntry"[..]))
        .expect("an export named DriverEntry");
    match driver_entry.target {
        object::read::pe::ExportTarget::Address(rva) => assert_eq!(rva, entry, "DriverEntry is the entry point"),
        _ => panic!("DriverEntry is forwarded, not code in the image"),
    }
}

#[test]
fn checksum_is_valid_after_signing() {
    let image = driver_image();
    let offset = pe_checksum::checksum_field_offset(&image).expect("a PE image");
    let stored = pe_checksum::stored(&image, offset);
    assert_ne!(stored, 0, "the checksum is set");
    assert_eq!(stored, pe_checksum::compute(&image, offset));
}

#[test]
fn imports_only_from_the_kernel_ndis_and_hal() {
    let image = driver_image();
    let file = parse(&image);
    for (module, function) in imports(&file) {
        assert!(ALLOWED_MODULES.iter().any(|m| m.eq_ignore_ascii_case(&module)), "{function} imported from {module}");
        assert!(!function.starts_with('#'), "import by ordinal from {module}");
    }
    let delay = file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT);
    assert!(delay.is_none_or(|d| d.size.get(LE) == 0), "no delay-load imports");
}

#[test]
fn imports_the_ndis_locks_rundown_and_registration() {
    let image = driver_image();
    let names: Vec<String> = imports(&parse(&image)).into_iter().map(|(_, f)| f).collect();
    for required in REQUIRED_IMPORTS {
        assert!(names.iter().any(|n| n == required), "{required} not imported");
    }
}

#[test]
fn no_section_is_writable_and_executable() {
    let image = driver_image();
    for section in parse(&image).section_table().iter() {
        let flags = section.characteristics.get(LE);
        let wx = pe::IMAGE_SCN_MEM_WRITE | pe::IMAGE_SCN_MEM_EXECUTE;
        let name = String::from_utf8_lossy(section.raw_name());
        assert_ne!(flags & wx, wx, "section {name} is writable and executable");
    }
}

/// The signature: the WIN_CERTIFICATE that the security directory points at
/// (its "address" is a file offset), at the end of the file.
fn signature_blob(image: &[u8]) -> &[u8] {
    let file = parse(image);
    let directory =
        file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_SECURITY).expect("a security directory: the driver is signed");
    let offset = directory.virtual_address.get(LE) as usize;
    let size = directory.size.get(LE) as usize;
    assert_eq!(offset % 8, 0, "the certificate table is 8-byte aligned");
    assert_eq!(offset + size, image.len(), "the certificate table ends the file");
    let table = &image[offset..offset + size];
    let length = u32::from_le_bytes(table[0..4].try_into().expect("4 bytes")) as usize;
    assert!((8..=size).contains(&length), "WIN_CERTIFICATE length {length} of {size}");
    assert_eq!(u16::from_le_bytes([table[4], table[5]]), WIN_CERT_REVISION_2_0);
    assert_eq!(u16::from_le_bytes([table[6], table[7]]), WIN_CERT_TYPE_PKCS_SIGNED_DATA);
    &table[8..length]
}

#[test]
fn is_signed_with_the_package_test_certificate() {
    let image = driver_image();
    let pkcs7 = signature_blob(&image);
    assert_eq!(pkcs7.first(), Some(&0x30), "the signature is a DER SEQUENCE");
    let certificate = paths::read_package_file(&paths::test_certificate());
    assert_eq!(certificate.first(), Some(&0x30), "the .cer is DER");
    // The signer's certificate is embedded, byte for byte, in SignedData.
    assert!(
        pkcs7.windows(certificate.len()).any(|w| w == certificate.as_slice()),
        "portwatch.sys is not signed with portwatch-test.cer"
    );
}

#[test]
fn packaged_inf_matches_the_driver() {
    let text = paths::read_package_file(&paths::package_dir().join("portwatch.inf"));
    let inf = Inf::parse(&String::from_utf8(text).expect("UTF-8 INF")).expect("the INF parses");
    inf_checks::assert_driver_inf(&inf, "amd64");
}
