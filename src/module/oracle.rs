//! The loader oracle: does the livepatch module do what the patched kernel
//! would?
//!
//! The module is laid out at module addresses the way the kernel would place
//! its allocated sections; `.klp.sym.<obj>.<name>,<pos>` symbols are resolved
//! against the kernel (the linked vmlinux, or a synthetic layout of the
//! original object) by name and position exactly as the livepatch core does;
//! then every function the module carries is relocated (ordinary and KLP
//! relocations). The same function of the patched object is placed at the
//! same address and relocated with each reference resolved to where that
//! thing lives for the running, patched system: in the module if the module
//! carries it (copies, strings), else in the kernel (by name, duplicates told
//! apart by their FILE). Equal bytes mean the module does what the patched
//! kernel would do.
//!
//! Compiled into the library (`klp check --patched`) and used by the tests.

use std::collections::HashMap;

use iced_x86::{Decoder, DecoderOptions};

use crate::elf::{ElfObject, Placement, Reloc, Section, SectionId, Symbol, SymbolId, SymbolKind, reloc};
use crate::kernel::abi::{self as klp, SHN_LIVEPATCH};
use crate::kernel::kallsyms::{ParentSymbols, SymbolQuery};

/// Where module sections are placed.
const MODULE_BASE: u64 = 0xffff_ffff_c000_0000;
/// Where symbols live that neither the module nor the kernel image defines
/// (new references to other objects): one address per name, on both sides.
const EXTERNAL_BASE: u64 = 0xffff_ffff_b000_0000;

fn external_address(name: &str) -> u64 {
    EXTERNAL_BASE + (xxhash_rust::xxh3::xxh3_64(name.as_bytes()) & 0xff_ffff) * 16
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The module's bytes equal the patched function's.
    Same,
    /// The first differing byte.
    Differs { offset: u64, module: u8, patched: u8 },
    /// A reference the oracle cannot place (e.g. anonymous data).
    Unverifiable(String),
}

#[derive(Debug, Clone)]
pub struct FunctionVerdict {
    pub name: String,
    pub verdict: Verdict,
}

/// Verify every function of `module` that the patched object also has.
/// `orig`, when given, identifies statics renumbered by the compiler: the
/// one the original version of the same function uses.
pub fn verify(
    module: &ElfObject,
    patched: &ElfObject,
    kernel: &ParentSymbols,
    orig: Option<&ElfObject>,
) -> Result<Vec<FunctionVerdict>, String> {
    let layout = ModuleLayout::new(module, kernel)?;
    let mut out = Vec::new();
    for f in module.symbols.iter().filter(|s| s.kind == SymbolKind::Func && s.is_defined() && s.size > 0) {
        let Some(&p) = patched
            .symbols_named(f.name)
            .iter()
            .find(|&&p| patched.symbol(p).kind == SymbolKind::Func && patched.symbol(p).size == f.size)
        else {
            continue; // the skeleton's own code
        };
        let at = layout.symbol_address(f.id)?;
        let verdict = match (
            layout.relocated_function(f),
            resolve_patched(&World { patched, module: &layout, kernel, orig, function: f.name }, p, f, at),
        ) {
            (Err(e), _) => return Err(format!("{}: {e}", f.name)),
            (_, Err(why)) => Verdict::Unverifiable(why),
            (Ok(m), Ok(p)) => compare(&m, &p),
        };
        out.push(FunctionVerdict { name: f.name.to_owned(), verdict });
    }
    Ok(out)
}

fn compare(module: &[u8], patched: &[u8]) -> Verdict {
    match module.iter().zip(patched).position(|(a, b)| a != b) {
        None => Verdict::Same,
        Some(i) => Verdict::Differs { offset: i as u64, module: module[i], patched: patched[i] },
    }
}

/// The module at its load addresses, with every symbol resolved.
struct ModuleLayout<'a, 'd> {
    m: &'a ElfObject<'d>,
    section_address: Vec<Option<u64>>,
    symbol_address: Vec<Option<u64>>,
    /// Module string literals by content, for the patched side.
    strings: HashMap<&'d [u8], u64>,
    /// Module symbols by name (defined ones only).
    defined: HashMap<&'d str, Vec<SymbolId>>,
    /// KLP relocations by target section.
    klp_relocs: HashMap<SectionId, Vec<Reloc>>,
}

