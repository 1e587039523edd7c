//! The `klp diff` pipeline: read, checksum, correlate, classify; both
//! objects are read and checksummed in parallel.

pub(crate) mod checksum;
pub(crate) mod classify;
pub(crate) mod correlate;
pub(crate) mod line_rule;
pub(crate) mod snippet;
pub mod stages;

use std::path::Path;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::elf::{ElfObject, MappedFile, SymbolId};
use crate::error::{Error, Result};
use crate::kernel::special::{EntrySizes, SpecialIndex};
use checksum::{Checksums, ColdChildren, FirstDifference};
use classify::{Changes, Refusal, Side};
use correlate::Twins;
pub use correlate::{OrigSym, PatchedSym};

#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    pub entry_sizes: EntrySizes,
    pub line_rule: LineRule,
}

/// Whether a function whose only differences are line-number arguments
/// (`WARN`, `might_sleep`, `pr_*` below a change) is a line-only change
/// rather than a changed one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LineRule {
    #[default]
    On,
    /// Every difference counts: to show what `#line` directives alone do.
    Off,
}

/// Wall time of each stage.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageTimes {
    pub read_ms: f64,
    pub checksum_ms: f64,
    pub correlate_ms: f64,
    pub classify_ms: f64,
}

/// What one object held and what was done with it (`klp diff --stats`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ObjectCounts {
    pub sections: usize,
    pub symbols: usize,
    pub relocations: usize,
    pub functions_checksummed: usize,
    pub functions_decoded: usize,
}

/// One object with everything computed about it.
pub(crate) struct Analyzed<'d> {
    pub obj: ElfObject<'d>,
    pub specials: SpecialIndex,
    pub cold: ColdChildren,
    pub sums: Checksums,
}

impl<'d> Analyzed<'d> {
    fn counts(&self, decoded_again: usize) -> ObjectCounts {
        let o = &self.obj;
        ObjectCounts {
            sections: o.sections.len(),
            symbols: o.symbols.len(),
            relocations: o.relocation_count(),
            functions_checksummed: self.sums.functions,
            functions_decoded: self.sums.decoded() + decoded_again,
        }
    }

    fn side(&self) -> Side<'_, 'd> {
        Side { obj: &self.obj, sums: &self.sums, specials: &self.specials, cold: &self.cold }
    }
}

/// The state of a diff after classification; extraction starts from here.
pub struct Analysis<'d> {
    pub(crate) orig: Analyzed<'d>,
    pub(crate) patched: Analyzed<'d>,
    pub(crate) twins: Twins,
    pub(crate) changes: Changes,
    pub times: StageTimes,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// An input object: its bytes, and the path its errors name.
#[derive(Clone, Copy)]
pub struct Input<'d> {
    pub path: &'d Path,
    pub data: &'d [u8],
}

impl<'d> Input<'d> {
    pub fn new(path: &'d Path, data: &'d [u8]) -> Self {
        Input { path, data }
    }

    pub fn parse(self) -> Result<ElfObject<'d>> {
        ElfObject::parse(self.path, self.data)
    }
}

impl<'d> From<&'d MappedFile> for Input<'d> {
    fn from(f: &'d MappedFile) -> Self {
        Input { path: f.path(), data: f.bytes() }
    }
}

/// Index one parsed object and compute its checksums.
fn index_side<'d>(obj: ElfObject<'d>, opts: &DiffOptions) -> Result<Analyzed<'d>> {
    let specials = SpecialIndex::build(&obj, &opts.entry_sizes)?;
    let cold = checksum::cold_children(&obj);
    let sums = checksum::compute(&obj, &specials, &cold);
    Ok(Analyzed { obj, specials, cold, sums })
}

/// Parse one object, then index it; the time of each.
fn read_side<'d>(input: Input<'d>, opts: &DiffOptions) -> Result<(Analyzed<'d>, Duration, Duration)> {
    let t = Instant::now();
    let obj = input.parse()?;
    let read = t.elapsed();
    let t = Instant::now();
    let side = index_side(obj, opts)?;
    Ok((side, read, t.elapsed()))
}

