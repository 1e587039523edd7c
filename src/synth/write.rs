//! The model as an ELF relocatable, as `ld -r` would combine its units'
//! objects: per unit a FILE symbol and its locals; string literals in
//! `.rodata.str1.1`, each function in `.text.<name>` (its cold part in
//! `.text.unlikely.<name>`), `__init` functions in `.init.text`, each
//! variable in `.data.`/`.rodata.`/`.bss.<name>`, where units' sections of
//! one name share one output section (two files' static `show` in one
//! `.text.show`); then `__mcount_loc` with an entry per `__fentry__` call,
//! the undefined kernel symbols and the globals. References to locals go
//! through section symbols and to globals through their symbols, as gcc
//! and gas emit them.

mod specials;

use std::collections::HashMap;

use object::elf;

use super::elf::{Draft, DraftReloc, DraftSection, DraftSymbol, SecIdx, SymIdx};
use super::encode::{self, Encoded, Site, SiteKind, Target};
use super::layout::{Layout, SHN_LORESERVE};
use super::model::{
    CALL_PADDING, CallPadding, FuncId, Function, Program, StrId, TextKind, Unit, VarId, VarKind, Variable,
};

/// Where a function or variable ended up.
#[derive(Debug, Clone, Copy)]
struct Placed {
    section: SecIdx,
    /// Offset in its section.
    offset: u64,
    /// Its own symbol, and whether it is global.
    symbol: SymIdx,
    global: bool,
}

/// Everything placed, and what still needs relocating.
#[derive(Default)]
struct Builder {
    draft: Draft,
    /// Section symbol of each section.
    section_symbols: HashMap<SecIdx, SymIdx>,
    /// Sections by name: units' sections of one name are one section.
    by_name: HashMap<String, SecIdx>,
    /// Where each cold part starts.
    colds: HashMap<FuncId, (SecIdx, u64)>,
    functions: HashMap<FuncId, Placed>,
    variables: HashMap<VarId, Placed>,
    /// Per unit: the string section and the offset of each string, and of the `__FILE__` string.
    strings: Vec<UnitStrings>,
    /// Code waiting for symbols: (section, offset of the code, unit, sites).
    pending: Vec<(SecIdx, u64, usize, Vec<Site>)>,
    /// Pointers in data waiting for symbols: (section, offset, target).
    pending_pointers: Vec<(SecIdx, u64, FuncId)>,
    padding: CallPadding,
    layout: Layout,
    /// Where call padding starts: (section, offset).
    padding_starts: Vec<(SecIdx, u64)>,
    /// `__fentry__` call sites: (section, offset of the call instruction).
    fentry_calls: Vec<(SecIdx, u64)>,
    /// Global and undefined symbols, added after every local.
    globals: Vec<DraftSymbol>,
    undefined: HashMap<String, usize>,
    /// objtool's return thunk and site lists (`Program::objtool_sites`).
    objtool_sites: bool,
    /// Per unit: where each constant went.
    constants: Vec<Vec<specials::PoolEntry>>,
    /// Where each function's `.altinstr_aux` snippets are, by ordinal.
    aux_snippets: HashMap<(FuncId, u32), u64>,
}

#[derive(Default, Clone)]
struct UnitStrings {
    section: Option<SecIdx>,
    offsets: Vec<u64>,
    source_path: u64,
}

/// `program` as ELF bytes, laid out as `layout` says.
pub fn write(program: &Program, layout: Layout) -> Result<Vec<u8>, String> {
    let mut b =
        Builder { padding: program.padding, objtool_sites: program.objtool_sites, layout, ..Builder::default() };
    for (u, unit) in program.units.iter().enumerate() {
        b.unit(u, unit).map_err(|e| format!("{}: {e}", unit.file))?;
    }
    let units_end = b.draft.sections.len();
    b.mcount_loc();
    b.patchable_function_entries();
    b.finish_symbols();
    b.relocate()?;
    b.draft.add_section(DraftSection::new(".note.GNU-stack", elf::SHT_PROGBITS.0, 0, 1));
    b.check_section_count(units_end)?;
    b.draft.to_bytes()
}

impl Builder {
    fn local(&mut self, name: &str, kind: u8, section: Option<SecIdx>, value: u64, size: u64) -> SymIdx {
        let s = DraftSymbol { name: name.to_owned(), kind, global: false, section, value, size };
        self.draft.add_symbol(s)
    }

