//! The quick key of a function: its checksum without decoding it.
//!
//! A function's exact checksum ([`super::function_checksum`]) decodes every
//! instruction. Almost all of a `vmlinux.o`'s functions are the same in both
//! objects, and for those the decoding says nothing new. The quick key hashes
//! what the exact checksum is a function of, without decoding:
//!
//! - the raw bytes: equal bytes decode to equal instructions, so every
//!   instruction boundary, every PC-relative bias (the distance from a
//!   relocated field to the end of its instruction) and every branch
//!   displacement is the same on both sides;
//! - each relocation's offset in the function, type and meaning, resolved as
//!   the exact checksum resolves it but for *every* bias an instruction
//!   allows (1 to 15 bytes), so that whatever the decoder would find, equal
//!   keys mean equal targets;
//! - the symbols of the function's section and where the function starts in
//!   it: a branch without relocation is hashed by the symbol it lands in,
//!   and where that is depends on them;
//! - the special-section entries and `.cold` parts, as the exact checksum.
//!
//! So equal quick keys imply equal exact checksums, and only functions whose
//! keys differ from their twin's (or that have no key) are ever decoded.
//! A relocation whose meaning depends on the bias in a way the key cannot
//! capture (anonymous code, which is named by the snippet where the bias
//! lands; before the start of a string or constant-pool section) gives the
//! function no key: it is decoded. Keys that named anonymous code by the
//! snippet at each of the 15 offsets cost more than decoding the few
//! hundred functions that have such references.

use std::borrow::Cow;

use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_64;

use super::{ColdChildren, Refs, Resolved, Target, entry_digest_in, strip_numeric_suffix};
use crate::elf::{ElfObject, Reloc, Section, SectionId, SymbolId, reloc};
use crate::kernel::special::SpecialIndex;

/// The longest x86 instruction: a PC-relative field ends at most this far
/// from where it starts.
const MAX_BIAS: i64 = 15;

/// How many relocations ahead a key asks for the target's place.
const PREFETCH_AHEAD: usize = 4;

/// Per section with many symbols, what a branch without relocation can
/// land in; a small section's environment is made for each key of it
/// ([`SectionEnvs::of`]). By section, sorted: a handful of a `vmlinux.o`'s
/// 165,000 sections have one, where a slot for each was 5 MB of pages.
pub struct SectionEnvs(Vec<(SectionId, SectionEnv)>);

/// The most symbols a section may have for its environment to be made
/// for each of its keys: at most this many symbol reads a key, which the
/// key reads again anyway. Made ahead, in a pass of their own, the
/// environments of a `vmlinux.o`'s 125,000 one-function sections had left
/// the cache by the time the keys read the same symbols; a merged `.text`
/// of 100,000 functions needs its environment made once.
const SMALL_SECTION: usize = 32;

#[derive(Clone)]
struct SectionEnv {
    /// The section's name as the exact checksum names anonymous code, and
    /// its named symbols in symbol-table order (`symbol_at` breaks ties by
    /// index) with everything `symbol_at` and the target's name use.
    digest: u64,
    /// Its named symbols that look like `.cold` parts, each after the function it was
    /// split from (its own part in that function's key), sorted by that
    /// function: a merged `.text` holds thousands of functions and their
    /// cold parts, and asking each function about every part of its
    /// section was quadratic (30 s of a 100k-function diff).
    cold_like: Vec<(Option<SymbolId>, SymbolId)>,
}

impl SectionEnvs {
    pub fn build(obj: &ElfObject) -> Self {
        Self::made_ahead_above(obj, SMALL_SECTION)
    }

    /// The environments of the sections with more than `small` symbols.
    fn made_ahead_above(obj: &ElfObject, small: usize) -> Self {
        let big = obj.sections.par_iter().filter(|s| has_env(s) && obj.symbols_in_table_order(s.id).len() > small);
        SectionEnvs(big.map_init(Vec::new, |buf, s| (s.id, env(obj, s, buf))).collect())
    }

    /// The environment of `sec`; `None` for a section without code.
    fn of<'e>(&'e self, obj: &ElfObject, sec: &Section, buf: &mut Vec<u8>) -> Option<Cow<'e, SectionEnv>> {
        if !has_env(sec) {
            return None;
        }
        Some(match self.0.binary_search_by_key(&sec.id, |(id, _)| *id) {
            Ok(k) => Cow::Borrowed(&self.0[k].1),
            Err(_) => Cow::Owned(env(obj, sec, buf)),
        })
    }
}

