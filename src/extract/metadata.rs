//! Metadata: the livepatch tables the module's init code hands to the
//! kernel (`klp_object_ext`, `klp_func_ext`, encoded by
//! [`crate::kernel::abi`]), the `klp_reloc` entries post-link converts,
//! callbacks, `.modinfo` records and the stack note.

use std::collections::BTreeSet;

use super::Builder;
use crate::elf::reloc;
use crate::elf::write::{OutReloc, OutSymbolId};
use crate::error::Result;
use crate::kernel::abi as klp;
use crate::kernel::special::resolve_data_reference;

impl Builder<'_, '_> {
    /// `KLP_*_CALLBACK(fn)` pointer variables of this object: the functions
    /// they point at are copied and recorded in the object's callbacks.
    pub(super) fn callbacks(&mut self) -> Result<()> {
        for prefix in klp::CALLBACK_PREFIXES {
            let name = format!("{prefix}{}", self.plan.objname);
            let Some(&var) = self.p.symbols_named(&name).first() else { continue };
            let sym = self.p.symbol(var);
            let Some(sec) = sym.section() else { continue };
            let Some(r) = self.p.section(sec).relocs_in(sym.value, sym.value + 8).first().copied() else { continue };
            if let Some(func) = resolve_data_reference(self.p, &r) {
                self.plan.included.insert(func);
                self.clone_symbol(func, true)?;
            }
        }
        Ok(())
    }

    pub(super) fn add_metadata(&mut self) -> Result<()> {
        let format = self.opts.format;
        let alloc = object::elf::SHF_ALLOC.0;
        let strings = self.new_out_section(
            klp::STRINGS_SECTION,
            object::elf::SHT_PROGBITS.0,
            alloc | object::elf::SHF_MERGE.0 | object::elf::SHF_STRINGS.0,
            1,
            1,
        );
        self.out.sections[strings].data.push(0);
        let str_sym = self.section_symbol(strings);
        let funcs =
            self.new_out_section(format.funcs_section(), object::elf::SHT_PROGBITS.0, alloc, 8, klp::KLP_FUNC_SIZE);
        let funcs_sym = self.section_symbol(funcs);
        let mut changed = self.a.changes.changed.clone();
        changed.sort_unstable();
        for p in changed {
            let clone = self.clones[&p.0];
            let orig = self.a.twins.of_patched(p).expect("a changed function has a twin");
            let old_name = self.plan.o.symbol(orig.0).name.to_owned();
            let sympos = self.plan.sympos(orig)?;
            let name_at = self.out.sections[strings].append(&nul_terminated(&old_name), 1);
            let (entry, [old_name_field, new_func_field]) = klp::encode_func(sympos);
            let at = self.out.sections[funcs].append(&entry, 8);
            let relocs = &mut self.out.sections[funcs].relocs;
            let name =
                OutReloc { offset: at + old_name_field, symbol: str_sym, r_type: reloc::R64, addend: name_at as i64 };
            relocs.push(name);
            relocs.push(OutReloc { offset: at + new_func_field, symbol: clone, r_type: reloc::R64, addend: 0 });
        }
        let nr_funcs = (self.out.sections[funcs].data.len() as u64 / klp::KLP_FUNC_SIZE) as u32;
        let objects =
            self.new_out_section(format.objects_section(), object::elf::SHT_PROGBITS.0, alloc, 8, klp::KLP_OBJECT_SIZE);
        let (entry, fields) = klp::encode_object(nr_funcs);
        self.out.sections[objects].append(&entry, 8);
        let mut obj_relocs = Vec::new();
        if self.plan.objname != "vmlinux" {
            let name_at = self.out.sections[strings].append(&nul_terminated(&self.plan.objname.clone()), 1);
            let name = OutReloc { offset: fields.name, symbol: str_sym, r_type: reloc::R64, addend: name_at as i64 };
            obj_relocs.push(name);
        }
        obj_relocs.push(OutReloc { offset: fields.funcs, symbol: funcs_sym, r_type: reloc::R64, addend: 0 });
        for (prefix, offset) in klp::CALLBACK_PREFIXES.iter().zip(fields.callbacks) {
            if let Some(func) = self.callback_target(prefix) {
                obj_relocs.push(OutReloc { offset, symbol: func, r_type: reloc::R64, addend: 0 });
            }
        }
        self.out.sections[objects].relocs = obj_relocs;
        self.add_klp_relocs_section();
        Ok(())
    }

    fn callback_target(&self, prefix: &str) -> Option<OutSymbolId> {
        let var = *self.p.symbols_named(&format!("{prefix}{}", self.plan.objname)).first()?;
        let sym = self.p.symbol(var);
        let r = *self.p.section(sym.section()?).relocs_in(sym.value, sym.value + 8).first()?;
        self.clones.get(&resolve_data_reference(self.p, &r)?).copied()
    }

    fn add_klp_relocs_section(&mut self) {
        if self.klp_relocs.is_empty() {
            return;
        }
        let name = self.opts.format.relocs_section(&self.plan.objname);
        let sec = self.new_out_section(&name, object::elf::SHT_PROGBITS.0, object::elf::SHF_ALLOC.0, 8, 0);
        let pending = std::mem::take(&mut self.klp_relocs);
        for k in &pending {
            let site_symbol = self.section_symbol(k.section);
            let (entry, [site_field, symbol_field]) = klp::encode_reloc(k.r_type);
            let at = self.out.sections[sec].append(&entry, 8);
            let relocs = &mut self.out.sections[sec].relocs;
            let site =
                OutReloc { offset: at + site_field, symbol: site_symbol, r_type: reloc::R64, addend: k.offset as i64 };
            relocs.push(site);
            let target =
                OutReloc { offset: at + symbol_field, symbol: k.klp_symbol, r_type: reloc::R64, addend: k.addend };
            relocs.push(target);
        }
        self.klp_relocs = pending;
    }

    /// `import_ns=` records: those of the patched object's `.modinfo`, and
    /// the namespaces of vmlinux exports referenced directly.
    pub(super) fn add_modinfo(&mut self) {
        let mut records: BTreeSet<Vec<u8>> = BTreeSet::new();
        if let Some(m) = self.p.section_by_name(".modinfo") {
            for rec in m.data.split(|&b| b == 0) {
                if let Some(i) = rec.windows(10).position(|w| w == b"import_ns=") {
                    records.insert(rec[i..].to_vec());
                }
            }
        }
        for ns in &self.plan.import_ns {
            records.insert(format!("import_ns={ns}").into_bytes());
        }
        if records.is_empty() {
            return;
        }
        let sec = self.new_out_section(".modinfo", object::elf::SHT_PROGBITS.0, object::elf::SHF_ALLOC.0, 1, 0);
        for rec in records {
            self.out.sections[sec].append(&nul_terminated_bytes(&rec), 1);
        }
    }

    /// Say the code needs no executable stack, as every compiled object does.
    pub(super) fn add_stack_note(&mut self) {
        self.new_out_section(".note.GNU-stack", object::elf::SHT_PROGBITS.0, 0, 1, 0);
    }
}

fn nul_terminated(s: &str) -> Vec<u8> {
    nul_terminated_bytes(s.as_bytes())
}

fn nul_terminated_bytes(s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    v.push(0);
    v
}
