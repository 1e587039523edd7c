//! A relocatable object as plain tables (sections, symbols, relocations)
//! and its serialisation with `object`'s ELF writer. Independent of klp's
//! own output writer on purpose: the synthesizer is the oracle, so it must
//! not share the code it checks.

use object::Endianness;
use object::elf;
use object::write::elf::{FileHeader, Rel, SectionHeader, SectionIndex, Sym, SymbolIndex, Writer};

pub type SecIdx = usize;
pub type SymIdx = usize;

#[derive(Debug, Clone)]
pub struct DraftSection {
    pub name: String,
    pub sh_type: u32,
    pub flags: u64,
    pub align: u64,
    pub entsize: u64,
    /// Contents; for NOBITS only the length counts (`nobits_size`).
    pub data: Vec<u8>,
    pub nobits_size: u64,
    /// `sh_link` to another draft section (SHF_LINK_ORDER).
    pub link: Option<SecIdx>,
    pub relocs: Vec<DraftReloc>,
}

impl DraftSection {
    pub fn new(name: &str, sh_type: u32, flags: u64, align: u64) -> Self {
        DraftSection {
            name: name.to_owned(),
            sh_type,
            flags,
            align,
            entsize: 0,
            data: Vec::new(),
            nobits_size: 0,
            link: None,
            relocs: Vec::new(),
        }
    }

    pub fn code(name: &str, align: u64) -> Self {
        Self::new(name, elf::SHT_PROGBITS.0, elf::SHF_ALLOC.0 | elf::SHF_EXECINSTR.0, align)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DraftReloc {
    pub offset: u64,
    pub symbol: SymIdx,
    pub r_type: u32,
    pub addend: i64,
}

#[derive(Debug, Clone)]
pub struct DraftSymbol {
    pub name: String,
    /// `STT_*`.
    pub kind: u8,
    pub global: bool,
    pub section: Option<SecIdx>,
    pub value: u64,
    pub size: u64,
}

/// Sections and symbols in output order; symbols must list every local
/// before the first global (the caller keeps FILE grouping).
#[derive(Debug, Default)]
pub struct Draft {
    pub sections: Vec<DraftSection>,
    pub symbols: Vec<DraftSymbol>,
}

impl Draft {
    pub fn add_section(&mut self, s: DraftSection) -> SecIdx {
        self.sections.push(s);
        self.sections.len() - 1
    }

    pub fn add_symbol(&mut self, s: DraftSymbol) -> SymIdx {
        self.symbols.push(s);
        self.symbols.len() - 1
    }

    /// ELF64 little-endian x86-64 `ET_REL` bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        if let Some(i) = self.symbols.windows(2).position(|w| w[0].global && !w[1].global) {
            return Err(format!("local symbol {} after a global", self.symbols[i + 1].name));
        }
        let rela_names: Vec<Vec<u8>> = self.sections.iter().map(|s| format!(".rela{}", s.name).into_bytes()).collect();
        let mut buf = Vec::new();
        let mut w = Writer::new(Endianness::Little, true, &mut buf);
        let layout = self.reserve(&mut w, &rela_names).map_err(|e| e.to_string())?;
        w.write_file_header(&FileHeader {
            os_abi: elf::ELFOSABI_NONE,
            abi_version: 0,
            e_type: elf::ET_REL,
            e_machine: elf::EM_X86_64,
            e_entry: 0,
            e_flags: elf::FileFlags(0),
        })
        .map_err(|e| e.to_string())?;
        self.write_contents(&mut w, &layout);
        self.write_headers(&mut w, &layout);
        Ok(buf)
    }

