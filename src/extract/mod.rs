//! Extract stage: from the classified diff, build the livepatch object.
//!
//! Every changed and new function is cloned with its call padding and
//! `.cold` parts. Each relocation inside a clone is re-targeted (spec §3.9,
//! §3.10): what the patch module must carry (new functions and data, string
//! literals, never-correlated statics, anonymous data) is copied in,
//! recursively; references to what the running kernel already has become
//! undefined references (exported by vmlinux, when `Module.symvers` says so)
//! or KLP relocations, encoded for the linker as a placeholder relocation
//! plus a `klp_reloc` entry that `klp post-link` converts. Special-section
//! entries describing cloned functions come along, and the livepatch
//! metadata (`klp_object_ext`, `klp_func_ext`, strings) is added.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use iced_x86::{Decoder, DecoderOptions};

use crate::diff::Analysis;
use crate::diff::correlate::is_correlatable;
use crate::diff::snippet;
use crate::elf::write::{OutPlacement, OutReloc, OutSection, OutSectionId, OutSymbol, OutSymbolId, OutputObject};
use crate::elf::{Binding, ElfObject, Reloc, Section, SectionId, Symbol, SymbolId, SymbolKind, reloc};
use crate::error::{Error, Result};
use crate::kernel::abi::{self as klp, Format};
use crate::kernel::kallsyms::{ParentSymbols, SymbolQuery};
use crate::kernel::modinfo;
use crate::kernel::special::{is_special_section, resolve_data_reference};
use crate::kernel::symvers::Exports;

#[derive(Debug, Default)]
pub struct ExtractOptions<'a> {
    /// The livepatch object name (`vmlinux` or a module name).
    pub objname: Option<String>,
    pub exports: Option<&'a Exports>,
    pub parent: Option<&'a ParentSymbols>,
    pub format: Format,
}

/// The output object and what was decided on the way.
pub struct Extraction {
    pub object: OutputObject,
    pub objname: String,
    pub warnings: Vec<String>,
    /// KLP relocations emitted: (site section, offset, `.klp.sym` name).
    pub klp_relocs: Vec<(String, u64, String)>,
}

/// The livepatch object name of the diffed object: `--objname`, else the
/// `name=` record of `.modinfo`, else the path (`vmlinux.o`, or a module's
/// prelink object, recognised by its `.modinfo`).
pub fn objname(a: &Analysis, opts: &ExtractOptions) -> Result<String> {
    let name = match &opts.objname {
        Some(n) => n.clone(),
        None => {
            let obj = &a.orig.obj;
            let modinfo = obj.section_by_name(".modinfo").map_or(&[][..], |m| m.data);
            let modinfo_name = modinfo::value(modinfo, "name").and_then(|n| std::str::from_utf8(n).ok());
            let path_stem = modinfo::module_name_from_path(&obj.path.to_string_lossy());
            let is_module_object = modinfo_name.is_some() || modinfo::value(modinfo, "license").is_some();
            if path_stem != "vmlinux" && !is_module_object {
                return Err(Error::usage(
                    "cannot tell which kernel object this is (no .modinfo, not vmlinux.o): pass --objname vmlinux for a translation unit of the kernel, or --objname MODULE for one of a module",
                )
                .in_file(&obj.path));
            }
            modinfo_name.map_or(path_stem, str::to_owned)
        }
    };
    if name.is_empty() || name.len() > klp::MAX_OBJNAME_LEN || name.contains('.') {
        return Err(Error::usage(format!("object name '{name}' is not a valid module name")));
    }
    Ok(name)
}

pub fn extract(a: &Analysis, opts: &ExtractOptions) -> Result<Extraction> {
    let objname = objname(a, opts)?;
    let mut b = Builder::new(a, opts, objname);
    b.include_changes();
    b.clone_included()?;
    b.extract_special_sections()?;
    b.callbacks()?;
    b.add_metadata()?;
    b.add_modinfo();
    b.add_stack_note();
    Ok(Extraction {
        klp_relocs: b
            .klp_relocs
            .iter()
            .map(|k| (b.out.sections[k.section].name.clone(), k.offset, b.out.symbols[k.klp_symbol].name.clone()))
            .collect(),
        object: b.out,
        objname: b.objname,
        warnings: b.warnings,
    })
}

