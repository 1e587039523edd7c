//! Post-link stage: turn the linked livepatch module's intermediate KLP
//! relocations (`__klp_relocs.<obj>` entries) into the form the kernel's
//! livepatch loader applies: `.klp.rela.<obj>.<section>` sections flagged
//! `SHF_RELA_LIVEPATCH`, `.klp.sym` symbols (and their placeholders) marked
//! `SHN_LIVEPATCH`, and the ordinary relocation at each KLP site turned into
//! `R_X86_64_NONE` so that only the livepatch core writes it.
//!
//! The module is edited as bytes, not rebuilt: symbol and relocation
//! entries are patched in place, and the new sections, a grown copy of the
//! section name table and a new section header table are appended. Nothing
//! is reordered or renumbered (the kernel keeps the module's symbol table as
//! built), and `.group` sections and extended section numbering pass
//! through untouched.

use std::collections::HashMap;
use std::path::Path;

use object::LittleEndian as LE;
use object::elf::{self, FileHeader64, SectionHeader64};
use object::read::elf::{FileHeader, SectionHeader, SectionTable};

use crate::kernel::abi::{self as klp, SHF_RELA_LIVEPATCH, SHN_LIVEPATCH};

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Converted { relocations: usize, sections: usize },
    AlreadyConverted,
    NothingToConvert,
}

const SHDR_SIZE: usize = 64;
const SYM_SIZE: usize = 24;
const RELA_SIZE: usize = 24;

/// Convert the module at `path` in place (atomically).
pub fn post_link(path: &Path) -> Result<Outcome, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let (bytes, outcome) = convert(&data).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(bytes) = bytes {
        crate::elf::write::write_atomically(path, &bytes)?;
    }
    Ok(outcome)
}

/// One KLP relocation read from `__klp_relocs`.
struct KlpEntry {
    obj: String,
    target_section: usize,
    offset: u64,
    symbol: u32,
    r_type: u32,
    addend: i64,
}

/// A parsed RELA entry and where it sits in the file.
#[derive(Clone, Copy)]
struct RawRela {
    file_offset: usize,
    offset: u64,
    symbol: u32,
    r_type: u32,
    addend: i64,
}

struct Module<'d> {
    data: &'d [u8],
    sections: SectionTable<'d, FileHeader64<LE>, &'d [u8]>,
    symtab_index: usize,
    symtab_offset: usize,
    symbol_count: usize,
    strtab: &'d [u8],
}

impl<'d> Module<'d> {
    fn parse(data: &'d [u8]) -> Result<Self, String> {
        let header = FileHeader64::<LE>::parse(data).map_err(|e| format!("not an ELF64 file: {e}"))?;
        if header.e_type(LE) != elf::ET_REL || header.e_machine(LE) != elf::EM_X86_64 {
            return Err("not an x86-64 relocatable module".into());
        }
        let sections = header.sections(LE, data).map_err(|e| format!("bad section table: {e}"))?;
        let (symtab_index, symtab) =
            sections.iter().enumerate().find(|(_, s)| s.sh_type(LE) == elf::SHT_SYMTAB).ok_or("missing .symtab")?;
        let strtab = sections
            .iter()
            .as_slice()
            .get(symtab.sh_link(LE) as usize)
            .and_then(|s| s.data(LE, data).ok())
            .ok_or("bad .strtab")?;
        Ok(Module {
            data,
            symtab_index,
            symtab_offset: symtab.sh_offset(LE) as usize,
            symbol_count: symtab.sh_size(LE) as usize / SYM_SIZE,
            strtab,
            sections,
        })
    }

