//! Correlate stage: pair each symbol of the original object with its twin in
//! the patched object.
//!
//! FILE symbols are paired first, by name and order, tolerating files added
//! or removed. Every other correlatable symbol is then paired inside its group
//! of same demangled name and type by a funnel of ever stricter criteria:
//! the widest level at which exactly one original and one patched candidate
//! remain wins (1: name, maybe the same file; 2: same locality; 3: the same
//! FILE; 4: same size and checksum). Repeating until nothing changes lets one
//! pairing disambiguate another. What is still ambiguous is paired by
//! position only when both sides have the same number of candidates in the
//! same file, and reported; what cannot be paired is reported, never guessed.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use rayon::prelude::*;

use crate::diff::checksum::{self, Refs, Side};
use crate::elf::{ElfObject, Named, Placement, Referent, Section, Symbol, SymbolId, SymbolKind, promoted_unit, reloc};
use crate::kernel::special::{is_auxiliary_section, is_special_section};
use crate::x86::Boundaries;

/// How a pair was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairReason {
    File,
    Name,
    Locality,
    SameFile,
    Checksum,
    /// Statics told apart by the twins of the functions that use them.
    Reference,
    Position,
    /// An IPA clone renamed (`foo.isra.0` -> `foo.constprop.0.isra.0`) with identical code.
    CloneRename,
    /// ThinLTO-promoted statics told apart by their units' hashes.
    UnitHash,
}

/// A symbol of the original object: ids of the two sides of a diff are
/// different types, so that one is never looked up in the other object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct OrigSym(pub SymbolId);

/// A symbol of the patched object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct PatchedSym(pub SymbolId);

/// A pair of original and patched symbol.
#[derive(Debug, Clone, Copy)]
pub struct Twin {
    pub orig: OrigSym,
    pub patched: PatchedSym,
}

impl Twin {
    /// `reason` says which rule paired them; kept at the call for the reader.
    fn new(orig: SymbolId, patched: SymbolId, _reason: PairReason) -> Self {
        Twin { orig: OrigSym(orig), patched: PatchedSym(patched) }
    }
}

/// Symbols of the same name that could not be told apart.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ambiguity {
    pub name: String,
    pub orig: Vec<OrigSym>,
    pub patched: Vec<PatchedSym>,
}

/// The result of correlation.
pub struct Twins {
    orig_to_patched: Vec<Option<PatchedSym>>,
    patched_to_orig: Vec<Option<OrigSym>>,
    pub pairs: Vec<Twin>,
    pub ambiguities: Vec<Ambiguity>,
}

impl Twins {
    pub fn of_orig(&self, id: OrigSym) -> Option<PatchedSym> {
        self.orig_to_patched[id.0.index()]
    }
    pub fn of_patched(&self, id: PatchedSym) -> Option<OrigSym> {
        self.patched_to_orig[id.0.index()]
    }
}

/// Statics the kernel and compilers create per use site: each patched
/// function gets its own fresh copy instead of sharing the running kernel's
/// (spec §3.3). GCC names them `<var>.<n>`, Clang `<func>.<var>`.
const UNCORRELATED_STATICS: &[&str] = &[
    "__already_done",
    "__func__",
    "__FUNCTION__",
    "__key",
    "__warned",
    "_entry",
    "_entry_ptr",
    "_rs",
    "descriptor",
    "CSWTCH",
];

/// Sections whose content is anonymous per-site data.
fn is_uncorrelated_section(name: &str) -> bool {
    name.starts_with(".data..Lubsan")
        || name.starts_with(".data..L__unnamed_")
        || name.starts_with(".data..Lanon.")
        || name.starts_with(".rodata.cst")
        || name == ".data..once"
        || name == ".data.once"
        || name == "__dyndbg"
        || name == "__verbose"
        || name == ".discard.addressable"
}

/// False for symbols that never get a twin (spec §3.3).
pub fn is_correlatable(obj: &ElfObject, sym: &Symbol) -> bool {
    is_correlatable_symbol(sym) && obj.symbol_section(sym).is_none_or(|sec| SectionVerdict::of(sec).admits(sym))
}

/// What [`is_correlatable`] asks of the symbol alone.
fn is_correlatable_symbol(sym: &Symbol) -> bool {
    if sym.id.0 == 0 || matches!(sym.kind, SymbolKind::File | SymbolKind::Section) || sym.is_prefix() {
        return false;
    }
    if sym.placement == Placement::Absolute || sym.name.is_empty() {
        return false;
    }
    if sym.name.starts_with("__initcall__") || sym.name.starts_with("__initstub__") {
        return false;
    }
    if sym.kind == SymbolKind::NoType && sym.name.starts_with(".L") {
        return false;
    }
    !(sym.is_local() && sym.kind == SymbolKind::Object && is_uncorrelated_static(sym.name))
}

/// What [`is_correlatable`] asks of the section a symbol is defined in.
#[derive(Clone, Copy)]
struct SectionVerdict {
    /// False for sections whose symbols are never paired, whatever they are.
    holds_correlatable: bool,
    /// Read-only data, whose symbols other than objects are anonymous labels.
    anonymous_rodata: bool,
}

impl SectionVerdict {
    fn of(sec: &Section) -> Self {
        SectionVerdict {
            holds_correlatable: !(sec.is_strings()
                || is_special_section(sec.name)
                || is_auxiliary_section(sec.name)
                || is_uncorrelated_section(sec.name)),
            anonymous_rodata: (sec.name.starts_with(".rodata") || sec.name.starts_with(".data.rel.ro"))
                && !sec.is_exec(),
        }
    }

    fn admits(self, sym: &Symbol) -> bool {
        self.holds_correlatable && !(self.anonymous_rodata && sym.kind != SymbolKind::Object)
    }
}

fn is_uncorrelated_static(name: &str) -> bool {
    // GCC: `<var>.<n>`; Clang: `<func>.<var>[.<n>]`. Only numeric suffixes
    // are dropped here: `demangle` would also eat the `__` of `__func__`.
    // Byte by byte from the end: every local object's name is asked.
    let bytes = name.as_bytes();
    let mut end = bytes.len();
    loop {
        let digits = bytes[..end].iter().rev().take_while(|b| b.is_ascii_digit()).count();
        match end.checked_sub(digits + 1) {
            Some(dot) if digits > 0 && bytes[dot] == b'.' => end = dot,
            _ => break,
        }
    }
    let start = memchr::memrchr(b'.', &bytes[..end]).map_or(0, |dot| dot + 1);
    UNCORRELATED_STATICS.contains(&&name[start..end])
}

