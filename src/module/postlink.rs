//! Post-link stage: turn the linked livepatch module's intermediate KLP
//! relocations (`__klp_relocs.<obj>` entries) into the form the kernel's
//! livepatch loader applies: `.klp.rela.<obj>.<section>` sections flagged
//! `SHF_RELA_LIVEPATCH`, `.klp.sym` symbols (and their placeholders) marked
//! `SHN_LIVEPATCH`, and the ordinary relocation at each KLP site turned into
//! `R_X86_64_NONE` so that only the livepatch core writes it.
//!
//! The module is read with the ELF layer's reader, which validates it, and
//! edited in place with its editor (`crate::elf::edit`).

use std::collections::HashSet;
use std::path::Path;

use crate::elf::edit::{Editor, NewSection};
use crate::elf::{ElfObject, SectionId, SymbolId, reloc};
use crate::error::{Context, Error, Result};
use crate::kernel::abi::{self as klp, SHF_RELA_LIVEPATCH, SHN_LIVEPATCH};

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Converted { relocations: usize, sections: usize },
    AlreadyConverted,
    NothingToConvert,
}

/// Convert the module at `path` in place (atomically).
pub fn post_link(path: &Path) -> Result<Outcome> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, "cannot read", &e))?;
    let (bytes, outcome) = convert(path, &data)?;
    if let Some(bytes) = bytes {
        crate::elf::write::write_atomically(path, &bytes)?;
    }
    Ok(outcome)
}

/// One KLP relocation read from `__klp_relocs`.
struct KlpEntry {
    obj: String,
    target_section: SectionId,
    offset: u64,
    symbol: SymbolId,
    r_type: u32,
    addend: i64,
}

/// The converted bytes (`None` when nothing changes) and what happened;
/// `path` names the module in errors.
pub fn convert(path: &Path, data: &[u8]) -> Result<(Option<Vec<u8>>, Outcome)> {
    let m = ElfObject::parse(path, data)?;
    if m.sections.iter().any(|s| s.name.starts_with(".klp.rela.")) {
        return Ok((None, Outcome::AlreadyConverted));
    }
    let relocs_sections: Vec<SectionId> = m
        .sections
        .iter()
        .filter(|s| s.name == "__klp_relocs" || s.name.starts_with("__klp_relocs."))
        .map(|s| s.id)
        .collect();
    if relocs_sections.is_empty() {
        return Ok((None, Outcome::NothingToConvert));
    }
    let mut entries = Vec::new();
    for &s in &relocs_sections {
        entries.extend(read_klp_relocs(&m, s).in_section(m.section(s).name).in_file(path)?);
    }
    convert_entries(&m, data, &entries).in_file(path)
}

fn convert_entries(m: &ElfObject, data: &[u8], entries: &[KlpEntry]) -> Result<(Option<Vec<u8>>, Outcome)> {
    let mut editor = Editor::new(m, data)?;
    let mut livepatch_symbols: Vec<SymbolId> = Vec::new();
    // (obj, target section) -> entries of the new .klp.rela section, in order of first use.
    let mut groups: Vec<((String, SectionId), Vec<u8>)> = Vec::new();
    let mut seen_sites = HashSet::new();
    for e in entries {
        let site = m.section(e.target_section).name;
        if !seen_sites.insert((e.obj.clone(), e.target_section, e.offset)) {
            return Err(Error::malformed("duplicate KLP relocation").in_section(site).at_offset(e.offset));
        }
        let target = m.section(e.target_section);
        let ordinary = target
            .relocs_in(e.offset, e.offset + 1)
            .iter()
            .find(|r| r.offset() == e.offset && r.r_type() != reloc::NONE);
        let at = ordinary.and_then(|r| Some((r, editor.find_rela(e.target_section, r)?)));
        let Some((ordinary, at)) = at else {
            return Err(Error::malformed(format!(
                "no ordinary relocation for the KLP relocation to {}",
                m.symbol(e.symbol).name
            ))
            .in_section(site)
            .at_offset(e.offset));
        };
        // Neutralise it: keep the symbol, set the type to R_X86_64_NONE.
        editor.set_rela_type(at, reloc::NONE);
        livepatch_symbols.push(e.symbol);
        livepatch_symbols.push(ordinary.symbol());
        let key = (e.obj.clone(), e.target_section);
        let group = match groups.iter().position(|(k, _)| *k == key) {
            Some(i) => &mut groups[i].1,
            None => {
                groups.push((key, Vec::new()));
                &mut groups.last_mut().expect("just pushed").1
            }
        };
        group.extend_from_slice(&e.offset.to_le_bytes());
        group.extend_from_slice(&((u64::from(e.symbol.0) << 32) | u64::from(e.r_type)).to_le_bytes());
        group.extend_from_slice(&e.addend.to_le_bytes());
    }
    for &sym in &livepatch_symbols {
        editor.set_symbol_shndx(sym, SHN_LIVEPATCH);
    }
    let symtab = m.sections.iter().find(|s| s.sh_type == object::elf::SHT_SYMTAB.0).map_or(0, |s| s.id.0);
    for ((obj, target), relas) in &groups {
        editor.append_section(NewSection {
            name: klp::klp_rela_section_name(obj, m.section(*target).name),
            sh_type: object::elf::SHT_RELA.0,
            flags: object::elf::SHF_ALLOC.0 | object::elf::SHF_INFO_LINK.0 | SHF_RELA_LIVEPATCH,
            link: symtab,
            info: target.0,
            align: 8,
            entsize: 24,
            data: relas.clone(),
        });
    }
    let out = editor.finish()?;
    Ok((Some(out), Outcome::Converted { relocations: entries.len(), sections: groups.len() }))
}

/// The `klp_reloc` entries of section `s`, through their relocations.
fn read_klp_relocs(m: &ElfObject, s: SectionId) -> Result<Vec<KlpEntry>> {
    let sec = m.section(s);
    let obj_from_section = sec.name.strip_prefix("__klp_relocs.");
    let mut out = Vec::new();
    for (i, e) in klp::reloc_entries(sec)?.into_iter().enumerate() {
        let missing = |field: u64| Error::malformed(format!("entry {i} has no relocation at +{field}")).at_offset(e.at);
        let site = e.site.ok_or_else(|| missing(0))?;
        let sym = e.symbol.ok_or_else(|| missing(8))?;
        let (target_section, offset) = site.target(m).ok_or_else(|| {
            Error::malformed(format!("entry {i}: the site is not in a section of this module")).at_offset(e.at)
        })?;
        let sym_name = m.symbol(sym.symbol).name;
        let (sym_obj, _, _) = klp::parse_klp_symbol(sym_name).ok_or_else(|| {
            Error::malformed(format!("entry {i} refers to {sym_name}, not a .klp.sym symbol")).at_offset(e.at)
        })?;
        let target = m.section(target_section);
        let width = reloc::width(e.r_type) as u64;
        if offset.checked_add(width).is_none_or(|end| end > target.size) {
            return Err(Error::malformed(format!(
                "entry {i}: a {width}-byte relocation (type {}) at {}+{offset:#x} crosses the end of that section (size {:#x})",
                e.r_type, target.name, target.size
            ))
            .at_offset(e.at));
        }
        let obj = obj_from_section.unwrap_or(sym_obj).to_owned();
        out.push(KlpEntry { obj, target_section, offset, symbol: sym.symbol, r_type: e.r_type, addend: sym.addend });
    }
    Ok(out)
}