    fn section(&self, i: usize) -> &'d SectionHeader64<LE> {
        &self.sections.iter().as_slice()[i]
    }

    fn section_name(&self, i: usize) -> &'d str {
        let name = self.sections.section_name(LE, self.section(i)).unwrap_or_default();
        std::str::from_utf8(name).unwrap_or("")
    }

    fn symbol_field<const N: usize>(&self, sym: u32, at: usize) -> Result<[u8; N], String> {
        let start = self.symtab_offset + sym as usize * SYM_SIZE + at;
        if sym as usize >= self.symbol_count {
            return Err(format!("symbol index {sym} out of range"));
        }
        self.data.get(start..start + N).and_then(|b| b.try_into().ok()).ok_or_else(|| "truncated .symtab".into())
    }

    fn symbol_name(&self, sym: u32) -> Result<&'d str, String> {
        let off = u32::from_le_bytes(self.symbol_field::<4>(sym, 0)?) as usize;
        let rest = self.strtab.get(off..).ok_or("symbol name outside .strtab")?;
        let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..len]).map_err(|_| "symbol name is not UTF-8".into())
    }

    fn symbol_shndx(&self, sym: u32) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.symbol_field::<2>(sym, 6)?))
    }

    fn symbol_value(&self, sym: u32) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.symbol_field::<8>(sym, 8)?))
    }

    /// The section a symbol is defined in (extended indices not needed here:
    /// section symbols of sections past 0xff00 use .symtab_shndx).
    fn symbol_section(&self, sym: u32) -> Result<usize, String> {
        let shndx = self.symbol_shndx(sym)?;
        if shndx == elf::SHN_XINDEX.0 {
            let shndx_sec = self
                .sections
                .iter()
                .find(|s| s.sh_type(LE) == elf::SHT_SYMTAB_SHNDX)
                .ok_or("SHN_XINDEX without .symtab_shndx")?;
            let at = shndx_sec.sh_offset(LE) as usize + sym as usize * 4;
            let raw = self.data.get(at..at + 4).ok_or("truncated .symtab_shndx")?;
            return Ok(u32::from_le_bytes(raw.try_into().unwrap()) as usize);
        }
        if shndx == 0 || shndx >= 0xff00 {
            return Err(format!("symbol {} is not defined in a section", self.symbol_name(sym)?));
        }
        Ok(shndx as usize)
    }

    /// The RELA entries applying to section `target`, from ordinary
    /// (non-livepatch) relocation sections.
    fn relas_of(&self, target: usize) -> Result<Vec<RawRela>, String> {
        let mut out = Vec::new();
        for (i, s) in self.sections.iter().enumerate() {
            if s.sh_type(LE) != elf::SHT_RELA || s.sh_info(LE) as usize != target {
                continue;
            }
            if s.sh_flags(LE).0 & SHF_RELA_LIVEPATCH != 0 {
                continue;
            }
            let start = s.sh_offset(LE) as usize;
            let count = s.sh_size(LE) as usize / RELA_SIZE;
            let raw = self
                .data
                .get(start..start + count * RELA_SIZE)
                .ok_or_else(|| format!("section #{i}: relocations outside the file"))?;
            for (k, e) in raw.chunks_exact(RELA_SIZE).enumerate() {
                let info = u64::from_le_bytes(e[8..16].try_into().unwrap());
                out.push(RawRela {
                    file_offset: start + k * RELA_SIZE,
                    offset: u64::from_le_bytes(e[0..8].try_into().unwrap()),
                    symbol: (info >> 32) as u32,
                    r_type: info as u32,
                    addend: i64::from_le_bytes(e[16..24].try_into().unwrap()),
                });
            }
        }
        Ok(out)
    }
}

