//! Special sections (spec §3.11, §4): the entries of `__ex_table`,
//! `__jump_table`, `.altinstructions`, `__bug_table`, ... that describe a
//! copied function come along, with what they point at (alternatives'
//! replacement code); a jump label or static call whose key lives in a
//! module cannot be live patched.

use super::Builder;
use crate::diff::PatchedSym;
use crate::diff::correlate::is_correlatable;
use crate::elf::write::{OutReloc, OutSectionId};
use crate::elf::{Reloc, SectionId, SymbolId, SymbolKind, reloc};
use crate::error::{Error, Result};
use crate::kernel::special::{entries_with_relocs, is_special_section, resolve_data_reference};

impl Builder<'_, '_> {
    pub(super) fn extract_special_sections(&mut self) -> Result<()> {
        let sections: Vec<SectionId> =
            self.p.sections.iter().filter(|s| is_special_section(s.name) && s.size > 0).map(|s| s.id).collect();
        let mut holding = HoldingIncluded::default();
        let p = self.p;
        for sec in sections {
            let section = p.section(sec);
            let Some(&size) = self.a.patched.specials.entry_sizes.get(section.name) else { continue };
            for (offset, end, relocs) in entries_with_relocs(section, size) {
                // Copying an entry may include more symbols.
                holding.refresh(self);
                if holding.may_describe_clone(self, &section.relocs[relocs])
                    && self.entry_is_wanted(sec, offset, end)?
                {
                    self.copy_entry(sec, offset, end)?;
                }
            }
        }
        Ok(())
    }

    /// An entry is kept when it describes a cloned function, and, for jump
    /// labels and static calls, when its key can be reached.
    fn entry_is_wanted(&mut self, sec: SectionId, start: u64, end: u64) -> Result<bool> {
        let relocs: Vec<Reloc> = self.p.section(sec).relocs_in(start, end).to_vec();
        // Only functions copied into the output count: an undefined
        // reference to a kernel function is not a clone of it.
        let describes_clone =
            relocs.iter().any(|r| resolve_data_reference(self.p, r).is_some_and(|t| self.plan.included.contains(&t)));
        if !describes_clone {
            return Ok(false);
        }
        let section = self.p.section(sec).name;
        if section != "__jump_table" && section != ".static_call_sites" {
            return Ok(true);
        }
        let func = relocs
            .first()
            .and_then(|r| resolve_data_reference(self.p, r))
            .map_or("?".to_owned(), |f| self.p.symbol(f).name.to_owned());
        let Some(key) = relocs.iter().skip(1).filter_map(|r| resolve_data_reference(self.p, r)).find(|&t| {
            let k = self.p.symbol(t);
            k.kind != SymbolKind::Func && !self.plan.included.contains(&t)
        }) else {
            return Ok(true);
        };
        self.check_key(section, &func, key)
    }

    /// Spec §3.11: a key that lives in a module could be reached by a KLP
    /// relocation only after that module initialised its jump labels.
    fn check_key(&mut self, section: &str, func: &str, key: SymbolId) -> Result<bool> {
        let k = self.p.symbol(key);
        let name = k.name.to_owned();
        let module = match self.opts.exports.and_then(|e| e.get(&name)) {
            Some(e) => e.module.clone(),
            None if !is_correlatable(self.p, k)
                || self.a.twins.of_patched(PatchedSym(key)).is_none() && k.is_defined() =>
            {
                return Ok(true); // a copy of our own
            }
            None => self.plan.objname.clone(),
        };
        if module == "vmlinux" {
            return Ok(true);
        }
        if section == "__jump_table" {
            if let Some(tp) = name.strip_prefix("__tracepoint_") {
                self.plan.warnings.push(format!("{func}: disabling unsupported tracepoint {tp}"));
                return Ok(false);
            }
            if name.contains("__UNIQUE_ID_ddebug_") {
                self.plan.warnings.push(format!("{func}: disabling unsupported pr_debug()"));
                return Ok(false);
            }
            return Err(Error::unpatchable(format!(
                "{func}: unsupported static branch key {name} in module {module}; use static_key_enabled() instead"
            )));
        }
        if name.starts_with("__SCK__tp_func_") {
            return Ok(false);
        }
        Err(Error::unpatchable(format!(
            "{func}: unsupported static call key {name} in module {module}; use KLP_STATIC_CALL() instead"
        )))
    }