/// Whether keys of functions in `sec` have an environment: code in the file.
fn has_env(sec: &Section) -> bool {
    sec.is_exec() && !sec.is_nobits()
}

fn env(obj: &ElfObject, sec: &Section, buf: &mut Vec<u8>) -> SectionEnv {
    let by_id = obj.symbols_in_table_order(sec.id);
    buf.clear();
    feed_str(buf, strip_numeric_suffix(sec.name));
    for &id in by_id {
        let s = obj.symbol(id);
        buf.extend_from_slice(&s.value.to_le_bytes());
        buf.extend_from_slice(&s.size.to_le_bytes());
        buf.push(s.kind as u8);
        buf.push(s.is_prefix() as u8);
        // The name by its hash, as `feed_symbol` names references: the
        // bytes were a second read of every function's name.
        buf.extend_from_slice(&obj.place(id).name_hash.to_le_bytes());
    }
    let mut cold_like: Vec<(Option<SymbolId>, SymbolId)> =
        by_id.iter().filter(|&&id| obj.symbol(id).is_cold_child()).map(|&id| (obj.cold_parent(id), id)).collect();
    cold_like.sort_unstable();
    SectionEnv { digest: xxh3_64(buf), cold_like }
}

fn feed_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Buffers one thread reuses for the keys of many functions: a
/// `vmlinux.o` has 125k functions, and millions of relocations and special
/// entries in them.
#[derive(Default)]
pub struct KeyScratch {
    /// For data objects' checksums, computed in the same pass.
    pub data: Vec<u8>,
    key: Vec<u8>,
    entry: Vec<u8>,
    changes: Vec<u64>,
    over: Vec<(u64, Option<SymbolId>)>,
    /// For the environments of small sections.
    env: Vec<u8>,
}

/// The quick key of function `id` (with its `.cold` parts), or `None` when
/// one of its relocations can only be resolved by decoding.
pub fn function_key(
    refs: Refs<'_, '_>,
    specials: &SpecialIndex,
    cold: &ColdChildren,
    envs: &SectionEnvs,
    id: SymbolId,
    scratch: &mut KeyScratch,
) -> Option<u64> {
    let mut key = std::mem::take(&mut scratch.key);
    let found = part_key(refs, specials, cold, envs, id, &mut key, scratch);
    scratch.key = key;
    found
}

/// The key of one part (the function, or one of its `.cold` parts, which
/// have none of their own), from one buffer hashed at once: most functions
/// are a few hundred bytes, where a streaming hasher's copying costs more
/// than the hash.
fn part_key(
    refs: Refs<'_, '_>,
    specials: &SpecialIndex,
    cold: &ColdChildren,
    envs: &SectionEnvs,
    id: SymbolId,
    buf: &mut Vec<u8>,
    scratch: &mut KeyScratch,
) -> Option<u64> {
    let refs = Refs { this: refs.this.or(Some(id)), ..refs };
    let obj = refs.obj;
    let sym = obj.symbol(id);
    let sec = obj.symbol_section(sym)?;
    let start = sym.value.min(sec.data.len() as u64);
    let end = sym.end().min(sec.data.len() as u64);
    let code = &sec.data[start as usize..end as usize];
    buf.clear();
    buf.extend_from_slice(&(code.len() as u64).to_le_bytes());
    buf.extend_from_slice(&xxh3_64(code).to_le_bytes());
    let env = envs.of(obj, sec, &mut scratch.env)?;
    feed_env(refs, &env, obj.symbols_in_table_order(sec.id), start, buf);
    let relocs = sec.relocs_in(start, end);
    buf.extend_from_slice(&(relocs.len() as u64).to_le_bytes());
    for (k, r) in relocs.iter().enumerate() {
        if let Some(ahead) = relocs.get(k + PREFETCH_AHEAD) {
            obj.prefetch_place(ahead.symbol());
        }
        buf.extend_from_slice(&(r.offset() - start).to_le_bytes());
        buf.extend_from_slice(&r.r_type().to_le_bytes());
        feed_meaning(refs, r, buf, scratch)?;
    }
    let entries = specials.entries_of(id);
    buf.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        buf.extend_from_slice(&entry_digest_in(refs, e, &mut scratch.entry).digest.to_le_bytes());
    }
    let children = cold.get(&id).map_or(&[][..], Vec::as_slice);
    buf.extend_from_slice(&(children.len() as u64).to_le_bytes());
    for &c in children {
        // Its own buffer: `buf` holds the parent's key so far.
        let key = part_key(refs, specials, &ColdChildren::default(), envs, c, &mut Vec::new(), scratch)?;
        buf.extend_from_slice(&key.to_le_bytes());
    }
    Some(xxh3_64(buf))
}

