//! Symbols grouped by name (demangled, or full), as sorted arrays of name
//! hashes.
//!
//! A `vmlinux.o` has 300,000 names. A hash map from name to group hashed
//! each of them while it was built, and correlation then looked up every
//! original name in the patched object's map: a string hash, a probe and a
//! string compare, each a cache miss, 200,000 times. Here each name is
//! hashed once while the object is read ([`SymbolPlace::name_hash`]); the
//! index is the named symbols sorted by that hash, and two objects' groups
//! meet by merging two sorted arrays ([`NameIndex::common`]), with
//! one string compare per name both have: a hash alone never decides that
//! two names are equal.
//!
//! [`SymbolPlace::name_hash`]: super::SymbolPlace::name_hash

use std::ops::Range;

use rayon::iter::Either;
use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_64;

use super::{Symbol, SymbolId, SymbolKind};

/// The hash a name is indexed by; [`SymbolPlace::name_hash`] holds the
/// demangled name's.
///
/// [`SymbolPlace::name_hash`]: super::SymbolPlace::name_hash
pub fn name_hash(name: &str) -> u64 {
    xxh3_64(name.as_bytes())
}

/// Whether a symbol is indexed by name: sections are named by their
/// section, and an empty name names nothing.
pub(super) fn is_named(sym: &Symbol) -> bool {
    !sym.name.is_empty() && sym.kind != SymbolKind::Section
}

/// Which name of a symbol an index groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameKey {
    /// [`Symbol::demangled`]: correlation's groups.
    Demangled,
    /// The full name: [`ElfObject::symbols_named`](super::ElfObject::symbols_named).
    Full,
}

impl NameKey {
    fn of<'d>(self, sym: &Symbol<'d>) -> &'d str {
        match self {
            NameKey::Demangled => sym.demangled(),
            NameKey::Full => sym.name,
        }
    }
}

/// The named symbols sorted by the hash of their name (demangled or full,
/// [`NameKey`]), then, where two names share a hash, by that name, then by
/// index: each name's symbols are one run, in symbol-table order.
pub(super) struct NameIndex {
    key: NameKey,
    hashes: Vec<u64>,
    ids: Vec<SymbolId>,
    /// Where the hashes with each value of their top [`DIRECTORY_BITS`]
    /// bits start: a lookup bisects a handful of entries, not 300,000
    /// (eighteen cache misses, for every string a decoded function uses).
    directory: Vec<u32>,
    /// The hashes that more than one name has (almost always none), sorted.
    shared: Vec<u64>,
}

impl NameIndex {
    /// The index of the named symbols ([`is_named`]) each with the hash
    /// of its name as `key` takes it, gathered while the symbol table is
    /// read.
    pub(super) fn from_entries(key: NameKey, symbols: &[Symbol], unsorted: Vec<(u64, SymbolId)>) -> Self {
        let (mut entries, directory) = sort_by_bucket(&unsorted);
        let name_of = |id: SymbolId| key.of(&symbols[id.index()]);
        let mut shared = Vec::new();
        let runs: Vec<Range<usize>> = runs_of(&entries, |e| e.0).filter(|r| r.len() > 1).collect();
        for run in runs {
            let members = &mut entries[run];
            let first = name_of(members[0].1);
            if members[1..].iter().any(|e| name_of(e.1) != first) {
                shared.push(members[0].0);
                members.sort_unstable_by(|a, b| name_of(a.1).cmp(name_of(b.1)).then(a.1.cmp(&b.1)));
            }
        }
        let (hashes, ids): (Vec<u64>, Vec<SymbolId>) = entries.into_iter().unzip();
        NameIndex { key, hashes, ids, directory, shared }
    }

