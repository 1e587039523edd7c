//! Emit: clone code and data into the output. A function is copied with
//! its call padding; each relocation inside a copy is re-targeted through the
//! plan (`super::plan`): to a copy (recursively), to an undefined symbol,
//! or to a KLP relocation; string literals and anonymous code and data are
//! copied by content.

use super::plan::Decision;
use super::{Builder, PendingKlpReloc};
use crate::diff::snippet;
use crate::elf::write::{OutPlacement, OutReloc, OutSectionId, OutSymbol, OutSymbolId};
use crate::elf::{Binding, ElfObject, Named, Referent, Reloc, SectionId, Symbol, SymbolId, SymbolKind, reloc};
use crate::error::{Error, Result};
use crate::kernel::abi as klp;
use crate::x86::{self, Boundaries};

/// What a relocation in copied code or data refers to, after normalisation.
enum Norm {
    /// A named symbol and the addend relative to it.
    Named(SymbolId, i64),
    /// A string literal at this offset of a string section.
    String(SectionId, u64),
    /// Data no symbol covers (or a constant-pool entry, whatever label
    /// names it), at this offset of its section, and the addend that
    /// reaches it from the section's start.
    Anonymous(SectionId, u64, i64),
    /// A reference to code that is always patched away (`.altinstr_aux`).
    Drop,
}