fn feed_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// Where the function starts in its section, and which of the section's
/// symbols are the function itself or its `.cold` parts (named by part,
/// not by name, in the exact checksum).
fn feed_env(refs: Refs, env: &SectionEnv, by_id: &[SymbolId], start: u64, buf: &mut Vec<u8>) {
    buf.extend_from_slice(&env.digest.to_le_bytes());
    buf.extend_from_slice(&start.to_le_bytes());
    // The function, then the section's cold-like symbols that are its own
    // parts in symbol-table order: the function itself if it looks like a
    // `.cold` part, and those split from it.
    if let Some(this) = refs.this {
        let feed = |id: SymbolId, buf: &mut Vec<u8>| {
            if let (Ok(at), Some(part)) = (by_id.binary_search(&id), refs.own_part(id)) {
                buf.extend_from_slice(&(at as u64).to_le_bytes());
                feed_str(buf, part);
            }
        };
        feed(this, buf);
        if !env.cold_like.is_empty() {
            let from = env.cold_like.partition_point(|&(parent, _)| parent < Some(this));
            let children = env.cold_like[from..].iter().take_while(|&&(parent, _)| parent == Some(this));
            let mut this_pending = refs.obj.symbol(this).is_cold_child() && by_id.binary_search(&this).is_ok();
            for &(_, child) in children {
                if this_pending && this < child {
                    feed(this, buf);
                    this_pending = false;
                }
                feed(child, buf);
            }
            if this_pending {
                feed(this, buf);
            }
        }
    }
    buf.push(b'.');
}

/// What relocation `r` refers to, for every bias its instruction may give
/// it; `None` when that cannot be said without knowing the bias.
fn feed_meaning(refs: Refs, r: &Reloc, buf: &mut Vec<u8>, scratch: &mut KeyScratch) -> Option<()> {
    if !reloc::is_pc_relative(r.r_type()) {
        // No bias: exactly what the exact checksum resolves.
        buf.push(b'X');
        match Target::resolve_ref(refs.obj, r, r.addend(), Some(refs)) {
            Resolved::Symbol(id, offset) => feed_symbol(refs, id, offset, buf),
            Resolved::Other(target) => target.feed(buf),
        }
        return Some(());
    }
    let obj = refs.obj;
    let place = obj.place(r.symbol());
    let Some(section) = place.section() else {
        // An undefined symbol: its name and the offset, shifted by the bias.
        buf.push(b'U');
        feed_symbol(refs, r.symbol(), r.addend(), buf);
        return Some(());
    };
    if !place.is_section_symbol && !place.in_merged_section {
        // The offset into the symbol, shifted by the bias.
        buf.push(b'S');
        feed_symbol(refs, r.symbol(), r.addend(), buf);
        return Some(());
    }
    let sec = obj.section(section);
    // The offsets in the section that biases 1..=MAX_BIAS give, as `referent` computes them.
    let first = place.base().checked_add(r.addend())?.checked_add(1)?;
    let last = first.checked_add(MAX_BIAS - 1)?;
    if sec.is_strings() {
        buf.push(b'"');
        feed_bytes(buf, string_window(sec, first, last)?);
        return Some(());
    }
    if sec.is_constant_pool() {
        buf.push(b'K');
        return feed_constant_window(buf, sec, first, last);
    }
    if !place.is_section_symbol {
        buf.push(b'S');
        feed_symbol(refs, r.symbol(), r.addend(), buf);
        return Some(());
    }
    buf.push(b'P');
    feed_places(refs, sec, first, last, buf, scratch)
}

