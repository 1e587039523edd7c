//! Write stage: an [`OutputObject`] (sections, symbols, relocations, all
//! owned) serialised as an ELF64 x86-64 relocatable object with `object`'s
//! ELF writer, and stored atomically: a temporary file beside the target,
//! then a rename, so readers never see a partial object.

use std::io::Write as _;
use std::path::Path;

use object::Endianness;
use object::elf;
use object::write::StringId;
use object::write::elf::{FileHeader, Rel, SectionHeader, SectionIndex, Sym, SymbolIndex, Writer};

use crate::elf::{Binding, SymbolKind};
use crate::error::{Error, Result};

pub type OutSectionId = usize;
pub type OutSymbolId = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutReloc {
    pub offset: u64,
    pub symbol: OutSymbolId,
    pub r_type: u32,
    pub addend: i64,
}

#[derive(Debug, Clone)]
pub struct OutSection {
    pub name: String,
    pub sh_type: u32,
    pub flags: u64,
    pub align: u64,
    pub entsize: u64,
    /// Contents; empty for NOBITS, whose size is `nobits_size`.
    pub data: Vec<u8>,
    nobits_size: u64,
    pub relocs: Vec<OutReloc>,
}

impl OutSection {
    pub fn new(name: &str, sh_type: u32, flags: u64, align: u64, entsize: u64) -> Self {
        OutSection {
            name: name.to_owned(),
            sh_type,
            flags,
            align: align.max(1),
            entsize,
            data: Vec::new(),
            nobits_size: 0,
            relocs: Vec::new(),
        }
    }

    pub fn is_nobits(&self) -> bool {
        self.sh_type == elf::SHT_NOBITS.0
    }

    /// `sh_size`.
    pub fn size(&self) -> u64 {
        if self.is_nobits() { self.nobits_size } else { self.data.len() as u64 }
    }

    /// Append `bytes` at the next offset aligned to `align`; returns the
    /// offset. A NOBITS section only grows: its bytes are zero.
    pub fn append(&mut self, bytes: &[u8], align: u64) -> u64 {
        if self.is_nobits() {
            return self.reserve_zeros(bytes.len() as u64, align);
        }
        let offset = self.data.len().next_multiple_of(align.max(1) as usize);
        self.data.resize(offset, 0);
        self.data.extend_from_slice(bytes);
        offset as u64
    }

    /// Append `len` bytes of `src` from `start` (zeros where `src` has no
    /// bytes: NOBITS); nothing is allocated for a NOBITS output section, so
    /// what klp allocates stays bounded by the input's bytes.
    pub fn append_from(&mut self, src: &crate::elf::Section, start: u64, len: u64, align: u64) -> u64 {
        if self.is_nobits() {
            return self.reserve_zeros(len, align);
        }
        let offset = self.data.len().next_multiple_of(align.max(1) as usize);
        self.data.resize(offset, 0);
        let have = usize::try_from(start).ok().and_then(|s| src.data.get(s..)).unwrap_or_default();
        let take = have.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        self.data.extend_from_slice(&have[..take]);
        self.data.resize(offset + len as usize, 0);
        offset as u64
    }

    fn reserve_zeros(&mut self, len: u64, align: u64) -> u64 {
        // Sizes without bytes are bounded by the reader (`MAX_NOBITS_SIZE`), not by the file.
        let offset = self.nobits_size.checked_next_multiple_of(align.max(1)).unwrap_or(u64::MAX);
        self.nobits_size = offset.saturating_add(len);
        offset
    }
}

#[derive(Debug, Clone)]
pub enum OutPlacement {
    Undefined,
    Section(OutSectionId),
}

#[derive(Debug, Clone)]
pub struct OutSymbol {
    pub name: String,
    pub kind: SymbolKind,
    pub bind: Binding,
    pub placement: OutPlacement,
    pub value: u64,
    pub size: u64,
    /// `st_other` (visibility).
    pub other: u8,
}

/// A relocatable object under construction.
#[derive(Debug, Default)]
pub struct OutputObject {
    pub sections: Vec<OutSection>,
    pub symbols: Vec<OutSymbol>,
}