/// Pair the symbols of `orig` and `patched`.
pub fn correlate(orig_side: &Side, patched_side: &Side) -> Twins {
    let (orig, patched) = (orig_side.obj, patched_side.obj);
    let mut twins = Twins {
        orig_to_patched: vec![None; orig.symbols.len()],
        patched_to_orig: vec![None; patched.symbols.len()],
        pairs: Vec::new(),
        ambiguities: Vec::new(),
    };
    for (o, p) in pair_files(orig, patched) {
        twins.add(Twin::new(o, p, PairReason::File));
    }
    // Patched FILE -> original FILE, to express both sides' files in one namespace.
    let orig_file_of: HashMap<SymbolId, SymbolId> = twins.pairs.iter().map(|t| (t.patched.0, t.orig.0)).collect();
    let ok = Correlatable::of(orig, patched);
    let clone_candidates = rayon::join(|| clone_candidates(&ok.orig), || clone_candidates(&ok.patched));
    let ctx = Ctx { orig, patched, orig_side, patched_side, orig_file_of: &orig_file_of, clone_candidates };
    let mut leftovers = Vec::new();
    for outcome in pair_groups(&ctx, &ok) {
        let (pairs, leftover) = match outcome {
            GroupOutcome::Pair(t) => {
                twins.add(t);
                continue;
            }
            GroupOutcome::Rest(rest) => *rest,
        };
        for t in pairs {
            twins.add(t);
        }
        if !leftover.orig.is_empty() && !leftover.patched.is_empty() {
            leftovers.push(leftover);
        }
    }
    // Statics pair through the twins of their users, and renamed clones
    // are among those users: each rule may enable the other.
    let mut users = None;
    loop {
        let before = twins.pairs.len();
        ctx.pair_by_reference(&mut twins, &mut leftovers, &mut users);
        ctx.pair_clone_renames(&mut twins);
        if twins.pairs.len() == before {
            break;
        }
    }
    let units = UnitHashes::learn(orig, patched, &twins);
    for mut l in leftovers {
        l.orig.retain(|x| twins.of_orig(OrigSym(x.0)).is_none());
        l.patched.retain(|x| twins.of_patched(PatchedSym(x.0)).is_none());
        ctx.pair_plain_names(&mut l, &mut twins);
        ctx.pair_by_unit_hash(&mut l, &units, &mut twins);
        let mut pairs = Vec::new();
        pair_by_funnel(&mut l.orig, &mut l.patched, &mut pairs, &|patched, id| ctx.exact(patched, id));
        pair_by_position(&mut l.orig, &mut l.patched, &mut pairs);
        for t in pairs {
            twins.add(t);
        }
        // Statics of a unit the patch removed or added have no twin to
        // miss: they are removed or new, not ambiguous.
        l.orig.retain(|(_, t)| !t.local || t.file.is_none_or(|f| twins.of_orig(OrigSym(f)).is_some()));
        l.patched.retain(|(_, t)| !t.unpaired_file);
        if !l.orig.is_empty() && !l.patched.is_empty() {
            twins.ambiguities.push(Ambiguity {
                name: l.name.to_owned(),
                orig: l.orig.iter().map(|x| OrigSym(x.0)).collect(),
                patched: l.patched.iter().map(|x| PatchedSym(x.0)).collect(),
            });
        }
    }
    ctx.pair_clone_renames(&mut twins);
    twins.sort_pairs();
    twins.ambiguities.sort_by(|a, b| a.name.cmp(&b.name));
    twins
}

impl Twins {
    fn add(&mut self, t: Twin) {
        self.orig_to_patched[t.orig.0.index()] = Some(t.patched);
        self.patched_to_orig[t.patched.0.index()] = Some(t.orig);
        self.pairs.push(t);
    }

    /// The pairs in patched symbol order: read off the patched side's map
    /// in one pass, where sorting a `vmlinux.o`'s 118,000 pairs took 2.5 ms
    /// of a diff's serial tail. Each symbol is paired once, so the map
    /// holds every pair.
    fn sort_pairs(&mut self) {
        let paired = self.patched_to_orig.iter().enumerate();
        let sorted: Vec<Twin> =
            paired.filter_map(|(p, o)| Some(Twin { orig: (*o)?, patched: PatchedSym(SymbolId(p as u32)) })).collect();
        debug_assert_eq!(sorted.len(), self.pairs.len(), "a symbol was paired twice");
        self.pairs = sorted;
    }
}

/// Pair FILE symbols. One translation unit compiled under another name is
/// still one file; otherwise align the two name sequences.
fn pair_files(orig: &ElfObject, patched: &ElfObject) -> Vec<(SymbolId, SymbolId)> {
    if let ([o], [p]) = (orig.files.as_slice(), patched.files.as_slice()) {
        return vec![(*o, *p)];
    }
    let orig_names: Vec<&str> = orig.files.iter().map(|&f| orig.symbol(f).name).collect();
    let patched_names: Vec<&str> = patched.files.iter().map(|&f| patched.symbol(f).name).collect();
    align_by_name(&orig_names, &patched_names).into_iter().map(|(i, j)| (orig.files[i], patched.files[j])).collect()
}

/// Align two name sequences. A name that occurs once on each side pairs
/// wherever it stands: the link order of translation units may change.
/// Repeated names (vmlinux.o has many `core.c`) pair in order.
fn align_by_name<'n>(orig: &[&'n str], patched: &[&'n str]) -> Vec<(usize, usize)> {
    let (co, cp) = (name_counts(orig), name_counts(patched));
    let once = |n: &str| -> Option<usize> {
        match (co.get(n), cp.get(n)) {
            (Some((1, _)), Some(&(1, j))) => Some(j),
            _ => None,
        }
    };
    let mut out: Vec<(usize, usize)> = orig.iter().enumerate().filter_map(|(i, &n)| once(n).map(|j| (i, j))).collect();
    let rest_o: Vec<usize> = (0..orig.len()).filter(|&i| once(orig[i]).is_none()).collect();
    let rest_p: Vec<usize> = (0..patched.len()).filter(|&j| once(patched[j]).is_none()).collect();
    let ro: Vec<&str> = rest_o.iter().map(|&i| orig[i]).collect();
    let rp: Vec<&str> = rest_p.iter().map(|&j| patched[j]).collect();
    out.extend(align_in_order(&ro, &rp).into_iter().map(|(a, b)| (rest_o[a], rest_p[b])));
    out.sort_unstable();
    out
}

/// How often each name occurs, and where first.
fn name_counts<'n>(names: &[&'n str]) -> HashMap<&'n str, (usize, usize)> {
    let mut m: HashMap<&str, (usize, usize)> = HashMap::default();
    for (i, &n) in names.iter().enumerate() {
        m.entry(n).or_insert((0, i)).0 += 1;
    }
    m
}