/// Diff two objects given as bytes: both are parsed and checksummed in
/// parallel, then correlated and classified.
pub fn analyze_bytes<'d>(orig: Input<'d>, patched: Input<'d>, opts: &DiffOptions) -> Result<Analysis<'d>> {
    let (o, p) = rayon::join(|| read_side(orig, opts), || read_side(patched, opts));
    let ((orig, ro, co), (patched, rp, cp)) = (o?, p?);
    let times = StageTimes { read_ms: ms(ro.max(rp)), checksum_ms: ms(co.max(cp)), ..Default::default() };
    compare(orig, patched, times, opts.line_rule)
}

/// Diff two parsed objects.
pub fn analyze<'d>(orig: ElfObject<'d>, patched: ElfObject<'d>, opts: &DiffOptions) -> Result<Analysis<'d>> {
    let t = Instant::now();
    let (o, p) = rayon::join(|| index_side(orig, opts), || index_side(patched, opts));
    let times = StageTimes { checksum_ms: ms(t.elapsed()), ..Default::default() };
    compare(o?, p?, times, opts.line_rule)
}

/// ThinLTO-promoted statics that correlation could not tell apart: an
/// error naming them, never a guess. Other names left unpaired are treated
/// as removed and new (and reported); a promoted static treated so would
/// give the module a second copy of a function or variable of the kernel,
/// and its KLP relocations a name that may be the other unit's.
fn refuse_promoted_ambiguity(a: &Analysis) -> Result<()> {
    let names = |obj: &ElfObject, ids: &mut dyn Iterator<Item = SymbolId>| -> Vec<String> {
        ids.map(|id| crate::error::escaped(obj.symbol(id).name)).collect()
    };
    let (o, p) = (&a.orig.obj, &a.patched.obj);
    for amb in &a.twins.ambiguities {
        let promoted = amb.orig.iter().any(|s| crate::elf::promoted_unit(o.symbol(s.0).name).is_some())
            || amb.patched.iter().any(|s| crate::elf::promoted_unit(p.symbol(s.0).name).is_some());
        if promoted {
            return Err(Error::unsupported(format!(
                "cannot tell apart the ThinLTO-promoted symbols named '{}': original {}; patched {} \
                 (no unit hash pairs them one to one)",
                crate::error::escaped(&amb.name),
                names(o, &mut amb.orig.iter().map(|s| s.0)).join(", "),
                names(p, &mut amb.patched.iter().map(|s| s.0)).join(", "),
            ))
            .in_file(&o.path));
        }
    }
    Ok(())
}

fn compare<'d>(
    orig: Analyzed<'d>,
    patched: Analyzed<'d>,
    mut times: StageTimes,
    line_rule: LineRule,
) -> Result<Analysis<'d>> {
    let t = Instant::now();
    let twins = correlate::correlate(&orig.side(), &patched.side());
    times.correlate_ms = ms(t.elapsed());
    let t = Instant::now();
    let changes = classify::classify(&orig.side(), &patched.side(), &twins, line_rule);
    times.classify_ms = ms(t.elapsed());
    let analysis = Analysis { orig, patched, twins, changes, times };
    refuse_promoted_ambiguity(&analysis)?;
    Ok(analysis)
}

/// The machine-readable report of `klp diff`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DiffReport {
    pub objname: String,
    pub changed: Vec<String>,
    pub new_functions: Vec<String>,
    pub removed: Vec<String>,
    pub line_only: Vec<String>,
    pub new_data: Vec<String>,
    pub ignored: Vec<String>,
    pub ignored_sections: Vec<String>,
    pub refusals: Vec<Refusal>,
    pub uncorrelated: Vec<UncorrelatedReport>,
    /// Stage times; only when asked for, so that reports are reproducible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub times: Option<StageTimes>,
}

/// Symbols of one name that could not be paired.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UncorrelatedReport {
    pub name: String,
    pub orig: Vec<String>,
    pub patched: Vec<String>,
}