    fn unit(&mut self, u: usize, unit: &Unit) -> Result<(), String> {
        self.local(&unit.file, elf::STT_FILE.0, None, 0, 0);
        self.string_section(unit);
        self.constant_pools(unit);
        for f in unit.functions.iter().filter(|f| f.text == TextKind::Text) {
            self.text_function(u, unit, f)?;
        }
        self.init_functions(u, unit)?;
        for v in &unit.variables {
            self.variable(unit, v);
        }
        Ok(())
    }

    /// What `--sections-over-64k` promises: not only more sections than
    /// `e_shnum` holds, but functions and variables in sections whose
    /// index `st_shndx` cannot hold (`SHN_XINDEX`, `.symtab_shndx`).
    fn check_section_count(&self, units_end: SecIdx) -> Result<(), String> {
        let units = &self.draft.sections[..units_end];
        // The ELF index of the units' last section: the null section, then
        // each section followed by its `.rela` if it has relocations.
        let last = units_end + units.iter().filter(|s| !s.relocs.is_empty()).count();
        if self.layout.sections_over_64k && last < SHN_LORESERVE {
            return Err(format!("the last function or variable is in section {last}, not past {SHN_LORESERVE}"));
        }
        Ok(())
    }

    fn string_section(&mut self, unit: &Unit) {
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(unit.strings.len());
        for s in unit.strings.iter().chain([&unit.source_path]) {
            offsets.push(bytes.len() as u64);
            bytes.extend_from_slice(s.as_bytes());
            bytes.push(0);
        }
        let flags = elf::SHF_ALLOC.0 | elf::SHF_MERGE.0 | elf::SHF_STRINGS.0;
        let mut sec = DraftSection::new(".rodata.str1.1", elf::SHT_PROGBITS.0, flags, 1);
        sec.entsize = 1;
        let (section, base) = self.place(sec, &bytes, 1);
        let source_path = base + offsets.pop().unwrap_or(0);
        let offsets = offsets.into_iter().map(|o| base + o).collect();
        self.strings.push(UnitStrings { section: Some(section), offsets, source_path });
    }

    /// Append `bytes` at `align` to the section named like `template`
    /// (made from it if new); the offset where they start. Code is padded
    /// with NOPs, as `ld` fills code sections.
    fn place(&mut self, template: DraftSection, bytes: &[u8], align: u64) -> (SecIdx, u64) {
        let section = match self.by_name.get(&template.name) {
            Some(&s) => s,
            None => {
                let name = template.name.clone();
                let s = self.section(template);
                self.by_name.insert(name, s);
                s
            }
        };
        let sec = &mut self.draft.sections[section];
        sec.align = sec.align.max(align);
        if sec.sh_type == elf::SHT_NOBITS.0 {
            let at = sec.nobits_size.next_multiple_of(align);
            sec.nobits_size = at + bytes.len() as u64;
            return (section, at);
        }
        let at = sec.data.len().next_multiple_of(align as usize);
        let fill = if sec.flags & elf::SHF_EXECINSTR.0 != 0 {
            encode::nop_fill(at - sec.data.len())
        } else {
            vec![0; at - sec.data.len()]
        };
        sec.data.extend(fill);
        sec.data.extend_from_slice(bytes);
        (section, at as u64)
    }

    /// A symbol among the unit's locals, or a placeholder index (counting
    /// down from `usize::MAX`) of one among the globals, which come last.
    fn symbol(&mut self, symbol: DraftSymbol) -> SymIdx {
        if symbol.global {
            self.globals.push(symbol);
            usize::MAX - (self.globals.len() - 1)
        } else {
            self.draft.add_symbol(symbol)
        }
    }

    fn function_symbol(&mut self, f: &Function, section: SecIdx, offset: u64, size: u64) -> Placed {
        let (name, kind, global) = (f.name.clone(), elf::STT_FUNC.0, f.global);
        if self.padding != CallPadding::None {
            let start = offset - CALL_PADDING as u64;
            self.padding_starts.push((section, start));
            if self.padding == CallPadding::PrefixSymbols {
                let name = format!("__pfx_{name}");
                let size = CALL_PADDING as u64;
                self.symbol(DraftSymbol { name, kind, global, section: Some(section), value: start, size });
            }
        }
        let symbol = self.symbol(DraftSymbol { name, kind, global, section: Some(section), value: offset, size });
        Placed { section, offset, symbol, global }
    }