impl<'a, 'd> ModuleLayout<'a, 'd> {
    fn new(m: &'a ElfObject<'d>, kernel: &ParentSymbols) -> Result<Self, String> {
        let mut next = MODULE_BASE;
        let section_address: Vec<Option<u64>> = m
            .sections
            .iter()
            .map(|s| {
                (s.is_alloc() && s.id != 0).then(|| {
                    let at = next.next_multiple_of(s.addralign.max(1));
                    next = at + s.size;
                    at
                })
            })
            .collect();
        let mut layout = ModuleLayout {
            m,
            section_address,
            symbol_address: Vec::new(),
            strings: HashMap::new(),
            defined: HashMap::new(),
            klp_relocs: HashMap::new(),
        };
        layout.symbol_address = m.symbols.iter().map(|s| layout.resolve_symbol(s, kernel)).collect::<Result<_, _>>()?;
        for s in m.sections.iter().filter(|s| s.is_strings() && s.is_alloc()) {
            let base = layout.section_address[s.id as usize].unwrap();
            let mut at = 0;
            for piece in s.data.split(|&b| b == 0) {
                layout.strings.entry(piece).or_insert(base + at);
                at += piece.len() as u64 + 1;
            }
        }
        for s in m.symbols.iter().filter(|s| s.is_defined() && !s.name.is_empty()) {
            layout.defined.entry(s.name).or_default().push(s.id);
        }
        for s in m.sections.iter().filter(|s| s.flags & klp::SHF_RELA_LIVEPATCH != 0) {
            layout.klp_relocs.entry(s.info).or_default().extend(&s.own_relocs);
        }
        Ok(layout)
    }

    fn resolve_symbol(&self, s: &Symbol, kernel: &ParentSymbols) -> Result<Option<u64>, String> {
        Ok(match s.placement {
            Placement::Section(sec) => self.section_address[sec as usize].map(|a| a + s.value),
            Placement::Reserved(SHN_LIVEPATCH) => match klp::parse_klp_symbol(s.name) {
                Some((_, name, pos)) => Some(kernel.klp_address(name, pos).map_err(|e| format!("{}: {e}", s.name))?),
                None => None, // placeholders: their relocations are R_X86_64_NONE
            },
            // The module loader resolves what is left against exports.
            Placement::Undefined if !s.name.is_empty() => Some(
                kernel
                    .address(SymbolQuery { name: s.name, local: false, file: None })
                    .unwrap_or_else(|_| external_address(s.name)),
            ),
            _ => None,
        })
    }

    fn symbol_address(&self, id: SymbolId) -> Result<u64, String> {
        self.symbol_address[id as usize].ok_or_else(|| format!("symbol {} has no address", self.m.symbol(id).name))
    }

    /// The module's bytes of function `f`, with its ordinary and KLP relocations applied.
    fn relocated_function(&self, f: &Symbol) -> Result<Vec<u8>, String> {
        let sec = self.m.symbol_section(f).ok_or("function outside any section")?;
        let base = self.section_address[sec.id as usize].ok_or("function in a non-allocated section")?;
        let mut bytes = sec.data[f.value as usize..f.end() as usize].to_vec();
        let klp = self.klp_relocs.get(&sec.id).map_or(&[][..], Vec::as_slice);
        let in_range = |r: &&Reloc| r.offset >= f.value && r.offset < f.end();
        for r in sec.relocs.iter().filter(in_range).chain(klp.iter().filter(in_range)) {
            if r.r_type == reloc::NONE {
                continue;
            }
            let s = self.symbol_address(r.symbol)?;
            apply(&mut bytes, r, f.value, base + r.offset, s)?;
        }
        Ok(bytes)
    }
}

/// Write relocation `r` (of type `r.r_type`) with symbol value `s` at place `p`.
fn apply(bytes: &mut [u8], r: &Reloc, func_start: u64, p: u64, s: u64) -> Result<(), String> {
    let at = (r.offset - func_start) as usize;
    let value = s.wrapping_add(r.addend as u64);
    let (width, v) = match r.r_type {
        reloc::R64 => (8, value),
        reloc::PC64 => (8, value.wrapping_sub(p)),
        reloc::PC32 | reloc::PLT32 => (4, value.wrapping_sub(p)),
        reloc::R32 | reloc::R32S => (4, value),
        other => return Err(format!("relocation type {other} at {:#x} is not supported by the oracle", r.offset)),
    };
    let field = bytes.get_mut(at..at + width).ok_or("relocation past the function end")?;
    field.copy_from_slice(&v.to_le_bytes()[..width]);
    Ok(())
}

