//! The package's symbols (`scripts/package.sh` first): `portwatch.pdb` is
//! the PDB of the packaged `portwatch.sys`: the .sys's CodeView (RSDS)
//! debug record names `portwatch.pdb`, and its GUID and age are the PDB's
//! (PDB information stream; the DBI stream's age too, which WinDbg checks).

use object::read::pe::PeFile64;
use object::Object;
use portwatch_package_tests::paths;

/// (GUID bytes as stored, age, path) of the image's CodeView record.
fn codeview(image: &[u8]) -> ([u8; 16], u32, String) {
    let file = PeFile64::parse(image).expect("PE32+");
    let record = file.pdb_info().expect("a readable debug directory").expect("a CodeView (RSDS) record");
    (record.guid(), record.age(), String::from_utf8_lossy(record.path()).into_owned())
}

#[test]
fn the_driver_names_portwatch_pdb_without_a_build_path() {
    let (_, _, path) = codeview(&paths::read_package_file(&paths::driver_sys()));
    assert_eq!(path, "portwatch.pdb", "the debug directory names {path:?}");
}

#[test]
fn the_packaged_pdb_matches_the_driver() {
    let (guid, age, _) = codeview(&paths::read_package_file(&paths::driver_sys()));
    let pdb_path = paths::package_dir().join("portwatch.pdb");
    let file = std::fs::File::open(&pdb_path)
        .unwrap_or_else(|e| panic!("{} ({e}): build the package with scripts/package.sh", pdb_path.display()));
    let mut pdb = pdb::PDB::open(file).expect("portwatch.pdb is an MSF 7.0 PDB");
    let info = pdb.pdb_information().expect("the PDB information stream");
    assert_eq!(info.guid.to_bytes_le(), guid, "PDB GUID {} differs from the .sys's", info.guid);
    assert_eq!(info.age, age, "PDB information stream age");
    let dbi = pdb.debug_information().expect("the DBI stream");
    assert_eq!(dbi.age(), Some(age), "DBI stream age");
}