/// A KLP relocation waiting for the `__klp_relocs` section.
struct PendingKlpReloc {
    section: OutSectionId,
    offset: u64,
    klp_symbol: OutSymbolId,
    addend: i64,
    r_type: u32,
}

/// What a relocation in copied code or data refers to, after normalisation.
enum Norm {
    /// A named symbol and the addend relative to it.
    Named(SymbolId, i64),
    /// A string literal at this offset of a string section.
    String(SectionId, u64),
    /// Data no symbol covers, at this offset of its section.
    Anonymous(SectionId, u64),
    /// A reference to code that is always patched away (`.altinstr_aux`).
    Drop,
}

/// How a reference to an existing or new symbol is kept.
enum Decision {
    /// Copy the symbol (with its data) into the output.
    Copy,
    /// Keep an undefined reference for the module loader (a vmlinux export).
    Undefined,
    /// A KLP relocation to `.klp.sym.<obj>.<name>,<pos>`.
    Klp { obj: String, name: String, pos: u64 },
}

struct Builder<'a, 'd> {
    a: &'a Analysis<'d>,
    p: &'a ElfObject<'d>,
    o: &'a ElfObject<'d>,
    opts: &'a ExtractOptions<'a>,
    objname: String,
    out: OutputObject,
    out_sections: HashMap<String, OutSectionId>,
    section_symbols: HashMap<OutSectionId, OutSymbolId>,
    /// Patched symbol -> its copy (or undefined reference) in the output.
    clones: HashMap<SymbolId, OutSymbolId>,
    /// Anonymous chunks copied: (section, start) -> (end, output section, offset).
    chunks: BTreeMap<(SectionId, u64), (u64, OutSectionId, u64)>,
    strings: HashMap<(OutSectionId, Vec<u8>), u64>,
    /// Symbols of the output referred to by name (placeholders, `.klp.sym`).
    by_name: HashMap<String, OutSymbolId>,
    included: HashSet<SymbolId>,
    klp_relocs: Vec<PendingKlpReloc>,
    import_ns: BTreeSet<String>,
    warnings: Vec<String>,
    warned_sympos: HashSet<SymbolId>,
    /// Instruction (start, end) pairs of decoded code ranges.
    decoded: HashMap<(SectionId, u64), Vec<(u64, u64)>>,
    /// Where `__patchable_function_entries` says compiler padding starts.
    padding_starts: HashSet<(SectionId, u64)>,
}

impl<'a, 'd> Builder<'a, 'd> {
    fn new(a: &'a Analysis<'d>, opts: &'a ExtractOptions<'a>, objname: String) -> Self {
        Builder {
            a,
            p: &a.patched.obj,
            o: &a.orig.obj,
            opts,
            objname,
            out: OutputObject::default(),
            out_sections: HashMap::new(),
            section_symbols: HashMap::new(),
            clones: HashMap::new(),
            chunks: BTreeMap::new(),
            strings: HashMap::new(),
            by_name: HashMap::new(),
            included: HashSet::new(),
            klp_relocs: Vec::new(),
            import_ns: BTreeSet::new(),
            warnings: Vec::new(),
            warned_sympos: HashSet::new(),
            decoded: HashMap::new(),
            padding_starts: padding_starts(&a.patched.obj),
        }
    }

    /// Changed and new functions, with their `.cold` parts.
    fn include_changes(&mut self) {
        let roots = self.a.changes.changed.iter().chain(&self.a.changes.new_functions);
        for &id in roots {
            self.included.insert(id);
            for &child in self.a.patched.cold.get(&id).map_or(&[][..], Vec::as_slice) {
                self.included.insert(child);
            }
        }
    }

