//! PE loader: maps a cross-compiled driver image into this process.
//!
//! The image is parsed with `object`, mapped into anonymous memory, its
//! sections copied, base relocations applied and every import bound by DLL
//! and name to a model function from the registry. The IAT lives in
//! `.rdata`, so imports are bound before the final page protections are
//! set; then each page gets its section's protection. A section (or page)
//! that would be both writable and executable fails the load, and so does
//! any import the model does not implement: the error lists them all.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::ptr;

use object::pe::{self, ImageNtHeaders64};
use object::read::pe::{ImageOptionalHeader, PeFile64};
use object::LittleEndian as LE;

use crate::imports::Import;

const PAGE: usize = 4096;

/// Why an image could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Io(std::io::Error),
    /// The file is not a well-formed PE32+ image.
    Parse(String),
    /// Imports the model does not implement, as `dll!name`.
    MissingImports(Vec<String>),
    /// An import by ordinal (the model binds by name only).
    OrdinalImport(String),
    /// A base relocation type other than DIR64/ABSOLUTE.
    UnsupportedRelocation(u16),
    /// A section (or a page shared by sections) both writable and executable.
    WriteExecute(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot read the image: {e}"),
            Self::Parse(e) => write!(f, "malformed PE image: {e}"),
            Self::MissingImports(names) => write!(f, "imports not implemented by the model: {}", names.join(", ")),
            Self::OrdinalImport(dll) => write!(f, "import by ordinal from {dll}"),
            Self::UnsupportedRelocation(t) => write!(f, "unsupported base relocation type {t}"),
            Self::WriteExecute(s) => write!(f, "writable and executable memory: {s}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl From<object::Error> for LoadError {
    fn from(e: object::Error) -> Self {
        Self::Parse(e.to_string())
    }
}

/// A mapped, relocated and bound driver image. Unmapped on drop: no driver
/// code may run after that.
#[derive(Debug)]
pub struct LoadedImage {
    base: usize,
    size: usize,
    entry_rva: u32,
    exports: HashMap<String, usize>,
    bound: Vec<(String, String)>,
}

impl LoadedImage {
    /// Address of the image's entry point (`DriverEntry`).
    pub fn entry(&self) -> usize {
        self.base + self.entry_rva as usize
    }

    /// Address of the export `name`, if the image exports it.
    pub fn export(&self, name: &str) -> Option<usize> {
        self.exports.get(name).copied()
    }

    /// Names of all exports.
    pub fn export_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.exports.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Base address the image was mapped at.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Size of the mapped image.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Every bound import as (dll, name), in import-table order.
    pub fn bound_imports(&self) -> &[(String, String)] {
        &self.bound
    }

    /// Whether `addr` lies inside the image.
    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.base && addr < self.base + self.size
    }
}

impl Drop for LoadedImage {
    fn drop(&mut self) {
        crate::stack::unregister_image(self.base);
        // SAFETY: the mapping belongs to this image; the owner drops it only
        // once no driver code runs any more.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.size) };
    }
}

/// Loads the PE image at `path`, binding imports from `imports`.
pub fn load(path: &Path, imports: &[Import]) -> Result<LoadedImage, LoadError> {
    let data = std::fs::read(path).map_err(LoadError::Io)?;
    load_bytes(&data, imports)
}

/// Loads a PE image from memory, binding imports from `imports`.
pub fn load_bytes(data: &[u8], imports: &[Import]) -> Result<LoadedImage, LoadError> {
    let file = PeFile64::parse(data)?;
    let opt = &file.nt_headers().optional_header;
    let size = (opt.size_of_image() as usize).next_multiple_of(PAGE);
    let mapping = Mapping::new(size)?;
    copy_sections(data, &file, &mapping)?;
    relocate(data, &file, &mapping, opt.image_base())?;
    let bound = bind_imports(&file, &mapping, imports)?;
    let exports = read_exports(&file, &mapping)?;
    protect_pages(&file, &mapping)?;
    let base = mapping.release();
    crate::stack::register_image(base, base + size);
    Ok(LoadedImage { base, size, entry_rva: opt.address_of_entry_point(), exports, bound })
}