/// What the offsets `[first, last]` of `sec` mean as the exact checksum
/// names a place by section symbol: the named symbol covering each (by
/// name, or own part, and the offset into it), else anonymous data by its
/// offset. Each stretch of one meaning is fed with its start relative to
/// `first` and its meaning at `first`: the meaning at `first + k` is that
/// shifted by `k`. Anonymous code (a snippet, hashed by content from where
/// the bias lands) has no such form.
fn feed_places(
    refs: Refs,
    sec: &Section,
    first: i64,
    last: i64,
    buf: &mut Vec<u8>,
    scratch: &mut KeyScratch,
) -> Option<()> {
    // Made only where it is fed: the name is a cache miss for each of
    // 50,000 references into a `vmlinux.o`'s sections, nearly all named.
    let anonymous = || Target::Anonymous { section: strip_numeric_suffix(sec.name), offset: first };
    if first < 0 {
        // Before the section: anonymous, whatever the section holds.
        buf.extend_from_slice(&0u64.to_le_bytes());
        anonymous().feed(buf);
    }
    if last < 0 {
        return Some(());
    }
    let from = first.max(0) as u64;
    let KeyScratch { changes, over, .. } = scratch;
    refs.obj.symbols_over_into(sec.id, from, last as u64, changes, over);
    for &(at, named) in over.iter() {
        buf.extend_from_slice(&(at as i64 - first).to_le_bytes());
        match named {
            Some(id) => feed_symbol(refs, id, first.wrapping_sub(refs.obj.place(id).value as i64), buf),
            None if sec.is_exec() && !sec.is_nobits() => return None,
            None => anonymous().feed(buf),
        }
    }
    Some(())
}

/// Named symbol `id` at `offset` as [`Refs::symbol_target`] names it, its
/// name fed as [`SymbolPlace::name_hash`](crate::elf::SymbolPlace): the
/// name's bytes are a cache miss for each of a `vmlinux.o`'s million
/// references, the place is read anyway.
fn feed_symbol(refs: Refs, id: SymbolId, offset: i64, buf: &mut Vec<u8>) {
    let place = refs.obj.place(id);
    let may_be_own = refs.this == Some(id) || place.is_cold_child;
    if refs.rename.is_some() || may_be_own {
        return refs.symbol_target(id, offset).feed(buf);
    }
    buf.push(b'h');
    buf.extend_from_slice(&place.name_hash.to_le_bytes());
    buf.extend_from_slice(&offset.to_le_bytes());
}

/// The entry size of constant pool `sec`, then its bytes holding the
/// entries at `[first, last]`, cut at the section's end: the entry at
/// `first + k` is the window's `k..k + entsize`, or nothing (as the exact
/// checksum has it) where that reaches past the window.
fn feed_constant_window(buf: &mut Vec<u8>, sec: &Section, first: i64, last: i64) -> Option<()> {
    let (first, last) = (usize::try_from(first).ok()?, usize::try_from(last).ok()?);
    let end = last.checked_add(sec.entsize as usize)?.min(sec.data.len());
    buf.extend_from_slice(&sec.entsize.to_le_bytes());
    feed_bytes(buf, sec.data.get(first.min(end)..end)?);
    Some(())
}