impl Analysis<'_> {
    /// Counts of the original and the patched object.
    pub fn counts(&self) -> (ObjectCounts, ObjectCounts) {
        (self.orig.counts(self.changes.compared), self.patched.counts(self.changes.compared))
    }

    pub fn report(&self, objname: &str) -> DiffReport {
        let p = &self.patched.obj;
        let o = &self.orig.obj;
        let names = |obj: &ElfObject, ids: &mut dyn Iterator<Item = SymbolId>| {
            ids.map(|id| obj.symbol(id).name.to_owned()).collect()
        };
        let patched = |ids: &[PatchedSym]| names(p, &mut ids.iter().map(|s| s.0));
        let original = |ids: &[OrigSym]| names(o, &mut ids.iter().map(|s| s.0));
        DiffReport {
            objname: objname.to_owned(),
            changed: patched(&self.changes.changed),
            new_functions: patched(&self.changes.new_functions),
            removed: original(&self.changes.removed),
            line_only: patched(&self.changes.line_only),
            new_data: patched(&self.changes.new_data),
            ignored: patched(&self.changes.ignored),
            ignored_sections: self.changes.ignored_sections.clone(),
            refusals: self.changes.refusals.clone(),
            uncorrelated: self
                .twins
                .ambiguities
                .iter()
                .map(|a| UncorrelatedReport {
                    name: a.name.clone(),
                    orig: original(&a.orig),
                    patched: patched(&a.patched),
                })
                .collect(),
            times: None,
        }
    }

    /// Where function `name` (patched name, or demangled) first differs
    /// from its original twin, disassembled in both objects. A `vmlinux.o`
    /// has many statics of one name (`m_show`, `show`): the ones the patch
    /// changed are explained, each under its file when there are several;
    /// the first of the name when none changed.
    pub fn explain(&self, name: &str) -> Result<String> {
        let p = &self.patched.obj;
        let mut candidates: Vec<SymbolId> = Vec::new();
        for &id in p.symbols_named(name).iter().chain(p.symbols_demangled(name)) {
            if classify::is_reportable_function(p, p.symbol(id)) && !candidates.contains(&id) {
                candidates.push(id);
            }
        }
        let changed: Vec<SymbolId> = candidates
            .iter()
            .copied()
            .filter(|&id| {
                self.changes.changed.contains(&PatchedSym(id)) || self.changes.line_only.contains(&PatchedSym(id))
            })
            .collect();
        let explained = match (changed.len(), candidates.first()) {
            (0, None) => {
                return Err(Error::usage(format!("--explain {name}: no such function in the patched object")));
            }
            (0, Some(&first)) => vec![first],
            _ => changed,
        };
        let several = explained.len() > 1;
        let parts: Vec<String> = explained
            .into_iter()
            .map(|id| {
                // Each line of the explanation is one line, whatever the names hold.
                let mut heading = crate::error::escaped(name);
                if let Some(file) = p.symbol(id).file.filter(|_| several) {
                    heading = format!("{heading} ({})", crate::error::escaped(p.symbol(file).name));
                }
                self.explain_one(&heading, PatchedSym(id))
            })
            .collect();
        Ok(parts.join("\n"))
    }

    fn explain_one(&self, name: &str, id: PatchedSym) -> String {
        let Some(twin) = self.twins.of_patched(id) else {
            return format!("{name}: new function (no original to compare with)");
        };
        let (a, b) = classify::twin_fingerprints(&self.orig.side(), &self.patched.side(), &self.twins, twin, id);
        let (o, p) = (&self.orig.obj, &self.patched.obj);
        let difference = Self::first_difference(name, o, p, &a, &b);
        match line_rule::line_only_evidence(&a, &b) {
            Some(evidence) => format!("{name}: {evidence}\n{difference}"),
            None => difference + &Self::first_non_line_difference(o, p, &a, &b),
        }
    }

    /// For a changed function whose first difference is a line argument:
    /// the first difference that is not, which is what made it changed.
    fn first_non_line_difference(
        o: &ElfObject,
        p: &ElfObject,
        a: &checksum::Fingerprint,
        b: &checksum::Fingerprint,
    ) -> String {
        let first = a.insns.iter().zip(&b.insns).position(|(x, y)| x.digest != y.digest);
        match line_rule::first_non_line_difference(a, b) {
            Some((index, x, y)) if first.is_some_and(|f| !std::ptr::eq(&a.insns[f], x)) => format!(
                "\n  first difference that is not a line number, at instruction #{index}{}\n  orig:    {}\n  patched: {}",
                holder(a, x)
                    .filter(|&f| !std::ptr::eq(f, a))
                    .map_or(String::new(), |f| format!(" of {}", crate::error::escaped(o.symbol(f.function).name))),
                checksum::disassemble(o, holder(a, x).unwrap_or(a).function, x.offset),
                checksum::disassemble(p, holder(b, y).unwrap_or(b).function, y.offset),
            ),
            _ => String::new(),
        }
    }

    /// One line per side: where fingerprints `a` (of `o`) and `b` (of `p`)
    /// first differ.
    fn first_difference(
        name: &str,
        o: &ElfObject,
        p: &ElfObject,
        a: &checksum::Fingerprint,
        b: &checksum::Fingerprint,
    ) -> String {
        // The instruction may be in a `.cold` part: it is disassembled in
        // the part that holds it, not at the same offset of the parent.
        let line = |obj: &ElfObject, f: Option<&checksum::InsnDigest>, fp: &checksum::Fingerprint| match f {
            Some(i) => checksum::disassemble(obj, holder(fp, i).unwrap_or(fp).function, i.offset),
            None => "(end of function)".to_owned(),
        };
        match checksum::first_difference(a, b) {
            None => format!("{name}: no difference"),
            Some(FirstDifference::Instruction { orig, patched, index }) => {
                // Both sides differ in the same part: the function or its i-th `.cold` part.
                let part = match (orig, patched) {
                    (Some(i), _) => holder(a, i).filter(|&f| !std::ptr::eq(f, a)).map(|f| o.symbol(f.function)),
                    (None, Some(i)) => holder(b, i).filter(|&f| !std::ptr::eq(f, b)).map(|f| p.symbol(f.function)),
                    (None, None) => None,
                };
                let place = part.map_or(String::new(), |s| format!(" of {}", crate::error::escaped(s.name)));
                format!(
                    "{name}: first difference at instruction #{index}{place}\n  orig:    {}\n  patched: {}",
                    line(o, orig, a),
                    line(p, patched, b)
                )
            }
            Some(FirstDifference::Entry { orig, patched }) => {
                let show = |obj: &ElfObject, e: Option<&checksum::EntryDigest>| {
                    e.map_or("(none)".to_owned(), |e| {
                        format!("{}+{:#x}", crate::error::escaped(obj.section(e.entry.section).name), e.entry.offset)
                    })
                };
                format!(
                    "{name}: instructions equal; special-section entry differs\n  orig:    {}\n  patched: {}",
                    show(o, orig),
                    show(p, patched)
                )
            }
            Some(FirstDifference::Cold { orig, patched }) => format!(
                "{name}: .cold part {} in the patched object",
                match (orig, patched) {
                    (Some(_), None) => "removed",
                    _ => "added",
                }
            ),
        }
    }
}

