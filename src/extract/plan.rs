//! Plan: for each reference from copied code or data to a symbol of the
//! patched object, how the livepatch keeps it (spec §3.10, §3.13): copy the
//! symbol into the module, leave an undefined reference for the module
//! loader, or make it a KLP relocation to `.klp.sym.<obj>.<name>,<pos>` with
//! the position the kernel will count. Nothing here touches output bytes.

use std::collections::{BTreeSet, HashSet};

use crate::diff::correlate::is_correlatable;
use crate::diff::{Analysis, OrigSym, PatchedSym};
use crate::elf::{ElfObject, Reloc, SectionId, SymbolId, SymbolKind};
use crate::error::{Error, Result};
use crate::kernel::abi as klp;
use crate::kernel::kallsyms::SymbolQuery;

use super::ExtractOptions;

/// How a reference to an existing or new symbol is kept.
pub(super) enum Decision {
    /// Copy the symbol (with its data) into the output.
    Copy,
    /// Keep an undefined reference for the module loader (a vmlinux export).
    Undefined,
    /// A KLP relocation to `.klp.sym.<obj>.<name>,<pos>`.
    Klp { obj: String, name: String, pos: u64 },
}

pub(super) struct Planner<'a, 'd> {
    pub a: &'a Analysis<'d>,
    pub p: &'a ElfObject<'d>,
    pub o: &'a ElfObject<'d>,
    pub opts: &'a ExtractOptions<'a>,
    pub objname: String,
    /// What the module defines whatever the references say: the changed and
    /// new functions with their `.cold` parts, and callback targets.
    pub included: rustc_hash::FxHashSet<SymbolId>,
    /// Namespaces of the vmlinux exports referenced (`import_ns=`).
    pub import_ns: BTreeSet<String>,
    pub warnings: Vec<String>,
    warned_sympos: HashSet<SymbolId>,
}

impl<'a, 'd> Planner<'a, 'd> {
    pub fn new(a: &'a Analysis<'d>, opts: &'a ExtractOptions<'a>, objname: String) -> Self {
        Planner {
            a,
            p: &a.patched.obj,
            o: &a.orig.obj,
            opts,
            objname,
            included: Default::default(),
            import_ns: BTreeSet::new(),
            warnings: Vec::new(),
            warned_sympos: HashSet::new(),
        }
    }

    /// Spec §3.10: how a reference to patched symbol `id` is kept.
    pub fn decide(&mut self, id: SymbolId, from: SectionId, r: &Reloc) -> Result<Decision> {
        let s = self.p.symbol(id);
        if !is_correlatable(self.p, s) || self.included.contains(&id) {
            return Ok(Decision::Copy);
        }
        if !s.is_local() && klp::is_codegen_symbol(s.name) {
            return Ok(Decision::Undefined);
        }
        if !s.is_local()
            && let Some(export) = self.opts.exports.and_then(|e| e.get(s.name))
        {
            if export.module == "vmlinux" {
                if let Some(ns) = &export.namespace {
                    self.import_ns.insert(ns.clone());
                }
                return Ok(Decision::Undefined);
            }
            return Ok(Decision::Klp { obj: export.module.clone(), name: s.name.to_owned(), pos: 0 });
        }
        match self.a.twins.of_patched(PatchedSym(id)) {
            Some(orig) => {
                let pos = self.sympos(orig)?;
                Ok(Decision::Klp { obj: self.objname.clone(), name: self.o.symbol(orig.0).name.to_owned(), pos })
            }
            None if s.is_defined() => Ok(Decision::Copy),
            None => {
                // A new reference to something outside this object.
                if let Some(parent) = self.opts.parent
                    && let Ok(pos) = parent.sympos(SymbolQuery { name: s.name, local: false, file: None })
                {
                    return Ok(Decision::Klp { obj: self.objname.clone(), name: s.name.to_owned(), pos });
                }
                self.warnings.push(format!(
                    "{}+{:#x}: new reference to {}, which the original object does not have: left as an ordinary undefined reference",
                    self.p.section(from).name,
                    r.offset(),
                    s.name
                ));
                Ok(Decision::Undefined)
            }
        }
    }

