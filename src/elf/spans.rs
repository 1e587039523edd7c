//! Which named symbol covers an offset of a section: the question nearly
//! every relocation asks ([`SectionSpans::symbol_at`]).
//!
//! The named symbols of every section are kept in one array, section by
//! section, each section's sorted by value. A bisection of a merged `.text`
//! (140,000 symbols of a synthesized 300k-function object, 4.5 MB of
//! spans) missed the cache at each of its last steps; a sparse array of
//! every [`FENCE`]-th value (140 KB for that `.text`) is bisected first,
//! and then only one block of spans.

use super::SectionId;
use super::read::{Symbol, SymbolId, SymbolKind};

/// One value in this many spans is a fence: a block of spans is 256
/// bytes, four cache lines, two of them read once the fences have chosen
/// it. (8 measured a little faster than 4 and 16 at 300k functions.)
const FENCE: usize = 8;

/// The named symbols of each section with what [`Self::symbol_at`] needs of
/// each, and the same symbols in symbol-table order.
pub(super) struct SectionSpans {
    /// Section by section (see `starts`), each section's sorted by value
    /// then index. One array rather than a vector per section: a
    /// `vmlinux.o` has 165,000 sections.
    spans: Vec<SymbolSpan>,
    /// Section `i`'s spans are `starts[i]..starts[i + 1]`, in both `spans`
    /// and `table_order`: 4 bytes a section stay in cache where a
    /// [`Section`](super::Section)'s 160 do not.
    starts: Vec<u32>,
    /// `spans[k * FENCE].value` for every `k`: within one section's range,
    /// sorted.
    fences: Vec<u64>,
    /// The same symbols, each section's in symbol-table order.
    table_order: Vec<SymbolId>,
}

/// A named symbol of a section as [`SectionSpans::symbol_at`] sees it.
#[derive(Debug, Clone, Copy)]
struct SymbolSpan {
    value: u64,
    end: u64,
    /// The largest end of this and the spans before it in its section, so
    /// containment queries can stop scanning backwards early.
    max_end: u64,
    id: SymbolId,
    /// Its rank at an offset it covers: FUNC/OBJECT/TLS over other kinds
    /// over prefixes (`__pfx_`, `__cfi_`).
    covering_rank: u8,
    sized: bool,
}

impl SymbolSpan {
    fn of(sym: &Symbol) -> Self {
        let covering_rank = match (sym.kind, sym.is_prefix()) {
            (SymbolKind::Func | SymbolKind::Object | SymbolKind::Tls, false) => 4,
            (_, false) => 3,
            (_, true) => 2,
        };
        SymbolSpan { value: sym.value, end: sym.end(), max_end: 0, id: sym.id, covering_rank, sized: sym.size > 0 }
    }

    /// Its rank at `offset`, if it may be the answer there (see
    /// [`SectionSpans::symbol_at`]).
    fn rank_at(&self, offset: u64) -> Option<u8> {
        if self.value <= offset && offset < self.end {
            Some(self.covering_rank)
        } else if self.value == offset {
            Some(1)
        } else if self.end == offset && self.sized {
            Some(0)
        } else {
            None
        }
    }
}

/// Whether `symbol_at` and the spans see a symbol: named, and neither a
/// section nor a file.
pub(super) fn is_spanned(sym: &Symbol) -> bool {
    !matches!(sym.kind, SymbolKind::Section | SymbolKind::File) && !sym.name.is_empty()
}