    /// The NOPs of call padding, if the program has it.
    fn call_padding(&self) -> Vec<u8> {
        match self.padding {
            CallPadding::None => Vec::new(),
            _ => vec![0x90; CALL_PADDING],
        }
    }

    /// A function in `.text.<name>`, or after the unit's previous one in
    /// `.text` (int3 filler, then NOPs up to the 16-byte alignment).
    fn text_function(&mut self, u: usize, unit: &Unit, f: &Function) -> Result<(), String> {
        let code = encode::function_with(f, self.objtool_sites).map_err(|e| format!("{}: {e}", f.name))?;
        let mut bytes = vec![0xcc; f.pad as usize];
        bytes.extend(self.call_padding());
        let entry = bytes.len() as u64;
        bytes.extend_from_slice(&code.bytes);
        let name = self.layout.text_section(unit, f);
        let (section, start) = self.place(DraftSection::code(&name, 16), &bytes, 16);
        let offset = start + entry;
        let placed = self.function_symbol(f, section, offset, code.bytes.len() as u64);
        self.functions.insert(f.id, placed);
        self.code_placed(u, f.id, section, offset, code.clone());
        self.cold_part(u, unit, f, &code)
    }

    fn cold_part(&mut self, u: usize, unit: &Unit, f: &Function, parent: &Encoded) -> Result<(), String> {
        let (Some(ops), Some(resume)) = (&f.cold, parent.resume) else {
            return Ok(());
        };
        let code =
            encode::cold_part_with(f, ops, resume, self.objtool_sites).map_err(|e| format!("{}.cold: {e}", f.name))?;
        let name = self.layout.cold_section(unit, f);
        let (section, at) = self.place(DraftSection::code(&name, 1), &code.bytes, 1);
        self.local(&format!("{}.cold", f.name), elf::STT_FUNC.0, Some(section), at, code.bytes.len() as u64);
        self.colds.insert(f.id, (section, at));
        self.specials(u, f.id, section, at, &code.specials);
        self.pending.push((section, at, u, code.sites));
        Ok(())
    }

    /// `__init` functions share `.init.text`, each aligned to 16 with NOPs.
    fn init_functions(&mut self, u: usize, unit: &Unit) -> Result<(), String> {
        let inits: Vec<&Function> = unit.functions.iter().filter(|f| f.text == TextKind::Init).collect();
        if inits.is_empty() {
            return Ok(());
        }
        for f in inits {
            let code = encode::function_with(f, self.objtool_sites).map_err(|e| format!("{}: {e}", f.name))?;
            let mut bytes = self.call_padding();
            let entry = bytes.len() as u64;
            bytes.extend_from_slice(&code.bytes);
            let (section, start) = self.place(DraftSection::code(".init.text", 16), &bytes, 16);
            let offset = start + entry;
            let placed = self.function_symbol(f, section, offset, code.bytes.len() as u64);
            self.functions.insert(f.id, placed);
            self.code_placed(u, f.id, section, offset, code);
        }
        Ok(())
    }

    fn code_placed(&mut self, u: usize, owner: FuncId, section: SecIdx, offset: u64, code: Encoded) {
        self.specials(u, owner, section, offset, &code.specials);
        if let Some(fentry) = code.sites.iter().find(|s| s.target == Target::Fentry) {
            // The call instruction starts one byte before its field.
            self.fentry_calls.push((section, offset + fentry.offset as u64 - 1));
        }
        self.pending.push((section, offset, u, code.sites));
    }

    fn variable(&mut self, unit: &Unit, v: &Variable) {
        let (sh_type, flags) = match v.kind {
            VarKind::Data => (elf::SHT_PROGBITS.0, elf::SHF_ALLOC.0 | elf::SHF_WRITE.0),
            VarKind::ReadOnly => (elf::SHT_PROGBITS.0, elf::SHF_ALLOC.0),
            VarKind::Bss => (elf::SHT_NOBITS.0, elf::SHF_ALLOC.0 | elf::SHF_WRITE.0),
        };
        let align = if v.pointers.is_empty() { 4 } else { 8 };
        let sec = DraftSection::new(&self.layout.data_section(unit, v.kind, &v.name), sh_type, flags, align);
        let (section, offset) = self.place(sec, &v.bytes, align);
        for &(at, target) in &v.pointers {
            self.pending_pointers.push((section, offset + at as u64, target));
        }
        let symbol = self.symbol(DraftSymbol {
            name: v.name.clone(),
            kind: elf::STT_OBJECT.0,
            global: v.global,
            section: Some(section),
            value: offset,
            size: v.bytes.len() as u64,
        });
        self.variables.insert(v.id, Placed { section, offset, symbol, global: v.global });
    }

