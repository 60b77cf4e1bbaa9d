//! The PE image checksum (`OptionalHeader.CheckSum`).
//!
//! The Windows loader checks it for drivers and boot-start images. The
//! algorithm (as `CheckSumMappedFile` in imagehlp computes it): add the
//! file as little-endian 16-bit words with end-around carry, the checksum
//! field itself counted as zero and an odd trailing byte padded with zero,
//! fold to 16 bits, then add the file length.

/// Offset of `CheckSum` inside the optional header (PE32 and PE32+ alike).
const CHECKSUM_OFFSET_IN_OPTIONAL_HEADER: usize = 64;
/// Size of the `PE\0\0` signature plus the COFF file header.
const SIGNATURE_AND_FILE_HEADER: usize = 4 + 20;

/// Error of [`checksum_field_offset`]: the image is too short or is not PE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotPe;

/// The file offset of the `CheckSum` field of a PE image.
pub fn checksum_field_offset(image: &[u8]) -> Result<usize, NotPe> {
    let e_lfanew = image.get(0x3c..0x40).ok_or(NotPe)?;
    let pe_offset = u32::from_le_bytes(e_lfanew.try_into().map_err(|_| NotPe)?) as usize;
    if image.get(..2) != Some(b"MZ") || image.get(pe_offset..pe_offset + 4) != Some(b"PE\0\0") {
        return Err(NotPe);
    }
    let offset = pe_offset + SIGNATURE_AND_FILE_HEADER + CHECKSUM_OFFSET_IN_OPTIONAL_HEADER;
    if offset + 4 > image.len() {
        return Err(NotPe);
    }
    Ok(offset)
}

/// Computes the checksum of `image`, skipping the 4 bytes at
/// `checksum_offset` (the stored checksum).
pub fn compute(image: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u32 = 0;
    for (index, pair) in image.chunks(2).enumerate() {
        let offset = index * 2;
        if (checksum_offset..checksum_offset + 4).contains(&offset) {
            continue;
        }
        let word = u16::from_le_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    // A PE image is far below 4 GiB; the length is added modulo 2^32.
    sum.wrapping_add(image.len() as u32)
}

/// The checksum stored in the image's optional header.
pub fn stored(image: &[u8], checksum_offset: usize) -> u32 {
    let bytes = &image[checksum_offset..checksum_offset + 4];
    u32::from_le_bytes(bytes.try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_words_with_end_around_carry_and_the_length() {
        // 0xffff + 0x0002 = 0x10001 -> folded 0x0002; plus length 4.
        let image = [0xff, 0xff, 0x02, 0x00];
        assert_eq!(compute(&image, usize::MAX - 4), 0x0002 + 4);
    }

    #[test]
    fn skips_the_checksum_field_and_pads_an_odd_byte() {
        // Words: 0x0201, [field skipped x2], 0x0005 (odd byte padded).
        let image = [0x01, 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x05];
        assert_eq!(compute(&image, 2), 0x0201 + 0x0005 + 7);
    }

    #[test]
    fn a_changed_byte_changes_the_checksum() {
        let mut image = vec![0u8; 64];
        let before = compute(&image, 8);
        image[40] = 1;
        assert_ne!(before, compute(&image, 8));
    }

    #[test]
    fn rejects_non_pe_input() {
        assert_eq!(checksum_field_offset(b"MZ"), Err(NotPe));
        assert_eq!(checksum_field_offset(&[0u8; 0x100]), Err(NotPe));
    }
}