/// The fingerprint (`fp` itself or one of its `.cold` parts) whose
/// instructions include `insn`.
fn holder<'a, 'd>(
    fp: &'a checksum::Fingerprint<'d>,
    insn: &checksum::InsnDigest<'d>,
) -> Option<&'a checksum::Fingerprint<'d>> {
    if fp.insns.as_ptr_range().contains(&std::ptr::from_ref(insn)) {
        return Some(fp);
    }
    fp.cold.iter().find_map(|c| holder(c, insn))
}

/// One line of `klp checksum`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChecksumRow<'d> {
    pub checksum: String,
    pub kind: crate::elf::SymbolKind,
    pub name: &'d str,
}

/// The position-independent checksum of every function and data object of
/// `obj`, in symbol-table order.
pub fn checksum_table<'d>(obj: &ElfObject<'d>, opts: &DiffOptions) -> Result<Vec<ChecksumRow<'d>>> {
    let specials = SpecialIndex::build(obj, &opts.entry_sizes)?;
    let cold = checksum::cold_children(obj);
    let sums = checksum::compute(obj, &specials, &cold);
    let side = checksum::Side { obj, sums: &sums, specials: &specials, cold: &cold };
    Ok(obj
        .symbols
        .par_iter()
        .filter_map(|s| side.exact(s.id).map(|c| ChecksumRow { checksum: c.to_string(), kind: s.kind, name: s.name }))
        .collect())
}