impl SectionSpans {
    /// The spans of `symbols`, `per_section[i]` of them in section `i`
    /// (the [`is_spanned`] symbols defined there).
    pub(super) fn build(per_section: Vec<u32>, symbols: &[Symbol]) -> Self {
        // A counting sort by section: each section's spans in symbol order.
        let mut starts = Vec::with_capacity(per_section.len() + 1);
        starts.push(0u32);
        for count in per_section {
            // Fewer spans than symbols, whose count fits 32 bits.
            starts.push(starts[starts.len() - 1] + count);
        }
        let placeholder = SymbolSpan { value: 0, end: 0, max_end: 0, id: SymbolId(0), covering_rank: 0, sized: false };
        let mut spans = vec![placeholder; starts[starts.len() - 1] as usize];
        let mut cursor = starts.clone();
        for sym in symbols.iter().filter(|s| is_spanned(s)) {
            let Some(sec) = sym.section() else { continue };
            spans[cursor[sec.index()] as usize] = SymbolSpan::of(sym);
            cursor[sec.index()] += 1;
        }
        let table_order = spans.iter().map(|s| s.id).collect();
        // Sort each section's spans and note the largest end so far. Most
        // sections hold one or two symbols: one pass, no task per section.
        for w in starts.windows(2) {
            let chunk = &mut spans[w[0] as usize..w[1] as usize];
            if !chunk.is_sorted_by_key(|s| (s.value, s.id)) {
                chunk.sort_by_key(|s| (s.value, s.id));
            }
            let mut max_end = 0;
            for s in chunk.iter_mut() {
                max_end = max_end.max(s.end);
                s.max_end = max_end;
            }
        }
        let fences = spans.iter().step_by(FENCE).map(|s| s.value).collect();
        SectionSpans { spans, starts, fences, table_order }
    }

    fn range(&self, section: SectionId) -> std::ops::Range<usize> {
        let i = section.index();
        self.starts[i] as usize..self.starts[i + 1] as usize
    }

    /// Every spanned symbol, section by section, each section's in
    /// symbol-table order.
    pub(super) fn all_in_table_order(&self) -> &[SymbolId] {
        &self.table_order
    }

    pub(super) fn in_table_order(&self, section: SectionId) -> &[SymbolId] {
        &self.table_order[self.range(section)]
    }

    /// The spanned symbols of `section`, sorted by value (then index).
    pub(super) fn by_value(
        &self,
        section: SectionId,
    ) -> impl ExactSizeIterator<Item = SymbolId> + DoubleEndedIterator + Clone + '_ {
        self.spans[self.range(section)].iter().map(|s| s.id)
    }

    /// The spans of `section` whose value is at most `offset`: a prefix of
    /// the section's, found through the fences when it has several.
    fn upto(&self, section: SectionId, offset: u64) -> &[SymbolSpan] {
        let range = self.range(section);
        if range.len() <= 2 * FENCE {
            let spans = &self.spans[range];
            return &spans[..spans.partition_point(|s| s.value <= offset)];
        }
        // The fences in the section: `spans[k * FENCE]` for `k` in `first..end`.
        let (first, end) = (range.start.div_ceil(FENCE), (range.end - 1) / FENCE + 1);
        let k = self.fences[first..end].partition_point(|&v| v <= offset);
        // Past fence `first + k - 1` (its value is at most `offset`), and
        // not past fence `first + k` (its value is larger).
        let lo = if k == 0 { range.start } else { (first + k - 1) * FENCE + 1 };
        let hi = if first + k == end { range.end } else { (first + k) * FENCE };
        let at = lo + self.spans[lo..hi].partition_point(|s| s.value <= offset);
        &self.spans[range.start..at]
    }

    /// The spans of `section` that [`Self::symbol_at`] may consider at
    /// some offset of `[first, last]`: those starting by `last` and
    /// reaching `first`, and the spans between. One lookup in the section;
    /// each offset then asks only the few spans of the window.
    pub(super) fn window(&self, section: SectionId, first: u64, last: u64) -> SpanWindow<'_> {
        let upto = self.upto(section, last);
        // `max_end` only grows along the section: what ends before `first`
        // is a prefix.
        let reach = upto.iter().rev().take_while(|s| s.max_end >= first).count();
        SpanWindow(&upto[upto.len() - reach..])
    }

    /// The named symbol covering `offset` in `section`: FUNC/OBJECT preferred
    /// over NOTYPE, real functions over prefixes; a zero-sized symbol exactly
    /// at `offset`, or one ending exactly there (a "one past the end" pointer),
    /// is accepted only when nothing covers the offset.
    pub(super) fn symbol_at(&self, section: SectionId, offset: u64) -> Option<SymbolId> {
        best_at(self.upto(section, offset), offset)
    }
}

/// `SectionSpans::symbol_at` for a run of lookups at growing offsets in
/// each section (a section's relocations in order, special entries in
/// address order, which alternate between a merged `.text` and sections
/// of one function each): in a large section, each steps forward from
/// where the last one there ended, usually a span or two, where a search
/// missed the cache at each of its last steps. Any other lookup searches.
pub struct SymbolCursor<'a> {
    all: &'a SectionSpans,
    /// Where the last lookup in each large section ended (its partition
    /// point in the section's spans).
    at: rustc_hash::FxHashMap<SectionId, usize>,
}

