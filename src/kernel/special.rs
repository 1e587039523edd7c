//! The kernel's special sections: arrays of fixed-size entries that describe
//! code (exception fixups, alternatives, jump labels, bug sites...).
//!
//! An entry belongs to the function its first code reference points at. The
//! entry size comes, in order of trust, from the user (`--entsize`), from
//! `sh_entsize`, from the known size for that section when it fits the
//! section's relocation layout, or from the layout itself: the smallest size
//! at which every entry carries relocations of the same types at the same
//! offsets.

use std::collections::BTreeMap;
use std::ops::Range;

use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

use crate::elf::{ElfObject, Referent, Reloc, Section, SectionId, SymbolCursor, SymbolId, SymbolKind};
use crate::error::{Context, Error, Result};

/// The special sections we know, with the entry size of recent x86-64
/// kernels (used only when it agrees with the section's relocations).
const KNOWN: &[(&str, u64)] = &[
    ("__ex_table", 12),
    ("__bug_table", 12),
    ("__jump_table", 16),
    (".altinstructions", 14),
    (".parainstructions", 16),
    (".static_call_sites", 8),
    (".smp_locks", 4),
    ("__mcount_loc", 8),
    (".kcfi_traps", 4),
];

/// Older layouts seen in real objects, tried after the current ones.
const LEGACY: &[(&str, u64)] = &[("__jump_table", 24), (".altinstructions", 13), (".altinstructions", 12)];

pub fn is_special_section(name: &str) -> bool {
    KNOWN.iter().any(|(n, _)| *n == name)
}

/// Sections whose content is code referenced from special entries and is
/// never a unit of its own.
pub fn is_auxiliary_section(name: &str) -> bool {
    name == ".altinstr_replacement" || name == ".altinstr_aux"
}

/// Entry sizes given by the user, by section name.
#[derive(Debug, Clone, Default)]
pub struct EntrySizes {
    pub overrides: HashMap<String, u64>,
}

impl EntrySizes {
    /// Parse `SECTION=N` (the `--entsize` option).
    pub fn add_override(&mut self, spec: &str) -> Result<()> {
        let (sec, n) =
            spec.split_once('=').ok_or_else(|| Error::usage(format!("--entsize {spec}: expected SECTION=N")))?;
        let n: u64 = n.parse().map_err(|_| Error::usage(format!("--entsize {spec}: '{n}' is not a number")))?;
        if n == 0 {
            return Err(Error::usage(format!("--entsize {spec}: size must be positive")));
        }
        self.overrides.insert(sec.to_owned(), n);
        Ok(())
    }
}

/// One entry of a special section. Offsets are 32-bit (special sections
/// larger than 4 GiB are refused), and so are the entry's place among its
/// section's relocations (a section has fewer than its bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialEntry {
    pub section: SectionId,
    pub offset: u32,
    pub size: u32,
    /// Its relocations: `relocs[first_reloc..first_reloc + relocs]` of its
    /// section, found once while the index is built (every checksum asks).
    pub first_reloc: u32,
    pub relocs: u32,
}

impl SpecialEntry {
    /// Where the entry starts in its section.
    pub fn start(&self) -> u64 {
        u64::from(self.offset)
    }
    /// Where it ends.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.size)
    }
    /// Its relocations, given its section; empty for another section.
    pub fn relocs_of<'s>(&self, section: &'s Section) -> &'s [Reloc] {
        let (first, n) = (self.first_reloc as usize, self.relocs as usize);
        match section.id == self.section {
            true => section.relocs.get(first..first + n).unwrap_or_default(),
            false => &[],
        }
    }
}

/// Entries of all special sections, grouped by the function they belong to.
#[derive(Debug, Default)]
pub struct SpecialIndex {
    /// The entries of function `id` are `entries[starts[id]..starts[id + 1]]`,
    /// ordered by section name and offset: one array for all functions
    /// rather than a vector each (a vmlinux.o has two million entries).
    starts: Vec<u32>,
    entries: Vec<SpecialEntry>,
    /// Entry size chosen for each special section present.
    pub entry_sizes: BTreeMap<String, u64>,
}