    /// The symbols whose name (as the index keys it) is `name`, in
    /// symbol-table order.
    pub(super) fn group<'a>(&'a self, symbols: &[Symbol], name: &str) -> &'a [SymbolId] {
        self.group_hashed(symbols, name, name_hash(name))
    }

    fn group_hashed<'a>(&'a self, symbols: &[Symbol], name: &str, h: u64) -> &'a [SymbolId] {
        let near = bucket_range(&self.directory, h);
        let lo = near.start + self.hashes[near.clone()].partition_point(|&x| x < h);
        let hi = lo + self.hashes[lo..near.end].partition_point(|&x| x == h);
        let run = &self.ids[lo..hi];
        let name_of = |id: &SymbolId| self.key.of(&symbols[id.index()]);
        if !self.is_shared(h) {
            // One name has this hash: `name`, or another.
            return match run.first() {
                Some(id) if name_of(id) == name => run,
                _ => &[],
            };
        }
        let from = run.partition_point(|id| name_of(id) < name);
        let to = from + run[from..].partition_point(|id| name_of(id) == name);
        &run[from..to]
    }

    /// Every name with its symbols, in the order of their hashes.
    #[cfg(test)]
    pub(super) fn groups<'a, 'd>(
        &'a self,
        symbols: &'a [Symbol<'d>],
    ) -> impl Iterator<Item = (&'d str, &'a [SymbolId])> + 'a {
        runs_of(&self.hashes, |&h| h).flat_map(move |run| self.names_in(symbols, run))
    }

    /// What `each` makes of every name both indexes have, with the symbols
    /// of each (`self`'s first), in the order of `self`'s first symbol of
    /// each. Made on every core as the names are found: a list of the
    /// names alone was 9 MB for a `vmlinux.o`, written and read once.
    pub(super) fn common<'a, 'd, T: Send, I: Iterator<Item = T>>(
        &'a self,
        symbols: &'a [Symbol<'d>],
        other: &'a NameIndex,
        other_symbols: &'a [Symbol],
        each: impl Fn(&'d str, &'a [SymbolId], &'a [SymbolId]) -> I + Sync,
    ) -> Vec<T> {
        // The runs of equal hashes both arrays have, found by merging them.
        let (ours, theirs) = (&self.hashes, &other.hashes);
        let run_end = |hashes: &[u64], at: usize| at + hashes[at..].iter().take_while(|&&h| h == hashes[at]).count();
        let mut both: Vec<(u32, u32, u32, u32)> = Vec::with_capacity(ours.len().min(theirs.len()));
        let (mut i, mut j) = (0, 0);
        while i < ours.len() && j < theirs.len() {
            match ours[i].cmp(&theirs[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    let (ie, je) = (run_end(ours, i), run_end(theirs, j));
                    // Symbol counts fit 32 bits (symbol ids are u32).
                    both.push((i as u32, ie as u32, j as u32, je as u32));
                    (i, j) = (ie, je);
                }
            }
        }
        // Compared in symbol-table order: both objects' symbols and names
        // are then read nearly in file order, where the hashes' order
        // made each a cache miss. Placed by our first symbol of each,
        // which no other run has, in one pass that only moves the runs.
        let mut by_first = vec![u32::MAX; symbols.len()];
        for (k, run) in both.iter().enumerate() {
            by_first[self.ids[run.0 as usize].index()] = k as u32;
        }
        let ordered: Vec<(u32, u32, u32, u32)> =
            by_first.into_iter().filter(|&k| k != u32::MAX).map(|k| both[k as usize]).collect();
        let name_of = |symbols: &'a [Symbol<'d>], id: SymbolId| self.key.of(&symbols[id.index()]);
        let any_shared = !(self.shared.is_empty() && other.shared.is_empty());
        ordered
            .into_par_iter()
            .flat_map_iter(|(a, b, c, d)| {
                let (ours, theirs) = (a as usize..b as usize, c as usize..d as usize);
                let shared = || {
                    let h = self.hashes[ours.start];
                    self.is_shared(h) || other.is_shared(h)
                };
                if any_shared && shared() {
                    let theirs = other.names_in(other_symbols, theirs);
                    let found = self.names_in(symbols, ours).into_iter().filter_map(move |(name, a)| {
                        let b = theirs.iter().find(|(n, _)| *n == name)?.1;
                        Some((name, a, b))
                    });
                    return Either::Left(found);
                }
                let name = name_of(symbols, self.ids[ours.start]);
                let same = other.key.of(&other_symbols[other.ids[theirs.start].index()]) == name;
                Either::Right(same.then(|| (name, &self.ids[ours], &other.ids[theirs])).into_iter())
            })
            .flat_map_iter(|(name, ours, theirs)| each(name, ours, theirs))
            .collect()
    }

    /// The names of one run of equal hashes, each with its symbols.
    fn names_in<'a, 'd>(&'a self, symbols: &'a [Symbol<'d>], run: Range<usize>) -> Vec<(&'d str, &'a [SymbolId])> {
        let shared = self.is_shared(self.hashes[run.start]);
        let ids = &self.ids[run];
        let name_of = |id: &SymbolId| self.key.of(&symbols[id.index()]);
        if !shared {
            return vec![(name_of(&ids[0]), ids)];
        }
        runs_of(ids, name_of).map(|r| (name_of(&ids[r.start]), &ids[r])).collect()
    }

    fn is_shared(&self, h: u64) -> bool {
        !self.shared.is_empty() && self.shared.binary_search(&h).is_ok()
    }
}

