//! Classify stage: from twins and checksums, what the patch changed.
//!
//! - a function whose checksum differs from its twin's is *changed*, unless
//!   the only differences are line numbers (see
//!   [`crate::diff::line_rule`]), which makes it *line-only*;
//! - a changed function in init code is *refused*: it has already run;
//! - a patched function without twin is *new*, an original one *removed*;
//! - an existing data object whose contents changed is *refused*: live
//!   patching replaces code, not the running kernel's data;
//! - a new data object is fine (it will be a fresh instance).
//!
//! `.cold` parts are never reported on their own: they are folded into their
//! parent's checksum and travel with it.

use rayon::prelude::*;

pub use crate::diff::checksum::Side;
use crate::diff::checksum::{self, Fingerprint, Refs};
use crate::diff::correlate::{OrigSym, PatchedSym, Twins, is_correlatable};
use crate::diff::{LineRule, line_rule};
use crate::elf::{ElfObject, Symbol, SymbolId, SymbolKind};
use crate::error::escaped;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalKind {
    /// A changed function in `.init.text`: it ran at boot and is gone.
    InitCode,
    /// An existing object's initial contents or size changed.
    ChangedData,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub symbol: String,
    pub section: String,
}

/// One line, names escaped (`crate::error::escaped`).
impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            RefusalKind::InitCode => write!(
                f,
                "changed init code: {} (in {}); init code has already run and cannot be live patched",
                escaped(&self.symbol),
                escaped(&self.section)
            ),
            RefusalKind::ChangedData => write!(
                f,
                "changed data: {} (in {}); the running kernel's data is not replaced by a live patch (use shadow variables or callbacks)",
                escaped(&self.symbol),
                escaped(&self.section)
            ),
        }
    }
}

/// What the patch changed: symbols of the patched object, except
/// `removed` (of the original object).
#[derive(Debug, Default)]
pub struct Changes {
    pub changed: Vec<PatchedSym>,
    pub new_functions: Vec<PatchedSym>,
    pub removed: Vec<OrigSym>,
    pub line_only: Vec<PatchedSym>,
    pub new_data: Vec<PatchedSym>,
    pub refusals: Vec<Refusal>,
    /// Changed functions the patch asked to ignore (kpatch's `KPATCH_IGNORE_FUNCTION`).
    pub ignored: Vec<PatchedSym>,
    /// Sections the patch asked to ignore (kpatch's `KPATCH_IGNORE_SECTION`).
    pub ignored_sections: Vec<String>,
    /// Twin functions whose checksums differed, decoded again to compare.
    pub compared: usize,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.new_functions.is_empty()
    }
}

/// A function that is reported on its own: code, not a prefix, not a `.cold` part.
pub fn is_reportable_function(obj: &ElfObject, sym: &Symbol) -> bool {
    sym.kind == SymbolKind::Func
        && !sym.is_prefix()
        && !sym.is_cold_child()
        && sym.size > 0
        && obj.symbol_section(sym).is_some_and(|s| s.is_exec())
}

fn is_init_section(name: &str) -> bool {
    name.starts_with(".init.") || name == ".init"
}

/// What a patch written for kpatch-build asks to ignore:
/// `KPATCH_IGNORE_FUNCTION(f)` stores a pointer to `f` in
/// `.kpatch.ignore.functions`, `KPATCH_IGNORE_SECTION("s")` a pointer to the
/// section name in `.kpatch.ignore.sections`.
#[derive(Default)]
struct Ignores {
    functions: Vec<String>,
    sections: Vec<String>,
}

impl Ignores {
    fn of(patched: &ElfObject) -> Self {
        let targets = |section: &str| -> Vec<String> {
            let Some(sec) = patched.section_by_name(section) else {
                return Vec::new();
            };
            sec.relocs
                .iter()
                .filter_map(|r| match checksum::Target::of_reloc(patched, r, r.addend()) {
                    checksum::Target::Symbol { name, .. } => Some(name.to_owned()),
                    checksum::Target::String(s) => Some(String::from_utf8_lossy(s).into_owned()),
                    _ => None,
                })
                .collect()
        };
        Ignores { functions: targets(".kpatch.ignore.functions"), sections: targets(".kpatch.ignore.sections") }
    }

    fn function(&self, sym: &Symbol) -> bool {
        self.functions.iter().any(|f| f == sym.demangled())
    }

    fn section(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s == name)
    }
}