impl OutputObject {
    pub fn add_section(&mut self, section: OutSection) -> OutSectionId {
        self.sections.push(section);
        self.sections.len() - 1
    }

    pub fn add_symbol(&mut self, symbol: OutSymbol) -> OutSymbolId {
        self.symbols.push(symbol);
        self.symbols.len() - 1
    }

    /// Serialise to ELF bytes. Locals come first in `.symtab`, in creation
    /// order, then globals: deterministic for the same object.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        // The writer borrows every name until it is done.
        let rela_names: Vec<Vec<u8>> = self.sections.iter().map(|s| format!(".rela{}", s.name).into_bytes()).collect();
        let mut buf = Vec::new();
        let mut w = Writer::new(Endianness::Little, true, &mut buf);
        let layout = self.reserve(&mut w, &rela_names)?;
        w.write_file_header(&FileHeader {
            os_abi: elf::ELFOSABI_NONE,
            abi_version: 0,
            e_type: elf::ET_REL,
            e_machine: elf::EM_X86_64,
            e_entry: 0,
            e_flags: elf::FileFlags(0),
        })
        .map_err(writer_error)?;
        self.write_contents(&mut w, &layout);
        self.write_section_headers(&mut w, &layout);
        Ok(buf)
    }

    /// First pass of `object`'s writer: every index, name and offset.
    fn reserve<'a>(&'a self, w: &mut Writer<'a>, rela_names: &'a [Vec<u8>]) -> Result<Layout> {
        w.reserve_file_header();
        let mut sec_index = Vec::with_capacity(self.sections.len());
        let mut sec_offset = Vec::with_capacity(self.sections.len());
        let mut names = Vec::with_capacity(self.sections.len());
        for (s, rela_name) in self.sections.iter().zip(rela_names) {
            sec_index.push(w.reserve_section_index());
            sec_offset.push(w.reserve(s.data.len() as u64, s.align));
            let name = w.add_section_name(s.name.as_bytes());
            let rela = (!s.relocs.is_empty()).then(|| {
                w.reserve_section_index();
                w.add_section_name(rela_name)
            });
            names.push((name, rela));
        }
        let order = self.symbol_order();
        let mut sym_index = vec![SymbolIndex(0); self.symbols.len()];
        w.reserve_null_symbol_index();
        let mut num_local = 1;
        for &i in &order {
            let section = match self.symbols[i].placement {
                OutPlacement::Section(s) => Some(sec_index[s]),
                OutPlacement::Undefined => None,
            };
            sym_index[i] = w.reserve_symbol_index(section);
            if self.symbols[i].bind == Binding::Local {
                num_local = w.symbol_count();
            }
        }
        let str_ids = self
            .symbols
            .iter()
            .map(|s| (s.kind != SymbolKind::Section && !s.name.is_empty()).then(|| w.add_string(s.name.as_bytes())))
            .collect();
        w.reserve_symtab_section_index();
        w.reserve_symtab();
        if w.symtab_shndx_needed() {
            w.reserve_symtab_shndx_section_index();
        }
        w.reserve_symtab_shndx();
        w.reserve_strtab_section_index();
        w.reserve_strtab().map_err(writer_error)?;
        let rela_offset = self
            .sections
            .iter()
            .map(|s| if s.relocs.is_empty() { 0 } else { w.reserve_relocations(s.relocs.len(), true) })
            .collect();
        w.reserve_shstrtab_section_index();
        w.reserve_shstrtab().map_err(writer_error)?;
        w.reserve_section_headers();
        Ok(Layout { sec_index, sec_offset, names, order, sym_index, num_local, str_ids, rela_offset })
    }

    /// Section bytes, symbols, strings and relocations, in reserved order.
    fn write_contents(&self, w: &mut Writer, l: &Layout) {
        for s in &self.sections {
            w.write_align(s.align);
            w.write(&s.data);
        }
        w.write_null_symbol();
        for &i in &l.order {
            let s = &self.symbols[i];
            let section = match s.placement {
                OutPlacement::Section(sec) => Some(l.sec_index[sec].0),
                OutPlacement::Undefined => None,
            };
            w.write_symbol(&Sym {
                section,
                st_name: w.string_offset(l.str_ids[i]),
                st_info: elf::SymbolInfo::new(elf::SymbolBind(bind_value(s.bind)), elf::SymbolType(kind_value(s.kind))),
                st_other: elf::SymbolOther(s.other),
                st_shndx: elf::SHN_UNDEF,
                st_value: s.value,
                st_size: s.size,
            });
        }
        w.write_symtab_shndx();
        w.write_strtab();
        for s in self.sections.iter().filter(|s| !s.relocs.is_empty()) {
            w.write_align_relocation();
            for r in &s.relocs {
                let rel = Rel {
                    r_offset: r.offset,
                    r_sym: l.sym_index[r.symbol].0,
                    r_type: elf::RelocationType(r.r_type),
                    r_addend: r.addend,
                };
                w.write_relocation(true, &rel);
            }
        }
        w.write_shstrtab();
    }

    fn write_section_headers(&self, w: &mut Writer, l: &Layout) {
        w.write_null_section_header();
        let symtab = w.symtab_index();
        for (i, s) in self.sections.iter().enumerate() {
            w.write_section_header(&SectionHeader {
                sh_name: w.section_name_offset(Some(l.names[i].0)),
                sh_type: elf::SectionType(s.sh_type),
                sh_flags: elf::SectionFlags(s.flags),
                sh_addr: 0,
                sh_offset: l.sec_offset[i],
                sh_size: s.size(),
                sh_link: 0,
                sh_info: 0,
                sh_addralign: s.align,
                sh_entsize: s.entsize,
            });
            if let Some(rela_name) = l.names[i].1 {
                let index: SectionIndex = l.sec_index[i];
                w.write_relocation_section_header(rela_name, index, symtab, l.rela_offset[i], s.relocs.len(), true);
            }
        }
        w.write_symtab_section_header(l.num_local);
        w.write_symtab_shndx_section_header();
        w.write_strtab_section_header();
        w.write_shstrtab_section_header();
    }

    /// Symbol-table order: locals, then globals and weaks; each in creation order.
    fn symbol_order(&self) -> Vec<OutSymbolId> {
        let (mut locals, globals): (Vec<_>, Vec<_>) =
            (0..self.symbols.len()).partition(|&i| self.symbols[i].bind == Binding::Local);
        locals.extend(globals);
        locals
    }
}