    fn copy_entry(&mut self, sec: SectionId, start: u64, end: u64) -> Result<()> {
        let s = self.p.section(sec);
        let osec = self.out_section_like(s)?;
        let out = self.copy(osec, s, start, end - start, 1)?;
        let relocs: Vec<Reloc> = s.relocs_in(start, end).to_vec();
        let is_alt = s.name == ".altinstructions";
        for r in relocs.into_iter().filter(|r| r.r_type() != reloc::NONE) {
            self.inside_copy(sec, &r, end)?;
            let site = out + (r.offset() - start);
            let target = self.p.symbol(r.symbol());
            let in_replacement = self.p.symbol_section(target).is_some_and(|t| t.name == ".altinstr_replacement");
            if is_alt && in_replacement {
                self.copy_replacement(sec, start, end, &r, osec, site)?;
            } else {
                self.clone_reloc(sec, &r, 0, osec, site)?;
            }
        }
        Ok(())
    }

    /// The replacement code of an alternative, whose length is the entry's
    /// `replacementlen` byte (the last byte of a 14-byte entry, byte 11 of
    /// older 12/13-byte ones).
    fn copy_replacement(
        &mut self,
        alt: SectionId,
        start: u64,
        end: u64,
        r: &Reloc,
        osec: OutSectionId,
        site: u64,
    ) -> Result<()> {
        let entry = &self.p.section(alt).data[start as usize..end as usize];
        let len = match entry.len() {
            14 => entry[13],
            12 | 13 => entry[11],
            n => {
                return Err(Error::malformed(format!("unknown entry size {n}"))
                    .in_section(".altinstructions")
                    .in_file(&self.p.path));
            }
        } as u64;
        let target = self.p.symbol(r.symbol());
        let repl = target.section().expect("replacement symbol is defined");
        let base = if target.kind == SymbolKind::Section { 0 } else { target.value as i64 };
        let at = base.saturating_add(r.addend()).max(0) as u64;
        let s = self.p.section(repl);
        let rsec = self.out_section_like(s)?;
        let out = self.copy(rsec, s, at, len, 1)?;
        if len > 0 {
            self.clone_relocs(repl, at, at + len, rsec, out)?;
        }
        let symbol = self.section_symbol(rsec);
        self.out.sections[osec].relocs.push(OutReloc { offset: site, symbol, r_type: r.r_type(), addend: out as i64 });
        Ok(())
    }
}

/// Where the included symbols are: an entry none of whose relocations can
/// resolve to one describes no clone, and is passed over without resolving
/// them (a `vmlinux.o` has 100,000 entries, a livepatch copies a few; a
/// merged `.text` holds an included function and the places of most of
/// them).
#[derive(Default)]
struct HoldingIncluded {
    /// How many symbols were included when `spans` was made.
    included: usize,
    /// Per section holding an included symbol, the `[value, end]` of each
    /// (both ends in: a place resolves to a symbol only between them).
    spans: rustc_hash::FxHashMap<SectionId, Vec<(u64, u64)>>,
}

impl HoldingIncluded {
    fn refresh(&mut self, b: &Builder) {
        if b.plan.included.len() == self.included {
            return;
        }
        self.included = b.plan.included.len();
        self.spans.clear();
        for &id in &b.plan.included {
            let s = b.p.symbol(id);
            if let Some(sec) = s.section() {
                self.spans.entry(sec).or_default().push((s.value, s.end()));
            }
        }
    }

    /// False only for an entry that cannot describe an included symbol:
    /// no relocation of it resolves into one. A named or undefined symbol
    /// is its own target; a section symbol's covers the place or starts or
    /// ends there ([`crate::elf::ElfObject::symbol_at`]).
    fn may_describe_clone(&self, b: &Builder, relocs: &[Reloc]) -> bool {
        relocs.iter().any(|r| {
            let place = b.p.place(r.symbol());
            let Some(sec) = place.section().filter(|_| place.is_section_symbol) else {
                return b.plan.included.contains(&r.symbol());
            };
            let Some(spans) = self.spans.get(&sec) else { return false };
            // As `referent` computes the place: before the section, nothing.
            let Ok(at) = u64::try_from(place.base().saturating_add(r.addend())) else { return false };
            spans.iter().any(|&(value, end)| value <= at && at <= end)
        })
    }
}