    fn reserve<'a>(&'a self, w: &mut Writer<'a>, rela_names: &'a [Vec<u8>]) -> object::write::Result<Layout> {
        w.reserve_file_header();
        let mut l = Layout::default();
        for (s, rela_name) in self.sections.iter().zip(rela_names) {
            l.sec_index.push(w.reserve_section_index());
            let len = if s.sh_type == elf::SHT_NOBITS.0 { 0 } else { s.data.len() as u64 };
            l.sec_offset.push(w.reserve(len, s.align));
            let name = w.add_section_name(s.name.as_bytes());
            let rela = (!s.relocs.is_empty()).then(|| {
                w.reserve_section_index();
                w.add_section_name(rela_name)
            });
            l.names.push((name, rela));
        }
        w.reserve_null_symbol_index();
        for s in &self.symbols {
            l.sym_index.push(w.reserve_symbol_index(s.section.map(|i| l.sec_index[i])));
            if !s.global {
                l.num_local = w.symbol_count();
            }
        }
        l.str_ids = self
            .symbols
            .iter()
            .map(|s| (s.kind != elf::STT_SECTION.0 && !s.name.is_empty()).then(|| w.add_string(s.name.as_bytes())))
            .collect();
        w.reserve_symtab_section_index();
        w.reserve_symtab();
        if w.symtab_shndx_needed() {
            w.reserve_symtab_shndx_section_index();
        }
        w.reserve_symtab_shndx();
        w.reserve_strtab_section_index();
        w.reserve_strtab()?;
        l.rela_offset = self
            .sections
            .iter()
            .map(|s| if s.relocs.is_empty() { 0 } else { w.reserve_relocations(s.relocs.len(), true) })
            .collect();
        w.reserve_shstrtab_section_index();
        w.reserve_shstrtab()?;
        w.reserve_section_headers();
        Ok(l)
    }

    fn write_contents(&self, w: &mut Writer, l: &Layout) {
        for s in &self.sections {
            // Aligned like `reserve` aligned it, even for NOBITS (no bytes).
            w.write_align(s.align);
            if s.sh_type != elf::SHT_NOBITS.0 {
                w.write(&s.data);
            }
        }
        w.write_null_symbol();
        for (i, s) in self.symbols.iter().enumerate() {
            let bind = if s.global { elf::STB_GLOBAL } else { elf::STB_LOCAL };
            w.write_symbol(&Sym {
                st_name: w.string_offset(l.str_ids[i]),
                section: s.section.map(|x| l.sec_index[x].0),
                st_info: elf::SymbolInfo::new(bind, elf::SymbolType(s.kind)),
                st_other: elf::SymbolOther(elf::STV_DEFAULT.0),
                st_shndx: if s.kind == elf::STT_FILE.0 { elf::SHN_ABS } else { elf::SHN_UNDEF },
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

    fn write_headers(&self, w: &mut Writer, l: &Layout) {
        w.write_null_section_header();
        let symtab = w.symtab_index();
        for (i, s) in self.sections.iter().enumerate() {
            let size = if s.sh_type == elf::SHT_NOBITS.0 { s.nobits_size } else { s.data.len() as u64 };
            w.write_section_header(&SectionHeader {
                sh_name: w.section_name_offset(Some(l.names[i].0)),
                sh_type: elf::SectionType(s.sh_type),
                sh_flags: elf::SectionFlags(s.flags),
                sh_addr: 0,
                sh_offset: l.sec_offset[i],
                sh_size: size,
                sh_link: s.link.map_or(0, |x| l.sec_index[x].0),
                sh_info: 0,
                sh_addralign: s.align,
                sh_entsize: s.entsize,
            });
            if let Some(rela) = l.names[i].1 {
                w.write_relocation_section_header(rela, l.sec_index[i], symtab, l.rela_offset[i], s.relocs.len(), true);
            }
        }
        w.write_symtab_section_header(l.num_local);
        w.write_symtab_shndx_section_header();
        w.write_strtab_section_header();
        w.write_shstrtab_section_header();
    }
}

#[derive(Default)]
struct Layout {
    sec_index: Vec<SectionIndex>,
    sec_offset: Vec<u64>,
    names: Vec<(object::write::StringId, Option<object::write::StringId>)>,
    sym_index: Vec<SymbolIndex>,
    num_local: u32,
    str_ids: Vec<Option<object::write::StringId>>,
    rela_offset: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::read::{Object, ObjectSection, ObjectSymbol};

    #[test]
    fn sections_symbols_and_relocations_read_back() {
        let mut d = Draft::default();
        let mut text = DraftSection::code(".text.f", 16);
        text.data = vec![0xe8, 0, 0, 0, 0, 0xc3];
        let t = d.add_section(text);
        let mut bss = DraftSection::new(".bss.x", elf::SHT_NOBITS.0, elf::SHF_ALLOC.0 | elf::SHF_WRITE.0, 64);
        bss.nobits_size = 12;
        d.add_section(bss);
        let mut data = DraftSection::new(".data.y", elf::SHT_PROGBITS.0, elf::SHF_ALLOC.0 | elf::SHF_WRITE.0, 8);
        data.data = vec![1; 8];
        d.add_section(data);
        d.add_symbol(DraftSymbol {
            name: "f.c".into(),
            kind: elf::STT_FILE.0,
            global: false,
            section: None,
            value: 0,
            size: 0,
        });
        let f = d.add_symbol(DraftSymbol {
            name: "f".into(),
            kind: elf::STT_FUNC.0,
            global: true,
            section: Some(t),
            value: 0,
            size: 6,
        });
        d.sections[t].relocs.push(DraftReloc { offset: 1, symbol: f, r_type: elf::R_X86_64_PLT32.0, addend: -4 });
        let bytes = d.to_bytes().unwrap();
        let o = object::File::parse(&*bytes).unwrap();
        let names: Vec<&str> = o.sections().map(|s| s.name().unwrap()).collect();
        assert!(names.starts_with(&[".text.f", ".rela.text.f", ".bss.x", ".data.y"]), "{names:?}");
        assert_eq!(o.section_by_name(".data.y").unwrap().data().unwrap(), &[1; 8]);
        assert_eq!(o.section_by_name(".bss.x").unwrap().size(), 12);
        let sym = o.symbols().find(|s| s.name() == Ok("f")).unwrap();
        assert!(sym.is_global() && sym.size() == 6);
        let (at, r) = o.section_by_name(".text.f").unwrap().relocations().next().unwrap();
        assert_eq!((at, r.addend()), (1, -4));
    }

    #[test]
    fn a_local_after_a_global_is_refused() {
        let mut d = Draft::default();
        d.add_symbol(DraftSymbol {
            name: "g".into(),
            kind: elf::STT_FUNC.0,
            global: true,
            section: None,
            value: 0,
            size: 0,
        });
        d.add_symbol(DraftSymbol {
            name: "l".into(),
            kind: elf::STT_FUNC.0,
            global: false,
            section: None,
            value: 0,
            size: 0,
        });
        assert!(d.to_bytes().is_err());
    }
}