const DIRECTORY_BITS: u32 = 16;

fn bucket(h: u64) -> usize {
    (h >> (64 - DIRECTORY_BITS)) as usize
}

/// `entries` sorted (by hash, then value), and the directory of where each
/// bucket starts: one counting pass by the top bits of the hash, then each
/// bucket sorted alone. The hashes are uniform, so a bucket holds a
/// handful of entries; a comparison sort of all 300,000 cost more than
/// the rest of the index.
pub(crate) fn sort_by_bucket<T: Copy + Ord>(entries: &[(u64, T)]) -> (Vec<(u64, T)>, Vec<u32>) {
    let mut directory = vec![0u32; (1 << DIRECTORY_BITS) + 1];
    for &(h, _) in entries {
        directory[bucket(h) + 1] += 1;
    }
    for i in 1..directory.len() {
        directory[i] += directory[i - 1];
    }
    let mut next = directory.clone();
    // Every slot is written below; the copy only gives the vector its length.
    let mut sorted = entries.to_vec();
    for &entry in entries {
        let slot = &mut next[bucket(entry.0)];
        sorted[*slot as usize] = entry;
        *slot += 1;
    }
    for w in directory.windows(2) {
        sorted[w[0] as usize..w[1] as usize].sort_unstable();
    }
    (sorted, directory)
}

/// Where in a [`sort_by_bucket`] result the hashes in `h`'s bucket are.
pub(crate) fn bucket_range(directory: &[u32], h: u64) -> Range<usize> {
    match directory.get(bucket(h)..bucket(h) + 2) {
        Some(&[from, to]) => from as usize..to as usize,
        _ => 0..0,
    }
}