/// The patched object's function `p`, placed at `at` and relocated against
/// the module (what it carries) and the kernel (everything else).
/// Everything the patched side is resolved against.
struct World<'a, 'd> {
    patched: &'a ElfObject<'d>,
    module: &'a ModuleLayout<'a, 'd>,
    kernel: &'a ParentSymbols,
    orig: Option<&'a ElfObject<'a>>,
    /// The function being resolved.
    function: &'a str,
}

fn resolve_patched(w: &World, p: SymbolId, clone: &Symbol, at: u64) -> Result<Vec<u8>, String> {
    let (patched, module) = (w.patched, w.module);
    let f = patched.symbol(p);
    let sec = patched.symbol_section(f).ok_or("patched function outside any section")?;
    let mut bytes = sec.data[f.value as usize..f.end() as usize].to_vec();
    let insns = instruction_ends(sec, f);
    for r in sec.relocs_in(f.value, f.end()) {
        if r.r_type == reloc::NONE {
            continue;
        }
        let bias = if reloc::is_pc_relative(r.r_type) && sec.is_exec() { pc_bias(&insns, r.offset) } else { 0 };
        let target = match reference_address(w, r, bias) {
            Err(Unplaced::Anonymous(sec, off)) => {
                module.anonymous_copy(patched, sec, off, clone, r.offset - f.value, bias)?
            }
            other => other.map_err(|e| e.to_string())?,
        };
        // S + A as the module sees it: the referenced byte minus the bias.
        let s_plus_a = target.wrapping_sub(bias as u64);
        let shifted = Reloc { addend: 0, ..*r };
        apply(&mut bytes, &shifted, f.value, at + (r.offset - f.value), s_plus_a)?;
    }
    Ok(bytes)
}

/// Why a patched reference has no address yet.
enum Unplaced {
    /// Data no symbol covers: section and offset.
    Anonymous(SectionId, u64),
    Other(String),
}

impl std::fmt::Display for Unplaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unplaced::Anonymous(s, off) => write!(f, "anonymous data at section #{s}+{off:#x}"),
            Unplaced::Other(e) => f.write_str(e),
        }
    }
}

impl From<String> for Unplaced {
    fn from(s: String) -> Self {
        Unplaced::Other(s)
    }
}

/// The address of the byte relocation `r` refers to, for the patched system.
fn reference_address(w: &World, r: &Reloc, bias: i64) -> Result<u64, Unplaced> {
    let (patched, module) = (w.patched, w.module);
    let t = patched.symbol(r.symbol);
    let Some(sec) = patched.symbol_section(t) else {
        return Ok(symbol_home(w, t)?.wrapping_add((r.addend + bias) as u64));
    };
    let at = if t.kind == SymbolKind::Section { r.addend + bias } else { t.value as i64 + r.addend + bias };
    if sec.is_strings() {
        let text = sec.c_str_at(at as u64).ok_or_else(|| "string reference outside its section".to_owned())?;
        return module.strings.get(text).copied().ok_or_else(|| {
            Unplaced::Other(format!("string {:?} is not in the module", String::from_utf8_lossy(text)))
        });
    }
    let covering = if t.kind == SymbolKind::Section {
        patched.symbol_at(sec.id, at as u64).filter(|&s| patched.symbol(s).size > 0)
    } else {
        Some(t.id)
    };
    let Some(named) = covering else {
        return Err(Unplaced::Anonymous(sec.id, at as u64));
    };
    let named = patched.symbol(named);
    Ok(symbol_home(w, named)?.wrapping_add((at - named.value as i64) as u64))
}