    /// One 8-byte entry per `__fentry__` call, `R_X86_64_64` against the
    /// section symbol of the code, as `-mrecord-mcount` emits them.
    fn mcount_loc(&mut self) {
        if self.fentry_calls.is_empty() {
            return;
        }
        let mut sec = DraftSection::new("__mcount_loc", elf::SHT_PROGBITS.0, elf::SHF_ALLOC.0, 8);
        sec.data = vec![0; self.fentry_calls.len() * 8];
        let section = self.section(sec);
        for (i, (code, at)) in self.fentry_calls.clone().into_iter().enumerate() {
            let symbol = self.section_symbol(code);
            let r = DraftReloc { offset: i as u64 * 8, symbol, r_type: elf::R_X86_64_64.0, addend: at as i64 };
            self.draft.sections[section].relocs.push(r);
        }
    }

    /// One `__patchable_function_entries` per code section (SHF_LINK_ORDER
    /// to it), an 8-byte entry for each function's padding, as gcc emits them.
    fn patchable_function_entries(&mut self) {
        // In order of first appearance; a map, not a scan per entry: the
        // translation-unit form has a code section per function.
        let mut by_section: Vec<(SecIdx, Vec<u64>)> = Vec::new();
        let mut slot: HashMap<SecIdx, usize> = HashMap::new();
        for &(section, at) in &self.padding_starts {
            let i = *slot.entry(section).or_insert_with(|| {
                by_section.push((section, Vec::new()));
                by_section.len() - 1
            });
            by_section[i].1.push(at);
        }
        for (code, starts) in by_section {
            let flags = elf::SHF_WRITE.0 | elf::SHF_ALLOC.0 | elf::SHF_LINK_ORDER.0;
            let mut sec = DraftSection::new("__patchable_function_entries", elf::SHT_PROGBITS.0, flags, 8);
            sec.link = Some(code);
            sec.data = vec![0; starts.len() * 8];
            let symbol = self.section_symbol(code);
            sec.relocs = (starts.iter().enumerate())
                .map(|(i, &at)| DraftReloc {
                    offset: i as u64 * 8,
                    symbol,
                    r_type: elf::R_X86_64_64.0,
                    addend: at as i64,
                })
                .collect();
            self.draft.add_section(sec);
        }
    }

    /// Add a section and its section symbol (among its unit's locals, as gcc
    /// places them), through which relocations refer to local things.
    fn section(&mut self, s: DraftSection) -> SecIdx {
        let section = self.draft.add_section(s);
        let sym = self.local("", elf::STT_SECTION.0, Some(section), 0, 0);
        self.section_symbols.insert(section, sym);
        section
    }

    fn section_symbol(&self, section: SecIdx) -> SymIdx {
        self.section_symbols[&section]
    }

    /// Globals go after every local; their placeholder indexes (counting
    /// down from `usize::MAX`) become real ones.
    fn finish_symbols(&mut self) {
        let base = self.draft.symbols.len();
        for g in std::mem::take(&mut self.globals) {
            self.draft.add_symbol(g);
        }
        let real = |s: SymIdx| if s > usize::MAX / 2 { base + (usize::MAX - s) } else { s };
        for p in self.functions.values_mut().chain(self.variables.values_mut()) {
            p.symbol = real(p.symbol);
        }
    }

    fn undefined(&mut self, name: &str) -> SymIdx {
        if let Some(&i) = self.undefined.get(name) {
            return i;
        }
        let s = DraftSymbol {
            name: name.to_owned(),
            kind: elf::STT_NOTYPE.0,
            global: true,
            section: None,
            value: 0,
            size: 0,
        };
        let i = self.draft.add_symbol(s);
        self.undefined.insert(name.to_owned(), i);
        i
    }