impl<'a> SymbolCursor<'a> {
    pub(super) fn new(all: &'a SectionSpans) -> Self {
        SymbolCursor { all, at: Default::default() }
    }

    /// The same as [`crate::elf::ElfObject::symbol_at`].
    pub fn symbol_at(&mut self, section: SectionId, offset: u64) -> Option<SymbolId> {
        let range = self.all.range(section);
        if range.len() <= 2 * FENCE {
            return self.all.symbol_at(section, offset);
        }
        let spans = &self.all.spans[range];
        let last = self.at.entry(section).or_default();
        *last = step_forward(spans, *last, offset).unwrap_or_else(|| self.all.upto(section, offset).len());
        best_at(&spans[..*last], offset)
    }
}

/// How far a [`SymbolCursor`] steps forward before it searches instead.
const NEAR: usize = 8;

/// The number of `spans` whose value is at most `offset` (the partition
/// point) if it is at most [`NEAR`] spans after `from`, which is not past it.
fn step_forward(spans: &[SymbolSpan], from: usize, offset: u64) -> Option<usize> {
    if from > 0 && spans[from - 1].value > offset {
        return None;
    }
    let ahead = &spans[from..spans.len().min(from + NEAR)];
    let at = from + ahead.iter().take_while(|s| s.value <= offset).count();
    (at < from + NEAR || at == spans.len()).then_some(at)
}

/// The spans of a section that may matter at some offset of a range
/// ([`SectionSpans::window`]).
pub(super) struct SpanWindow<'a>(&'a [SymbolSpan]);

impl SpanWindow<'_> {
    /// [`SectionSpans::symbol_at`], for an offset of the window's range.
    pub(super) fn symbol_at(&self, offset: u64) -> Option<SymbolId> {
        best_at(upto_in(self.0, offset), offset)
    }

    /// The offsets in `(first, last]` where [`Self::symbol_at`] may change
    /// its answer (unsorted, perhaps repeated): a symbol's rank at an
    /// offset changes only at its start and end and one past them (the
    /// exact-start and one-past-the-end ranks).
    pub(super) fn possible_changes(&self, first: u64, last: u64) -> impl Iterator<Item = u64> + '_ {
        self.0
            .iter()
            .flat_map(|s| [s.value, s.value.saturating_add(1), s.end, s.end.saturating_add(1)])
            .filter(move |&at| first < at && at <= last)
    }
}

/// The spans of `window` whose value is at most `offset`.
fn upto_in(window: &[SymbolSpan], offset: u64) -> &[SymbolSpan] {
    &window[..window.partition_point(|s| s.value <= offset)]
}