impl ModuleLayout<'_, '_> {
    /// Anonymous data the module carries a copy of: the module's own
    /// relocation at the same place of the clone says where, and that is
    /// accepted only if the bytes there (outside relocated fields) equal the
    /// patched object's, in a section of the same name.
    fn anonymous_copy(
        &self,
        patched: &ElfObject,
        sec: SectionId,
        off: u64,
        clone: &Symbol,
        func_off: u64,
        bias: i64,
    ) -> Result<u64, String> {
        let unverifiable =
            |why: &str| format!("reference to anonymous data at {}+{off:#x}: {why}", patched.section(sec).name);
        let m = self.m;
        let csec = m.symbol_section(clone).ok_or_else(|| unverifiable("clone outside any section"))?;
        let site = clone.value + func_off;
        let r = csec
            .relocs_in(site, site + 1)
            .iter()
            .find(|r| r.r_type != reloc::NONE)
            .ok_or_else(|| unverifiable("the module has no relocation there"))?;
        let t = m.symbol(r.symbol);
        let tsec = m.symbol_section(t).ok_or_else(|| unverifiable("the module refers outside itself"))?;
        let src = patched.section(sec);
        if tsec.name != src.name {
            return Err(unverifiable(&format!("the module refers to {} instead", tsec.name)));
        }
        let mod_off = (t.value as i64 + r.addend + bias) as u64;
        let n = (src.size - off).min(tsec.size.saturating_sub(mod_off)).min(64);
        let relocated = |s: &Section, at: u64| {
            s.relocs_in(at.saturating_sub(7), at + 1)
                .iter()
                .any(|r| at < r.offset + crate::elf::reloc::width(r.r_type) as u64)
        };
        let same = (0..n).all(|i| {
            relocated(src, off + i)
                || relocated(tsec, mod_off + i)
                || src.data.get((off + i) as usize) == tsec.data.get((mod_off + i) as usize)
        });
        if n == 0 || !same {
            return Err(unverifiable("the module's bytes there differ"));
        }
        Ok(self.section_address[tsec.id as usize].ok_or_else(|| unverifiable("not allocated"))? + mod_off)
    }
}

/// Where a patched symbol lives for the patched system: the module's copy
/// if the module defines one of that name, else the kernel's.
fn symbol_home(w: &World, s: &Symbol) -> Result<u64, String> {
    if let Some(ids) = w.module.defined.get(s.name)
        && let [one] = ids.as_slice()
    {
        return w.module.symbol_address(*one);
    }
    let file = s.file.map(|f| (w.patched.symbol(f).name, file_occurrence(w.patched, s)));
    match w.kernel.address(SymbolQuery { name: s.name, local: s.is_local(), file }) {
        Ok(a) => Ok(a),
        Err(_) if !s.is_defined() => Ok(external_address(s.name)),
        Err(e) => match w.orig.and_then(|o| static_used_by(o, w.function, s.demangled)) {
            Some((name, (file, occurrence))) => w
                .kernel
                .address(SymbolQuery { name: &name, local: true, file: Some((&file, occurrence)) })
                .map_err(|e| format!("{}: {e}", s.name)),
            None => Err(format!("{}: {e}", s.name)),
        },
    }
}

/// The one local named like `demangled` that function `function` of the
/// original object refers to, with its FILE name and occurrence.
fn static_used_by(orig: &ElfObject, function: &str, demangled: &str) -> Option<(String, (String, usize))> {
    let f = orig.symbols_named(function).iter().map(|&id| orig.symbol(id)).find(|s| s.kind == SymbolKind::Func)?;
    let sec = orig.symbol_section(f)?;
    let mut used: Vec<SymbolId> = sec
        .relocs_in(f.value, f.end())
        .iter()
        .filter_map(|r| {
            let t = orig.symbol(r.symbol);
            if t.kind == SymbolKind::Section {
                orig.symbol_at(t.section()?, (r.addend + 4).max(0) as u64)
            } else {
                Some(t.id)
            }
        })
        .filter(|&id| orig.symbol(id).is_local() && orig.symbol(id).demangled == demangled)
        .collect();
    used.sort_unstable();
    used.dedup();
    let [one] = used[..] else { return None };
    let s = orig.symbol(one);
    let file = s.file.map(|f| (orig.symbol(f).name.to_owned(), file_occurrence(orig, s)))?;
    Some((s.name.to_owned(), file))
}

/// Among same-named locals in FILE blocks of the same name, the index of `s`.
fn file_occurrence(obj: &ElfObject, s: &Symbol) -> usize {
    let file_name = |id: SymbolId| obj.symbol(id).file.map(|f| obj.symbol(f).name);
    obj.symbols_named(s.name)
        .iter()
        .filter(|&&id| obj.symbol(id).is_local() && file_name(id) == file_name(s.id))
        .position(|&id| id == s.id)
        .unwrap_or(0)
}

fn instruction_ends(sec: &Section, f: &Symbol) -> Vec<(u64, u64)> {
    let code = &sec.data[f.value as usize..f.end().min(sec.data.len() as u64) as usize];
    let mut d = Decoder::with_ip(64, code, f.value, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let i = d.decode();
        out.push((i.ip(), i.ip() + i.len() as u64));
    }
    out
}

fn pc_bias(insns: &[(u64, u64)], offset: u64) -> i64 {
    let i = insns.partition_point(|&(start, _)| start <= offset);
    match i.checked_sub(1).map(|i| insns[i]) {
        Some((_, end)) if end > offset => end as i64 - offset as i64,
        _ => 4,
    }
}