impl SpecialIndex {
    pub fn build(obj: &ElfObject, sizes: &EntrySizes) -> Result<Self> {
        let mut entry_sizes = BTreeMap::new();
        let mut specials = Vec::new();
        for sec in &obj.sections {
            if !is_special_section(sec.name) || sec.size == 0 {
                continue;
            }
            if sec.is_nobits() {
                // Entries are read from the section's bytes.
                let e = Error::malformed("special section without bytes in the file (SHT_NOBITS)");
                return Err(e.in_section(sec.name).in_file(&obj.path));
            }
            if sec.size > u64::from(u32::MAX) || u32::try_from(sec.relocs.len()).is_err() {
                let e = Error::unsupported(format!(
                    "size {:#x} with {} relocations is larger than 4 GiB, the largest special section klp accepts",
                    sec.size,
                    sec.relocs.len()
                ));
                return Err(e.in_section(sec.name).in_file(&obj.path));
            }
            let size = entry_size(obj, sec.id, sizes).in_section(sec.name).in_file(&obj.path)?;
            entry_sizes.insert(sec.name.to_owned(), size);
            specials.push((sec, size));
        }
        specials.sort_by_key(|(sec, _)| (sec.name, sec.id));
        // Who owns each entry: sections and their entries on every core.
        let owned: Vec<Vec<(SymbolId, SpecialEntry)>> =
            specials.par_iter().map(|&(sec, size)| owned_entries(obj, sec, size)).collect();
        // Group by owner, keeping the order above (a counting sort).
        let mut starts = vec![0u32; obj.symbols.len() + 1];
        for &(owner, _) in owned.iter().flatten() {
            starts[owner.index() + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut cursor = starts.clone();
        let placeholder = SpecialEntry { section: SectionId(0), offset: 0, size: 0, first_reloc: 0, relocs: 0 };
        let mut entries = vec![placeholder; starts.last().map_or(0, |&n| n as usize)];
        for &(owner, entry) in owned.iter().flatten() {
            let at = &mut cursor[owner.index()];
            entries[*at as usize] = entry;
            *at += 1;
        }
        Ok(SpecialIndex { starts, entries, entry_sizes })
    }

    pub fn entries_of(&self, func: SymbolId) -> &[SpecialEntry] {
        let range = |i: usize| Some(*self.starts.get(i)? as usize);
        match (range(func.index()), range(func.index() + 1)) {
            (Some(start), Some(end)) => &self.entries[start..end],
            _ => &[],
        }
    }
}

/// The entries of special section `sec` (of `size`-byte entries) that
/// belong to a function, with it.
fn owned_entries(obj: &ElfObject, sec: &Section, size: u64) -> Vec<(SymbolId, SpecialEntry)> {
    // Most sections' entries are in the order of the code they describe.
    let mut cursor = obj.symbol_cursor();
    entries_with_relocs(sec, size)
        .filter_map(|(offset, end, relocs)| {
            let owner = entry_owner(obj, &sec.relocs[relocs.clone()], &mut cursor)?;
            // Offsets below the section's size and reloc indexes below its
            // reloc count, both checked to fit 32 bits.
            let entry = SpecialEntry {
                section: sec.id,
                offset: offset as u32,
                size: (end - offset) as u32,
                first_reloc: relocs.start as u32,
                relocs: relocs.len() as u32,
            };
            Some((owner, entry))
        })
        .collect()
}

/// Each entry of special section `sec` (of `size`-byte entries): its
/// `[start, end)` and where its relocations are in `sec.relocs`. The
/// relocations are sorted by offset and the entries tile the section, so
/// one walk over them finds every entry's: a bisection for each of a
/// `vmlinux.o`'s 100,000 entries was a cache miss at every step.
pub fn entries_with_relocs<'a>(sec: &'a Section, size: u64) -> impl Iterator<Item = (u64, u64, Range<usize>)> + 'a {
    let relocs = &sec.relocs[..];
    let mut next = 0;
    entry_ranges(sec.size, size).map(move |(start, end)| {
        let first = next + relocs[next..].iter().take_while(|r| r.offset() < start).count();
        next = first + relocs[first..].iter().take_while(|r| r.offset() < end).count();
        (start, end, first..next)
    })
}

/// The `[start, end)` of each entry of a special section of `size`-byte
/// entries. The last may be short: some layouts end without the padding of
/// the last entry (see `layout_fits`).
fn entry_ranges(section_size: u64, size: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..entry_count(section_size, size)).map(move |i| entry_range(section_size, size, i))
}

fn entry_count(section_size: u64, size: u64) -> u64 {
    section_size.div_ceil(size.max(1))
}