/// The converted bytes (`None` when nothing changes) and what happened.
pub fn convert(data: &[u8]) -> Result<(Option<Vec<u8>>, Outcome), String> {
    let m = Module::parse(data)?;
    let count = m.sections.len();
    if (0..count).any(|i| m.section_name(i).starts_with(".klp.rela.")) {
        return Ok((None, Outcome::AlreadyConverted));
    }
    let relocs_sections: Vec<usize> = (0..count)
        .filter(|&i| m.section_name(i) == "__klp_relocs" || m.section_name(i).starts_with("__klp_relocs."))
        .collect();
    if relocs_sections.is_empty() {
        return Ok((None, Outcome::NothingToConvert));
    }
    let mut entries = Vec::new();
    for &s in &relocs_sections {
        entries.extend(read_klp_relocs(&m, s)?);
    }
    let mut out = data.to_vec();
    let mut livepatch_symbols: Vec<u32> = Vec::new();
    let mut rela_cache: HashMap<usize, Vec<RawRela>> = HashMap::new();
    // (obj, target section) -> entries of the new .klp.rela section, in order of first use.
    let mut groups: Vec<((String, usize), Vec<u8>)> = Vec::new();
    let mut seen_sites: HashMap<(String, usize, u64), ()> = HashMap::new();
    for e in &entries {
        if seen_sites.insert((e.obj.clone(), e.target_section, e.offset), ()).is_some() {
            return Err(format!("duplicate KLP relocation at {}+{:#x}", m.section_name(e.target_section), e.offset));
        }
        let relas = match rela_cache.entry(e.target_section) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(m.relas_of(e.target_section)?),
        };
        let ordinary = relas.iter().find(|r| r.offset == e.offset && r.r_type != elf::R_X86_64_NONE.0).copied();
        let Some(ordinary) = ordinary else {
            return Err(format!(
                "no ordinary relocation at {}+{:#x} for the KLP relocation to {}",
                m.section_name(e.target_section),
                e.offset,
                m.symbol_name(e.symbol)?
            ));
        };
        // Neutralise it: keep the symbol, set the type to R_X86_64_NONE.
        let info = (u64::from(ordinary.symbol) << 32) | u64::from(elf::R_X86_64_NONE.0);
        out[ordinary.file_offset + 8..ordinary.file_offset + 16].copy_from_slice(&info.to_le_bytes());
        livepatch_symbols.push(e.symbol);
        livepatch_symbols.push(ordinary.symbol);
        let key = (e.obj.clone(), e.target_section);
        let group = match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g,
            None => {
                groups.push((key, Vec::new()));
                &mut groups.last_mut().unwrap().1
            }
        };
        group.extend_from_slice(&e.offset.to_le_bytes());
        group.extend_from_slice(&((u64::from(e.symbol) << 32) | u64::from(e.r_type)).to_le_bytes());
        group.extend_from_slice(&e.addend.to_le_bytes());
    }
    for &sym in &livepatch_symbols {
        let at = m.symtab_offset + sym as usize * SYM_SIZE + 6;
        out[at..at + 2].copy_from_slice(&SHN_LIVEPATCH.to_le_bytes());
    }
    append_sections(&m, &mut out, &groups)?;
    Ok((Some(out), Outcome::Converted { relocations: entries.len(), sections: groups.len() }))
}

/// Read the 24-byte `klp_reloc` entries of section `s` through its relocations.
fn read_klp_relocs(m: &Module, s: usize) -> Result<Vec<KlpEntry>, String> {
    let name = m.section_name(s);
    let sec = m.section(s);
    let data = sec.data(LE, m.data).map_err(|_| format!("{name}: data outside the file"))?;
    if data.len() % klp::KLP_RELOC_SIZE as usize != 0 {
        return Err(format!("malformed {name}: size {} is not a multiple of 24", data.len()));
    }
    let relas: HashMap<u64, RawRela> = m.relas_of(s)?.into_iter().map(|r| (r.offset, r)).collect();
    let obj_from_section = name.strip_prefix("__klp_relocs.");
    let mut out = Vec::new();
    for i in 0..data.len() / 24 {
        let base = (i * 24) as u64;
        let missing = |at: u64| format!("malformed {name}: entry {i} has no relocation at +{at}");
        let site = relas.get(&base).ok_or_else(|| missing(0))?;
        let sym = relas.get(&(base + 8)).ok_or_else(|| missing(8))?;
        let target_section = m.symbol_section(site.symbol)?;
        let offset = (m.symbol_value(site.symbol)? as i64 + site.addend) as u64;
        let sym_name = m.symbol_name(sym.symbol)?;
        let (sym_obj, _, _) = klp::parse_klp_symbol(sym_name)
            .ok_or_else(|| format!("{name}: entry {i} refers to {sym_name}, not a .klp.sym symbol"))?;
        let obj = obj_from_section.unwrap_or(sym_obj).to_owned();
        let r_type = u32::from_le_bytes(data[i * 24 + 16..i * 24 + 20].try_into().unwrap());
        out.push(KlpEntry { obj, target_section, offset, symbol: sym.symbol, r_type, addend: sym.addend });
    }
    Ok(out)
}