/// The bytes of string section `sec` from `first` up to the first NUL at or
/// after `last`, or the section's end: the string at `first + k` is the
/// window's from `k` up to its first NUL or its end, and nothing where `k`
/// is past the end, as the exact checksum reads it.
fn string_window<'d>(sec: &Section<'d>, first: i64, last: i64) -> Option<&'d [u8]> {
    let (first, last) = (usize::try_from(first).ok()?, usize::try_from(last).ok()?);
    let last = last.min(sec.data.len());
    let tail = &sec.data[last..];
    let end = last + tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    sec.data.get(first.min(end)..end)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::diff::checksum::{Checksum, Side, cold_children, compute, function_checksum, is_code};
    use crate::elf::SymbolKind;
    use crate::kernel::EntrySizes;

    const OBJECTS: &[(&str, &[u8])] = &[
        ("mem.orig.o", include_bytes!("../../../corpus/kernel/def-scenario/mem.orig.o")),
        ("mem.patched.o", include_bytes!("../../../corpus/kernel/def-scenario/mem.patched.o")),
        ("show_mem.orig.o", include_bytes!("../../../corpus/kernel/def-scenario/show_mem.orig.o")),
        ("show_mem.patched.o", include_bytes!("../../../corpus/kernel/def-scenario/show_mem.patched.o")),
        ("namespace.orig.o", include_bytes!("../../../corpus/kernel/slim-scenario/namespace.orig.o")),
        ("namespace.patched.o", include_bytes!("../../../corpus/kernel/slim-scenario/namespace.patched.o")),
        ("pktdemo.orig.o", include_bytes!("../../../corpus/objects/pktdemo.orig.o")),
        ("pktdemo.patched.o", include_bytes!("../../../corpus/objects/pktdemo.patched.o")),
    ];

    #[test]
    fn equal_quick_keys_mean_equal_exact_checksums() {
        // Across every function of several objects (the pairs and
        // unrelated ones): a key never stands for two exact checksums.
        let mut seen: std::collections::HashMap<u64, (Checksum, String)> = Default::default();
        let (mut keyed, mut functions) = (0, 0);
        for (name, data) in OBJECTS {
            let obj = ElfObject::parse(Path::new(name), data).unwrap();
            let specials = SpecialIndex::build(&obj, &EntrySizes::default()).unwrap();
            let cold = cold_children(&obj);
            // Every environment made ahead, and none: the same keys.
            let (ahead, per_key) =
                (SectionEnvs::made_ahead_above(&obj, 0), SectionEnvs::made_ahead_above(&obj, usize::MAX));
            for s in obj.symbols.iter().filter(|s| s.kind == SymbolKind::Func && is_code(&obj, s.id)) {
                functions += 1;
                let exact = function_checksum(Refs::plain(&obj), &specials, &cold, s.id);
                let key_with =
                    |envs| function_key(Refs::plain(&obj), &specials, &cold, envs, s.id, &mut KeyScratch::default());
                let key = key_with(&ahead);
                assert_eq!(key, key_with(&per_key), "{name}:{}", s.name);
                let Some(key) = key else { continue };
                keyed += 1;
                let first = seen.entry(key).or_insert((exact, format!("{name}:{}", s.name)));
                assert_eq!(first.0, exact, "{name}:{} and {} share a quick key", s.name, first.1);
            }
        }
        assert!(keyed * 10 > functions * 9, "{keyed} of {functions} functions have a quick key");
    }

    #[test]
    fn unchanged_twins_are_not_decoded() {
        // The pair's unchanged functions compare equal by key alone.
        let load = |name: &str, data: &'static [u8]| ElfObject::parse(Path::new(name), data).unwrap();
        let (a, b) = (load("mem.orig.o", OBJECTS[0].1), load("mem.patched.o", OBJECTS[1].1));
        let index = |o: &ElfObject| {
            let specials = SpecialIndex::build(o, &EntrySizes::default()).unwrap();
            let cold = cold_children(o);
            let sums = compute(o, &specials, &cold);
            (specials, cold, sums)
        };
        let ((sa, ca, ka), (sb, cb, kb)) = (index(&a), index(&b));
        let side_a = Side { obj: &a, sums: &ka, specials: &sa, cold: &ca };
        let side_b = Side { obj: &b, sums: &kb, specials: &sb, cold: &cb };
        let (mut pairs, mut without_decoding) = (0, 0);
        for s in a.symbols.iter().filter(|s| s.kind == SymbolKind::Func && is_code(&a, s.id)) {
            let [t] = *b.symbols_named(s.name) else { continue };
            let before = ka.decoded() + kb.decoded();
            let same = side_a.same(s.id, &side_b, t);
            pairs += 1;
            if ka.decoded() + kb.decoded() == before {
                assert_eq!(same, Some(true), "{} compared unequal without decoding", s.name);
                without_decoding += 1;
            }
        }
        // The patch changes one function; a few more moved strings.
        assert!(pairs > 10 && without_decoding + 5 >= pairs, "{without_decoding} of {pairs} without decoding");
    }

    /// A string or constant-pool section holding `data`, as `parse` makes one.
    fn pool(data: &[u8], entsize: u64, strings: bool) -> Section<'_> {
        use object::elf::{SHF_ALLOC, SHF_MERGE, SHF_STRINGS, SHT_PROGBITS};
        let flags = SHF_ALLOC.0 | SHF_MERGE.0 | if strings { SHF_STRINGS.0 } else { 0 };
        Section {
            id: crate::elf::SectionId(1),
            name: if strings { ".rodata.str1.1" } else { ".rodata.cst8" },
            sh_type: SHT_PROGBITS.0,
            flags,
            addralign: 1,
            entsize,
            size: data.len() as u64,
            link: 0,
            info: 0,
            file_offset: 0x40,
            data,
            relocs: Default::default(),
            rela_section: None,
            section_symbol: None,
        }
    }

    #[test]
    fn windows_say_what_the_exact_checksum_reads_at_every_offset() {
        // Up to and past the end of each section, where the window is cut:
        // the string or entry at each offset the window covers is the one
        // the exact checksum reads there.
        let bytes: Vec<u8> = (0..100u32).map(|i| if i % 7 == 3 { 0 } else { b'a' + (i % 26) as u8 }).collect();
        let sections = [
            pool(&bytes, 1, true),
            pool(&bytes[..bytes.len() - 1], 1, true),
            pool(&bytes[..40], 4, false),
            pool(&bytes[..48], 8, false),
            pool(&bytes[..64], 16, false),
        ];
        let (mut strings, mut constants) = (0, 0);
        for sec in &sections {
            assert!(sec.is_strings() || sec.is_constant_pool());
            let len = sec.data.len() as i64;
            for first in 0..len + 3 {
                let last = first + MAX_BIAS - 1;
                for k in 0..MAX_BIAS {
                    let at = (first + k) as u64;
                    if sec.is_strings() {
                        let window = string_window(sec, first, last).unwrap();
                        let from = window.get(k as usize..).unwrap_or_default();
                        let read = &from[..from.iter().position(|&b| b == 0).unwrap_or(from.len())];
                        assert_eq!(read, sec.c_str_at(at).unwrap_or_default(), "{}+{at:#x}", sec.name);
                        strings += 1;
                    } else {
                        let mut buf = Vec::new();
                        feed_constant_window(&mut buf, sec, first, last).unwrap();
                        let entsize = u64::from_le_bytes(buf[..8].try_into().unwrap()) as usize;
                        let window = &buf[16..];
                        let entry = window.get(k as usize..k as usize + entsize).unwrap_or_default();
                        let exact = sec.data.get(at as usize..at as usize + sec.entsize as usize);
                        assert_eq!(entry, exact.unwrap_or_default(), "{}+{at:#x}", sec.name);
                        constants += 1;
                    }
                }
            }
        }
        assert!(strings > 1000 && constants > 1000, "{strings} string and {constants} constant offsets checked");
    }

    #[test]
    fn bias_matters_exactly_when_symbol_at_differs_between_biases() {
        let (mut asked, mut mattered) = (0, 0);
        for (name, data) in OBJECTS {
            let obj = ElfObject::parse(Path::new(name), data).unwrap();
            for sec in obj.sections.iter().filter(|s| s.is_exec()) {
                for r in sec.relocs.iter().filter(|r| reloc::is_pc_relative(r.r_type())) {
                    // The named symbol `referent` gives for each bias an
                    // instruction allows.
                    let named: Vec<Option<SymbolId>> = (1..=MAX_BIAS)
                        .map(|bias| match obj.referent(r, bias) {
                            crate::elf::Referent::Place { named, .. } => named.symbol(),
                            crate::elf::Referent::External(id) => Some(id),
                        })
                        .collect();
                    let differs = named.windows(2).any(|w| w[0] != w[1]);
                    let starts_before = obj.place(r.symbol()).is_section_symbol && r.addend() + 1 < 0;
                    let matters = obj.bias_matters(r);
                    // Before the section start `bias_matters` answers yes
                    // without looking; elsewhere exactly when an answer differs.
                    assert!(matters || !differs, "{name}:{}+{:#x}: {named:?}", sec.name, r.offset());
                    if !starts_before {
                        assert_eq!(matters, differs, "{name}:{}+{:#x}: {named:?}", sec.name, r.offset());
                    }
                    asked += 1;
                    mattered += usize::from(differs);
                }
            }
        }
        // Both answers occur: a call into a neighbouring function's start
        // is one where a bias of more than 4 lands elsewhere.
        assert!(asked > 1000 && mattered > 0, "{mattered} of {asked} relocations where the bias matters");
    }

    #[test]
    fn symbols_over_agrees_with_symbol_at_everywhere() {
        for (name, data) in OBJECTS {
            let obj = ElfObject::parse(Path::new(name), data).unwrap();
            for sec in obj.sections.iter().filter(|s| obj.symbols_in(s.id).len() > 0) {
                let size = sec.size.min(4096);
                for first in 0..size {
                    let last = first + MAX_BIAS as u64 - 1;
                    let over = obj.symbols_over(sec.id, first, last);
                    assert_eq!(over[0].0, first);
                    for at in first..=last {
                        let k = over.partition_point(|&(o, _)| o <= at) - 1;
                        assert_eq!(over[k].1, obj.symbol_at(sec.id, at), "{name}:{}+{at:#x}", sec.name);
                    }
                }
            }
        }
    }
}