    fn relocate(&mut self) -> Result<(), String> {
        for (section, base, u, sites) in std::mem::take(&mut self.pending) {
            for site in sites {
                let (symbol, place, global) = self.resolve(u, &site.target)?;
                let field = base + site.offset as u64;
                if self.resolved_by_assembler(section, symbol, global, site.kind) {
                    self.patch_branch(section, field, place + site.bias)?;
                    continue;
                }
                let r_type = match site.kind {
                    SiteKind::Branch if global => elf::R_X86_64_PLT32.0,
                    SiteKind::Branch | SiteKind::PcRelative => elf::R_X86_64_PC32.0,
                    SiteKind::Absolute32S => elf::R_X86_64_32S.0,
                    SiteKind::PcRelative64 => elf::R_X86_64_PC64.0,
                };
                let r = DraftReloc { offset: field, symbol, r_type, addend: place + site.bias };
                self.draft.sections[section].relocs.push(r);
            }
        }
        for (section, at, target) in std::mem::take(&mut self.pending_pointers) {
            let (symbol, place, _) = self.resolve(0, &Target::Func(target))?;
            let r = DraftReloc { offset: at, symbol, r_type: elf::R_X86_64_64.0, addend: place };
            self.draft.sections[section].relocs.push(r);
        }
        for s in &mut self.draft.sections {
            s.relocs.sort_by_key(|r| r.offset);
        }
        Ok(())
    }

    /// A branch to a local place in its own section, which gas resolves
    /// without a relocation (in the forms that model it).
    fn resolved_by_assembler(&self, section: SecIdx, symbol: SymIdx, global: bool, kind: SiteKind) -> bool {
        self.layout.resolves_local_branches()
            && kind == SiteKind::Branch
            && !global
            && self.section_symbols.get(&section) == Some(&symbol)
    }

    /// Write into the rel32 field at `field` of `section` what a PC32
    /// relocation against the section with addend `aim` would: the
    /// branch then lands where the relocation would have pointed it.
    fn patch_branch(&mut self, section: SecIdx, field: u64, aim: i64) -> Result<(), String> {
        let sec = &mut self.draft.sections[section];
        let displacement =
            i32::try_from(aim - field as i64).map_err(|_| format!("branch at {field:#x} out of range"))?;
        let at = field as usize;
        sec.data[at..at + 4].copy_from_slice(&displacement.to_le_bytes());
        Ok(())
    }

    /// The symbol a reference names, the offset from it, and whether it is
    /// global (or undefined).
    fn resolve(&mut self, u: usize, target: &Target) -> Result<(SymIdx, i64, bool), String> {
        let placed = |p: Option<&Placed>, what: &dyn std::fmt::Debug| p.copied().ok_or(format!("dangling {what:?}"));
        Ok(match target {
            Target::Func(id) => self.by_symbol_or_section(placed(self.functions.get(id), id)?, 0),
            Target::Var(id, off) => self.by_symbol_or_section(placed(self.variables.get(id), id)?, *off as i64),
            Target::Extern(name) => (self.undefined(name), 0, true),
            Target::Fentry => (self.undefined("__fentry__"), 0, true),
            Target::Str(StrId(i)) => {
                let s = &self.strings[u];
                let at = *s.offsets.get(*i as usize).ok_or(format!("dangling string {i}"))?;
                (self.section_symbol(s.section.ok_or("no strings")?), at as i64, false)
            }
            Target::SourcePath => {
                let s = self.strings[u].clone();
                (self.section_symbol(s.section.ok_or("no strings")?), s.source_path as i64, false)
            }
            Target::Cold(id) => {
                let &(section, at) = self.colds.get(id).ok_or(format!("no cold part of {id:?}"))?;
                (self.section_symbol(section), at as i64, false)
            }
            Target::Resume(id, off) => {
                let p = placed(self.functions.get(id), id)?;
                (self.section_symbol(p.section), p.offset as i64 + *off as i64, false)
            }
            Target::Constant(c) => {
                let entry = *self.constants[u].get(c.0 as usize).ok_or(format!("dangling constant {c:?}"))?;
                match entry.label {
                    Some(label) => (label, 0, false),
                    None => (self.section_symbol(entry.section), entry.offset as i64, false),
                }
            }
            Target::AuxSnippet(id, n) => {
                let at = *self.aux_snippets.get(&(*id, *n)).ok_or(format!("no snippet {n} of {id:?}"))?;
                let section = *self.by_name.get(".altinstr_aux").ok_or("no .altinstr_aux")?;
                (self.section_symbol(section), at as i64, false)
            }
            Target::Place(section, at) => (self.section_symbol(*section), *at as i64, false),
        })
    }

    fn by_symbol_or_section(&mut self, p: Placed, offset: i64) -> (SymIdx, i64, bool) {
        if p.global {
            (p.symbol, offset, true)
        } else {
            (self.section_symbol(p.section), p.offset as i64 + offset, false)
        }
    }
}