    fn clone_included(&mut self) -> Result<()> {
        let mut ids: Vec<SymbolId> = self.included.iter().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.clone_symbol(id, true)?;
        }
        Ok(())
    }

    // ---- sections and symbols of the output ----

    fn out_section_like(&mut self, sec: &Section) -> OutSectionId {
        if let Some(&id) = self.out_sections.get(sec.name) {
            return id;
        }
        let id = self.out.add_section(OutSection::new(sec.name, sec.sh_type, sec.flags, sec.addralign, sec.entsize));
        self.out_sections.insert(sec.name.to_owned(), id);
        id
    }

    fn new_out_section(&mut self, name: &str, sh_type: u32, flags: u64, align: u64, entsize: u64) -> OutSectionId {
        let id = self.out.add_section(OutSection::new(name, sh_type, flags, align, entsize));
        self.out_sections.insert(name.to_owned(), id);
        id
    }

    fn section_symbol(&mut self, sec: OutSectionId) -> OutSymbolId {
        if let Some(&s) = self.section_symbols.get(&sec) {
            return s;
        }
        let s = self.out.add_symbol(OutSymbol {
            name: String::new(),
            kind: SymbolKind::Section,
            bind: Binding::Local,
            placement: OutPlacement::Section(sec),
            value: 0,
            size: 0,
            other: 0,
        });
        self.section_symbols.insert(sec, s);
        s
    }

    fn undefined_symbol(&mut self, name: String, kind: SymbolKind, bind: Binding) -> OutSymbolId {
        if let Some(&s) = self.by_name.get(&name) {
            return s;
        }
        let s = self.out.add_symbol(OutSymbol {
            name: name.clone(),
            kind,
            bind,
            placement: OutPlacement::Undefined,
            value: 0,
            size: 0,
            other: 0,
        });
        self.by_name.insert(name, s);
        s
    }

    /// The `__pfx_` symbol objtool gave the padding before function `id`.
    fn objtool_prefix_of(&self, id: SymbolId) -> Option<&Symbol<'d>> {
        let sym = self.p.symbol(id);
        let sec = self.p.section(sym.section()?);
        sec.symbols()
            .iter()
            .map(|&s| self.p.symbol(s))
            .find(|s| is_objtool_prefix(s) && s.end() == sym.value && s.value < sym.value)
    }

    /// The call padding before function `id`, which a clone must keep: the
    /// kernel's CALL_PADDING builds with `-fpatchable-function-entry=N,N`, N
    /// bytes of NOPs before each function that call-depth tracking and
    /// FineIBT rewrite at run time. In `vmlinux.o` objtool has named them
    /// `__pfx_<name>`; in a translation unit of an IBT kernel objtool has
    /// not run yet and `__patchable_function_entries` marks them.
    ///
    /// Only the bytes are cloned, never the `__pfx_` symbol: objtool runs
    /// again on the module and names the padding itself, with the function's
    /// binding, so a copied global prefix would be defined twice.
    fn padding_before(&self, id: SymbolId) -> u64 {
        const MAX_PADDING: u64 = 64;
        let sym = self.p.symbol(id);
        let Some(sec) = sym.section() else { return 0 };
        if let Some(prefix) = self.objtool_prefix_of(id) {
            return prefix.size;
        }
        let code = self.p.section(sec);
        (1..=MAX_PADDING.min(sym.value))
            .find(|&n| self.padding_starts.contains(&(sec, sym.value - n)))
            .filter(|&n| {
                let start = (sym.value - n) as usize;
                code.data.get(start..sym.value as usize).is_some_and(|b| b.iter().all(|&x| x == NOP))
            })
            .unwrap_or(0)
    }

    /// A reference to objtool's `__pfx_` name of some padding, as one
    /// relative to the function after it (the clone has no `__pfx_`).
    fn through_prefix(&self, id: SymbolId, addend: i64) -> (SymbolId, i64) {
        let s = self.p.symbol(id);
        let function = s
            .section()
            .filter(|_| is_objtool_prefix(s))
            .and_then(|sec| self.p.symbol_at(sec, s.end()))
            .filter(|&f| self.p.symbol(f).kind == SymbolKind::Func && self.p.symbol(f).value == s.end());
        match function {
            Some(f) => (f, addend - s.size as i64),
            None => (id, addend),
        }
    }

    /// Copy symbol `id` into the output (with its bytes and, recursively,
    /// what its relocations need), or reference it as undefined.
    fn clone_symbol(&mut self, id: SymbolId, with_data: bool) -> Result<OutSymbolId> {
        if let Some(&c) = self.clones.get(&id) {
            return Ok(c);
        }
        let sym = self.p.symbol(id).clone();
        let Some(sec_id) = sym.section().filter(|_| with_data) else {
            // Undefined locals cannot exist: an external reference is global.
            let bind = if sym.bind == Binding::Local { Binding::Global } else { sym.bind };
            let c = self.undefined_symbol(sym.name.to_owned(), sym.kind, bind);
            self.clones.insert(id, c);
            return Ok(c);
        };
        let sec = self.p.section(sec_id);
        let osec = self.out_section_like(sec);
        let padding = if sym.kind == SymbolKind::Func { self.padding_before(id) } else { 0 };
        let bytes = symbol_bytes(sec, sym.value - padding, sym.size + padding);
        let offset = self.out.sections[osec].append(&bytes, sec.addralign) + padding;
        let c = self.out.add_symbol(OutSymbol {
            name: sym.name.to_owned(),
            kind: sym.kind,
            bind: sym.bind,
            placement: OutPlacement::Section(osec),
            value: offset,
            size: sym.size,
            other: 0,
        });
        self.clones.insert(id, c);
        self.clone_relocs(sec_id, sym.value, sym.end(), osec, offset)?;
        Ok(c)
    }

    /// Clone the relocations of `[start, end)` of patched section `sec`,
    /// whose bytes now sit at `out_offset` of output section `osec`.
    fn clone_relocs(
        &mut self,
        sec: SectionId,
        start: u64,
        end: u64,
        osec: OutSectionId,
        out_offset: u64,
    ) -> Result<()> {
        let relocs: Vec<Reloc> = self.p.section(sec).relocs_in(start, end).to_vec();
        // R_X86_64_NONE writes nothing (old -mrecord-mcount marks its nops so).
        for r in relocs.into_iter().filter(|r| r.r_type != reloc::NONE) {
            let bias = self.pc_bias(sec, start, end, &r);
            let site = out_offset + (r.offset - start);
            self.clone_reloc(sec, &r, bias, osec, site)?;
        }
        Ok(())
    }

    /// For a PC-relative field in code, the distance from the field to the
    /// end of its instruction: what makes the addend point at the target.
    fn pc_bias(&mut self, sec: SectionId, start: u64, end: u64, r: &Reloc) -> i64 {
        let s = self.p.section(sec);
        if !reloc::is_pc_relative(r.r_type) || !s.is_exec() {
            return 0;
        }
        let insns = self.decoded.entry((sec, start)).or_insert_with(|| decode_ranges(s, start, end));
        let i = insns.partition_point(|&(s, _)| s <= r.offset);
        match i.checked_sub(1).map(|i| insns[i]) {
            Some((_, insn_end)) if insn_end > r.offset => insn_end as i64 - r.offset as i64,
            _ => 4,
        }
    }

    fn normalise(&self, r: &Reloc, bias: i64) -> Norm {
        let t = self.p.symbol(r.symbol);
        let Some(sec_id) = t.section() else { return Norm::Named(t.id, r.addend) };
        if is_objtool_prefix(t) {
            let (f, addend) = self.through_prefix(t.id, r.addend);
            return Norm::Named(f, addend);
        }
        let sec = self.p.section(sec_id);
        if sec.name == ".altinstr_aux" {
            return Norm::Drop;
        }
        let base = if t.kind == SymbolKind::Section { 0 } else { t.value as i64 };
        let at = (base + r.addend + bias).max(0) as u64;
        if sec.is_strings() {
            return Norm::String(sec_id, at);
        }
        if t.kind != SymbolKind::Section {
            return Norm::Named(t.id, r.addend);
        }
        match self.p.symbol_at(sec_id, at).filter(|&s| self.covers(s, at)) {
            Some(s) => {
                let (s, addend) = self.through_prefix(s, r.addend - self.p.symbol(s).value as i64);
                Norm::Named(s, addend)
            }
            None => Norm::Anonymous(sec_id, at),
        }
    }

    /// A sized symbol covering `at` (or ending exactly there).
    fn covers(&self, s: SymbolId, at: u64) -> bool {
        let sym = self.p.symbol(s);
        sym.size > 0 && sym.value <= at && at <= sym.end() && sym.kind != SymbolKind::Section
    }

    fn clone_reloc(&mut self, sec: SectionId, r: &Reloc, bias: i64, osec: OutSectionId, site: u64) -> Result<()> {
        let (symbol, addend) = match self.normalise(r, bias) {
            Norm::Drop => return Ok(()),
            Norm::String(s, at) => {
                let (ssec, offset) = self.copy_string(s, at)?;
                (self.section_symbol(ssec), offset as i64 - bias)
            }
            Norm::Anonymous(s, at) => {
                let (csec, chunk_start, out_start) = self.copy_chunk(s, at)?;
                // Anonymous targets are always section-symbol references.
                (self.section_symbol(csec), r.addend + out_start as i64 - chunk_start as i64)
            }
            Norm::Named(target, addend) => match self.decide(target, sec, r)? {
                Decision::Copy => (self.clone_symbol(target, true)?, addend),
                Decision::Undefined => (self.clone_symbol(target, false)?, addend),
                Decision::Klp { obj, name, pos } => {
                    self.emit_klp(target, osec, site, r.r_type, addend, &obj, &name, pos);
                    return Ok(());
                }
            },
        };
        self.out.sections[osec].relocs.push(OutReloc { offset: site, symbol, r_type: r.r_type, addend });
        Ok(())
    }

    /// Spec §3.10: how a reference to patched symbol `id` is kept.
    fn decide(&mut self, id: SymbolId, from: SectionId, r: &Reloc) -> Result<Decision> {
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
        match self.a.twins.of_patched(id) {
            Some(orig) => {
                let pos = self.sympos(orig)?;
                Ok(Decision::Klp { obj: self.objname.clone(), name: self.o.symbol(orig).name.to_owned(), pos })
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
                    r.offset,
                    s.name
                ));
                Ok(Decision::Undefined)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_klp(
        &mut self,
        target: SymbolId,
        osec: OutSectionId,
        site: u64,
        r_type: u32,
        addend: i64,
        obj: &str,
        name: &str,
        pos: u64,
    ) {
        let t = self.p.symbol(target);
        let kind = if t.kind == SymbolKind::Section { SymbolKind::NoType } else { t.kind };
        let format = self.opts.format;
        let placeholder = self.undefined_symbol(format.placeholder(t.name), kind, format.placeholder_binding());
        self.out.sections[osec].relocs.push(OutReloc { offset: site, symbol: placeholder, r_type, addend });
        let klp_symbol = self.undefined_symbol(klp::klp_symbol_name(obj, name, pos), kind, Binding::Weak);
        self.klp_relocs.push(PendingKlpReloc { section: osec, offset: site, klp_symbol, addend, r_type });
    }

    /// Copy the NUL-terminated string at `at` of string section `sec`.
    fn copy_string(&mut self, sec: SectionId, at: u64) -> Result<(OutSectionId, u64)> {
        let s = self.p.section(sec);
        let text = s.c_str_at(at).ok_or_else(|| {
            Error::malformed("string reference outside the section")
                .in_section(s.name)
                .at_offset(at)
                .in_file(&self.p.path)
        })?;
        let osec = self.out_section_like(s);
        let mut bytes = text.to_vec();
        bytes.push(0);
        if let Some(&offset) = self.strings.get(&(osec, bytes.clone())) {
            return Ok((osec, offset));
        }
        let offset = self.out.sections[osec].append(&bytes, 1);
        self.strings.insert((osec, bytes), offset);
        Ok((osec, offset))
    }

    /// Copy the anonymous piece of `sec` around `at`: for code, the snippet
    /// reachable from `at` (a section of snippets shared by several functions
    /// holds others' too); for data, everything between the nearest symbols.
    /// Returns the output section, the chunk's start in `sec` and its offset
    /// in the output.
    fn copy_chunk(&mut self, sec: SectionId, at: u64) -> Result<(OutSectionId, u64, u64)> {
        let copied = self.chunks.range(..=(sec, at)).next_back();
        if let Some((&(s, start), &(end, osec, out))) = copied
            && s == sec
            && at < end
        {
            return Ok((osec, start, out));
        }
        let s = self.p.section(sec);
        let (start, end) = if s.is_exec() && !s.is_nobits() {
            snippet::walk(self.p, s, at).extent()
        } else {
            snippet::unnamed_range(self.p, s, at)
        };
        let osec = self.out_section_like(s);
        let out = self.out.sections[osec].append(&symbol_bytes(s, start, end - start), s.addralign);
        self.chunks.insert((sec, start), (end, osec, out));
        self.clone_relocs(sec, start, end, osec, out)?;
        Ok((osec, start, out))
    }

    // ---- symbol positions ----

    fn sympos(&mut self, orig: SymbolId) -> Result<u64> {
        let s = self.o.symbol(orig);
        if let Some(parent) = self.opts.parent {
            let file = s.file.map(|f| (self.o.symbol(f).name, self.file_occurrence(orig)));
            let q = SymbolQuery { name: s.name, local: s.is_local(), file };
            return parent.sympos(q).map_err(|e| Error::malformed(format!("sympos of {}: {e}", s.name)));
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

    // ---- special sections (spec §3.11, §4) ----

    fn extract_special_sections(&mut self) -> Result<()> {
        let sections: Vec<SectionId> =
            self.p.sections.iter().filter(|s| is_special_section(s.name) && s.size > 0).map(|s| s.id).collect();
        for sec in sections {
            let name = self.p.section(sec).name;
            let Some(&size) = self.a.patched.specials.entry_sizes.get(name) else { continue };
            let mut offset = 0;
            while offset < self.p.section(sec).size {
                let end = (offset + size).min(self.p.section(sec).size);
                if self.entry_is_wanted(sec, offset, end)? {
                    self.copy_entry(sec, offset, end)?;
                }
                offset += size;
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
            relocs.iter().any(|r| resolve_data_reference(self.p, r).is_some_and(|t| self.included.contains(&t)));
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
            k.kind != SymbolKind::Func && !self.included.contains(&t)
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
            None if !is_correlatable(self.p, k) || self.a.twins.of_patched(key).is_none() && k.is_defined() => {
                return Ok(true); // a copy of our own
            }
            None => self.objname.clone(),
        };
        if module == "vmlinux" {
            return Ok(true);
        }
        if section == "__jump_table" {
            if let Some(tp) = name.strip_prefix("__tracepoint_") {
                self.warnings.push(format!("{func}: disabling unsupported tracepoint {tp}"));
                return Ok(false);
            }
            if name.contains("__UNIQUE_ID_ddebug_") {
                self.warnings.push(format!("{func}: disabling unsupported pr_debug()"));
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
        let osec = self.out_section_like(s);
        let out = self.out.sections[osec].append(&symbol_bytes(s, start, end - start), 1);
        let relocs: Vec<Reloc> = s.relocs_in(start, end).to_vec();
        let is_alt = s.name == ".altinstructions";
        for r in relocs.into_iter().filter(|r| r.r_type != reloc::NONE) {
            let site = out + (r.offset - start);
            let target = self.p.symbol(r.symbol);
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
        let target = self.p.symbol(r.symbol);
        let repl = target.section().expect("replacement symbol is defined");
        let base = if target.kind == SymbolKind::Section { 0 } else { target.value as i64 };
        let at = (base + r.addend).max(0) as u64;
        let s = self.p.section(repl);
        let rsec = self.out_section_like(s);
        let copy = symbol_bytes(s, at, len);
        let out = self.out.sections[rsec].append(&copy, 1);
        if len > 0 {
            self.clone_relocs(repl, at, at + len, rsec, out)?;
        }
        let symbol = self.section_symbol(rsec);
        self.out.sections[osec].relocs.push(OutReloc { offset: site, symbol, r_type: r.r_type, addend: out as i64 });
        Ok(())
    }

    // ---- callbacks, metadata, modinfo ----

    /// `KLP_*_CALLBACK(fn)` pointer variables of this object: the functions
    /// they point at are copied and recorded in the object's callbacks.
    fn callbacks(&mut self) -> Result<()> {
        for prefix in klp::CALLBACK_PREFIXES {
            let name = format!("{prefix}{}", self.objname);
            let Some(&var) = self.p.symbols_named(&name).first() else { continue };
            let sym = self.p.symbol(var);
            let Some(sec) = sym.section() else { continue };
            let Some(r) = self.p.section(sec).relocs_in(sym.value, sym.value + 8).first().copied() else { continue };
            if let Some(func) = resolve_data_reference(self.p, &r) {
                self.included.insert(func);
                self.clone_symbol(func, true)?;
            }
        }
        Ok(())
    }

    fn add_metadata(&mut self) -> Result<()> {
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
            let clone = self.clones[&p];
            let orig = self.a.twins.of_patched(p).expect("a changed function has a twin");
            let old_name = self.o.symbol(orig).name.to_owned();
            let sympos = self.sympos(orig)?;
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
        if self.objname != "vmlinux" {
            let name_at = self.out.sections[strings].append(&nul_terminated(&self.objname.clone()), 1);
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
        let var = *self.p.symbols_named(&format!("{prefix}{}", self.objname)).first()?;
        let sym = self.p.symbol(var);
        let r = *self.p.section(sym.section()?).relocs_in(sym.value, sym.value + 8).first()?;
        self.clones.get(&resolve_data_reference(self.p, &r)?).copied()
    }

    fn add_klp_relocs_section(&mut self) {
        if self.klp_relocs.is_empty() {
            return;
        }
        let name = self.opts.format.relocs_section(&self.objname);
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
    fn add_modinfo(&mut self) {
        let mut records: BTreeSet<Vec<u8>> = BTreeSet::new();
        if let Some(m) = self.p.section_by_name(".modinfo") {
            for rec in m.data.split(|&b| b == 0) {
                if let Some(i) = rec.windows(10).position(|w| w == b"import_ns=") {
                    records.insert(rec[i..].to_vec());
                }
            }
        }
        for ns in &self.import_ns {
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
}

impl Builder<'_, '_> {
    /// Say the code needs no executable stack, as every compiled object does.
    fn add_stack_note(&mut self) {
        self.new_out_section(".note.GNU-stack", object::elf::SHT_PROGBITS.0, 0, 1, 0);
    }
}

const NOP: u8 = 0x90;

/// objtool's name for a function's call padding. (`__cfi_` prefixes are the
/// compiler's own and carry a type hash: those are cloned as symbols.)
fn is_objtool_prefix(s: &Symbol) -> bool {
    s.kind == SymbolKind::Func && (s.name.starts_with("__pfx_") || s.name.starts_with("__pi___pfx_"))
}

/// Section offsets that a `__patchable_function_entries` entry points at:
/// the start of the padding the compiler put before a function.
fn padding_starts(obj: &ElfObject) -> HashSet<(SectionId, u64)> {
    obj.sections
        .iter()
        .filter(|s| s.name == "__patchable_function_entries")
        .flat_map(|s| &s.relocs)
        .filter_map(|r| {
            let t = obj.symbol(r.symbol);
            let at = u64::try_from(t.value as i64 + r.addend).ok()?;
            Some((t.section()?, at))
        })
        .collect()
}

fn nul_terminated(s: &str) -> Vec<u8> {
    nul_terminated_bytes(s.as_bytes())
}

fn nul_terminated_bytes(s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    v.push(0);
    v
}

/// `len` bytes of `sec` from `start`; zeros for NOBITS or past the data.
fn symbol_bytes(sec: &Section, start: u64, len: u64) -> Vec<u8> {
    let mut v = vec![0u8; len as usize];
    if let Some(src) = sec.data.get(start as usize..) {
        let n = src.len().min(v.len());
        v[..n].copy_from_slice(&src[..n]);
    }
    v
}

/// Instruction boundaries of `[start, end)` of a code section.
fn decode_ranges(sec: &Section, start: u64, end: u64) -> Vec<(u64, u64)> {
    let end = end.min(sec.data.len() as u64);
    let Some(code) = sec.data.get(start as usize..end as usize) else { return Vec::new() };
    let mut decoder = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        out.push((insn.ip(), insn.ip() + insn.len() as u64));
    }
    out
}