/// The `[start, end)` of entry `i` (see [`entry_ranges`]).
fn entry_range(section_size: u64, size: u64, i: u64) -> (u64, u64) {
    let size = size.max(1);
    (i * size, ((i + 1) * size).min(section_size))
}

/// The function an entry describes: the first relocation target that is a
/// function in executable code (section references resolved to the symbol
/// containing them).
fn entry_owner(obj: &ElfObject, relocs: &[Reloc], cursor: &mut SymbolCursor) -> Option<SymbolId> {
    relocs.iter().find_map(|r| {
        // The target's section is the place's (the symbol covering a
        // section offset is in that section), and the place says when it
        // is code: the section itself, 128 bytes read at random for each
        // of a `vmlinux.o`'s 100,000 entries, only when it does not.
        let place = obj.place(r.symbol());
        if !(place.in_code || place.section().is_some_and(|s| obj.section(s).is_exec())) {
            return None;
        }
        let id = named_target(obj.referent_near(r, 0, cursor))?;
        let sym = obj.symbol(id);
        (sym.kind == SymbolKind::Func && !sym.is_prefix()).then_some(id)
    })
}

/// The named symbol a data relocation points at (section symbols resolved).
pub fn resolve_data_reference(obj: &ElfObject, r: &Reloc) -> Option<SymbolId> {
    named_target(obj.referent(r, 0))
}

fn named_target(referent: Referent) -> Option<SymbolId> {
    match referent {
        Referent::External(id) => Some(id),
        Referent::Place { named, .. } => named.symbol(),
    }
}

/// Decide the entry size of special section `sec`.
pub fn entry_size(obj: &ElfObject, sec: SectionId, sizes: &EntrySizes) -> Result<u64> {
    let s = obj.section(sec);
    if let Some(&n) = sizes.overrides.get(s.name) {
        return Ok(n);
    }
    if s.entsize > 0 {
        return Ok(s.entsize);
    }
    if s.relocs.is_empty() {
        return Err(Error::malformed("special section has no relocations, cannot find its entries"));
    }
    let layout: Vec<RelocShape> = s.relocs.iter().map(|r| RelocShape::of(obj, r)).collect();
    let known = KNOWN.iter().chain(LEGACY).filter(|(n, _)| *n == s.name).map(|&(_, size)| size);
    for size in known {
        if layout_fits(s.size, &layout, size, true) || sparse_layout_fits(s.size, &layout, size) {
            return Ok(size);
        }
    }
    (1..=s.size.min(256))
        .find(|&size| layout_fits(s.size, &layout, size, false))
        .ok_or_else(|| Error::malformed(format!("cannot infer the entry size; pass --entsize {}=N", s.name)))
}

/// What distinguishes one field of an entry from another: where it is, its
/// relocation type, and whether it points at code (so that an array of
/// 24-byte {code, target, key} entries does not look like 8-byte pointers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RelocShape {
    offset: u64,
    r_type: u32,
    /// `None` for undefined targets, which could be either.
    to_code: Option<bool>,
}

impl RelocShape {
    fn of(obj: &ElfObject, r: &Reloc) -> Self {
        let to_code = obj.symbol_section(obj.symbol(r.symbol())).map(|s| s.is_exec());
        RelocShape { offset: r.offset(), r_type: r.r_type(), to_code }
    }
}

/// True when every entry of `size` bytes carries relocations of the same
/// shape at the same in-entry offsets as the first entry, and `size` divides
/// the section. With `allow_short_tail`, the last entry may be cut short
/// (old kernels' `.parainstructions` lost its tail padding at link time).
fn layout_fits(section_size: u64, relocs: &[RelocShape], size: u64, allow_short_tail: bool) -> bool {
    if size == 0 || (!section_size.is_multiple_of(size) && !allow_short_tail) {
        return false;
    }
    let entries = section_size.div_ceil(size);
    let pattern: Vec<RelocShape> = relocs.iter().take_while(|r| r.offset < size).copied().collect();
    if pattern.is_empty() || relocs.len() as u64 != pattern.len() as u64 * entries {
        return false;
    }
    let compatible = |a: Option<bool>, b: Option<bool>| a.is_none() || b.is_none() || a == b;
    relocs.chunks(pattern.len()).enumerate().all(|(i, chunk)| {
        let base = i as u64 * size;
        chunk
            .iter()
            .zip(&pattern)
            .all(|(r, p)| r.offset == base + p.offset && r.r_type == p.r_type && compatible(r.to_code, p.to_code))
    })
}