    pub fn sympos(&mut self, orig: OrigSym) -> Result<u64> {
        let OrigSym(orig) = orig;
        let s = self.o.symbol(orig);
        if let Some(parent) = self.opts.parent {
            let file = s.file.map(|f| (self.o.symbol(f).name, self.file_occurrence(orig)));
            let q = SymbolQuery { name: s.name, local: s.is_local(), file };
            return parent
                .sympos(q)
                .map_err(|e| Error::malformed(format!("sympos of {}: {e}", s.name)).in_file(&parent.path));
        }
        if !s.is_local() {
            return Ok(0);
        }
        // Spec §3.13 fallback: count same-named definitions in symbol-table
        // order; in vmlinux, functions in .text.unlikely come first.
        let unlikely = |id: SymbolId| {
            self.o.symbol_section(self.o.symbol(id)).is_some_and(|sec| sec.name.starts_with(".text.unlikely"))
        };
        let mut same: Vec<SymbolId> =
            self.o.symbols_named(s.name).iter().copied().filter(|&id| self.o.symbol(id).is_defined()).collect();
        if same.len() <= 1 {
            return Ok(0);
        }
        if self.objname == "vmlinux" && s.kind == SymbolKind::Func {
            same.sort_by_key(|&id| (!unlikely(id), id));
        }
        let pos = same.iter().position(|&id| id == orig).map_or(0, |p| p as u64 + 1);
        if self.warned_sympos.insert(orig) {
            self.warnings.push(format!(
                "sympos of {} guessed as {pos} among {} symbols of that name; pass --parent for exact positions",
                s.name,
                same.len()
            ));
        }
        Ok(pos)
    }

    /// Among the original's locals named like `orig` whose FILE has the same
    /// name, the index of `orig`.
    fn file_occurrence(&self, orig: SymbolId) -> usize {
        let s = self.o.symbol(orig);
        let file_name = |id: SymbolId| self.o.symbol(id).file.map(|f| self.o.symbol(f).name);
        self.o
            .symbols_named(s.name)
            .iter()
            .filter(|&&id| self.o.symbol(id).is_local() && file_name(id) == file_name(orig))
            .position(|&id| id == orig)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::diff::{DiffOptions, Input, analyze_bytes};
    use crate::kernel::symvers::Exports;

    const ORIG: &[u8] = include_bytes!("../../corpus/objects/pktdemo.orig.o");
    const PATCHED: &[u8] = include_bytes!("../../corpus/objects/pktdemo.patched.o");

    /// How the planner keeps each reference pkt_receive makes, given the
    /// exports; decided without emitting anything.
    fn decisions(exports: Option<&Exports>) -> Vec<(String, String)> {
        let (o, p) = (Input::new(Path::new("orig.o"), ORIG), Input::new(Path::new("patched.o"), PATCHED));
        let a = analyze_bytes(o, p, &DiffOptions::default()).unwrap();
        let opts = ExtractOptions { exports, ..Default::default() };
        let mut plan = Planner::new(&a, &opts, "vmlinux".into());
        plan.included.extend(a.changes.changed.iter().chain(&a.changes.new_functions).map(|s| s.0));
        let text = a.patched.obj.section_by_name(".text.pkt_receive").unwrap();
        text.relocs
            .iter()
            .map(|r| {
                let sym = a.patched.obj.symbol(r.symbol());
                let name = match a.patched.obj.symbol_section(sym) {
                    Some(sec) if sym.kind == SymbolKind::Section => sec.name.to_owned(),
                    _ => sym.name.to_owned(),
                };
                let decision = match plan.decide(r.symbol(), text.id, r).unwrap() {
                    Decision::Copy => "copy".to_owned(),
                    Decision::Undefined => "undefined".to_owned(),
                    Decision::Klp { obj, name, pos } => klp::klp_symbol_name(&obj, &name, pos),
                };
                (name, decision)
            })
            .collect()
    }

    #[test]
    fn references_are_copied_left_undefined_or_klp_relocated() {
        let plain = decisions(None);
        assert!(plain.contains(&("__fentry__".into(), "undefined".into())), "{plain:?}");
        // The new function, by its section symbol as gcc refers to it.
        assert!(plain.contains(&(".text.pkt_csum".into(), "copy".into())), "{plain:?}");
        assert!(plain.contains(&("netif_deliver".into(), ".klp.sym.vmlinux.netif_deliver,0".into())), "{plain:?}");
        let exports = Exports::parse("0x0\tnetif_deliver\tvmlinux\tEXPORT_SYMBOL\t\n").unwrap();
        let exported = decisions(Some(&exports));
        assert!(exported.contains(&("netif_deliver".into(), "undefined".into())), "{exported:?}");
    }
}