/// The maximal runs of `items` with equal keys.
fn runs_of<'a, T, K: PartialEq>(items: &'a [T], key: impl Fn(&T) -> K + 'a) -> impl Iterator<Item = Range<usize>> + 'a {
    let mut start = 0;
    std::iter::from_fn(move || {
        let first = key(items.get(start)?);
        let len = items[start + 1..].iter().position(|x| key(x) != first).map_or(items.len() - start, |n| n + 1);
        start += len;
        Some(start - len..start)
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::elf::ElfObject;
    use crate::elf::read::tests::with_functions;

    /// The index with each name hashed by `hash`.
    fn build_with(key: NameKey, symbols: &[Symbol], hash: impl Fn(&Symbol) -> u64) -> NameIndex {
        let entries = symbols.iter().filter(|s| is_named(s)).map(|s| (hash(s), s.id)).collect();
        NameIndex::from_entries(key, symbols, entries)
    }

    /// A hash under which many names collide: the shared-hash paths, which
    /// XXH3 all but never takes.
    fn colliding(name: &str) -> u64 {
        (name.len() % 3) as u64
    }

    fn parse(data: &[u8]) -> ElfObject<'_> {
        ElfObject::parse(Path::new("n.o"), data).unwrap()
    }

    fn by_definition(obj: &ElfObject, name: &str) -> Vec<SymbolId> {
        obj.symbols.iter().filter(|s| is_named(s) && s.demangled() == name).map(|s| s.id).collect()
    }

    const OURS: &[&str] = &["a", "bb", "a.1", "cc", "d", "bb", "e.isra.0", "ee", "f", "only_ours"];
    const THEIRS: &[&str] = &["cc", "a", "e", "d.2", "gg", "bb", "only_theirs", "f", "f"];

    #[test]
    fn bucket_sort_is_a_sort_and_its_directory_bounds_each_bucket() {
        // Spread hashes, hashes crowded in few buckets, and equal hashes
        // with ids out of order.
        let spread = (0..5000u64).map(|i| xxh3_64(&i.to_le_bytes()));
        let crowded = (0..5000u64).map(|i| ((i % 7) << 60) | ((i * 7919) % 1000));
        for hashes in [spread.collect::<Vec<_>>(), crowded.collect()] {
            let entries: Vec<(u64, SymbolId)> =
                hashes.iter().enumerate().map(|(i, &h)| (h, SymbolId((i as u32 * 31) % 5000))).collect();
            let (sorted, directory) = sort_by_bucket(&entries);
            let mut wanted = entries.clone();
            wanted.sort_unstable();
            assert_eq!(sorted, wanted);
            assert_eq!(directory.len(), (1 << DIRECTORY_BITS) + 1);
            for (b, w) in directory.windows(2).enumerate() {
                assert!(sorted[w[0] as usize..w[1] as usize].iter().all(|e| bucket(e.0) == b), "bucket {b}");
            }
            assert_eq!(directory[1 << DIRECTORY_BITS] as usize, entries.len());
        }
    }

    #[test]
    fn groups_are_exact_when_names_share_a_hash() {
        let data = with_functions(OURS);
        let obj = parse(&data);
        let index = build_with(NameKey::Demangled, &obj.symbols, |s| colliding(s.demangled()));
        assert!(!index.shared.is_empty(), "no hash is shared: the test tests nothing");
        let mut listed: Vec<&str> = Vec::new();
        for (name, ids) in index.groups(&obj.symbols) {
            assert_eq!(ids, by_definition(&obj, name), "group of {name}");
            listed.push(name);
        }
        let mut wanted: Vec<&str> =
            obj.symbols.iter().filter(|s| is_named(s)).map(|s| s.demangled()).collect::<Vec<_>>();
        wanted.sort_unstable();
        wanted.dedup();
        listed.sort_unstable();
        assert_eq!(listed, wanted, "each name listed once");
        for probe in OURS.iter().chain(&["e", "absent", "zz", "a.1"]) {
            let found = index.group_hashed(&obj.symbols, probe, colliding(probe));
            assert_eq!(found, by_definition(&obj, probe), "lookup of {probe}");
        }
    }

    #[test]
    fn common_names_are_exactly_those_both_have() {
        let (ours, theirs) = (with_functions(OURS), with_functions(THEIRS));
        let (a, b) = (parse(&ours), parse(&theirs));
        for hash in [|s: &Symbol| colliding(s.demangled()), |s: &Symbol| name_hash(s.demangled())] {
            let build = |o: &ElfObject| build_with(NameKey::Demangled, &o.symbols, hash);
            let (ia, ib) = (build(&a), build(&b));
            let common = ia.common(&a.symbols, &ib, &b.symbols, |n, x, y| std::iter::once((n, x, y)));
            let mut expected: Vec<&str> = Vec::new();
            for (name, _) in ia.groups(&a.symbols) {
                if !by_definition(&b, name).is_empty() {
                    expected.push(name);
                }
            }
            expected.sort_unstable();
            let mut names: Vec<&str> = common.iter().map(|c| c.0).collect();
            names.sort_unstable();
            assert_eq!(names, expected);
            for (name, x, y) in &common {
                assert_eq!(*x, by_definition(&a, name), "ours of {name}");
                assert_eq!(*y, by_definition(&b, name), "theirs of {name}");
            }
            // In the order of our first symbols.
            assert!(common.windows(2).all(|w| w[0].1[0] < w[1].1[0]));
        }
    }
}