/// A known size also fits when some entries lack an optional relocation
/// (an alternative with an empty replacement has none for it): every entry
/// has its first field relocated, and each in-entry offset always carries
/// the same relocation shape.
fn sparse_layout_fits(section_size: u64, relocs: &[RelocShape], size: u64) -> bool {
    if size == 0 || !section_size.is_multiple_of(size) {
        return false;
    }
    let mut shape_at: HashMap<u64, RelocShape> = HashMap::default();
    let mut first_field = vec![false; (section_size / size) as usize];
    for r in relocs {
        let (entry, at) = (r.offset / size, r.offset % size);
        let p = shape_at.entry(at).or_insert(RelocShape { offset: at, ..*r });
        if p.r_type != r.r_type || (p.to_code.is_some() && r.to_code.is_some() && p.to_code != r.to_code) {
            return false;
        }
        // A relocation writing no bytes may sit at the very end: in no entry.
        let Some(first) = first_field.get_mut(entry as usize) else { return false };
        if at == 0 {
            *first = true;
        }
    }
    first_field.iter().all(|&f| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relocs(offsets: &[u64]) -> Vec<RelocShape> {
        offsets.iter().map(|&offset| RelocShape { offset, r_type: 2, to_code: Some(true) }).collect()
    }

    #[test]
    fn one_walk_finds_each_entrys_relocations() {
        // Every special section of a defconfig kernel object, against a
        // search of the relocations for each entry.
        let objects: [&[u8]; 3] = [
            include_bytes!("../../corpus/kernel/def-scenario/mem.patched.o"),
            include_bytes!("../../corpus/kernel/def-scenario/show_mem.orig.o"),
            include_bytes!("../../corpus/kernel/slim-scenario/namespace.orig.o"),
        ];
        let mut entries = 0;
        for data in objects {
            let obj = ElfObject::parse(std::path::Path::new("special.o"), data).unwrap();
            for sec in obj.sections.iter().filter(|s| is_special_section(s.name) && s.size > 0) {
                let size = entry_size(&obj, sec.id, &EntrySizes::default()).unwrap();
                let walked: Vec<(u64, u64, Range<usize>)> = entries_with_relocs(sec, size).collect();
                assert_eq!(walked.len() as u64, entry_count(sec.size, size), "{}", sec.name);
                for (start, end, relocs) in walked {
                    assert_eq!(&sec.relocs[relocs], sec.relocs_in(start, end), "{}+{start:#x}", sec.name);
                    entries += 1;
                }
            }
        }
        assert!(entries > 50, "{entries} entries checked");
    }

    #[test]
    fn absolute_jump_entries_are_not_pointer_arrays() {
        // 24-byte entries: code, target (both code), key (data).
        let shape = |offset, code: bool| RelocShape { offset, r_type: 1, to_code: Some(code) };
        let r =
            vec![shape(0, true), shape(8, true), shape(16, false), shape(24, true), shape(32, true), shape(40, false)];
        assert!(!layout_fits(48, &r, 8, false));
        assert!(!layout_fits(48, &r, 16, false));
        assert!(layout_fits(48, &r, 24, false));
    }

    #[test]
    fn layout_inference_finds_the_true_entry_size() {
        // 16-byte jump entries: code, target, key at 0, 4, 8.
        let r = relocs(&[0, 4, 8, 16, 20, 24]);
        assert!(!layout_fits(32, &r, 8, false));
        assert!(layout_fits(32, &r, 16, false));
        // 12-byte bug entries with relocations at 0 and 4.
        let r = relocs(&[0, 4, 12, 16, 24, 28]);
        assert!(!layout_fits(36, &r, 4, false));
        assert!(layout_fits(36, &r, 12, false));
        assert!(!layout_fits(36, &r, 18, false));
        // A last entry cut short is accepted only for a known size.
        let r = relocs(&[0, 16, 32]);
        assert!(layout_fits(44, &r, 16, true));
        assert!(!layout_fits(44, &r, 16, false));
        // Alternatives without a replacement relocation in some entries.
        let r = relocs(&[0, 4, 13, 26, 30]);
        assert!(!layout_fits(39, &r, 13, false));
        assert!(sparse_layout_fits(39, &r, 13));
        assert!(!sparse_layout_fits(39, &relocs(&[0, 4, 26]), 13));
        // R_X86_64_NONE (no width) at the section's end: in no entry.
        assert!(!sparse_layout_fits(39, &relocs(&[0, 13, 26, 39]), 13));
    }
}
