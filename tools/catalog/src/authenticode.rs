//! File hashes as catalogs record them: the Authenticode hash of a PE image
//! and the plain hash of any other file.

use object::pe::{ImageDataDirectory, ImageNtHeaders64, ImageOptionalHeader64, IMAGE_DIRECTORY_ENTRY_SECURITY};
use object::read::pe::ImageNtHeaders;
use object::LittleEndian as LE;
use sha2::{Digest, Sha256};
use std::mem::{offset_of, size_of};

/// Why a file is not a PE image whose Authenticode hash can be taken.
#[derive(Debug)]
pub struct NotPe(pub String);

impl std::fmt::Display for NotPe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a PE32+ image: {}", self.0)
    }
}

impl std::error::Error for NotPe {}

/// The Authenticode SHA-256 hash of a PE32+ image, without page hashes.
///
/// Authenticode hashes the whole file except the optional header's
/// `CheckSum`, the security data directory entry and the certificate table
/// it points at (an embedded signature). The certificate table must end the
/// file, as it does when signtool or osslsigncode embed a signature.
pub fn pe_image_hash(image: &[u8]) -> Result<[u8; 32], NotPe> {
    let dos = object::pe::ImageDosHeader::parse(image).map_err(|e| NotPe(e.to_string()))?;
    let nt_offset = dos.nt_headers_offset() as usize;
    let mut offset = dos.nt_headers_offset().into();
    let (_, directories) = ImageNtHeaders64::parse(image, &mut offset).map_err(|e| NotPe(e.to_string()))?;
    let checksum =
        nt_offset + offset_of!(ImageNtHeaders64, optional_header) + offset_of!(ImageOptionalHeader64, check_sum);
    let security_entry =
        nt_offset + size_of::<ImageNtHeaders64>() + IMAGE_DIRECTORY_ENTRY_SECURITY * size_of::<ImageDataDirectory>();
    let (table_start, table_end) = match directories.get(IMAGE_DIRECTORY_ENTRY_SECURITY) {
        Some(entry) if entry.size.get(LE) != 0 => {
            // The security directory's "address" is a file offset.
            let start = entry.virtual_address.get(LE) as usize;
            (start, start.saturating_add(entry.size.get(LE) as usize))
        }
        _ => (image.len(), image.len()),
    };
    if security_entry + size_of::<ImageDataDirectory>() > table_start || table_end != image.len() {
        return Err(NotPe(format!(
            "the certificate table ({table_start}..{table_end}) does not end the file ({} bytes)",
            image.len()
        )));
    }
    let mut hasher = Sha256::new();
    hasher.update(&image[..checksum]);
    hasher.update(&image[checksum + 4..security_entry]);
    hasher.update(&image[security_entry + size_of::<ImageDataDirectory>()..table_start]);
    Ok(hasher.finalize().into())
}

/// The SHA-256 hash of a flat (non-PE) file: all of its bytes.
pub fn flat_hash(contents: &[u8]) -> [u8; 32] {
    Sha256::digest(contents).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_pe_file_is_refused() {
        assert!(pe_image_hash(b"[Version]\r\nSignature = \"$Windows NT$\"\r\n").is_err());
    }

    #[test]
    fn flat_hash_is_sha256() {
        // FIPS 180-2 test vector "abc".
        assert_eq!(flat_hash(b"abc")[..4], [0xba, 0x78, 0x16, 0xbf],);
    }
}
