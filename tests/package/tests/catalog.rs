//! Checks of the package's security catalog, `portwatch.cat`
//! (`scripts/package.sh` first):
//!
//! - osslsigncode verifies `portwatch.sys` against it (`verify -catalog`),
//!   and refuses a `.sys` with one byte changed;
//! - it parses back and lists exactly the driver package's files: the INF
//!   (its flat-file hash) and every file of `[SourceDisksFiles]` (the .sys's
//!   Authenticode PE hash, as osslsigncode computes it);
//! - its OS attributes are those Inf2Cat writes for the INF's decorations;
//! - the package's test certificate signed it.

use der::{Decode, EncodePem};
use object::read::pe::PeFile64;
use object::LittleEndian as LE;
use portwatch_catalog::{oid, MemberKind};
use portwatch_package_tests::inf::Inf;
use portwatch_package_tests::{osslsigncode, paths};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn catalog_path() -> PathBuf {
    paths::package_dir().join("portwatch.cat")
}

fn listing() -> portwatch_catalog::Listing {
    portwatch_catalog::read(&paths::read_package_file(&catalog_path())).expect("portwatch.cat parses as a catalog")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portwatch-catalog-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// The package's test certificate as PEM (osslsigncode's -CAfile), in `dir`.
fn test_certificate_pem(dir: &std::path::Path) -> PathBuf {
    let der_bytes = paths::read_package_file(&paths::test_certificate());
    let certificate = x509_cert::Certificate::from_der(&der_bytes).expect("the test certificate is DER X.509");
    let pem = certificate.to_pem(der::pem::LineEnding::LF).expect("PEM");
    let path = dir.join("test-cert.pem");
    std::fs::write(&path, pem).expect("write the PEM");
    path
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn packaged_inf() -> (Vec<u8>, Inf) {
    let bytes = paths::read_package_file(&paths::package_dir().join("portwatch.inf"));
    let inf = Inf::parse(&String::from_utf8(bytes.clone()).expect("UTF-8 INF")).expect("the INF parses");
    (bytes, inf)
}

#[test]
#[cfg_attr(windows, ignore = "osslsigncode: on Windows, signtool verify /pa /c portwatch.cat portwatch.sys")]
fn osslsigncode_verifies_the_driver_against_the_catalog() {
    let dir = scratch("verify");
    let outcome = osslsigncode::verify_in_catalog(&test_certificate_pem(&dir), &catalog_path(), &paths::driver_sys());
    assert!(outcome.verified(), "osslsigncode verify -catalog failed:\n{}", outcome.output);
    assert_eq!(
        outcome.hex_field("Current message digest"),
        outcome.hex_field("Calculated message digest"),
        "{}",
        outcome.output
    );
}

#[test]
#[cfg_attr(windows, ignore = "osslsigncode: on Windows, signtool verify /pa /c portwatch.cat portwatch.sys")]
fn a_changed_byte_in_the_driver_fails_catalog_verification() {
    let dir = scratch("tamper");
    let ca = test_certificate_pem(&dir);
    let mut image = paths::read_package_file(&paths::driver_sys());
    // One byte in the middle of the first section's raw data (code).
    let offset = {
        let file = PeFile64::parse(&*image).expect("PE32+");
        let section = file.section_table().iter().next().expect("a section");
        let (start, size) = (section.pointer_to_raw_data.get(LE) as usize, section.size_of_raw_data.get(LE) as usize);
        start + size / 2
    };
    image[offset] ^= 0x01;
    let tampered = dir.join("portwatch.sys");
    std::fs::write(&tampered, &image).expect("write the changed .sys");
    let outcome = osslsigncode::verify_in_catalog(&ca, &catalog_path(), &tampered);
    assert!(!outcome.success, "a .sys with byte {offset:#x} changed still verifies:\n{}", outcome.output);
    assert!(!outcome.verified(), "{}", outcome.output);
}

#[test]
fn catalog_lists_exactly_the_driver_package_files() {
    let (_, inf) = packaged_inf();
    let mut expected: BTreeSet<String> = ["portwatch.inf".to_string()].into();
    let source_files = inf.section("SourceDisksFiles").expect("[SourceDisksFiles]");
    expected.extend(source_files.entries.iter().filter_map(|e| e.key.clone()).map(|k| k.to_ascii_lowercase()));
    // One SHA-256-tagged entry per file (Inf2Cat adds SHA-1-tagged twins
    // for older Windows; the Linux catalog, for 19041+, has none).
    let listed: Vec<String> = listing()
        .members
        .iter()
        .filter(|m| m.tag.len() == 32)
        .map(|m| m.file.clone().expect("every member has a File attribute").to_ascii_lowercase())
        .collect();
    assert_eq!(listed.len(), expected.len(), "members {listed:?}, package files {expected:?}");
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), expected);
}

