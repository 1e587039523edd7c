//! Edit: change a parsed object's bytes in place, as post-link needs.
//! Nothing is moved, reordered or renumbered (the kernel keeps a module's
//! symbol table as built): fields of existing symbols and relocations are
//! overwritten, and new sections are appended together with a grown copy of
//! the section name table and a new section header table. `.group`
//! sections and extended section numbering pass through untouched.

use object::LittleEndian as LE;
use object::elf::{self, FileHeader64};
use object::read::elf::FileHeader;

use super::{ElfObject, Reloc, SectionId, SymbolId};
use crate::error::{Error, Result};

const SHDR_SIZE: usize = 64;
const SYM_SIZE: usize = 24;
const RELA_SIZE: usize = 24;
/// `st_shndx` inside an `Elf64_Sym`.
const SYM_SHNDX: usize = 6;
/// `r_info` inside an `Elf64_Rela`.
const RELA_INFO: usize = 8;

/// A section to append.
#[derive(Debug, Clone)]
pub struct NewSection {
    pub name: String,
    pub sh_type: u32,
    pub flags: u64,
    pub link: u32,
    pub info: u32,
    pub align: u64,
    pub entsize: u64,
    pub data: Vec<u8>,
}

pub struct Editor<'a, 'd> {
    obj: &'a ElfObject<'d>,
    original: &'d [u8],
    out: Vec<u8>,
    symtab_offset: usize,
    appended: Vec<NewSection>,
}

impl<'a, 'd> Editor<'a, 'd> {
    /// `data` is the file `obj` was parsed from.
    pub fn new(obj: &'a ElfObject<'d>, data: &'d [u8]) -> Result<Self> {
        let symtab = obj
            .sections
            .iter()
            .find(|s| s.sh_type == elf::SHT_SYMTAB.0)
            .ok_or_else(|| Error::malformed("no symbol table"))?;
        Ok(Editor {
            obj,
            original: data,
            out: data.to_vec(),
            symtab_offset: symtab.file_offset as usize,
            appended: Vec::new(),
        })
    }

    /// Set a symbol's `st_shndx` (to a reserved index such as `SHN_LIVEPATCH`).
    pub fn set_symbol_shndx(&mut self, sym: SymbolId, shndx: u16) {
        // The reader checked that every symbol lies inside the file.
        let at = self.symtab_offset + sym.index() * SYM_SIZE + SYM_SHNDX;
        self.out[at..at + 2].copy_from_slice(&shndx.to_le_bytes());
    }

    /// Where relocation `r` of section `target` is in the file: the first
    /// entry equal to it in the ordinary (not livepatch) RELA sections that
    /// apply to `target`, in file order.
    pub fn find_rela(&self, target: SectionId, r: &Reloc) -> Option<usize> {
        let info = (u64::from(r.symbol().0) << 32) | u64::from(r.r_type());
        self.obj
            .sections
            .iter()
            .filter(|s| s.sh_type == elf::SHT_RELA.0 && s.info == target.0 && s.flags & super::SHF_RELA_LIVEPATCH == 0)
            .find_map(|s| {
                s.data
                    .chunks_exact(RELA_SIZE)
                    .position(|e| {
                        e[..8] == r.offset().to_le_bytes()
                            && e[8..16] == info.to_le_bytes()
                            && e[16..] == r.addend().to_le_bytes()
                    })
                    .map(|k| s.file_offset as usize + k * RELA_SIZE)
            })
    }

    /// Set the type of the RELA entry at file offset `at`, keeping its symbol.
    pub fn set_rela_type(&mut self, at: usize, r_type: u32) {
        let field = at + RELA_INFO;
        let info = u64::from_le_bytes(self.out[field..field + 8].try_into().expect("8 bytes"));
        let info = (info & !0xffff_ffff) | u64::from(r_type);
        self.out[field..field + 8].copy_from_slice(&info.to_le_bytes());
    }

    pub fn append_section(&mut self, s: NewSection) {
        self.appended.push(s);
    }

    /// The edited file: appended sections, a grown `.shstrtab`, and a new
    /// section header table that the ELF header (and section 0, with
    /// extended numbering) points at.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let data = self.original;
        let header = FileHeader64::<LE>::parse(data).map_err(|e| Error::malformed(format!("bad ELF header: {e}")))?;
        let shstrndx =
            header.shstrndx(LE, data).map_err(|e| Error::malformed(format!("bad section name table index: {e}")))?
                as usize;
        let old_count = self.obj.sections.len();
        let names = self.obj.sections.get(shstrndx).ok_or_else(|| Error::malformed("no section name table"))?;
        let mut shstrtab = names.data.to_vec();
        let mut headers: Vec<[u8; SHDR_SIZE]> = Vec::new();
        for s in std::mem::take(&mut self.appended) {
            let name = shstrtab.len() as u32;
            shstrtab.extend_from_slice(s.name.as_bytes());
            shstrtab.push(0);
            let offset = align_to(&mut self.out, s.align.max(1) as usize);
            self.out.extend_from_slice(&s.data);
            let fields = HeaderFields { name, offset: offset as u64, size: s.data.len() as u64 };
            headers.push(section_header(&s, fields));
        }
        let shstrtab_offset = self.out.len();
        self.out.extend_from_slice(&shstrtab);
        let shoff = align_to(&mut self.out, 8);
        let old_shoff = header.e_shoff(LE) as usize;
        for i in 0..old_count {
            let at = old_shoff + i * SHDR_SIZE;
            let mut h: [u8; SHDR_SIZE] = data
                .get(at..at + SHDR_SIZE)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| Error::malformed("section header table outside the file"))?;
            if i == shstrndx {
                h[24..32].copy_from_slice(&(shstrtab_offset as u64).to_le_bytes());
                h[32..40].copy_from_slice(&(shstrtab.len() as u64).to_le_bytes());
            }
            self.out.extend_from_slice(&h);
        }
        for h in &headers {
            self.out.extend_from_slice(h);
        }
        let total = old_count + headers.len();
        self.out[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        if header.e_shnum(LE) == 0 || total >= usize::from(elf::SHN_LORESERVE) {
            // Extended numbering: the count lives in section 0's sh_size.
            self.out[0x3c..0x3e].copy_from_slice(&0u16.to_le_bytes());
            self.out[shoff + 32..shoff + 40].copy_from_slice(&(total as u64).to_le_bytes());
        } else {
            self.out[0x3c..0x3e].copy_from_slice(&(total as u16).to_le_bytes());
        }
        Ok(self.out)
    }
}

fn align_to(out: &mut Vec<u8>, align: usize) -> usize {
    let at = out.len().next_multiple_of(align);
    out.resize(at, 0);
    at
}

struct HeaderFields {
    name: u32,
    offset: u64,
    size: u64,
}

fn section_header(s: &NewSection, f: HeaderFields) -> [u8; SHDR_SIZE] {
    let mut h = [0u8; SHDR_SIZE];
    h[0..4].copy_from_slice(&f.name.to_le_bytes());
    h[4..8].copy_from_slice(&s.sh_type.to_le_bytes());
    h[8..16].copy_from_slice(&s.flags.to_le_bytes());
    h[24..32].copy_from_slice(&f.offset.to_le_bytes());
    h[32..40].copy_from_slice(&f.size.to_le_bytes());
    h[40..44].copy_from_slice(&s.link.to_le_bytes());
    h[44..48].copy_from_slice(&s.info.to_le_bytes());
    h[48..56].copy_from_slice(&s.align.to_le_bytes());
    h[56..64].copy_from_slice(&s.entsize.to_le_bytes());
    h
}