/// An anonymous read/write mapping, unmapped on drop unless released.
struct Mapping {
    base: usize,
    size: usize,
}

impl Mapping {
    fn new(size: usize) -> Result<Self, LoadError> {
        // SAFETY: anonymous private mapping; affects no existing memory.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(LoadError::Io(std::io::Error::last_os_error()));
        }
        Ok(Self { base: p as usize, size })
    }

    /// The mapped bytes at `rva..rva + len`, checked against the image size.
    #[allow(clippy::mut_from_ref)] // the mapping is raw memory, not owned Rust data
    fn slice_mut(&self, rva: usize, len: usize) -> Result<&mut [u8], LoadError> {
        if rva.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(LoadError::Parse(format!("rva {rva:#x}+{len:#x} outside the image")));
        }
        // SAFETY: in bounds of the read/write mapping owned by `self`; the
        // loader holds no other reference into this range at the same time.
        Ok(unsafe { std::slice::from_raw_parts_mut((self.base + rva) as *mut u8, len) })
    }

    fn release(self) -> usize {
        let base = self.base;
        std::mem::forget(self);
        base
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is owned by this value and nothing refers to it.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.size) };
    }
}

fn copy_sections(data: &[u8], file: &PeFile64<'_>, map: &Mapping) -> Result<(), LoadError> {
    let headers = file.nt_headers().optional_header.size_of_headers() as usize;
    let headers = headers.min(data.len());
    map.slice_mut(0, headers)?.copy_from_slice(&data[..headers]);
    for section in file.section_table().iter() {
        let raw = section.pe_data(data)?;
        let vsize = section.virtual_size.get(LE) as usize;
        let len = raw.len().min(if vsize == 0 { raw.len() } else { vsize });
        let rva = section.virtual_address.get(LE) as usize;
        map.slice_mut(rva, len)?.copy_from_slice(&raw[..len]);
    }
    Ok(())
}

fn relocate(data: &[u8], file: &PeFile64<'_>, map: &Mapping, image_base: u64) -> Result<(), LoadError> {
    let delta = (map.base as u64).wrapping_sub(image_base);
    let Some(mut blocks) = file.data_directories().relocation_blocks(data, &file.section_table())? else {
        return Ok(());
    };
    while let Some(block) = blocks.next()? {
        for reloc in block {
            match reloc.typ {
                pe::IMAGE_REL_BASED_ABSOLUTE => {}
                pe::IMAGE_REL_BASED_DIR64 => {
                    let slot = map.slice_mut(reloc.virtual_address as usize, 8)?;
                    let v = u64::from_le_bytes(slot[..8].try_into().expect("8 bytes"));
                    slot.copy_from_slice(&v.wrapping_add(delta).to_le_bytes());
                }
                other => return Err(LoadError::UnsupportedRelocation(other)),
            }
        }
    }
    Ok(())
}

fn bind_imports(file: &PeFile64<'_>, map: &Mapping, imports: &[Import]) -> Result<Vec<(String, String)>, LoadError> {
    let Some(table) = file.import_table()? else {
        return Ok(Vec::new());
    };
    let mut missing = Vec::new();
    let mut bound = Vec::new();
    let mut descriptors = table.descriptors()?;
    while let Some(desc) = descriptors.next()? {
        let dll = String::from_utf8_lossy(table.name(desc.name.get(LE))?).into_owned();
        let lookup = match desc.original_first_thunk.get(LE) {
            0 => desc.first_thunk.get(LE),
            rva => rva,
        };
        let mut thunks = table.thunks(lookup)?;
        let mut slot_rva = desc.first_thunk.get(LE) as usize;
        while let Some(thunk) = thunks.next::<ImageNtHeaders64>()? {
            let name = match table.import::<ImageNtHeaders64>(thunk)? {
                object::read::pe::Import::Name(_hint, name) => String::from_utf8_lossy(name).into_owned(),
                object::read::pe::Import::Ordinal(_) => return Err(LoadError::OrdinalImport(dll)),
            };
            match imports.iter().find(|i| i.matches(&dll, &name)) {
                Some(imp) => map.slice_mut(slot_rva, 8)?.copy_from_slice(&(imp.addr as u64).to_le_bytes()),
                None => missing.push(format!("{dll}!{name}")),
            }
            bound.push((dll.clone(), name));
            slot_rva += 8;
        }
    }
    if missing.is_empty() {
        Ok(bound)
    } else {
        Err(LoadError::MissingImports(missing))
    }
}