#[test]
fn catalog_lists_the_flat_file_hash_of_the_inf() {
    let (bytes, _) = packaged_inf();
    let hash = Sha256::digest(&bytes).to_vec();
    let listing = listing();
    let member =
        listing.members.iter().find(|m| m.file.as_deref() == Some("portwatch.inf")).expect("portwatch.inf is a member");
    assert_eq!(member.kind, Some(MemberKind::Flat), "the INF is hashed as a flat file");
    assert_eq!(member.digest_algorithm, Some(oid::SHA256));
    assert_eq!(member.digest.as_deref().map(hex), Some(hex(&hash)), "the INF's SHA-256");
    assert_eq!(member.tag, hash, "the member tag is the hash");
}

#[test]
#[cfg_attr(windows, ignore = "osslsigncode: on Windows, signtool verify /pa /c portwatch.cat portwatch.sys")]
fn catalog_lists_the_authenticode_hash_of_the_driver() {
    // osslsigncode's own Authenticode hash of the .sys (from its embedded
    // signature's verification) is the independent reference.
    let dir = scratch("pe-hash");
    let outcome = osslsigncode::verify_embedded(&test_certificate_pem(&dir), &paths::driver_sys());
    assert!(outcome.verified(), "{}", outcome.output);
    let reference = outcome.hex_field("Calculated message digest").expect("osslsigncode prints the PE hash");
    let listing = listing();
    let member =
        listing.members.iter().find(|m| m.file.as_deref() == Some("portwatch.sys")).expect("portwatch.sys is a member");
    assert_eq!(member.kind, Some(MemberKind::PeImage), "the .sys is hashed as a PE image");
    assert_eq!(member.digest_algorithm, Some(oid::SHA256));
    assert_eq!(member.digest.as_deref().map(hex), Some(reference.clone()));
    assert_eq!(hex(&member.tag), reference, "the member tag is the hash");
}

#[test]
fn catalog_os_attributes_follow_the_inf_decorations() {
    let (bytes, _) = packaged_inf();
    let facts = portwatch_catalog::inf::InfFacts::parse(&String::from_utf8_lossy(&bytes));
    let build = facts.lowest_build().expect("decorated models");
    let (_, os) = portwatch_catalog::inf2cat_os_for_build(build).expect("an Inf2Cat OS for the lowest build");
    let listing = listing();
    assert_eq!(listing.content_type, oid::CTL);
    assert_eq!(listing.subject_algorithm, oid::CATALOG_LIST_MEMBER2, "a SHA-256 (version 2) catalog");
    assert_eq!(
        listing.attributes,
        [("OS".to_string(), os.to_string()), ("HWID1".to_string(), portwatch_proto::HARDWARE_ID.to_string())]
    );
    for member in &listing.members {
        assert_eq!(member.os_attr.as_deref(), Some(portwatch_catalog::OS_ATTR_WINDOWS_10), "{:?}", member.file);
    }
}

#[test]
fn catalog_is_signed_with_the_package_test_certificate() {
    let certificate = paths::read_package_file(&paths::test_certificate());
    let listing = listing();
    assert_eq!(listing.signers, 1, "one signer");
    assert!(listing.certificates.contains(&certificate), "portwatch.cat does not carry portwatch-test.cer");
}

#[test]
#[cfg_attr(windows, ignore = "osslsigncode: on Windows, signtool verify /pa /c portwatch.cat portwatch.sys")]
fn osslsigncode_reads_the_catalog_and_verifies_its_signature() {
    // osslsigncode's own CTL parser is a second reader of the catalog.
    let dir = scratch("listing");
    let ca = test_certificate_pem(&dir);
    let path = catalog_path();
    let outcome =
        osslsigncode::run(&["verify", "-verbose", "-CAfile", &ca.to_string_lossy(), "-in", &path.to_string_lossy()]);
    assert!(outcome.verified(), "the catalog's signature does not verify:\n{}", outcome.output);
    let listing = listing();
    let members = outcome.output.split("Catalog members:").nth(1).expect("osslsigncode lists the catalog members");
    for member in &listing.members {
        let file = member.file.as_deref().expect("a File attribute");
        let digest = hex(member.digest.as_deref().expect("a digest"));
        let entry = members
            .split("\n\n")
            .find(|entry| entry.contains(&format!("File name: {file}")))
            .unwrap_or_else(|| panic!("osslsigncode does not list {file}:\n{members}"));
        assert!(entry.contains(&format!("Message digest: {digest}")), "osslsigncode's digest of {file}:\n{entry}");
    }
}