/// Append the `.klp.rela` sections, a grown `.shstrtab` and a new section
/// header table; point the ELF header (and section 0 for extended
/// numbering) at them.
fn append_sections(m: &Module, out: &mut Vec<u8>, groups: &[((String, usize), Vec<u8>)]) -> Result<(), String> {
    let header = FileHeader64::<LE>::parse(m.data).map_err(|e| e.to_string())?;
    let shstrndx = header.shstrndx(LE, m.data).map_err(|e| e.to_string())? as usize;
    let old_count = m.sections.len();
    let mut shstrtab = m.section(shstrndx).data(LE, m.data).map_err(|_| "bad .shstrtab")?.to_vec();
    let mut headers: Vec<[u8; SHDR_SIZE]> = Vec::new();
    for ((obj, target), relas) in groups {
        let name = klp::klp_rela_section_name(obj, m.section_name(*target));
        let name_offset = shstrtab.len() as u32;
        shstrtab.extend_from_slice(name.as_bytes());
        shstrtab.push(0);
        let offset = align_to(out, 8);
        out.extend_from_slice(relas);
        headers.push(section_header(SectionFields {
            name: name_offset,
            sh_type: elf::SHT_RELA.0,
            flags: elf::SHF_ALLOC.0 | elf::SHF_INFO_LINK.0 | SHF_RELA_LIVEPATCH,
            offset: offset as u64,
            size: relas.len() as u64,
            link: m.symtab_index as u32,
            info: *target as u32,
            align: 8,
            entsize: RELA_SIZE as u64,
        }));
    }
    let shstrtab_offset = out.len();
    out.extend_from_slice(&shstrtab);
    let shoff = align_to(out, 8);
    let old_shoff = header.e_shoff(LE) as usize;
    for i in 0..old_count {
        let mut h: [u8; SHDR_SIZE] = m.data[old_shoff + i * SHDR_SIZE..][..SHDR_SIZE].try_into().unwrap();
        if i == shstrndx {
            h[24..32].copy_from_slice(&(shstrtab_offset as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(shstrtab.len() as u64).to_le_bytes());
        }
        out.extend_from_slice(&h);
    }
    for h in &headers {
        out.extend_from_slice(h);
    }
    let total = old_count + headers.len();
    out[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    if header.e_shnum(LE) == 0 || total >= usize::from(elf::SHN_LORESERVE) {
        // Extended numbering: the count lives in section 0's sh_size.
        out[0x3c..0x3e].copy_from_slice(&0u16.to_le_bytes());
        out[shoff + 32..shoff + 40].copy_from_slice(&(total as u64).to_le_bytes());
    } else {
        out[0x3c..0x3e].copy_from_slice(&(total as u16).to_le_bytes());
    }
    Ok(())
}

fn align_to(out: &mut Vec<u8>, align: usize) -> usize {
    let at = out.len().next_multiple_of(align);
    out.resize(at, 0);
    at
}

struct SectionFields {
    name: u32,
    sh_type: u32,
    flags: u64,
    offset: u64,
    size: u64,
    link: u32,
    info: u32,
    align: u64,
    entsize: u64,
}

fn section_header(f: SectionFields) -> [u8; SHDR_SIZE] {
    let mut h = [0u8; SHDR_SIZE];
    h[0..4].copy_from_slice(&f.name.to_le_bytes());
    h[4..8].copy_from_slice(&f.sh_type.to_le_bytes());
    h[8..16].copy_from_slice(&f.flags.to_le_bytes());
    h[24..32].copy_from_slice(&f.offset.to_le_bytes());
    h[32..40].copy_from_slice(&f.size.to_le_bytes());
    h[40..44].copy_from_slice(&f.link.to_le_bytes());
    h[44..48].copy_from_slice(&f.info.to_le_bytes());
    h[48..56].copy_from_slice(&f.align.to_le_bytes());
    h[56..64].copy_from_slice(&f.entsize.to_le_bytes());
    h
}