/// Reads the export table from the mapped image (names -> addresses).
fn read_exports(file: &PeFile64<'_>, map: &Mapping) -> Result<HashMap<String, usize>, LoadError> {
    let mut out = HashMap::new();
    let Some(dir) = file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_EXPORT) else {
        return Ok(out);
    };
    let dir_rva = dir.virtual_address.get(LE) as usize;
    let u32_at = |rva: usize| -> Result<u32, LoadError> {
        let b = map.slice_mut(rva, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let names = u32_at(dir_rva + 24)? as usize;
    let functions = u32_at(dir_rva + 28)? as usize;
    let name_rvas = u32_at(dir_rva + 32)? as usize;
    let ordinals = u32_at(dir_rva + 36)? as usize;
    for i in 0..names {
        let name_rva = u32_at(name_rvas + 4 * i)? as usize;
        let ord_bytes = map.slice_mut(ordinals + 2 * i, 2)?;
        let ordinal = u16::from_le_bytes([ord_bytes[0], ord_bytes[1]]) as usize;
        let target = u32_at(functions + 4 * ordinal)? as usize;
        let name = c_string_at(map, name_rva)?;
        out.insert(name, map.base + target);
    }
    Ok(out)
}

fn c_string_at(map: &Mapping, rva: usize) -> Result<String, LoadError> {
    let rest = map.slice_mut(rva, map.size.saturating_sub(rva))?;
    let len = rest.iter().position(|&b| b == 0).ok_or_else(|| LoadError::Parse("unterminated export name".into()))?;
    Ok(String::from_utf8_lossy(&rest[..len]).into_owned())
}

/// Page protections: the union of the flags of the sections covering each
/// page (headers read-only). A writable and executable page is refused.
fn protect_pages(file: &PeFile64<'_>, map: &Mapping) -> Result<(), LoadError> {
    let pages = map.size / PAGE;
    let mut prot = vec![libc::PROT_NONE; pages];
    prot[0] = libc::PROT_READ;
    let mut owner = vec![String::from("headers"); pages];
    for section in file.section_table().iter() {
        let name = String::from_utf8_lossy(section.raw_name()).trim_end_matches('\0').to_owned();
        let chars = section.characteristics.get(LE);
        let mut p = libc::PROT_NONE;
        if chars & pe::IMAGE_SCN_MEM_READ != 0 {
            p |= libc::PROT_READ;
        }
        if chars & pe::IMAGE_SCN_MEM_WRITE != 0 {
            p |= libc::PROT_WRITE;
        }
        if chars & pe::IMAGE_SCN_MEM_EXECUTE != 0 {
            p |= libc::PROT_EXEC | libc::PROT_READ;
        }
        let rva = section.virtual_address.get(LE) as usize;
        let len = (section.virtual_size.get(LE) as usize).max(section.size_of_raw_data.get(LE) as usize);
        for page in rva / PAGE..(rva + len).div_ceil(PAGE).min(pages) {
            prot[page] |= p;
            owner[page] = name.clone();
        }
    }
    for (page, &p) in prot.iter().enumerate() {
        if p & libc::PROT_WRITE != 0 && p & libc::PROT_EXEC != 0 {
            return Err(LoadError::WriteExecute(format!("page at rva {:#x} ({})", page * PAGE, owner[page])));
        }
    }
    for (page, &p) in prot.iter().enumerate() {
        // SAFETY: page inside the mapping owned by `map`.
        let rc = unsafe { libc::mprotect((map.base + page * PAGE) as *mut libc::c_void, PAGE, p) };
        if rc != 0 {
            return Err(LoadError::Io(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