/// [`SectionSpans::symbol_at`] among `upto`, the spans of a section (or of
/// a window of it holding every span that reaches `offset`) whose value is
/// at most `offset`.
fn best_at(upto: &[SymbolSpan], offset: u64) -> Option<SymbolId> {
    let mut best: Option<(u8, SymbolId)> = None;
    for s in upto.iter().rev() {
        if s.max_end < offset {
            break;
        }
        let Some(rank) = s.rank_at(offset) else { continue };
        // Among equal ranks keep the lowest symbol index: deterministic.
        if best.is_none_or(|(r, id)| rank > r || (rank == r && s.id < id)) {
            best = Some((rank, s.id));
        }
    }
    best.map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use object::write::{Object, StandardSection, Symbol as WSymbol, SymbolSection};

    use crate::elf::{ElfObject, SectionId, SymbolId, SymbolKind};

    /// An object whose `.text` holds `count` symbols at pseudo-random
    /// places: overlapping, nested, zero-sized, prefixes, of every kind
    /// `symbol_at` ranks differently; and a `.data` with three.
    fn crowded(count: u64, text_len: u64) -> Vec<u8> {
        let mut o = Object::new(object::BinaryFormat::Elf, object::Architecture::X86_64, object::Endianness::Little);
        let text = o.section_id(StandardSection::Text);
        o.append_section_data(text, &vec![0xcc; text_len as usize], 16);
        let data = o.section_id(StandardSection::Data);
        o.append_section_data(data, &[0; 24], 8);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let add = |o: &mut Object, name: String, value, size, kind, section| {
            let flags = object::SymbolFlags::None;
            let scope = object::SymbolScope::Compilation;
            let section = SymbolSection::Section(section);
            o.add_symbol(WSymbol { name: name.into_bytes(), value, size, kind, scope, weak: false, section, flags });
        };
        for i in 0..count {
            let kind =
                [object::SymbolKind::Text, object::SymbolKind::Data, object::SymbolKind::Label][next(3) as usize];
            let name = if next(5) == 0 { format!("__pfx_f{i}") } else { format!("f{i}") };
            // Symbols may end at the section's end, not past it.
            let value = next(text_len + 1);
            let size = [0, 1, 3, 8, 16, 40][next(6) as usize].min(text_len - value);
            add(&mut o, name, value, size, kind, text);
        }
        for (i, (value, size)) in [(0, 8), (8, 0), (8, 16)].into_iter().enumerate() {
            add(&mut o, format!("d{i}"), value, size, object::SymbolKind::Data, data);
        }
        o.write().unwrap()
    }

    /// `symbol_at` as its documentation defines it, over every symbol.
    fn by_definition(obj: &ElfObject, section: SectionId, offset: u64) -> Option<SymbolId> {
        let rank = |s: &crate::elf::Symbol| {
            let (start, end) = (s.value, s.value + s.size);
            if start <= offset && offset < end {
                let real = matches!(s.kind, SymbolKind::Func | SymbolKind::Object | SymbolKind::Tls);
                Some(if s.is_prefix() {
                    2
                } else if real {
                    4
                } else {
                    3
                })
            } else if start == offset {
                Some(1)
            } else if end == offset && s.size > 0 {
                Some(0)
            } else {
                None
            }
        };
        let candidates = obj.symbols.iter().filter(|s| {
            s.section() == Some(section)
                && !s.name.is_empty()
                && !matches!(s.kind, SymbolKind::Section | SymbolKind::File)
        });
        // Highest rank, then lowest index.
        candidates.filter_map(|s| Some((rank(s)?, std::cmp::Reverse(s.id)))).max().map(|(_, id)| id.0)
    }

    #[test]
    fn symbol_at_and_windows_agree_with_the_definition() {
        let mut asked = 0;
        // Sections below, at and well above the size searched through
        // fences; crowded, and sparse, where a zero-sized symbol often
        // stands alone.
        for (count, text_len) in [(5, 40), (32, 100), (33, 100), (150, 400), (2000, 3000), (20, 400), (60, 2000)] {
            let bytes = crowded(count, text_len);
            let obj = ElfObject::parse(Path::new("crowded.o"), &bytes).unwrap();
            for sec in obj.sections.iter().filter(|s| s.name == ".text" || s.name == ".data") {
                let wanted: Vec<Option<SymbolId>> =
                    (0..sec.size + 20).map(|o| by_definition(&obj, sec.id, o)).collect();
                for (offset, &w) in wanted.iter().enumerate() {
                    assert_eq!(obj.symbol_at(sec.id, offset as u64), w, "{} {count} at {offset}", sec.name);
                    asked += 1;
                }
                // Through one cursor: growing offsets, then falling, then
                // jumping about.
                let mut cursor = obj.symbol_cursor();
                let jumps = (0..wanted.len()).map(|k| (k * 7919) % wanted.len());
                for offset in (0..wanted.len()).chain((0..wanted.len()).rev()).chain(jumps) {
                    let w = wanted[offset];
                    assert_eq!(cursor.symbol_at(sec.id, offset as u64), w, "{} {count} cursor at {offset}", sec.name);
                }
                for first in 0..sec.size + 5 {
                    let last = first + 14;
                    let mut runs: Vec<(u64, Option<SymbolId>)> = Vec::new();
                    for at in first..=last {
                        if runs.last().is_none_or(|r| r.1 != wanted[at as usize]) {
                            runs.push((at, wanted[at as usize]));
                        }
                    }
                    assert_eq!(obj.symbols_over(sec.id, first, last), runs, "{} {count} over {first}", sec.name);
                }
            }
        }
        assert!(asked > 3000, "{asked} offsets asked");
    }
}