/// Data sections whose contents are metadata, not state of the running kernel.
fn is_metadata_section(name: &str) -> bool {
    const PREFIXES: &[&str] =
        &[".modinfo", ".discard", "__ksymtab", "___ksymtab", "__kcrctab", ".comment", ".note", ".debug", ".kpatch."];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

pub fn classify(orig: &Side, patched: &Side, twins: &Twins, line_rule: LineRule) -> Changes {
    // On every core: the patched symbols that may be a change, in symbol
    // order. Those that differ from their twin (the twins whose quick keys
    // do not show them equal are decoded here), and the correlatable ones
    // defined without twin; nearly all others are the same as their
    // twins, or sections. The ignore lists are read meanwhile: a scan of
    // the sections for each.
    let (ignores, may_change) = rayon::join(
        || Ignores::of(patched.obj),
        || -> Vec<&Symbol> {
            patched
                .obj
                .symbols
                .par_iter()
                .filter(|sym| match twins.of_patched(PatchedSym(sym.id)) {
                    Some(o) => orig.same(o.0, patched, sym.id) == Some(false),
                    None => sym.is_defined() && is_correlatable(patched.obj, sym),
                })
                .collect()
        },
    );
    let policy = Policy { ignores, line_rule };
    let mut changes = Changes::default();
    for sym in may_change {
        match twins.of_patched(PatchedSym(sym.id)) {
            Some(o) => classify_pair(orig, patched, twins, o, sym, &policy, &mut changes),
            None => classify_new(patched.obj, sym, &mut changes),
        }
    }
    changes.removed = orig
        .obj
        .symbols
        .par_iter()
        .filter(|sym| {
            twins.of_orig(OrigSym(sym.id)).is_none()
                && is_reportable_function(orig.obj, sym)
                && is_correlatable(orig.obj, sym)
        })
        .map(|sym| OrigSym(sym.id))
        .collect();
    changes
}

/// What the patch's author asked to be left out, and how line numbers count.
struct Policy {
    ignores: Ignores,
    line_rule: LineRule,
}

/// The fingerprints of twin functions `o` and `p`, the patched one with its
/// references named after their original twins.
pub fn twin_fingerprints<'d>(
    orig: &Side<'_, 'd>,
    patched: &Side<'_, 'd>,
    twins: &Twins,
    o: OrigSym,
    p: PatchedSym,
) -> (Fingerprint<'d>, Fingerprint<'d>) {
    let orig_obj = orig.obj;
    let rename = |id: SymbolId| twins.of_patched(PatchedSym(id)).map(|t| orig_obj.symbol(t.0).demangled());
    let fa = checksum::function_fingerprint(Refs::plain(orig.obj), orig.specials, orig.cold, o.0);
    let fb = checksum::function_fingerprint(Refs::renamed(patched.obj, &rename), patched.specials, patched.cold, p.0);
    (fa, fb)
}

fn classify_pair(
    orig: &Side,
    patched: &Side,
    twins: &Twins,
    o: OrigSym,
    p: &Symbol,
    policy: &Policy,
    changes: &mut Changes,
) {
    let ignores = &policy.ignores;
    if orig.same(o.0, patched, p.id) != Some(false) {
        return;
    }
    let section = patched.obj.symbol_section(p).map_or("", |s| s.name);
    if ignores.section(section) {
        if !changes.ignored_sections.iter().any(|s| s == section) {
            changes.ignored_sections.push(section.to_owned());
        }
        return;
    }
    if is_reportable_function(patched.obj, p) && ignores.function(p) {
        changes.ignored.push(PatchedSym(p.id));
    } else if is_reportable_function(patched.obj, p) {
        changes.compared += 1;
        let (fa, fb) = twin_fingerprints(orig, patched, twins, o, PatchedSym(p.id));
        if fa.checksum() == fb.checksum() {
            // The only differences were references to renamed twins.
        } else if policy.line_rule == LineRule::On && line_rule::line_only_evidence(&fa, &fb).is_some() {
            changes.line_only.push(PatchedSym(p.id));
        } else if is_init_section(section) {
            changes.refusals.push(Refusal {
                kind: RefusalKind::InitCode,
                symbol: p.name.into(),
                section: section.into(),
            });
        } else {
            changes.changed.push(PatchedSym(p.id));
        }
    } else if matches!(p.kind, SymbolKind::Object | SymbolKind::Tls) && !is_metadata_section(section) {
        changes.refusals.push(Refusal {
            kind: RefusalKind::ChangedData,
            symbol: p.name.into(),
            section: section.into(),
        });
    }
}

fn classify_new(patched: &ElfObject, sym: &Symbol, changes: &mut Changes) {
    if !is_correlatable(patched, sym) || !sym.is_defined() {
        return;
    }
    if is_reportable_function(patched, sym) {
        changes.new_functions.push(PatchedSym(sym.id));
    } else if sym.kind == SymbolKind::Object {
        let section = patched.symbol_section(sym).map_or("", |s| s.name);
        if !is_metadata_section(section) {
            changes.new_data.push(PatchedSym(sym.id));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const PKTDEMO: &[u8] = include_bytes!("../../corpus/objects/pktdemo.orig.o");

    /// pktdemo.o with symbol `index`'s `st_size` set to `size` (symbol
    /// table found through the section headers, not through klp's reader).
    fn with_symbol_size(index: usize, size: u64) -> Vec<u8> {
        let mut data = PKTDEMO.to_vec();
        let word = |d: &[u8], at: usize| u64::from_le_bytes(d[at..at + 8].try_into().unwrap()) as usize;
        let (shoff, shnum) = (word(&data, 0x28), u16::from_le_bytes([data[0x3c], data[0x3d]]) as usize);
        let symtab = (0..shnum).map(|i| shoff + i * 64).find(|&h| data[h + 4] == 2).expect("a .symtab");
        let entry = word(&data, symtab + 24) + index * 24;
        data[entry + 16..entry + 24].copy_from_slice(&size.to_le_bytes());
        data
    }

    #[test]
    fn a_function_of_size_zero_is_not_reported() {
        for (size, reported) in [(42, true), (0, false)] {
            let data = with_symbol_size(4, size);
            let obj = ElfObject::parse(Path::new("p.o"), &data).unwrap();
            let id = obj.symbols_named("pkt_receive")[0];
            assert_eq!(is_reportable_function(&obj, obj.symbol(id)), reported, "size {size}");
        }
    }
}