/// Equal names pair in order; where they disagree, skip whichever side
/// reaches agreement again sooner (a file added or removed by the patch).
fn align_in_order(orig: &[&str], patched: &[&str]) -> Vec<(usize, usize)> {
    let (no, np) = (orig.len(), patched.len());
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(no.min(np));
    while i < no && j < np {
        if orig[i] == patched[j] {
            out.push((i, j));
            i += 1;
            j += 1;
            continue;
        }
        let skip_p = patched[j..].iter().position(|n| *n == orig[i]);
        let skip_o = orig[i..].iter().position(|n| *n == patched[j]);
        match (skip_o, skip_p) {
            (Some(a), Some(b)) if a <= b => i += a,
            (_, Some(b)) => j += b,
            (Some(a), None) => i += a,
            (None, None) => {
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// The correlatable symbols of one demangled name and type that both
/// objects have: the name's symbols in each object's name index, of which
/// those of `kind` that are correlatable belong to the group. Kept as the
/// index's slices: most groups are one symbol on each side, and copying
/// them out was an allocation each (a `vmlinux.o` has 110k groups).
struct Group<'a, 'd> {
    name: &'d str,
    kind: SymbolKind,
    orig: &'a [SymbolId],
    patched: &'a [SymbolId],
}

/// Which symbols of each side may be paired at all ([`is_correlatable`]):
/// for each symbol its type's [`kind_bit`], or 0 if it may not, with
/// [`DOTTED`] beside it for a function whose name has a dot. One byte a
/// symbol: grouping by name asks this of 600,000 symbols at random, and
/// the symbols themselves are a cache line each.
struct Correlatable {
    orig: Vec<u8>,
    patched: Vec<u8>,
}

impl Correlatable {
    fn of(orig: &ElfObject, patched: &ElfObject) -> Self {
        // The section's part once per section: its name is tested against
        // a dozen patterns, and a `vmlinux.o` has 165,000 of them.
        let ok = |obj: &ElfObject| -> Vec<u8> {
            let sections: Vec<SectionVerdict> = obj.sections.par_iter().map(SectionVerdict::of).collect();
            let admitted = |sym: &Symbol| sym.section().is_none_or(|s| sections[s.index()].admits(sym));
            let bit = |s: &Symbol| match is_correlatable_symbol(s) && admitted(s) {
                true if s.kind == SymbolKind::Func && s.name.contains('.') => kind_bit(s.kind) | DOTTED,
                true => kind_bit(s.kind),
                false => 0,
            };
            obj.symbols.par_iter().map(bit).collect()
        };
        let (orig, patched) = rayon::join(|| ok(orig), || ok(patched));
        Correlatable { orig, patched }
    }
}

/// Beside a function's [`kind_bit`] in [`Correlatable`]: its name has a
/// dot, so it may be a renamed IPA clone ([`clone_candidates`]). Noted
/// while the name is at hand; a pass of its own read every function's
/// symbol and name again (25 ms at 300,000 functions).
const DOTTED: u8 = 1 << 7;

/// The symbols of `ids` that are correlatable (`ok`) and of `kind`.
fn of_kind<'a>(ok: &'a [u8], ids: &'a [SymbolId], kind: SymbolKind) -> impl Iterator<Item = SymbolId> + 'a {
    ids.iter().copied().filter(move |id| ok[id.index()] & !DOTTED == kind_bit(kind))
}

/// Each group of correlatable symbols of one demangled name and type that
/// both objects have, as [`Ctx::pair_group`] pairs it, in the order of the
/// groups' first original symbols. The groups come from the objects' own
/// name indexes, which meet without hashing a name again, and are paired
/// where they are found, on every core.
fn pair_groups<'d>(ctx: &Ctx<'_, 'd>, ok: &Correlatable) -> Vec<GroupOutcome<'d>> {
    let mut outcomes: Vec<(SymbolId, GroupOutcome<'d>)> =
        ctx.orig.map_names_shared_with(ctx.patched, |name, ours, theirs| {
            // One group per type: the types present, as a bit set (a group's
            // order is its first symbol's, not the order of its type here).
            let mut kinds = 0u8;
            for &id in ours {
                kinds |= ok.orig[id.index()];
            }
            ALL_KINDS.iter().copied().filter(move |&k| kinds & kind_bit(k) != 0).filter_map(move |kind| {
                of_kind(&ok.patched, theirs, kind).next()?;
                let first = of_kind(&ok.orig, ours, kind).next()?;
                Some((first, ctx.pair_group(Group { name, kind, orig: ours, patched: theirs }, ok)))
            })
        });
    // Nearly sorted already: the names come in the order of their first
    // symbols, the types of a name not (a def vmlinux.o's 109,000 groups
    // are seven sorted runs). A stable sort merges the runs; an unstable
    // one sorted them all over again (9 ms). No two groups share a first
    // symbol, so the order is the same.
    outcomes.sort_by_key(|o| o.0);
    outcomes.into_iter().map(|o| o.1).collect()
}

/// A symbol type's bit in a set of types; a new type does not compile
/// until it has one (and a place in [`ALL_KINDS`]).
fn kind_bit(kind: SymbolKind) -> u8 {
    1 << match kind {
        SymbolKind::NoType => 0,
        SymbolKind::Object => 1,
        SymbolKind::Func => 2,
        SymbolKind::Section => 3,
        SymbolKind::File => 4,
        SymbolKind::Tls => 5,
        SymbolKind::Other => 6,
    }
}

const ALL_KINDS: [SymbolKind; 7] = [
    SymbolKind::NoType,
    SymbolKind::Object,
    SymbolKind::Func,
    SymbolKind::Section,
    SymbolKind::File,
    SymbolKind::Tls,
    SymbolKind::Other,
];

/// What the funnel made of one name group.
enum GroupOutcome<'d> {
    /// One symbol on each side, paired: by far the most common.
    Pair(Twin),
    /// The pairs, and what is left. Boxed: the outcomes of a `vmlinux.o`'s
    /// 110k groups are collected and ordered, and nearly all are `Pair`.
    Rest(Box<(Vec<Twin>, Leftover<'d>)>),
}

/// What the funnel could not pair in one name group.
struct Leftover<'d> {
    name: &'d str,
    orig: Vec<(SymbolId, Traits)>,
    patched: Vec<(SymbolId, Traits)>,
}

struct Ctx<'a, 'd> {
    orig: &'a ElfObject<'d>,
    patched: &'a ElfObject<'d>,
    orig_side: &'a Side<'a, 'd>,
    /// Also for checksums of patched functions with references named after twins.
    patched_side: &'a Side<'a, 'd>,
    orig_file_of: &'a HashMap<SymbolId, SymbolId>,
    /// Each side's functions that may be renamed IPA clones (a `.` in the
    /// name, correlatable), in symbol-table order: found once, asked about
    /// in every round of [`Ctx::pair_clone_renames`].
    clone_candidates: (Vec<SymbolId>, Vec<SymbolId>),
}

/// The correlatable functions with a dot in the name, by their byte in
/// `ok`: the symbols are a cache line each.
fn clone_candidates(ok: &[u8]) -> Vec<SymbolId> {
    let dotted_function = kind_bit(SymbolKind::Func) | DOTTED;
    (0..ok.len()).into_par_iter().filter(|&i| ok[i] == dotted_function).map(|i| SymbolId(i as u32)).collect()
}

/// What a symbol looks like to the funnel, with the patched side's FILE
/// expressed as the original FILE it is paired with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Traits {
    local: bool,
    /// For locals: the (original-side) FILE; `None` if there is none.
    file: Option<SymbolId>,
    /// A patched local whose FILE has no original twin.
    unpaired_file: bool,
    size: u64,
    /// Asked for only when the funnel gets to its checksum level: most
    /// groups pair by file first, and a function without quick key, or a
    /// group's lone data object, costs a decoding or a hash each.
    checksum: Option<u64>,
    /// `checksum` is final; otherwise it is filled on demand.
    summed: bool,
    /// A ThinLTO-promoted static (`name.llvm.<hash>`): never paired by position.
    promoted: bool,
}

impl Ctx<'_, '_> {
    /// `checksum_later`: only the funnel's last level compares checksums;
    /// they are exact checksums, filled in (decoding functions) only for
    /// groups that may get that far, and there only when it does
    /// ([`fill_checksums`]); otherwise the traits have none, for good.
    fn traits_orig(&self, id: SymbolId, checksum_later: bool) -> Traits {
        let s = self.orig.symbol(id);
        Traits {
            local: s.is_local(),
            file: s.file,
            unpaired_file: false,
            size: s.size,
            checksum: None,
            summed: !checksum_later,
            promoted: promoted_unit(s.name).is_some(),
        }
    }

    fn traits_patched(&self, id: SymbolId, checksum_later: bool) -> Traits {
        let s = self.patched.symbol(id);
        let file = s.file.and_then(|f| self.orig_file_of.get(&f).copied());
        Traits {
            local: s.is_local(),
            file,
            unpaired_file: s.file.is_some() && file.is_none(),
            size: s.size,
            checksum: None,
            summed: !checksum_later,
            promoted: promoted_unit(s.name).is_some(),
        }
    }

    /// The exact checksum of a symbol of the patched (`true`) or original side.
    fn exact(&self, patched: bool, id: SymbolId) -> Option<u64> {
        let side = if patched { self.patched_side } else { self.orig_side };
        side.exact(id).map(|c| c.0)
    }

    fn pair_group<'d>(&self, g: Group<'_, 'd>, ok: &Correlatable) -> GroupOutcome<'d> {
        let orig_ids = || of_kind(&ok.orig, g.orig, g.kind);
        let patched_ids = || of_kind(&ok.patched, g.patched, g.kind);
        if let (1, 1) = (orig_ids().take(2).count(), patched_ids().take(2).count()) {
            // One of each: the funnel's first level pairs them if it
            // accepts them, and no later level accepts what it does not
            // (each accepts only what the first does). Left unpaired, they
            // never get to the checksum level: no checksum is asked for.
            let (a, b) = (orig_ids().next().expect("one"), patched_ids().next().expect("one"));
            // A global may be any file's (`maybe_same_file`): most pairs
            // are decided without the files' lookup and the name scans.
            if !self.orig.symbol(a).is_local() || !self.patched.symbol(b).is_local() {
                return GroupOutcome::Pair(Twin::new(a, b, PairReason::Name));
            }
            let (ta, tb) = (self.traits_orig(a, false), self.traits_patched(b, false));
            if maybe_same_file(&ta, &tb) {
                return GroupOutcome::Pair(Twin::new(a, b, PairReason::Name));
            }
            let leftover = Leftover { name: g.name, orig: vec![(a, ta)], patched: vec![(b, tb)] };
            return GroupOutcome::Rest(Box::new((Vec::new(), leftover)));
        }
        let mut o: Vec<(SymbolId, Traits)> = orig_ids().map(|id| (id, self.traits_orig(id, true))).collect();
        let mut p: Vec<(SymbolId, Traits)> = patched_ids().map(|id| (id, self.traits_patched(id, true))).collect();
        let mut pairs = Vec::new();
        pair_by_funnel(&mut o, &mut p, &mut pairs, &|patched, id| self.exact(patched, id));
        GroupOutcome::Rest(Box::new((pairs, Leftover { name: g.name, orig: o, patched: p })))
    }
}

impl Ctx<'_, '_> {
    /// GCC renames an IPA clone when the set of optimisations applied to it
    /// changes, even if its code does not. Among symbols still without twin,
    /// pair those with the same base name (before the first `.`), type,
    /// file, size and checksum, when exactly one of each side qualifies.
    /// A clone that calls another renamed clone names the new callee, so its
    /// checksum matches only once the callee is paired and named after its
    /// twin: rounds repeat while they pair something (seed 52923).
    /// Two renamed clones that refer to each other match only together:
    /// when strict rounds pair nothing more, a loose round names the
    /// references to unpaired clones by their stems on both sides.
    fn pair_clone_renames(&self, twins: &mut Twins) {
        let mut loose = false;
        loop {
            let found = self.clone_renames(twins, loose);
            if found.is_empty() {
                if loose {
                    return;
                }
                loose = true;
                continue;
            }
            loose = false;
            for t in found {
                twins.add(t);
            }
        }
    }

    /// One round of [`Self::pair_clone_renames`].
    fn clone_renames(&self, twins: &Twins, loose: bool) -> Vec<Twin> {
        type Candidates = (Vec<SymbolId>, Vec<SymbolId>);
        let mut by_stem: HashMap<(&str, Option<u64>), Candidates> = HashMap::default();
        for &id in self.clone_candidates.0.iter().filter(|&&id| twins.of_orig(OrigSym(id)).is_none()) {
            let sum = if loose { self.loose_orig_checksum(twins, id) } else { self.orig_side.exact(id).map(|c| c.0) };
            by_stem.entry((stem(self.orig.symbol(id).name), sum)).or_default().0.push(id);
        }
        for &id in self.clone_candidates.1.iter().filter(|&&id| twins.of_patched(PatchedSym(id)).is_none()) {
            let key = (stem(self.patched.symbol(id).name), self.renamed_checksum(twins, id, loose));
            if let Some(entry) = by_stem.get_mut(&key) {
                entry.1.push(id);
            }
        }
        let mut found: Vec<Twin> = by_stem
            .into_iter()
            .filter(|((_, sum), (o, p))| sum.is_some() && o.len() == 1 && p.len() == 1)
            .filter(|(_, (o, p))| {
                let (a, b) = (self.traits_orig(o[0], false), self.traits_patched(p[0], false));
                same_file_strict(&a, &b) || (a.file.is_none() && b.file.is_none())
            })
            .map(|(_, (o, p))| Twin::new(o[0], p[0], PairReason::CloneRename))
            .collect();
        found.sort_by_key(|t| t.orig);
        found
    }

    /// The checksum of patched function `id` with its references to paired
    /// symbols named after their original twins, as the original names them
    /// (`loose`: and to unpaired clones by their stems).
    fn renamed_checksum(&self, twins: &Twins, id: SymbolId, loose: bool) -> Option<u64> {
        self.patched_side.exact(id)?;
        let side = self.patched_side;
        let rename = |t: SymbolId| match twins.of_patched(PatchedSym(t)) {
            Some(o) => Some(self.orig.symbol(o.0).demangled()),
            None => loose.then(|| unpaired_clone_stem(side.obj, t)).flatten(),
        };
        Some(checksum::function_checksum(Refs::renamed(side.obj, &rename), side.specials, side.cold, id).0)
    }

    /// The checksum of original function `id` with its references to
    /// unpaired clones named by their stems.
    fn loose_orig_checksum(&self, twins: &Twins, id: SymbolId) -> Option<u64> {
        self.orig_side.exact(id)?;
        let side = self.orig_side;
        let rename = |t: SymbolId| match twins.of_orig(OrigSym(t)) {
            Some(_) => None,
            None => unpaired_clone_stem(side.obj, t),
        };
        Some(checksum::function_checksum(Refs::renamed(side.obj, &rename), side.specials, side.cold, id).0)
    }
}

/// The stem of an IPA clone (`open` of `open.constprop.0.part.0`).
fn unpaired_clone_stem<'d>(obj: &ElfObject<'d>, id: SymbolId) -> Option<&'d str> {
    let s = obj.symbol(id);
    (s.kind == SymbolKind::Func && s.name.contains('.') && !s.is_cold_child()).then(|| stem(s.name))
}

impl Ctx<'_, '_> {
    /// kpatch's rule for statics the funnel cannot tell apart (same name,
    /// file, size and contents): a static pairs with the one that the twins
    /// of the functions using it use.
    /// `users`: the users found in the first round; later rounds look for
    /// fewer statics (paired ones leave the leftovers), whose users are
    /// among those.
    fn pair_by_reference(&self, twins: &mut Twins, leftovers: &mut [Leftover], users: &mut Option<(Users, Users)>) {
        let locals = |v: &Vec<(SymbolId, Traits)>| v.iter().filter(|(_, t)| t.local).map(|x| x.0).collect::<Vec<_>>();
        let orig_targets: HashSet<SymbolId> = leftovers.iter().flat_map(|l| locals(&l.orig)).collect();
        let patched_targets: HashSet<SymbolId> = leftovers.iter().flat_map(|l| locals(&l.patched)).collect();
        if orig_targets.is_empty() || patched_targets.is_empty() {
            return;
        }
        let (orig_users, patched_users) = users.get_or_insert_with(|| {
            rayon::join(|| users_of(self.orig, &orig_targets), || users_of(self.patched, &patched_targets))
        });
        orig_users.retain(|t, _| orig_targets.contains(t));
        patched_users.retain(|t, _| patched_targets.contains(t));
        let (orig_users, patched_users) = (&*orig_users, &*patched_users);
        for l in leftovers.iter_mut() {
            let users = |twins: &Twins, o: SymbolId, p: SymbolId| {
                let theirs = patched_users.get(&p).map_or(&[][..], Vec::as_slice);
                let twin_used = |f: &SymbolId| twins.of_orig(OrigSym(*f)).is_some_and(|t| theirs.contains(&t.0));
                orig_users
                    .get(&o)
                    .map(|fs| (fs.len() == theirs.len() && fs.iter().all(twin_used), fs.iter().any(twin_used)))
            };
            // First the statics whose users are exactly the twins of the
            // other's users, then those sharing one: functions often use
            // several statics of a name (`flags` and `flags.2`), so sharing
            // one user alone proves little while the exact match is there.
            // Statics with the same users and name: nothing else tells
            // apart `count` and `count.6` used by the same one function.
            let same_name = |o: SymbolId, p: SymbolId| self.orig.symbol(o).name == self.patched.symbol(p).name;
            let named = unique_matches(l, PairReason::Reference, |o, p| {
                same_name(o, p) && users(twins, o, p).is_some_and(|u| u.0)
            });
            take_pairs(l, twins, named);
            let exact = unique_matches(l, PairReason::Reference, |o, p| users(twins, o, p).is_some_and(|u| u.0));
            take_pairs(l, twins, exact);
            let shared = unique_matches(l, PairReason::Reference, |o, p| users(twins, o, p).is_some_and(|u| u.1));
            take_pairs(l, twins, shared);
        }
    }
}

impl Ctx<'_, '_> {
    /// gcc adds a `.N` suffix only to function-local statics and clones; a
    /// file-scope static keeps its plain name, so the same plain name in the
    /// same file is the same variable even when the group's counts differ
    /// (`limit` beside a `limit.0` that went away with its only user).
    fn pair_plain_names(&self, l: &mut Leftover, twins: &mut Twins) {
        let same_plain = |o: SymbolId, p: SymbolId| {
            let (a, b) = (self.orig.symbol(o).name, self.patched.symbol(p).name);
            a == b && !has_numeric_suffix(a)
        };
        let found = unique_matches(l, PairReason::Name, same_plain);
        take_pairs(l, twins, found);
    }
}

/// Which ThinLTO unit hash of the patched build is which of the original.
///
/// A unit's promoted statics all carry its hash, and a unit that changed
/// gets a new one: `foo.llvm.1` and `bar.llvm.1` may become `foo.llvm.7` and
/// `bar.llvm.7`. Twins already paired by name tell which hash became which;
/// a hash is trusted only when all those twins agree, both ways. Two units
/// each with a static `foo` are then told apart as FILE symbols tell locals.
pub struct UnitHashes<'d> {
    patched_of: HashMap<&'d str, &'d str>,
}

impl<'d> UnitHashes<'d> {
    fn learn(orig: &ElfObject<'d>, patched: &ElfObject<'d>, twins: &Twins) -> Self {
        let mut forward: HashMap<&'d str, Option<&'d str>> = HashMap::default();
        let mut backward: HashMap<&'d str, Option<&'d str>> = HashMap::default();
        // Which twins are promoted statics: a look at 300,000 names, on
        // every core; the pairs come back in the twins' order.
        let promoted: Vec<(&'d str, &'d str)> = twins
            .pairs
            .par_iter()
            .filter_map(|t| {
                let o = promoted_unit(orig.symbol(t.orig.0).name)?;
                Some((o, promoted_unit(patched.symbol(t.patched.0).name)?))
            })
            .collect();
        for (o, p) in promoted {
            // `None` marks a hash whose twins disagree.
            let f = forward.entry(o).or_insert(Some(p));
            if *f != Some(p) {
                *f = None;
            }
            let b = backward.entry(p).or_insert(Some(o));
            if *b != Some(o) {
                *b = None;
            }
        }
        let patched_of = forward
            .into_iter()
            .filter_map(|(o, p)| p.filter(|p| backward.get(p) == Some(&Some(o))).map(|p| (o, p)))
            .collect();
        UnitHashes { patched_of }
    }

    /// Whether `orig` and `patched` name statics of the same unit.
    fn same_unit(&self, orig: &str, patched: &str) -> bool {
        match (promoted_unit(orig), promoted_unit(patched)) {
            (Some(o), Some(p)) => self.patched_of.get(o) == Some(&p),
            _ => false,
        }
    }
}

impl Ctx<'_, '_> {
    fn pair_by_unit_hash(&self, l: &mut Leftover, units: &UnitHashes, twins: &mut Twins) {
        let same_unit =
            |o: SymbolId, p: SymbolId| units.same_unit(self.orig.symbol(o).name, self.patched.symbol(p).name);
        let found = unique_matches(l, PairReason::UnitHash, same_unit);
        take_pairs(l, twins, found);
    }
}

/// `name.N`, as gcc numbers function-local statics and clones.
fn has_numeric_suffix(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The leftovers of one name where `matches` holds for exactly one patched
/// symbol of the same file, and that one for exactly one original of its file.
fn unique_matches(l: &Leftover, reason: PairReason, matches: impl Fn(SymbolId, SymbolId) -> bool) -> Vec<Twin> {
    let mut found = Vec::new();
    for &(o, ref ot) in &l.orig {
        let candidates: Vec<SymbolId> =
            l.patched.iter().filter(|(p, pt)| same_file_strict(ot, pt) && matches(o, *p)).map(|x| x.0).collect();
        // Unique both ways, each within the same file.
        if let [p] = candidates[..]
            && let Some((_, pt)) = l.patched.iter().find(|x| x.0 == p)
            && l.orig.iter().filter(|(o2, o2t)| same_file_strict(o2t, pt) && matches(*o2, p)).count() == 1
        {
            found.push(Twin::new(o, p, reason));
        }
    }
    found
}

fn take_pairs(l: &mut Leftover, twins: &mut Twins, found: Vec<Twin>) {
    for t in found {
        l.orig.retain(|x| x.0 != t.orig.0);
        l.patched.retain(|x| x.0 != t.patched.0);
        twins.add(t);
    }
}

/// For each of `targets`, the functions whose code refers to it.
/// The functions that refer to each static.
type Users = HashMap<SymbolId, Vec<SymbolId>>;

fn users_of(obj: &ElfObject, targets: &HashSet<SymbolId>) -> Users {
    let mut holds = vec![false; obj.sections.len()];
    for &t in targets {
        if let Some(s) = obj.symbol(t).section() {
            holds[s.index()] = true;
        }
    }
    // Per symbol, whether it is in a section holding a target: one byte a
    // symbol stays in cache, where each relocation's look at the symbol's
    // place (24 bytes of 7 MB) was a cache miss.
    let into_holding: Vec<bool> = (0..obj.symbols.len())
        .map(|i| obj.place(SymbolId(i as u32)).section().is_some_and(|sec| holds[sec.index()]))
        .collect();
    let into_holding = &into_holding;
    let found: Vec<(SymbolId, SymbolId)> = obj
        .sections
        .par_iter()
        .filter(|s| s.is_exec())
        .flat_map_iter(|s| {
            // Instruction ends of the users met in this section, decoded once each.
            let mut decoded: HashMap<SymbolId, Boundaries> = HashMap::default();
            // The relocations are in order: each user is near the last.
            let mut users = obj.symbol_cursor();
            s.relocs.iter().filter_map(move |r| {
                if !into_holding[r.symbol().index()] {
                    return None;
                }
                let user = users.symbol_at(s.id, r.offset()).filter(|&u| obj.symbol(u).kind == SymbolKind::Func)?;
                // The field's distance to the end of its instruction is not
                // always 4 (`addl $1, x(%rip)` has an immediate after it),
                // and a wrong guess lands on the neighbouring static.
                let u = obj.symbol(user);
                let bias = if !reloc::is_pc_relative(r.r_type()) {
                    0
                } else if obj.bias_matters(r) {
                    decoded.entry(user).or_insert_with(|| Boundaries::decode(s, u.value, u.end())).pc_bias(r)
                } else {
                    4 // any bias names the same symbol
                };
                let target = match obj.referent(r, bias) {
                    Referent::Place { named: Named::Direct(id) | Named::Covering(Some(id)), .. } => id,
                    _ => return None,
                };
                targets.contains(&target).then_some((target, user))
            })
        })
        .collect();
    let mut map: HashMap<SymbolId, Vec<SymbolId>> = HashMap::default();
    for (t, u) in found {
        let users = map.entry(t).or_default();
        if !users.contains(&u) {
            users.push(u);
        }
    }
    map
}

fn stem(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// Pair what the funnel can, repeating while a pairing makes others unique.
///
/// A group of statics only (`show`, `__key`, one per unit: thousands in a
/// large object) falls apart by file: between locals every level of the
/// funnel accepts only the same file, so each file's symbols are funnelled
/// alone, with the same pairs as the whole group gives, in linear rather
/// than quadratic time. A patched static of a file without original twin
/// is accepted by no original local: it stays unpaired.
fn pair_by_funnel(o: &mut Vec<(SymbolId, Traits)>, p: &mut Vec<(SymbolId, Traits)>, pairs: &mut Vec<Twin>, sums: Sums) {
    if o.len() + p.len() < 16 || !o.iter().chain(p.iter()).all(|(_, t)| t.local) {
        return funnel_rounds(o, p, pairs, sums);
    }
    type Candidates = Vec<(SymbolId, Traits)>;
    let mut by_file: HashMap<Option<SymbolId>, (Candidates, Candidates)> = HashMap::default();
    for x in o.iter() {
        by_file.entry(x.1.file).or_default().0.push(*x);
    }
    for x in p.iter().filter(|(_, t)| !t.unpaired_file) {
        by_file.entry(x.1.file).or_default().1.push(*x);
    }
    let start = pairs.len();
    for (_, (mut fo, mut fp)) in by_file {
        if !fo.is_empty() && !fp.is_empty() {
            funnel_rounds(&mut fo, &mut fp, pairs, sums);
        }
    }
    // The rest keeps its order: position pairs by it.
    let paired_o: HashSet<SymbolId> = pairs[start..].iter().map(|t| t.orig.0).collect();
    let paired_p: HashSet<SymbolId> = pairs[start..].iter().map(|t| t.patched.0).collect();
    o.retain(|(id, _)| !paired_o.contains(id));
    p.retain(|(id, _)| !paired_p.contains(id));
}

/// The exact checksum of a symbol of the patched (`true`) or original side.
type Sums<'s> = &'s (dyn Fn(bool, SymbolId) -> Option<u64> + Sync);

fn funnel_rounds(o: &mut Vec<(SymbolId, Traits)>, p: &mut Vec<(SymbolId, Traits)>, pairs: &mut Vec<Twin>, sums: Sums) {
    let mut progress = true;
    while progress {
        progress = false;
        let mut oi = 0;
        while oi < o.len() {
            let mut found = funnel_upto(&o[oi].1, o, p, CHECKSUM_LEVEL);
            if found.is_none() {
                let t = o[oi].1;
                fill_checksums(&t, o, p, sums);
                found = funnel(&o[oi].1, o, p);
            }
            if let Some((pi, reason)) = found {
                pairs.push(Twin::new(o[oi].0, p[pi].0, reason));
                o.remove(oi);
                p.remove(pi);
                progress = true;
            } else {
                oi += 1;
            }
        }
    }
}

/// Could `o` and `p` be the same symbol, as far as files tell?
fn maybe_same_file(o: &Traits, p: &Traits) -> bool {
    if !o.local || !p.local {
        return true;
    }
    match (o.file, p.file) {
        (Some(a), Some(b)) => a == b,
        (None, None) => !p.unpaired_file,
        _ => false,
    }
}

fn same_file_strict(o: &Traits, p: &Traits) -> bool {
    o.local == p.local && (!o.local || (o.file == p.file && !p.unpaired_file))
}

type Level = fn(&Traits, &Traits) -> bool;

/// Before the checksum level: give the symbols it may compare with `t`
/// (both sides' symbols of `t`'s locality and file) their checksums.
fn fill_checksums(t: &Traits, o: &mut [(SymbolId, Traits)], p: &mut [(SymbolId, Traits)], sums: Sums) {
    for (id, x) in o.iter_mut().filter(|(_, x)| !x.summed && x.local == t.local && (!t.local || x.file == t.file)) {
        (x.checksum, x.summed) = (sums(false, *id), true);
    }
    for (id, q) in p.iter_mut().filter(|(_, q)| !q.summed && same_file_strict(t, q)) {
        (q.checksum, q.summed) = (sums(true, *id), true);
    }
}

/// The funnel's levels before the one that compares checksums.
const CHECKSUM_LEVEL: usize = 3;

/// The funnel: for original `t`, the patched candidate it pairs with.
fn funnel(t: &Traits, o: &[(SymbolId, Traits)], p: &[(SymbolId, Traits)]) -> Option<(usize, PairReason)> {
    funnel_upto(t, o, p, CHECKSUM_LEVEL + 1)
}

/// The funnel's first `levels` levels.
fn funnel_upto(
    t: &Traits,
    o: &[(SymbolId, Traits)],
    p: &[(SymbolId, Traits)],
    levels: usize,
) -> Option<(usize, PairReason)> {
    let all: [(Level, PairReason); 4] = [
        (maybe_same_file, PairReason::Name),
        (|a, b| maybe_same_file(a, b) && a.local == b.local, PairReason::Locality),
        (same_file_strict, PairReason::SameFile),
        (
            |a, b| same_file_strict(a, b) && a.size == b.size && a.checksum.is_some() && a.checksum == b.checksum,
            PairReason::Checksum,
        ),
    ];
    for (accept, reason) in all.into_iter().take(levels) {
        let mut patched = p.iter().enumerate().filter(|(_, (_, q))| accept(t, q));
        let (pi, (_, q)) = patched.next()?;
        if patched.next().is_some() {
            continue;
        }
        // The original side must be unique too: no other original symbol
        // would accept the same patched candidate at this level.
        if o.iter().filter(|(_, x)| accept(x, q)).count() == 1 {
            return Some((pi, reason));
        }
    }
    None
}

/// Last resort (spec §3.4 step 3): within one FILE and locality, the k-th
/// remaining original pairs with the k-th remaining patched symbol when both
/// sides have the same count (e.g. many `__quirk` statics in one file).
fn pair_by_position(o: &mut Vec<(SymbolId, Traits)>, p: &mut Vec<(SymbolId, Traits)>, pairs: &mut Vec<Twin>) {
    let mut keys: Vec<(bool, Option<SymbolId>)> = o.iter().map(|(_, t)| (t.local, t.file)).collect();
    keys.dedup();
    for key in keys {
        // The order of promoted statics says nothing about which is which.
        let matches = |t: &Traits| (t.local, t.file) == key && !t.unpaired_file && !t.promoted;
        let oi: Vec<usize> = (0..o.len()).filter(|&i| matches(&o[i].1)).collect();
        let pi: Vec<usize> = (0..p.len()).filter(|&i| matches(&p[i].1)).collect();
        if oi.len() != pi.len() || oi.len() < 2 {
            continue;
        }
        for (&a, &b) in oi.iter().zip(&pi) {
            pairs.push(Twin::new(o[a].0, p[b].0, PairReason::Position));
        }
        remove_indices(o, &oi);
        remove_indices(p, &pi);
    }
}

/// Remove the elements at the (ascending) `indices`, keeping the order of the rest.
fn remove_indices<T>(v: &mut Vec<T>, indices: &[usize]) {
    let mut k = 0;
    let mut next = indices.iter().peekable();
    v.retain(|_| {
        let drop = next.peek() == Some(&&k);
        if drop {
            next.next();
        }
        k += 1;
        !drop
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_site_statics_are_recognised() {
        for name in
            ["__func__.65905", "__func__", "foo.__func__", "__key.3", "_rs.12", "__already_done.7", "CSWTCH.150"]
        {
            assert!(is_uncorrelated_static(name), "{name}");
        }
        for name in ["lock.65417", "counter.0", "__funcs", "my_key"] {
            assert!(!is_uncorrelated_static(name), "{name}");
        }
    }

    /// Every name of a few pieces, against a plain split on dots.
    #[test]
    fn per_site_statics_match_a_split_on_dots() {
        let by_split = |name: &str| {
            let mut parts: Vec<&str> = name.split('.').collect();
            while parts.len() > 1
                && parts.last().is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            {
                parts.pop();
            }
            UNCORRELATED_STATICS.contains(parts.last().unwrap())
        };
        let pieces = ["", ".", "7", "12", "__key", "_rs", "foo", "CSWTCH", "x1"];
        let mut names = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let name = format!("{a}{b}{c}");
                    assert_eq!(is_uncorrelated_static(&name), by_split(&name), "{name:?}");
                    names += 1;
                }
            }
        }
        assert_eq!(names, pieces.len().pow(3));
    }

    #[test]
    fn files_align_across_added_and_removed_files() {
        let orig = ["a.c", "b.c", "c.c", "d.c"];
        let patched = ["a.c", "c.c", "new.c", "d.c"];
        assert_eq!(align_by_name(&orig, &patched), vec![(0, 0), (2, 1), (3, 3)]);
        // Repeated names (vmlinux.o has many `core.c`) pair in order.
        let orig = ["core.c", "x.c", "core.c"];
        let patched = ["core.c", "x.c", "core.c"];
        assert_eq!(align_by_name(&orig, &patched), vec![(0, 0), (1, 1), (2, 2)]);
    }

    #[test]
    fn files_pair_by_name_when_the_link_order_changes() {
        // Found by the synthesizer (klp synth --seed 27 --functions 40
        // --mutations 1): units reordered, every static of a unit that
        // moved was reported removed and new.
        let orig = ["a.c", "b.c", "c.c", "core.c", "core.c"];
        let patched = ["c.c", "core.c", "a.c", "b.c", "core.c"];
        assert_eq!(align_by_name(&orig, &patched), vec![(0, 2), (1, 3), (2, 0), (3, 1), (4, 4)]);
    }

    #[test]
    fn alignment_skips_the_side_that_agrees_again_sooner() {
        // `core` was removed before `init`, `main`; `util` and another
        // `core` were added after them: skip one original, not three patched.
        let (orig, patched) = (["core", "init", "main"], ["init", "main", "util", "core"]);
        assert_eq!(align_in_order(&orig, &patched), vec![(1, 0), (2, 1)]);
        // And the other way round: a unit added in front.
        let (orig, patched) = (["init", "main", "util", "core"], ["core", "init", "main"]);
        assert_eq!(align_in_order(&orig, &patched), vec![(0, 1), (1, 2)]);
    }

    #[test]
    fn numeric_suffixes_are_digits_after_the_last_dot() {
        for (name, numbered) in [("limit.0", true), ("count.12", true), ("limit", false), ("show.isra", false)] {
            assert_eq!(has_numeric_suffix(name), numbered, "{name}");
        }
        assert!(!has_numeric_suffix("x.") && !has_numeric_suffix("x.1a"));
    }

    #[test]
    fn locals_without_files_may_pair_unless_their_file_is_unpaired() {
        let none = traits(true, None);
        assert!(maybe_same_file(&none, &none));
        let unpaired = Traits { unpaired_file: true, ..none };
        assert!(!maybe_same_file(&none, &unpaired));
        assert!(!maybe_same_file(&none, &traits(true, Some(1))));
        assert!(maybe_same_file(&traits(false, None), &traits(true, Some(1))), "a global may become static");
    }

    #[test]
    fn the_checksum_level_pairs_within_a_file_only_by_size_and_contents() {
        let t = |file: u32, checksum: Option<u64>| Traits { checksum, ..traits(true, Some(file)) };
        // Two statics of one file that only their contents tell apart, and
        // another file's copy with the same contents as the first.
        let o = [(SymbolId(10), t(1, Some(1))), (SymbolId(11), t(1, Some(2)))];
        let p = [(SymbolId(20), t(1, Some(2))), (SymbolId(21), t(1, Some(1))), (SymbolId(22), t(2, Some(1)))];
        assert_eq!(funnel(&o[0].1, &o, &p), Some((1, PairReason::Checksum)));
        assert_eq!(funnel(&o[1].1, &o, &p), Some((0, PairReason::Checksum)));
        // Equal contents but another size, or no checksum: no pair.
        let other_size = [(SymbolId(20), Traits { size: 16, ..t(1, Some(1)) }), (SymbolId(21), t(1, Some(2)))];
        assert_eq!(funnel(&o[0].1, &o, &other_size), None);
        let unknown = [(SymbolId(10), t(1, None)), (SymbolId(11), t(1, None))];
        assert_eq!(funnel(&unknown[0].1, &unknown, &unknown), None);
    }

    #[test]
    fn position_pairs_only_equal_counts_of_two_or_more() {
        let one = |id: u32| (SymbolId(id), traits(true, Some(1)));
        let run = |o: &[(SymbolId, Traits)], p: &[(SymbolId, Traits)]| {
            let (mut o, mut p, mut pairs) = (o.to_vec(), p.to_vec(), Vec::new());
            pair_by_position(&mut o, &mut p, &mut pairs);
            pairs.len()
        };
        assert_eq!(run(&[one(10), one(11), one(12)], &[one(20), one(21)]), 0, "a static went: which one?");
        assert_eq!(run(&[one(10)], &[one(20)]), 0, "one of each is the funnel's to pair");
        assert_eq!(run(&[one(10), one(11)], &[one(20), one(21)]), 2);
    }

    fn traits(local: bool, file: Option<u32>) -> Traits {
        Traits {
            local,
            file: file.map(SymbolId),
            unpaired_file: false,
            size: 8,
            checksum: Some(1),
            summed: true,
            promoted: false,
        }
    }

    #[test]
    fn every_symbol_type_has_its_own_nonzero_bit() {
        let bits: u8 = ALL_KINDS.iter().map(|&k| kind_bit(k)).fold(0, |all, b| {
            assert_eq!(all & b, 0, "two types share a bit");
            all | b
        });
        assert_eq!(bits, (1 << ALL_KINDS.len()) - 1);
        assert_eq!(bits & DOTTED, 0, "a type shares the dotted bit");
    }

    #[test]
    fn file_buckets_and_checksums_on_demand_pair_as_the_whole_eager_funnel() {
        // Random groups of statics (files 1-4 or none, some of a patched
        // file without twin, two sizes, three contents): the funnel by file
        // with checksums asked for on demand pairs exactly as the plain
        // funnel over the whole group with every checksum known, and leaves
        // the rest in the same order.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut groups_with_pairs = 0;
        for _ in 0..400 {
            let mut side = |base: u32, patched: bool| -> Vec<(SymbolId, Traits)> {
                (0..8 + next(24) as u32)
                    .map(|i| {
                        let file = [None, Some(1), Some(2), Some(3), Some(4)][next(5) as usize];
                        let traits = Traits {
                            local: true,
                            file: file.map(SymbolId),
                            unpaired_file: patched && file.is_none() && next(2) == 0,
                            size: 8 << next(2),
                            checksum: Some(next(3)),
                            summed: true,
                            promoted: false,
                        };
                        (SymbolId(base + i), traits)
                    })
                    .collect()
            };
            let (o, p) = (side(1000, false), side(2000, true));
            let (mut eo, mut ep, mut eager) = (o.clone(), p.clone(), Vec::new());
            funnel_rounds(&mut eo, &mut ep, &mut eager, &|_, _| unreachable!("all known"));
            let sum_of = |id: SymbolId| o.iter().chain(&p).find(|(x, _)| *x == id).unwrap().1.checksum;
            let unknown = |v: &[(SymbolId, Traits)]| -> Vec<(SymbolId, Traits)> {
                v.iter().map(|&(id, t)| (id, Traits { checksum: None, summed: false, ..t })).collect()
            };
            let (mut lo, mut lp, mut lazy) = (unknown(&o), unknown(&p), Vec::new());
            pair_by_funnel(&mut lo, &mut lp, &mut lazy, &|_, id| sum_of(id));
            let key = |v: &[Twin]| {
                let mut k: Vec<(SymbolId, SymbolId)> = v.iter().map(|t| (t.orig.0, t.patched.0)).collect();
                k.sort();
                k
            };
            assert_eq!(key(&lazy), key(&eager));
            let ids = |v: &[(SymbolId, Traits)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
            assert_eq!((ids(&lo), ids(&lp)), (ids(&eo), ids(&ep)));
            groups_with_pairs += usize::from(!eager.is_empty());
        }
        assert!(groups_with_pairs > 300, "{groups_with_pairs} of 400 groups paired anything");
    }

    #[test]
    fn funnel_pairs_same_named_statics_by_file() {
        // Two statics `foo` in files 1 and 2 on both sides.
        let o = [(SymbolId(10), traits(true, Some(1))), (SymbolId(11), traits(true, Some(2)))];
        let p = [(SymbolId(20), traits(true, Some(2))), (SymbolId(21), traits(true, Some(1)))];
        assert_eq!(funnel(&o[0].1, &o, &p), Some((1, PairReason::Name)));
        assert_eq!(funnel(&o[1].1, &o, &p), Some((0, PairReason::Name)));
    }

    #[test]
    fn funnel_follows_a_scope_change() {
        // A global that became static in its file.
        let o = [(SymbolId(10), traits(false, None))];
        let p = [(SymbolId(20), traits(true, Some(1)))];
        assert_eq!(funnel(&o[0].1, &o, &p), Some((0, PairReason::Name)));
    }

    #[test]
    fn funnel_refuses_to_guess_between_equals() {
        // Two identical statics in one file: nothing tells them apart.
        let o = [(SymbolId(10), traits(true, Some(1))), (SymbolId(11), traits(true, Some(1)))];
        let p = [(SymbolId(20), traits(true, Some(1))), (SymbolId(21), traits(true, Some(1)))];
        assert_eq!(funnel(&o[0].1, &o, &p), None);
        let (mut o, mut p) = (o.to_vec(), p.to_vec());
        let mut pairs = Vec::new();
        pair_by_position(&mut o, &mut p, &mut pairs);
        let got: Vec<(u32, u32)> = pairs.iter().map(|t| (t.orig.0.0, t.patched.0.0)).collect();
        assert_eq!(got, vec![(10, 20), (11, 21)], "equal counts in one file pair by position");
    }
}