/// Where the first pass put everything.
struct Layout {
    sec_index: Vec<SectionIndex>,
    sec_offset: Vec<u64>,
    /// Each section's name, and its `.rela` section's.
    names: Vec<(StringId, Option<StringId>)>,
    order: Vec<OutSymbolId>,
    sym_index: Vec<SymbolIndex>,
    num_local: u32,
    str_ids: Vec<Option<StringId>>,
    rela_offset: Vec<u64>,
}

fn writer_error(e: object::write::Error) -> Error {
    Error::malformed(format!("cannot write the object: {e}"))
}

fn bind_value(b: Binding) -> u8 {
    match b {
        Binding::Local => elf::STB_LOCAL.0,
        Binding::Global | Binding::Other => elf::STB_GLOBAL.0,
        Binding::Weak => elf::STB_WEAK.0,
    }
}

fn kind_value(k: SymbolKind) -> u8 {
    match k {
        SymbolKind::NoType | SymbolKind::Other => elf::STT_NOTYPE.0,
        SymbolKind::Object => elf::STT_OBJECT.0,
        SymbolKind::Func => elf::STT_FUNC.0,
        SymbolKind::Section => elf::STT_SECTION.0,
        SymbolKind::File => elf::STT_FILE.0,
        SymbolKind::Tls => elf::STT_TLS.0,
    }
}

/// Write `bytes` to `path` atomically: a temporary file in the same
/// directory, flushed, then renamed over `path`. On failure nothing is left.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| Error::usage("not a file path").in_file(path))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, "cannot write", &e)
    })
}