impl<'d> Builder<'_, 'd> {
    /// The `__pfx_` symbol objtool gave the padding before function `id`.
    fn objtool_prefix_of(&self, id: SymbolId) -> Option<&Symbol<'d>> {
        let sym = self.p.symbol(id);
        self.p
            .symbols_in(sym.section()?)
            .map(|s| self.p.symbol(s))
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
        let padding_starts = self.padding_starts.get_or_init(|| padding_starts(self.p));
        (1..=MAX_PADDING.min(sym.value))
            .find(|&n| padding_starts.contains(&(sec, sym.value - n)))
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
            Some(f) => (f, addend.wrapping_sub(s.size as i64)),
            None => (id, addend),
        }
    }

    /// Copy symbol `id` into the output (with its bytes and, recursively,
    /// what its relocations need), or reference it as undefined.
    pub(super) fn clone_symbol(&mut self, id: SymbolId, with_data: bool) -> Result<OutSymbolId> {
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
        let osec = self.out_section_like(sec)?;
        let padding = if sym.kind == SymbolKind::Func { self.padding_before(id) } else { 0 };
        let offset = self.copy(osec, sec, sym.value - padding, sym.size + padding, sec.addralign)? + padding;
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
    pub(super) fn clone_relocs(
        &mut self,
        sec: SectionId,
        start: u64,
        end: u64,
        osec: OutSectionId,
        out_offset: u64,
    ) -> Result<()> {
        let mut relocs: Vec<Reloc> = self.p.section(sec).relocs_in(start, end).to_vec();
        let resolved = self.resolved_branches(sec, start, end)?;
        for r in &resolved {
            // The field's old displacement means nothing at the new place;
            // zero it, as gas leaves a relocated field.
            let at = (out_offset + (r.offset() - start)) as usize;
            self.out.sections[osec].data[at..at + 4].fill(0);
        }
        relocs.extend(resolved);
        // Each becomes one 24-byte RELA entry of the output.
        self.spend(relocs.len() as u64 * 24, self.p.section(sec), start)?;
        // R_X86_64_NONE writes nothing (old -mrecord-mcount marks its nops so).
        for r in relocs.into_iter().filter(|r| r.r_type() != reloc::NONE) {
            self.inside_copy(sec, &r, end)?;
            let bias = self.pc_bias(sec, start, end, &r);
            let site = out_offset + (r.offset() - start);
            self.clone_reloc(sec, &r, bias, osec, site)?;
        }
        Ok(())
    }

    /// Branches the assembler resolved itself that leave `[start, end)` of
    /// code section `sec`: in a `.text` shared by several functions (a unit
    /// built without function sections, `.init.text`, the `ld -r` merged
    /// `vmlinux.o`), gas writes a call or jump to a static function of the
    /// same section as a bare displacement. A copy elsewhere cannot keep the
    /// displacement, so each becomes the relocation gas would otherwise have
    /// emitted (PC32 to where it lands; PLT32 to a global function), which
    /// the plan then decides like any other.
    fn resolved_branches(&self, sec: SectionId, start: u64, end: u64) -> Result<Vec<Reloc>> {
        let s = self.p.section(sec);
        if !s.is_exec() || s.is_nobits() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for b in x86::branches_leaving(s.data, start, end) {
            if !s.relocs_in(b.insn_start, b.insn_end).is_empty() {
                continue;
            }
            let Some(field) = b.rel32_field else {
                return Err(self.unsupported_branch(sec, b.insn_start, "a short branch"));
            };
            let Some(target) = self.p.symbol_at(sec, b.target).filter(|&t| self.lands_in(t, b.target)) else {
                return Err(self.unsupported_branch(sec, b.insn_start, "a branch to code no function covers"));
            };
            let t = self.p.symbol(target);
            let r_type = if t.is_local() { reloc::PC32 } else { reloc::PLT32 };
            let addend = b.target as i64 - t.value as i64 - (b.insn_end - field) as i64;
            out.push(Reloc::new(field, r_type, target, addend));
        }
        Ok(out)
    }

    /// Symbol `t` is code that `at` lands in (its start or inside it).
    fn lands_in(&self, t: SymbolId, at: u64) -> bool {
        let t = self.p.symbol(t);
        t.kind == SymbolKind::Func && t.value <= at && (at < t.end() || at == t.value)
    }

    fn unsupported_branch(&self, sec: SectionId, at: u64, what: &str) -> Error {
        Error::unsupported(format!("{what} without a relocation leaves the copied function"))
            .in_section(self.p.section(sec).name)
            .at_offset(at)
            .in_file(&self.p.path)
    }

    /// Relocation `r` of `sec` writes inside a copy that ends at `end`: a
    /// field that crosses it would be written past the copy, into whatever
    /// follows it in the output.
    pub(super) fn inside_copy(&self, sec: SectionId, r: &Reloc, end: u64) -> Result<()> {
        let width = reloc::width(r.r_type()) as u64;
        if r.offset() + width <= end {
            return Ok(());
        }
        Err(Error::malformed(format!(
            "a {width}-byte relocation at {:#x} crosses the end ({end:#x}) of what is copied",
            r.offset()
        ))
        .in_section(self.p.section(sec).name)
        .at_offset(r.offset())
        .in_file(&self.p.path))
    }

    /// For a PC-relative field in code, the distance from the field to the
    /// end of its instruction: what makes the addend point at the target.
    fn pc_bias(&mut self, sec: SectionId, start: u64, end: u64, r: &Reloc) -> i64 {
        let s = self.p.section(sec);
        if !reloc::is_pc_relative(r.r_type()) || !s.is_exec() {
            return 0;
        }
        self.decoded.entry((sec, start)).or_insert_with(|| Boundaries::decode(s, start, end)).pc_bias(r)
    }

    fn normalise(&self, r: &Reloc, bias: i64) -> Norm {
        let (section, offset, named) = match self.p.referent(r, bias) {
            Referent::External(id) => return Norm::Named(id, r.addend()),
            Referent::Place { section, offset, named } => (section, offset, named),
        };
        if let Named::Direct(t) = named
            && is_objtool_prefix(self.p.symbol(t))
        {
            let (f, addend) = self.through_prefix(t, r.addend());
            return Norm::Named(f, addend);
        }
        let sec = self.p.section(section);
        if sec.name == ".altinstr_aux" {
            return Norm::Drop;
        }
        let at = offset.max(0) as u64;
        if sec.is_strings() {
            return Norm::String(section, at);
        }
        // A pool entry is its bytes, as a string is: gas names one a PC-relative
        // reference reaches by its zero-sized `.LC<n>` label, which covers nothing.
        if sec.is_constant_pool() {
            return Norm::Anonymous(section, at, offset.wrapping_sub(bias));
        }
        match named {
            Named::Direct(t) => Norm::Named(t, r.addend()),
            Named::Covering(s) => match s.filter(|&s| self.covers(s, at)) {
                Some(s) => {
                    let (s, addend) = self.through_prefix(s, r.addend().wrapping_sub(self.p.symbol(s).value as i64));
                    Norm::Named(s, addend)
                }
                None => Norm::Anonymous(section, at, offset.wrapping_sub(bias)),
            },
        }
    }

    /// A sized symbol covering `at` (or ending exactly there).
    fn covers(&self, s: SymbolId, at: u64) -> bool {
        let sym = self.p.symbol(s);
        sym.size > 0 && sym.value <= at && at <= sym.end() && sym.kind != SymbolKind::Section
    }

    pub(super) fn clone_reloc(
        &mut self,
        sec: SectionId,
        r: &Reloc,
        bias: i64,
        osec: OutSectionId,
        site: u64,
    ) -> Result<()> {
        let (symbol, addend) = match self.normalise(r, bias) {
            Norm::Drop => return Ok(()),
            Norm::String(s, at) => {
                let (ssec, offset) = self.copy_string(s, at)?;
                (self.section_symbol(ssec), offset as i64 - bias)
            }
            Norm::Anonymous(s, at, addend) => {
                let (csec, chunk_start, out_start) = self.copy_chunk(s, at)?;
                (self.section_symbol(csec), addend.wrapping_add(out_start as i64 - chunk_start as i64))
            }
            Norm::Named(target, addend) => match self.plan.decide(target, sec, r)? {
                Decision::Copy => (self.clone_symbol(target, true)?, addend),
                Decision::Undefined => (self.clone_symbol(target, false)?, addend),
                Decision::Klp { obj, name, pos } => {
                    self.emit_klp(target, osec, site, r.r_type(), addend, &obj, &name, pos);
                    return Ok(());
                }
            },
        };
        self.out.sections[osec].relocs.push(OutReloc { offset: site, symbol, r_type: r.r_type(), addend });
        Ok(())
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
        let osec = self.out_section_like(s)?;
        let mut bytes = text.to_vec();
        bytes.push(0);
        if let Some(&offset) = self.strings.get(&(osec, bytes.clone())) {
            return Ok((osec, offset));
        }
        self.charge(osec, s, at, bytes.len() as u64, 1)?;
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
        let osec = self.out_section_like(s)?;
        let out = self.copy(osec, s, start, end - start, s.addralign)?;
        self.chunks.insert((sec, start), (end, osec, out));
        self.clone_relocs(sec, start, end, osec, out)?;
        Ok((osec, start, out))
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
pub(super) fn padding_starts(obj: &ElfObject) -> rustc_hash::FxHashSet<(SectionId, u64)> {
    obj.sections
        .iter()
        .filter(|s| s.name == "__patchable_function_entries")
        .flat_map(|s| s.relocs.iter())
        .filter_map(|r| {
            let t = obj.symbol(r.symbol());
            let at = u64::try_from((t.value as i64).checked_add(r.addend())?).ok()?;
            Some((t.section()?, at))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::diff::Input;
    use crate::elf::{ElfObject, reloc};
    use crate::pipeline::{DiffRequest, Verdict};
    use crate::synth::Layout;
    use crate::synth::model::{CallPadding, Callee, Ending, FuncId, Function, Op, Program, Reg, TextKind, Unit};

    /// `do_mounts.c` built without function sections: global `caller` calls the
    /// static `helper` that follows it in the same `.text`, which gas
    /// resolves without a relocation.
    fn program(value: u32) -> Program {
        let function = |id, name: &str, global, body| Function {
            id: FuncId(id),
            name: name.into(),
            global,
            text: TextKind::Text,
            body,
            ending: Ending::Return,
            cold: None,
            pad: 0,
        };
        let caller = vec![Op::SetImm { reg: Reg::Eax, value }, Op::Call { callee: Callee::Func(FuncId(2)) }];
        let helper = vec![Op::SetImm { reg: Reg::Ecx, value: 7 }];
        let unit = Unit {
            file: "do_mounts.c".into(),
            source_path: "init/do_mounts.c".into(),
            functions: vec![function(1, "caller", true, caller), function(2, "helper", false, helper)],
            variables: Vec::new(),
            strings: Vec::new(),
            constants: Vec::new(),
        };
        Program { units: vec![unit], padding: CallPadding::None, next_id: 2, objtool_sites: false }
    }

    #[test]
    fn a_branch_gas_resolved_to_a_function_left_behind_becomes_a_relocation() {
        let merged = Layout { merged: true, sections_over_64k: false };
        assert!(merged.shares_sections(&program(1).units[0]));
        let orig = crate::synth::write::write(&program(1), merged).unwrap();
        let patched = crate::synth::write::write(&program(2), merged).unwrap();
        let p = ElfObject::parse(Path::new("b.o"), &patched).unwrap();
        let text = p.section_by_name(".text").unwrap();
        assert!(text.relocs.iter().all(|r| p.symbol(r.symbol()).name != "helper"), "gas-like: no relocation");

        let request = DiffRequest::vmlinux(Input::new(Path::new("a.o"), &orig), Input::new(Path::new("b.o"), &patched));
        let outcome = crate::pipeline::diff(&request).unwrap();
        assert_eq!(outcome.report.changed, vec!["caller".to_string()]);
        let Verdict::Livepatch(out) = outcome.verdict else { panic!("no OUT.o") };
        let o = ElfObject::parse(Path::new("out.o"), &out).unwrap();
        let caller = o.symbol(o.symbols_named("caller")[0]);
        let code = o.symbol_section(caller).unwrap();
        let calls: Vec<_> = code
            .relocs_in(caller.value, caller.end())
            .iter()
            .filter(|r| o.symbol(r.symbol()).name.contains("helper"))
            .collect();
        assert_eq!(calls.len(), 1, "the call to helper is a KLP relocation");
        let r = calls[0];
        assert_eq!((r.r_type(), r.addend()), (reloc::PC32, -4));
        let field = &code.data[r.offset() as usize..r.offset() as usize + 4];
        assert_eq!(field, [0; 4], "the stale displacement is cleared");
    }
}
