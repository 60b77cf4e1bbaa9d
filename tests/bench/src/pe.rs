//! A built driver image as the disassembler needs it: code bytes by
//! address, exports, the import address table (IAT) slot of every import,
//! and the function table (`.pdata`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use object::pe::{ImageNtHeaders64, IMAGE_DIRECTORY_ENTRY_EXCEPTION};
use object::read::pe::{ImageThunkData, PeFile64};
use object::LittleEndian as LE;

/// Why an image could not be read.
#[derive(Debug)]
pub struct PeError(pub String);

impl fmt::Display for PeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PeError {}

impl From<object::Error> for PeError {
    fn from(e: object::Error) -> Self {
        PeError(e.to_string())
    }
}

/// A PE32+ image read from disk. Addresses are virtual addresses at the
/// image's preferred base.
pub struct Image {
    data: Vec<u8>,
    base: u64,
    exports: BTreeMap<String, u64>,
    iat: BTreeMap<u64, String>,
    functions: Vec<(u64, u64)>,
}

impl Image {
    /// Reads and indexes the image at `path`.
    pub fn open(path: &Path) -> Result<Image, PeError> {
        let data = std::fs::read(path).map_err(|e| PeError(format!("{}: {e}", path.display())))?;
        let pe = PeFile64::parse(&*data)?;
        let base = pe.nt_headers().optional_header.image_base.get(LE);
        let exports = read_exports(&pe, base)?;
        let iat = read_iat(&pe, base)?;
        let functions = read_function_table(&pe, base)?;
        Ok(Image { data, base, exports, iat, functions })
    }

    fn pe(&self) -> PeFile64<'_> {
        PeFile64::parse(&*self.data).expect("parsed in open")
    }

    /// The preferred image base.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The address of the export `name`.
    pub fn export(&self, name: &str) -> Option<u64> {
        self.exports.get(name).copied()
    }

    /// Every export, by name.
    pub fn exports(&self) -> &BTreeMap<String, u64> {
        &self.exports
    }

    /// The import (`"dll!name"`) whose IAT slot is at `va`.
    pub fn import_at_slot(&self, va: u64) -> Option<&str> {
        self.iat.get(&va).map(String::as_str)
    }

    /// The IAT slot of the import `name` (function name without the DLL).
    pub fn slot_of(&self, name: &str) -> Option<u64> {
        self.iat.iter().find(|(_, n)| n.rsplit('!').next() == Some(name)).map(|(va, _)| *va)
    }

    /// The `.pdata` function (begin, end) that contains `va`.
    pub fn function_containing(&self, va: u64) -> Option<(u64, u64)> {
        let i = self.functions.partition_point(|&(begin, _)| begin <= va);
        let (begin, end) = *self.functions.get(i.checked_sub(1)?)?;
        (va < end).then_some((begin, end))
    }

    /// Every `.pdata` function as (begin, end), sorted.
    pub fn functions(&self) -> &[(u64, u64)] {
        &self.functions
    }

    /// The image's bytes from `va` to the end of its section, if `va` is in
    /// an executable section.
    pub fn code_at(&self, va: u64) -> Option<&[u8]> {
        let rva = u32::try_from(va.checked_sub(self.base)?).ok()?;
        let pe = self.pe();
        let section = pe.section_table().iter().find(|s| {
            let start = s.virtual_address.get(LE);
            let executable = s.characteristics.get(LE) & object::pe::IMAGE_SCN_MEM_EXECUTE != 0;
            executable && rva >= start && rva < start + s.virtual_size.get(LE)
        })?;
        let (offset, size) = section.pe_file_range();
        let start = offset as usize + (rva - section.virtual_address.get(LE)) as usize;
        let end = offset as usize + size.min(section.virtual_size.get(LE)) as usize;
        self.data.get(start..end)
    }
}

/// Reads the export directory by hand: lld may place it at an address that
/// is not 4-aligned, which `object`'s aligned view of it refuses.
fn read_exports(pe: &PeFile64<'_>, base: u64) -> Result<BTreeMap<String, u64>, PeError> {
    let mut out = BTreeMap::new();
    let Some(dir) = pe.data_directory(object::pe::IMAGE_DIRECTORY_ENTRY_EXPORT) else { return Ok(out) };
    let at = |rva: u32| -> Result<&[u8], PeError> {
        pe.section_table()
            .pe_data_at(pe.data(), rva)
            .ok_or_else(|| PeError(format!("export data at RVA {rva:#x} is outside every section")))
    };
    let u32_at = |rva: u32| -> Result<u32, PeError> {
        let b = at(rva)?.get(..4).ok_or_else(|| PeError("truncated export table".into()))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u16_at = |rva: u32| -> Result<u16, PeError> {
        let b = at(rva)?.get(..2).ok_or_else(|| PeError("truncated export table".into()))?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    };
    let d = dir.virtual_address.get(LE);
    let (names, functions, name_ptrs, ordinals) =
        (u32_at(d + 0x18)?, u32_at(d + 0x1c)?, u32_at(d + 0x20)?, u32_at(d + 0x24)?);
    for i in 0..names {
        let name_rva = u32_at(name_ptrs + 4 * i)?;
        let bytes = at(name_rva)?;
        let name = String::from_utf8_lossy(&bytes[..bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len())]);
        let index = u32::from(u16_at(ordinals + 2 * i)?);
        out.insert(name.into_owned(), base + u64::from(u32_at(functions + 4 * index)?));
    }
    Ok(out)
}

fn read_iat(pe: &PeFile64<'_>, base: u64) -> Result<BTreeMap<u64, String>, PeError> {
    let mut out = BTreeMap::new();
    let Some(table) = pe.import_table()? else { return Ok(out) };
    let mut descriptors = table.descriptors()?;
    while let Some(d) = descriptors.next()? {
        let dll = String::from_utf8_lossy(table.name(d.name.get(LE))?).into_owned();
        let first = d.first_thunk.get(LE);
        let lookup = match d.original_first_thunk.get(LE) {
            0 => first,
            rva => rva,
        };
        let mut thunks = table.thunks(lookup)?;
        let mut slot = u64::from(first);
        while let Some(thunk) = thunks.next::<ImageNtHeaders64>()? {
            let name = if thunk.is_ordinal() {
                format!("#{}", thunk.ordinal())
            } else {
                String::from_utf8_lossy(table.hint_name(thunk.address())?.1).into_owned()
            };
            out.insert(base + slot, format!("{dll}!{name}"));
            slot += 8;
        }
    }
    Ok(out)
}

fn read_function_table(pe: &PeFile64<'_>, base: u64) -> Result<Vec<(u64, u64)>, PeError> {
    let Some(dir) = pe.data_directory(IMAGE_DIRECTORY_ENTRY_EXCEPTION) else { return Ok(Vec::new()) };
    let bytes = dir.data(pe.data(), &pe.section_table())?;
    let word = |c: &[u8]| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let mut out: Vec<(u64, u64)> =
        bytes.chunks_exact(12).map(|e| (base + word(&e[0..4]), base + word(&e[4..8]))).collect();
    out.sort_unstable();
    Ok(out)
}
