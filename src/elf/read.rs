//! Read stage: an indexed, read-only view of one ELF64 x86-64 relocatable
//! object over its memory map.
//!
//! Parsing goes through the `object` crate's low-level ELF types (which handle
//! extended section numbering and `.symtab_shndx`); on top of that we build the
//! indexes every later stage needs: symbols by name and by demangled name,
//! "symbol containing section+offset", relocations of a section sorted by
//! offset, and the FILE symbol each local belongs to. Section data is borrowed
//! from the map, never copied.

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use object::LittleEndian as LE;
use object::elf::{self, FileHeader64, SectionHeader64, Sym64};
use object::read::elf::{FileHeader, SectionHeader, SectionTable, Sym};
use rayon::prelude::*;

use super::names::{NameIndex, NameKey, is_named, name_hash};
use super::spans::{SectionSpans, SymbolCursor, is_spanned};
use crate::error::{Context, Error, Result, escaped};

/// Index of a section in the section header table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct SectionId(pub u32);

/// Index of a symbol in `.symtab`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct SymbolId(pub u32);

impl SectionId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl SymbolId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for SectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::fmt::Display for SymbolId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The largest section alignment accepted (`PMD_SIZE`; vmlinux.o's largest
/// is 16 KiB): copying a section pads to its alignment, and a file must not
/// make klp allocate more than it is worth.
pub const MAX_ALIGNMENT: u64 = 2 << 20;

/// The largest section without bytes in the file (SHT_NOBITS) accepted: a
/// kernel object's `.bss` is far smaller, and nothing else bounds it.
pub const MAX_NOBITS_SIZE: u64 = 1 << 32;

/// Symbols may cover at most this many times the file's bytes, plus
/// [`OVERLAP_SLACK`]: every stage reads each symbol's bytes (checksums
/// decode each function), so symbols stacked on the same bytes would make
/// the work grow with the square of the file. Aliases are few in real objects.
pub const MAX_OVERLAP: u64 = 4;
pub const OVERLAP_SLACK: u64 = 1 << 20;

/// An input file mapped into memory. The map is read-only: inputs are never changed.
pub struct MappedFile {
    path: PathBuf,
    map: Option<Mmap>,
}

impl MappedFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, "cannot open", &e))?;
        let len = file.metadata().map_err(|e| Error::io(path, "cannot stat", &e))?.len();
        // An empty file cannot be mapped; keep it as an empty slice so parsing
        // reports it like any other bad input.
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the file is opened read-only; like every tool reading
            // build outputs we assume nobody truncates it while we run.
            Some(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, "cannot map", &e))?)
        };
        Ok(MappedFile { path: path.to_owned(), map })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    pub fn parse(&self) -> Result<ElfObject<'_>> {
        ElfObject::parse(&self.path, self.bytes())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SymbolKind {
    NoType,
    Object,
    Func,
    Section,
    File,
    Tls,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Binding {
    Local,
    Global,
    Weak,
    Other,
}

/// Where a symbol is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Undefined,
    Section(SectionId),
    Absolute,
    Common,
    /// Another reserved index (e.g. SHN_LIVEPATCH in a converted module).
    Reserved(u16),
}

#[derive(Debug, Clone)]
#[repr(align(64))]
pub struct Symbol<'data> {
    pub id: SymbolId,
    pub name: &'data str,
    /// The length of [`Symbol::demangled`], a prefix of the name: a
    /// second string reference made a symbol more than a cache line.
    demangled_len: u32,
    pub kind: SymbolKind,
    pub bind: Binding,
    pub placement: Placement,
    pub value: u64,
    pub size: u64,
    /// For locals: the most recent FILE symbol before this one in `.symtab`.
    pub file: Option<SymbolId>,
    /// Named like a `.cold` part (asked for every reference while hashing).
    cold_child: bool,
    /// A prefix function ([`Symbol::is_prefix`]): asked by most stages,
    /// answered while the name is at hand.
    prefix: bool,
}

// One cache line a symbol: the stages read symbols at random, by index.
const _: () = assert!(std::mem::size_of::<Symbol>() == 64);

impl<'data> Symbol<'data> {
    /// The name with compiler disambiguators removed (see [`demangle`]).
    pub fn demangled(&self) -> &'data str {
        &self.name[..self.demangled_len as usize]
    }
    pub fn section(&self) -> Option<SectionId> {
        match self.placement {
            Placement::Section(s) => Some(s),
            _ => None,
        }
    }
    pub fn is_local(&self) -> bool {
        self.bind == Binding::Local
    }
    pub fn is_defined(&self) -> bool {
        !matches!(self.placement, Placement::Undefined)
    }
    pub fn end(&self) -> u64 {
        self.value.saturating_add(self.size)
    }
    /// objtool-style prefix functions (`__pfx_`, `__cfi_`) that precede a function.
    pub fn is_prefix(&self) -> bool {
        self.prefix
    }
    /// A `.cold` part split out of its parent function.
    pub fn is_cold_child(&self) -> bool {
        self.cold_child
    }
}

pub fn is_prefix_name(name: &str) -> bool {
    ["__pfx_", "__cfi_", "__pi___pfx_", "__pi___cfi_"].iter().any(|p| name.starts_with(p))
}

/// What a relocation refers to (see [`ElfObject::referent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Referent {
    /// A symbol with no section in this object (undefined, absolute, common).
    External(SymbolId),
    /// A place in a section of this object.
    Place { section: SectionId, offset: i64, named: Named },
}

/// The named symbol at a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// The relocation names the symbol itself.
    Direct(SymbolId),
    /// The relocation is against a section symbol: the symbol covering the
    /// place, if any ([`ElfObject::symbol_at`]).
    Covering(Option<SymbolId>),
}

impl Named {
    pub fn symbol(self) -> Option<SymbolId> {
        match self {
            Named::Direct(s) => Some(s),
            Named::Covering(s) => s,
        }
    }
}

/// One RELA entry, attached to the section it relocates, as the file
/// holds it (`Elf64_Rela`: 24 little-endian bytes): a section's relocations
/// are borrowed from the map, not copied (1.9 million in a `vmlinux.o`,
/// 45 MB).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Reloc {
    raw_offset: [u8; 8],
    raw_info: [u8; 8],
    raw_addend: [u8; 8],
}

// SAFETY: three byte arrays: alignment 1, no padding, every bit pattern is
// a value. `object` reads slices of it from a file's bytes.
unsafe impl object::pod::Pod for Reloc {}

impl Reloc {
    pub fn new(offset: u64, r_type: u32, symbol: SymbolId, addend: i64) -> Self {
        let info = (u64::from(symbol.0) << 32) | u64::from(r_type);
        Reloc { raw_offset: offset.to_le_bytes(), raw_info: info.to_le_bytes(), raw_addend: addend.to_le_bytes() }
    }
    /// Where in its section the relocated field starts (`r_offset`).
    pub fn offset(&self) -> u64 {
        u64::from_le_bytes(self.raw_offset)
    }
    pub fn r_type(&self) -> u32 {
        u64::from_le_bytes(self.raw_info) as u32
    }
    pub fn symbol(&self) -> SymbolId {
        SymbolId((u64::from_le_bytes(self.raw_info) >> 32) as u32)
    }
    pub fn addend(&self) -> i64 {
        i64::from_le_bytes(self.raw_addend)
    }
}

impl std::fmt::Debug for Reloc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloc")
            .field("offset", &self.offset())
            .field("r_type", &self.r_type())
            .field("symbol", &self.symbol())
            .field("addend", &self.addend())
            .finish()
    }
}

/// A section header with its bytes and relocations. Laid out by hand,
/// two cache lines: the stages read a section at random for each function
/// and each reference into one, and the first line holds what they read.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Section<'data> {
    /// File bytes; empty for NOBITS.
    pub data: &'data [u8],
    /// Relocations applying to this section, sorted by offset: the file's
    /// own entries when they are (as compilers and linkers write them).
    pub relocs: Cow<'data, [Reloc]>,
    pub flags: u64,
    pub entsize: u64,
    pub id: SectionId,
    pub sh_type: u32,
    pub name: &'data str,
    pub addralign: u64,
    pub size: u64,
    pub link: u32,
    pub info: u32,
    /// Where its bytes are in the file (`sh_offset`); for an editor.
    pub file_offset: u64,
    /// The SHT_RELA section that holds them.
    pub rela_section: Option<SectionId>,
    pub section_symbol: Option<SymbolId>,
}

const _: () = assert!(std::mem::size_of::<Section>() == 128);

impl<'data> Section<'data> {
    pub fn is_exec(&self) -> bool {
        self.flags & elf::SHF_EXECINSTR.0 != 0
    }
    pub fn is_alloc(&self) -> bool {
        self.flags & elf::SHF_ALLOC.0 != 0
    }
    pub fn is_strings(&self) -> bool {
        self.flags & elf::SHF_STRINGS.0 != 0
    }
    pub fn is_nobits(&self) -> bool {
        self.sh_type == elf::SHT_NOBITS.0
    }
    /// Merge-able constant pool (`.rodata.cst16` and the like).
    pub fn is_constant_pool(&self) -> bool {
        !self.is_strings() && self.flags & elf::SHF_MERGE.0 != 0 && self.entsize > 0
    }
    /// Relocations whose offset lies in `[start, end)`.
    pub fn relocs_in(&self, start: u64, end: u64) -> &[Reloc] {
        // Most asks are for a whole function in its own section (after
        // its prefix): no bisection, whose probes were cache misses in
        // 45 MB of entries read in order anyway just after.
        let relocs = &self.relocs[..];
        let lo = match relocs.first() {
            Some(first) if first.offset() >= start => 0,
            _ => relocs.partition_point(|r| r.offset() < start),
        };
        let hi = match relocs.last() {
            Some(last) if last.offset() < end => relocs.len(),
            _ => relocs.partition_point(|r| r.offset() < end),
        };
        &relocs[lo..hi.max(lo)]
    }
    /// The NUL-terminated string starting at `offset` (without the NUL).
    pub fn c_str_at(&self, offset: u64) -> Option<&'data [u8]> {
        let rest = self.data.get(usize::try_from(offset).ok()?..)?;
        let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        Some(&rest[..len])
    }
}

/// A parsed relocatable object with its indexes.
pub struct ElfObject<'data> {
    pub path: PathBuf,
    pub sections: Vec<Section<'data>>,
    pub symbols: Vec<Symbol<'data>>,
    /// FILE symbols in symbol-table order.
    pub files: Vec<SymbolId>,
    /// Named symbols by demangled name.
    names: NameIndex,
    /// Named symbols by full name.
    full_names: NameIndex,
    /// The named (non-section, non-file) symbols of every section, with
    /// what [`ElfObject::symbol_at`] needs of each: it runs for nearly
    /// every relocation, and reading these instead of the symbol table
    /// keeps it in cache.
    spans: SectionSpans,
    /// Each symbol's [`SymbolPlace`], by index.
    places: Vec<SymbolPlace>,
    /// The entries of each `SHF_RELA_LIVEPATCH` section, by section: they
    /// apply to section `info` but are not part of its ordinary `relocs`.
    livepatch_relocs: Vec<(SectionId, Cow<'data, [Reloc]>)>,
    /// The entries of every RELA section, counted as they are attached.
    relocation_count: usize,
    /// Each symbol named like a `.cold` part that has a parent
    /// ([`Self::cold_parent`]), with it, by child: found once, in
    /// parallel, where each key and reference asked the name index again.
    cold_parents: Vec<(SymbolId, SymbolId)>,
}

impl<'data> ElfObject<'data> {
    pub fn parse(path: &Path, data: &'data [u8]) -> Result<Self> {
        Self::parse_checked(path, data).in_file(path)
    }

    fn parse_checked(path: &Path, data: &'data [u8]) -> Result<Self> {
        let header = check_header(data)?;
        let table = header
            .sections(LE, data)
            .map_err(|e| Error::malformed(format!("cannot read the section header table: {e}")))?;
        // As `object` finds the section name table; a bad index leaves it
        // empty, and every name outside it.
        let shstrtab = header
            .shstrndx(LE, data)
            .ok()
            .and_then(|i| table.section(object::SectionIndex(i as usize)).ok())
            .and_then(|sh| sh.data(LE, data).ok())
            .unwrap_or_default();
        let (mut sections, briefs) = read_sections(&table, &NameTable::new(shstrtab), data)?;
        check_disjoint(&sections)?;
        let table_pass = read_symbols(&table, data, &sections, &briefs)?;
        check_overlap(table_pass.covered, data.len() as u64)?;
        let SymbolTablePass {
            symbols,
            places,
            files,
            cold_children,
            section_symbols,
            spans_per_section,
            by_name,
            by_full_name,
            ..
        } = table_pass;
        for (sec, id) in section_symbols {
            sections[sec.index()].section_symbol.get_or_insert(id);
        }
        let Attached { livepatch_relocs, relocation_count } =
            attach_relocations(&table, data, &mut sections, &symbols)?;
        let spans = SectionSpans::build(spans_per_section, &symbols);
        let names = NameIndex::from_entries(NameKey::Demangled, &symbols, by_name);
        let full_names = NameIndex::from_entries(NameKey::Full, &symbols, by_full_name);
        let cold_parents = cold_children
            .into_par_iter()
            .filter_map(|child| Some((child, find_cold_parent(&symbols, &full_names, child)?)))
            .collect();
        Ok(ElfObject {
            spans,
            places,
            livepatch_relocs,
            relocation_count,
            cold_parents,
            path: path.to_owned(),
            files,
            names,
            full_names,
            sections,
            symbols,
        })
    }

    /// The named symbols defined in `section`, in symbol-table order.
    pub fn symbols_in_table_order(&self, section: SectionId) -> &[SymbolId] {
        self.spans.in_table_order(section)
    }

    /// Every symbol once: first those [`Self::symbols_in_table_order`]
    /// lists, section by section, then the rest in table order. A pass over
    /// symbols in this order reads the sections, their bytes and their
    /// relocations front to back; in table order, a `vmlinux.o`'s global
    /// functions come after all locals, each in a section far from the last.
    pub fn section_major_order(&self) -> Vec<SymbolId> {
        let mut order = Vec::with_capacity(self.symbols.len());
        order.extend_from_slice(self.spans.all_in_table_order());
        order.extend(self.symbols.iter().filter(|s| !(is_spanned(s) && s.section().is_some())).map(|s| s.id));
        order
    }

    /// The named symbols defined in `section`, sorted by value (then index).
    pub fn symbols_in(
        &self,
        section: SectionId,
    ) -> impl ExactSizeIterator<Item = SymbolId> + DoubleEndedIterator + Clone + '_ {
        self.spans.by_value(section)
    }

    pub fn symbol(&self, id: SymbolId) -> &Symbol<'data> {
        &self.symbols[id.index()]
    }
    pub fn section(&self, id: SectionId) -> &Section<'data> {
        &self.sections[id.index()]
    }
    pub fn section_by_name(&self, name: &str) -> Option<&Section<'data>> {
        // A scan, not an index: the stages ask for a handful of names
        // (`.modinfo`, the kpatch ignore lists), and an index of a
        // `vmlinux.o`'s 165,000 sections cost more to build than all of them.
        self.sections.iter().find(|s| s.name == name)
    }
    /// For a `SHF_RELA_LIVEPATCH` section: its own entries (they apply to
    /// section `info` but are not part of its ordinary `relocs`); empty for
    /// any other section.
    pub fn own_relocs(&self, section: SectionId) -> &[Reloc] {
        // Pushed in section order.
        match self.livepatch_relocs.binary_search_by_key(&section, |(id, _)| *id) {
            Ok(k) => &self.livepatch_relocs[k].1,
            Err(_) => &[],
        }
    }
    /// How many relocations the object has: the entries of all its RELA
    /// sections, livepatch ones included.
    pub fn relocation_count(&self) -> usize {
        self.relocation_count
    }
    pub fn symbol_section(&self, sym: &Symbol) -> Option<&Section<'data>> {
        sym.section().map(|s| self.section(s))
    }
    /// The symbols named `name`, in symbol-table order.
    pub fn symbols_named(&self, name: &str) -> &[SymbolId] {
        self.full_names.group(&self.symbols, name)
    }
    /// The symbols whose demangled name is `name`, in symbol-table order.
    pub fn symbols_demangled(&self, name: &str) -> &[SymbolId] {
        self.names.group(&self.symbols, name)
    }
    /// Every demangled name with its symbols (in symbol-table order); the
    /// names in no particular order. Correlation meets the other object's
    /// names through [`Self::map_names_shared_with`]; the tests
    /// check the groups with this.
    #[cfg(test)]
    pub(crate) fn demangled_names(&self) -> impl Iterator<Item = (&'data str, &[SymbolId])> {
        self.names.groups(&self.symbols)
    }
    /// What `each` makes of every demangled name this object and `other`
    /// both have, with its symbols here and there (in symbol-table order);
    /// computed on every core, in the order of the name's first symbol here.
    pub fn map_names_shared_with<'a, T: Send, I: Iterator<Item = T>>(
        &'a self,
        other: &'a ElfObject,
        each: impl Fn(&'data str, &'a [SymbolId], &'a [SymbolId]) -> I + Sync,
    ) -> Vec<T> {
        self.names.common(&self.symbols, &other.names, &other.symbols, each)
    }

    /// What relocation `r` refers to, `bias` added to its addend (for a
    /// PC-relative field in code: the distance to the end of its
    /// instruction). The one place that turns a symbol and an addend into a
    /// place; each stage then decides what a place means to it.
    pub fn referent(&self, r: &Reloc, bias: i64) -> Referent {
        self.referent_by(r, bias, |section, offset| self.symbol_at(section, offset))
    }

    /// [`Self::referent`], the covering symbol found by `cursor`: for
    /// relocations whose places mostly grow.
    pub fn referent_near(&self, r: &Reloc, bias: i64, cursor: &mut SymbolCursor) -> Referent {
        self.referent_by(r, bias, |section, offset| cursor.symbol_at(section, offset))
    }

    fn referent_by(
        &self,
        r: &Reloc,
        bias: i64,
        symbol_at: impl FnOnce(SectionId, u64) -> Option<SymbolId>,
    ) -> Referent {
        let place = self.place(r.symbol());
        let Some(section) = place.section() else { return Referent::External(r.symbol()) };
        let offset = place.base().saturating_add(r.addend()).saturating_add(bias);
        let named = match place.is_section_symbol {
            true => Named::Covering(u64::try_from(offset).ok().and_then(|o| symbol_at(section, o))),
            false => Named::Direct(r.symbol()),
        };
        Referent::Place { section, offset, named }
    }

    /// A [`SymbolCursor`] over this object's sections.
    pub fn symbol_cursor(&self) -> SymbolCursor<'_> {
        SymbolCursor::new(&self.spans)
    }

    /// Where symbol `id` is (see [`SymbolPlace`]).
    pub fn place(&self, id: SymbolId) -> SymbolPlace {
        self.places[id.index()]
    }

    /// Start loading [`Self::place`] of `id` into the cache, for a loop that
    /// will ask for it a little later: the places of a large object's
    /// relocation targets are read at random, and each was a cache miss
    /// that the loop's own work could not hide.
    pub fn prefetch_place(&self, id: SymbolId) {
        if let Some(place) = self.places.get(id.index()) {
            super::prefetch(place);
        }
    }

    /// Whether [`Self::referent`] of `r` may name a different symbol for
    /// different biases of a PC-relative field (1 to 15 bytes to the end of
    /// its instruction): only then must its instruction be decoded to know.
    pub fn bias_matters(&self, r: &Reloc) -> bool {
        let place = self.place(r.symbol());
        let Some(section) = place.section() else { return false };
        if !super::reloc::is_pc_relative(r.r_type()) || !place.is_section_symbol {
            return false;
        }
        let (Some(first), Some(last)) = (r.addend().checked_add(1), r.addend().checked_add(15)) else { return true };
        let (Ok(first), Ok(last)) = (u64::try_from(first), u64::try_from(last)) else { return true };
        let window = self.spans.window(section, first, last);
        let at_first = window.symbol_at(first);
        window.possible_changes(first, last).any(|at| window.symbol_at(at) != at_first)
    }

    /// The named symbol covering `offset` in `section`: FUNC/OBJECT preferred
    /// over NOTYPE, real functions over prefixes; a zero-sized symbol exactly
    /// at `offset`, or one ending exactly there (a "one past the end" pointer),
    /// is accepted only when nothing covers the offset.
    pub fn symbol_at(&self, section: SectionId, offset: u64) -> Option<SymbolId> {
        self.spans.symbol_at(section, offset)
    }

    /// What [`Self::symbol_at`] finds at each offset of `[first, last]` of
    /// `section`: the offsets where its answer changes, each with the answer
    /// from there on, starting with `first`.
    pub fn symbols_over(&self, section: SectionId, first: u64, last: u64) -> Vec<(u64, Option<SymbolId>)> {
        let mut out = Vec::new();
        self.symbols_over_into(section, first, last, &mut Vec::new(), &mut out);
        out
    }

    /// [`Self::symbols_over`] into `out`, with `changes` as scratch: the
    /// quick keys ask this for about every other relocation of a
    /// `vmlinux.o`, where two allocations each showed.
    pub fn symbols_over_into(
        &self,
        section: SectionId,
        first: u64,
        last: u64,
        changes: &mut Vec<u64>,
        out: &mut Vec<(u64, Option<SymbolId>)>,
    ) {
        let window = self.spans.window(section, first, last);
        changes.clear();
        changes.extend(window.possible_changes(first, last));
        changes.sort_unstable();
        changes.dedup();
        out.clear();
        for &at in std::iter::once(&first).chain(changes.iter()) {
            let found = window.symbol_at(at);
            if out.last().is_none_or(|&(_, f)| f != found) {
                out.push((at, found));
            }
        }
    }

    /// The function a `.cold` part was split from: the symbol named like the
    /// part up to `.cold`, a local of the same FILE first, else a global.
    pub fn cold_parent(&self, child: SymbolId) -> Option<SymbolId> {
        if !self.symbol(child).cold_child {
            return find_cold_parent(&self.symbols, &self.full_names, child);
        }
        let at = self.cold_parents.binary_search_by_key(&child, |&(c, _)| c).ok()?;
        Some(self.cold_parents[at].1)
    }

    /// The `.cold` parts with a parent, each with it, in symbol-table order.
    pub fn cold_parents(&self) -> &[(SymbolId, SymbolId)] {
        &self.cold_parents
    }
}

/// [`ElfObject::cold_parent`] from the names.
///
/// Candidates are in symbol-table order, where a FILE's locals follow
/// it and globals come last: both are found by bisection, not by a scan
/// of every function of that name (thousands of static `show` in a
/// `vmlinux.o` made that quadratic: 9% of a 100k-function diff).
fn find_cold_parent(symbols: &[Symbol], full_names: &NameIndex, child: SymbolId) -> Option<SymbolId> {
    let symbol = |id: SymbolId| &symbols[id.index()];
    let c = symbol(child);
    let parent_name = &c.name[..c.name.find(".cold")?];
    let candidates = full_names.group(symbols, parent_name);
    let is_func = |id: &&SymbolId| symbol(**id).kind == SymbolKind::Func;
    let same_file = |id: &SymbolId| symbol(*id).is_local() && symbol(*id).file == c.file;
    let from = c.file.map_or(0, |f| candidates.partition_point(|&id| id <= f));
    let locals_end = candidates.partition_point(|&id| symbol(id).is_local());
    let local = match c.file {
        Some(_) => candidates[from.min(locals_end)..locals_end].iter().take_while(|id| same_file(id)).find(is_func),
        None => candidates.iter().filter(|id| same_file(id)).find(is_func),
    };
    local.or_else(|| candidates[locals_end..].iter().find(is_func)).copied()
}

/// The ThinLTO unit hash of a promoted static, `name.llvm.<hash>`: every
/// static a unit exports to others gets its unit's hash, which changes
/// whenever the unit's code does.
pub fn promoted_unit(name: &str) -> Option<&str> {
    // From the end: the digits, then the marker right before them. A
    // later `.llvm.` could not hide among the digits, so this is the last
    // one, as a search for it would find, without a search on every name.
    let digits = name.bytes().rev().take_while(u8::is_ascii_digit).count();
    let (head, hash) = name.split_at(name.len() - digits);
    (digits > 0 && head.ends_with(".llvm.")).then_some(hash)
}

/// Strip what compilers append to make names unique, so the same entity has
/// the same name in both builds: `.llvm.<hash>` (ThinLTO promotion) and,
/// for names with a dot or `__UNIQUE_ID_` names, a trailing run of digits,
/// dots and underscores (`foo.123`, `foo.isra.0` -> `foo.isra`,
/// `__UNIQUE_ID_quirk_x_661` -> `__UNIQUE_ID_quirk_x`). `.cold`, `.isra`,
/// `.part`, `.constprop` stay: they name a different function.
pub fn demangle(name: &str) -> &str {
    if !has_dot(name) && !name.starts_with("__UNIQUE_ID_") {
        return name;
    }
    if let Some(i) = name.find(".llvm.") {
        return &name[..i];
    }
    if name.starts_with("__UNIQUE_ID_") || name.contains('.') {
        let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.' || c == '_');
        if !trimmed.is_empty() {
            return trimmed;
        }
    }
    name
}

/// Whether `name` has a `.`: the suffixes above all start with one, and
/// most of a `vmlinux.o`'s 300,000 names have none.
fn has_dot(name: &str) -> bool {
    memchr::memchr(b'.', name.as_bytes()).is_some()
}

fn check_header(data: &[u8]) -> Result<&FileHeader64<LE>> {
    if data.is_empty() {
        return Err(Error::malformed("file is empty"));
    }
    if data.starts_with(b"BC\xc0\xde") || data.starts_with(&[0xde, 0xc0, 0x17, 0x0b]) {
        return Err(Error::unsupported(
            "LLVM bitcode, not machine code: diff the LTO-linked object (vmlinux.o, or a module's prelink object)",
        ));
    }
    if data.len() < 4 || data[..4] != elf::ELFMAG {
        return Err(Error::malformed("not an ELF file (bad magic)"));
    }
    if data.len() < 6 {
        return Err(Error::malformed("truncated ELF header"));
    }
    match data[4] {
        c if c == elf::ELFCLASS64.0 => {}
        c if c == elf::ELFCLASS32.0 => {
            return Err(Error::unsupported("32-bit ELF (ELFCLASS32); klp handles 64-bit x86-64 objects only"));
        }
        c => return Err(Error::malformed(format!("unknown ELF class {c}"))),
    }
    if data[5] != elf::ELFDATA2LSB.0 {
        return Err(Error::unsupported("big-endian ELF; klp handles little-endian x86-64 objects only"));
    }
    let header = FileHeader64::<LE>::parse(data).map_err(|e| Error::malformed(format!("bad ELF header: {e}")))?;
    let e_type = header.e_type(LE);
    if e_type != elf::ET_REL {
        let what = match e_type {
            elf::ET_EXEC => "an executable (ET_EXEC)".to_string(),
            elf::ET_DYN => "a shared object or PIE (ET_DYN)".to_string(),
            elf::ET_CORE => "a core file (ET_CORE)".to_string(),
            t => format!("ELF type {}", t.0),
        };
        return Err(Error::unsupported(format!("{what}, not a relocatable object (ET_REL)")));
    }
    let machine = header.e_machine(LE);
    if machine != elf::EM_X86_64 {
        return Err(Error::unsupported(format!("machine {} is not x86-64 (EM_X86_64)", machine.0)));
    }
    Ok(header)
}

fn utf8(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes)
        .map_err(|_| Error::malformed(format!("name {:?} is not valid UTF-8", String::from_utf8_lossy(bytes))))
}

/// A string table whose names are read as text. It is checked as UTF-8
/// once, whole, and each name is then a slice of it up to its NUL (a NUL
/// is a character boundary; the slice checks that the name starts on
/// one): checking 465,000 names one by one was 2% of a diff. A table that
/// is not UTF-8 is read name by name, so that the error names the bad one.
struct NameTable<'d> {
    bytes: &'d [u8],
    text: Option<&'d str>,
}

impl<'d> NameTable<'d> {
    fn new(bytes: &'d [u8]) -> Self {
        NameTable { bytes, text: std::str::from_utf8(bytes).ok() }
    }

    /// Start loading the name at `offset` into the cache.
    fn prefetch(&self, offset: u32) {
        if let Some(byte) = self.bytes.get(offset as usize) {
            super::prefetch(byte);
        }
    }

    /// The name at `offset`: `None` if the offset is outside the table or
    /// no NUL ends the name within it.
    fn get(&self, offset: u32) -> Option<Result<&'d str>> {
        let start = usize::try_from(offset).ok()?;
        let len = memchr::memchr(0, self.bytes.get(start..)?)?;
        let raw = &self.bytes[start..start + len];
        Some(match self.text {
            Some(text) => text.get(start..start + len).map_or_else(|| utf8(raw), Ok),
            None => utf8(raw),
        })
    }
}

/// The sections, and each one's [`SectionBrief`], taken while its header
/// is at hand.
fn read_sections<'d>(
    table: &SectionTable<'d, FileHeader64<LE>, &'d [u8]>,
    names: &NameTable<'d>,
    data: &'d [u8],
) -> Result<(Vec<Section<'d>>, Vec<SectionBrief>)> {
    // Collected into a vector sized up front: a `Result` iterator does not
    // know its length, and 165,000 sections were copied as it grew.
    let mut out = Vec::with_capacity(table.len());
    let mut briefs = Vec::with_capacity(table.len());
    let sections = table.iter().enumerate().map(|(i, sh): (usize, &SectionHeader64<LE>)| {
        let numbered = || format!("section #{i}");
        let name = names.get(sh.sh_name(LE)).ok_or_else(|| {
            Error::malformed(format!("name offset {:#x} is outside the section name table", sh.sh_name(LE)))
                .in_section(&numbered())
        })?;
        let name = name.map_err(|e| e.in_section(&numbered()))?;
        let sec_data = if sh.sh_type(LE) == elf::SHT_NOBITS {
            &[][..]
        } else {
            sh.data(LE, data).map_err(|_| {
                Error::malformed(format!(
                    "data (offset {:#x}, size {:#x}) is outside the file",
                    sh.sh_offset(LE),
                    sh.sh_size(LE)
                ))
                .in_section(name)
            })?
        };
        if sh.sh_type(LE) == elf::SHT_NOBITS && sh.sh_size(LE) > MAX_NOBITS_SIZE {
            return Err(Error::unsupported(format!(
                "size {:#x} without bytes (SHT_NOBITS) is larger than {MAX_NOBITS_SIZE:#x}, the largest klp accepts",
                sh.sh_size(LE)
            ))
            .in_section(name));
        }
        let addralign = sh.sh_addralign(LE);
        if addralign > 1 && !addralign.is_power_of_two() {
            return Err(Error::malformed(format!("alignment {addralign:#x} is not a power of two")).in_section(name));
        }
        if addralign > MAX_ALIGNMENT {
            return Err(Error::unsupported(format!(
                "alignment {addralign:#x} is larger than {MAX_ALIGNMENT:#x}, the largest klp accepts"
            ))
            .in_section(name));
        }
        Ok(Section {
            id: SectionId(i as u32),
            name,
            sh_type: sh.sh_type(LE).0,
            flags: sh.sh_flags(LE).0,
            addralign: sh.sh_addralign(LE),
            entsize: sh.sh_entsize(LE),
            size: sh.sh_size(LE),
            link: sh.sh_link(LE),
            file_offset: sh.sh_offset(LE),
            info: sh.sh_info(LE),
            data: sec_data,
            relocs: Cow::Borrowed(&[]),
            rela_section: None,
            section_symbol: None,
        })
    });
    for section in sections {
        let section = section?;
        briefs.push(SectionBrief::of(&section));
        out.push(section);
    }
    Ok((out, briefs))
}

/// The symbol table, and what else the one pass over it gathers: each of
/// these was a pass of its own over a `vmlinux.o`'s 19 MB of symbols.
struct SymbolTablePass<'d> {
    symbols: Vec<Symbol<'d>>,
    places: Vec<SymbolPlace>,
    /// FILE symbols in symbol-table order.
    files: Vec<SymbolId>,
    /// The symbols named like `.cold` parts, in symbol-table order.
    cold_children: Vec<SymbolId>,
    /// Each section's first section symbol.
    section_symbols: Vec<(SectionId, SymbolId)>,
    /// How many spanned symbols each section has (see [`is_spanned`]).
    spans_per_section: Vec<u32>,
    /// The bytes the symbols in sections with bytes cover, summed (see
    /// [`check_overlap`]).
    covered: u64,
    /// The named symbols with the hash of their demangled name, and of
    /// their full name ([`NameIndex`]).
    by_name: Vec<(u64, SymbolId)>,
    by_full_name: Vec<(u64, SymbolId)>,
}

/// How many symbols ahead the symbol pass asks for a name.
const NAME_PREFETCH_AHEAD: usize = 8;

fn read_symbols<'d>(
    table: &SectionTable<'d, FileHeader64<LE>, &'d [u8]>,
    data: &'d [u8],
    sections: &[Section<'d>],
    briefs: &[SectionBrief],
) -> Result<SymbolTablePass<'d>> {
    let symtab = table
        .symbols(LE, data, elf::SHT_SYMTAB)
        .map_err(|e| Error::malformed(format!("cannot read the symbol table: {e}")).in_section(".symtab"))?;
    let strings = NameTable::new(sections.get(symtab.string_section().0).map_or(&[][..], |s| s.data));
    let mut pass = SymbolTablePass {
        symbols: Vec::with_capacity(symtab.len()),
        // Built beside the symbols, while each name is in cache.
        places: Vec::with_capacity(symtab.len()),
        files: Vec::new(),
        cold_children: Vec::new(),
        section_symbols: Vec::new(),
        spans_per_section: vec![0; sections.len()],
        covered: 0,
        by_name: Vec::with_capacity(symtab.len()),
        by_full_name: Vec::with_capacity(symtab.len()),
    };
    let mut current_file = None;
    let all = symtab.symbols();
    for (i, sym) in all.iter().enumerate() {
        // The names are read in symbol order from a string table that
        // holds them in another (a merged one shares tails): asked for
        // ahead, a large object's name reads overlap.
        if let Some(ahead) = all.get(i + NAME_PREFETCH_AHEAD) {
            strings.prefetch(ahead.st_name(LE));
        }
        let numbered = || format!("#{i}");
        let name = strings.get(sym.st_name(LE)).ok_or_else(|| {
            Error::malformed(format!("name offset {:#x} is outside the string table", sym.st_name(LE)))
                .at_symbol(&numbered())
        })?;
        let name = name.map_err(|e| e.at_symbol(&numbered()))?;
        let kind = match sym.st_type() {
            elf::STT_NOTYPE => SymbolKind::NoType,
            elf::STT_OBJECT => SymbolKind::Object,
            elf::STT_FUNC => SymbolKind::Func,
            elf::STT_SECTION => SymbolKind::Section,
            elf::STT_FILE => SymbolKind::File,
            elf::STT_TLS => SymbolKind::Tls,
            _ => SymbolKind::Other,
        };
        let bind = match sym.st_bind() {
            elf::STB_LOCAL => Binding::Local,
            elf::STB_GLOBAL => Binding::Global,
            elf::STB_WEAK => Binding::Weak,
            _ => Binding::Other,
        };
        let placement = placement_of(&symtab, sym, i, sections.len()).map_err(|e| e.at_symbol(name))?;
        if let Placement::Section(sec) = placement {
            let (value, size) = (sym.st_value(LE), sym.st_size(LE));
            if !within_section(briefs[sec.index()], value, size, kind) {
                let sec = &sections[sec.index()];
                return Err(Error::malformed(format!(
                    "value {value:#x} and size {size:#x} reach past the end of {} (size {:#x})",
                    sec.name, sec.size
                ))
                .at_symbol(name));
            }
        }
        if kind == SymbolKind::File {
            current_file = Some(SymbolId(i as u32));
        }
        let file = if bind == Binding::Local && kind != SymbolKind::File && kind != SymbolKind::Section {
            current_file
        } else {
            None
        };
        // A prefix of the name, which the string table holds: its length
        // fits 32 bits unless the name is longer than 4 GiB.
        let demangled_len = u32::try_from(demangle(name).len())
            .map_err(|_| Error::unsupported("name is longer than 4 GiB").at_symbol(&numbered()))?;
        let cold_child =
            kind != SymbolKind::Section && has_dot(name) && name.contains(".cold") && !name.starts_with(".klp.sym");
        let symbol = Symbol {
            id: SymbolId(i as u32),
            cold_child,
            prefix: kind == SymbolKind::Func && is_prefix_name(name),
            name,
            demangled_len,
            kind,
            bind,
            placement,
            value: sym.st_value(LE),
            size: sym.st_size(LE),
            file,
        };
        pass.add(symbol, briefs);
    }
    Ok(pass)
}

impl<'d> SymbolTablePass<'d> {
    /// `sym`, its place, and what the other indexes need of it.
    fn add(&mut self, sym: Symbol<'d>, briefs: &[SectionBrief]) {
        let place = SymbolPlace::of(&sym, briefs);
        match (sym.kind, sym.section()) {
            (SymbolKind::File, _) => self.files.push(sym.id),
            (SymbolKind::Section, Some(sec)) => self.section_symbols.push((sec, sym.id)),
            (_, Some(sec)) if !briefs[sec.index()].nobits => self.covered = self.covered.saturating_add(sym.size),
            _ => {}
        }
        if let (true, Some(sec)) = (is_spanned(&sym), sym.section()) {
            self.spans_per_section[sec.index()] += 1;
        }
        if sym.cold_child {
            self.cold_children.push(sym.id);
        }
        if is_named(&sym) {
            self.by_name.push((place.name_hash, sym.id));
            // Most names are their own demangled name, whose hash is at hand.
            let full = if sym.demangled().len() == sym.name.len() { place.name_hash } else { name_hash(sym.name) };
            self.by_full_name.push((full, sym.id));
        }
        self.places.push(place);
        self.symbols.push(sym);
    }
}

fn placement_of<'d>(
    symtab: &object::read::elf::SymbolTable<'d, FileHeader64<LE>, &'d [u8]>,
    sym: &Sym64<LE>,
    i: usize,
    nsections: usize,
) -> Result<Placement> {
    let shndx = sym.st_shndx(LE);
    let index = if shndx == elf::SHN_UNDEF {
        return Ok(Placement::Undefined);
    } else if shndx == elf::SHN_ABS {
        return Ok(Placement::Absolute);
    } else if shndx == elf::SHN_COMMON {
        return Ok(Placement::Common);
    } else if shndx == elf::SHN_XINDEX {
        symtab
            .shndx(LE, object::SymbolIndex(i))
            .ok_or_else(|| Error::malformed("uses SHN_XINDEX but there is no .symtab_shndx entry for it"))?
            as usize
    } else if shndx.is_reserved() {
        return Ok(Placement::Reserved(shndx.0));
    } else {
        usize::from(shndx.0)
    };
    if index >= nsections {
        return Err(Error::malformed(format!(
            "section index {index} is out of range (the file has {nsections} sections)"
        )));
    }
    Ok(Placement::Section(SectionId(index as u32)))
}

/// Symbols do not cover the file's bytes many times over (see [`MAX_OVERLAP`]).
/// No two sections share bytes of the file. Compilers and linkers never
/// write such objects, and the stages that edit a file in place (post-link
/// rewrites symbols and relocation types) rely on it: an edit of one
/// section must not silently change another one's contents.
fn check_disjoint(sections: &[Section]) -> Result<()> {
    let with_bytes = || sections.iter().filter(|s| occupies_file(s));
    // Linkers lay sections out in header order: each one usually starts
    // where the last one ended or later, and then none overlap. Only
    // otherwise are the ranges collected and sorted.
    let mut last_end = 0;
    if with_bytes().all(|s| std::mem::replace(&mut last_end, s.file_offset + s.size) <= s.file_offset) {
        return Ok(());
    }
    let mut ranges: Vec<(u64, u64, &str)> =
        with_bytes().map(|s| (s.file_offset, s.file_offset + s.size, s.name)).collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        let ((_, end, first), (start, _, second)) = (w[0], w[1]);
        if start < end {
            return Err(Error::malformed(format!("its bytes overlap those of section {}", escaped(first)))
                .in_section(second)
                .at_offset(start));
        }
    }
    Ok(())
}

/// Whether `sec` has bytes in the file that no other section may share.
/// Section 0's size is the section count under extended numbering.
fn occupies_file(sec: &Section) -> bool {
    sec.sh_type != elf::SHT_NULL.0 && !sec.is_nobits() && sec.size > 0
}

/// `covered`: the sizes of the symbols (other than sections and files) in
/// sections with bytes, summed.
fn check_overlap(covered: u64, file_size: u64) -> Result<()> {
    let limit = file_size.saturating_mul(MAX_OVERLAP).saturating_add(OVERLAP_SLACK);
    if covered > limit {
        return Err(Error::unsupported(format!(
            "symbols cover {covered:#x} bytes, more than {MAX_OVERLAP} times the file's {file_size:#x}: too many symbols on the same bytes"
        )));
    }
    Ok(())
}

/// A symbol in a section lies within it: everything later slices the
/// section's bytes by a symbol's value and size.
fn within_section(sec: SectionBrief, value: u64, size: u64, kind: SymbolKind) -> bool {
    // Section symbols and files have no extent; a zero-sized symbol may sit
    // one past the end (a linker-script style end marker).
    matches!(kind, SymbolKind::Section | SymbolKind::File) || value.checked_add(size).is_some_and(|end| end <= sec.size)
}

/// What [`attach_relocations`] leaves outside the sections.
struct Attached<'d> {
    /// The entries of each `SHF_RELA_LIVEPATCH` section.
    livepatch_relocs: Vec<(SectionId, Cow<'d, [Reloc]>)>,
    relocation_count: usize,
}

fn attach_relocations<'d>(
    table: &SectionTable<'d, FileHeader64<LE>, &'d [u8]>,
    data: &'d [u8],
    sections: &mut [Section<'d>],
    symbols: &[Symbol<'d>],
) -> Result<Attached<'d>> {
    let rela_sections: Vec<(usize, &SectionHeader64<LE>)> =
        table.iter().enumerate().filter(|(_, sh)| sh.sh_type(LE) == elf::SHT_RELA).collect();
    let nsections = sections.len();
    let symtab = sections.iter().position(|s| s.sh_type == elf::SHT_SYMTAB.0);
    let parsed: Vec<(usize, usize, Cow<'d, [Reloc]>)> = rela_sections
        .par_iter()
        .map(|&(i, sh)| {
            let name = sections[i].name;
            let target = sh.sh_info(LE) as usize;
            if target == 0 || target >= nsections {
                return Err(
                    Error::malformed(format!("applies to section index {target}, out of range")).in_section(name)
                );
            }
            // Symbol indexes below are read against the one symbol table.
            if symtab != Some(sh.sh_link(LE) as usize) {
                return Err(Error::malformed(format!(
                    "links to section index {}, not to the symbol table",
                    sh.sh_link(LE)
                ))
                .in_section(name));
            }
            let entries: &[Reloc] = sh
                .data(LE, data)
                .ok()
                .and_then(|bytes| object::pod::slice_from_all_bytes(bytes).ok())
                .ok_or_else(|| Error::malformed("entries are outside the file or not whole").in_section(name))?;
            let target_size = sections[target].size;
            // Checked in the same pass: most sections' entries are sorted.
            let (mut sorted, mut last) = (true, 0);
            for (k, reloc) in entries.iter().enumerate() {
                sorted &= std::mem::replace(&mut last, reloc.offset()) <= reloc.offset();
                if reloc.symbol().index() >= symbols.len() {
                    return Err(Error::malformed(format!(
                        "relocation #{k} refers to symbol index {}, but the symbol table has {} entries",
                        reloc.symbol(),
                        symbols.len()
                    ))
                    .in_section(name)
                    .at_offset(reloc.offset()));
                }
                let end = reloc.offset().checked_add(super::reloc::width(reloc.r_type()) as u64);
                if end.is_none_or(|end| end > target_size) {
                    return Err(Error::malformed(format!(
                        "relocation #{k} writes past the end of {} (size {target_size:#x})",
                        sections[target].name
                    ))
                    .in_section(name)
                    .at_offset(reloc.offset()));
                }
            }
            let mut relocs = Cow::Borrowed(entries);
            if !sorted {
                relocs.to_mut().sort_by_key(|r| r.offset());
            }
            Ok((i, target, relocs))
        })
        .collect::<Result<_>>()?;
    let mut livepatch = Vec::new();
    let relocation_count = parsed.iter().map(|(_, _, relocs)| relocs.len()).sum();
    for (rela, target, relocs) in parsed {
        if sections[rela].flags & super::SHF_RELA_LIVEPATCH != 0 {
            // Applied by the livepatch core, not the module loader: kept apart.
            livepatch.push((SectionId(rela as u32), relocs));
            continue;
        }
        let sec = &mut sections[target];
        if sec.rela_section.is_some() {
            // Two RELA sections for one base section: keep them all, in order.
            let all = sec.relocs.to_mut();
            all.extend_from_slice(&relocs);
            all.sort_by_key(|r| r.offset());
        } else {
            sec.relocs = relocs;
        }
        sec.rela_section = Some(SectionId(rela as u32));
    }
    Ok(Attached { livepatch_relocs: livepatch, relocation_count })
}

/// Where a symbol is, as resolving a relocation against it needs: one
/// small record per symbol in its own array, which stays in cache where
/// the symbol table (72 bytes a symbol, 21 MB in a `vmlinux.o`) does not.
/// It also carries what the quick key asks of every symbol a relocation
/// names, so that the key reads neither the symbol nor its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolPlace {
    pub value: u64,
    /// XXH3-64 of [`Symbol::demangled`]: a 64-bit hash stands for the name
    /// where the answer is itself a 64-bit hash.
    pub name_hash: u64,
    /// `u32::MAX` for a symbol outside this object's sections.
    section: u32,
    pub is_section_symbol: bool,
    /// See [`Symbol::is_cold_child`].
    pub is_cold_child: bool,
    /// In a string or constant-pool section, whose places are named by
    /// their content rather than by symbol.
    pub in_merged_section: bool,
    /// In an executable section with bytes in the file.
    pub in_code: bool,
}

impl SymbolPlace {
    fn of(sym: &Symbol, sections: &[SectionBrief]) -> Self {
        let section = sym.section().map_or(u32::MAX, |s| s.0);
        let brief = sym.section().map(|s| sections[s.index()]);
        SymbolPlace {
            value: sym.value,
            name_hash: super::names::name_hash(sym.demangled()),
            section,
            is_section_symbol: sym.kind == SymbolKind::Section,
            is_cold_child: sym.cold_child,
            in_merged_section: brief.is_some_and(|b| b.merged),
            in_code: brief.is_some_and(|b| b.code),
        }
    }
    pub fn section(&self) -> Option<SectionId> {
        (self.section != u32::MAX).then_some(SectionId(self.section))
    }
    /// Where an addend counts from: the section's start for a section
    /// symbol, the symbol's value otherwise.
    pub fn base(&self) -> i64 {
        if self.is_section_symbol { 0 } else { self.value as i64 }
    }
}

/// What the passes over the symbol table ask of a symbol's section: 16
/// bytes a section where a [`Section`] is 160 (26 MB in a `vmlinux.o`),
/// read at random for each of 300,000 symbols.
#[derive(Debug, Clone, Copy)]
struct SectionBrief {
    size: u64,
    nobits: bool,
    /// Strings or a constant pool (see [`SymbolPlace::in_merged_section`]).
    merged: bool,
    /// Executable, with bytes in the file.
    code: bool,
}

impl SectionBrief {
    fn of(sec: &Section) -> Self {
        SectionBrief {
            size: sec.size,
            nobits: sec.is_nobits(),
            merged: sec.is_strings() || sec.is_constant_pool(),
            code: sec.is_exec() && !sec.is_nobits(),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn name_tables_read_what_a_name_by_name_check_reads() {
        // Valid tables, a table with one bad name, names starting inside a
        // character, and offsets at and past the end.
        let tables: [&[u8]; 4] =
            [b"\0foo\0bar.isra.0\0", "\0caf\u{e9}\0\u{1f980}x\0".as_bytes(), b"\0ok\0b\xffd\0", b"\0no-nul"];
        for bytes in tables {
            let table = NameTable::new(bytes);
            for offset in 0..bytes.len() as u32 + 2 {
                let wanted = bytes.get(offset as usize..).and_then(|rest| {
                    let raw = &rest[..rest.iter().position(|&b| b == 0)?];
                    Some(std::str::from_utf8(raw).ok())
                });
                let got = table.get(offset).map(|r| r.ok());
                assert_eq!(got, wanted, "{bytes:?} at {offset}");
            }
        }
    }

    #[test]
    fn relocs_in_is_the_relocations_in_the_range() {
        let obj = ElfObject::parse(Path::new("pktdemo.o"), PKTDEMO).unwrap();
        let mut asked = 0;
        for sec in obj.sections.iter().filter(|s| !s.relocs.is_empty()) {
            // Every boundary a caller uses (the section's, each symbol's)
            // and each relocation's own offset and the next byte.
            let mut bounds = vec![0, sec.size, sec.size + 1];
            bounds.extend(obj.symbols_in(sec.id).flat_map(|id| [obj.symbol(id).value, obj.symbol(id).end()]));
            bounds.extend(sec.relocs.iter().flat_map(|r| [r.offset(), r.offset() + 1]));
            for &start in &bounds {
                for &end in &bounds {
                    let wanted: Vec<Reloc> =
                        sec.relocs.iter().filter(|r| (start..end).contains(&r.offset())).copied().collect();
                    assert_eq!(sec.relocs_in(start, end), wanted, "{} [{start:#x}, {end:#x})", sec.name);
                    asked += 1;
                }
            }
        }
        assert!(asked > 100, "{asked} ranges asked");
    }

    #[test]
    fn relocation_count_is_every_rela_sections_entries() {
        // Counted from the section headers alone: each RELA section's size
        // over its entry size, livepatch ones (a converted module) included.
        let objects: [(&str, &[u8]); 3] = [
            ("pktdemo.o", PKTDEMO),
            ("mem.orig.o", include_bytes!("../../corpus/kernel/def-scenario/mem.orig.o")),
            ("converted.ko", include_bytes!("../../corpus/fuzz/post_link/pktdemo.current.converted.ko")),
        ];
        let mut livepatch = 0;
        for (name, data) in objects {
            let obj = ElfObject::parse(Path::new(name), data).unwrap();
            let header = FileHeader64::<LE>::parse(data).unwrap();
            let rela = header.section_headers(LE, data).unwrap().iter().filter(|sh| sh.sh_type(LE) == elf::SHT_RELA);
            let wanted: u64 = rela
                .inspect(|sh| livepatch += usize::from(sh.sh_flags(LE).0 & super::super::SHF_RELA_LIVEPATCH != 0))
                .map(|sh| sh.sh_size(LE) / sh.sh_entsize(LE))
                .sum();
            assert!(wanted > 0, "{name} has relocations");
            assert_eq!(obj.relocation_count() as u64, wanted, "{name}");
        }
        assert!(livepatch > 0, "a livepatch RELA section was counted");
    }

    #[test]
    fn demangle_strips_only_disambiguators() {
        assert_eq!(demangle("foo.123"), "foo");
        assert_eq!(demangle("foo.isra.0"), "foo.isra");
        assert_eq!(demangle("foo.constprop.12"), "foo.constprop");
        assert_eq!(demangle("foo.cold"), "foo.cold");
        assert_eq!(demangle("__UNIQUE_ID_quirk_x_661"), "__UNIQUE_ID_quirk_x");
        assert_eq!(demangle("c_start.llvm.1525"), "c_start");
        assert_eq!(promoted_unit("c_start.llvm.1525"), Some("1525"));
        assert_eq!(promoted_unit("amd_northbridges.1.llvm.139"), Some("139"));
        assert_eq!(promoted_unit("c_start"), None);
        assert_eq!(promoted_unit("x.llvm."), None);
        assert_eq!(promoted_unit("x.llvm.12a"), None);
        assert_eq!(promoted_unit("x.llvm.1a.llvm.5"), Some("5"));
        assert_eq!(promoted_unit("x.llvm.5.llvm.1a"), None);
        assert_eq!(promoted_unit("llvm.5"), None);
        assert_eq!(promoted_unit(".llvm.5"), Some("5"));
        assert_eq!(demangle("plain_name_2"), "plain_name_2");
        assert_eq!(demangle("..."), "...");
    }

    const PKTDEMO: &[u8] = include_bytes!("../../corpus/objects/pktdemo.orig.o");

    /// pktdemo.o with one field of the first section header of `sh_type`
    /// (at `field` bytes into the header, 4 or 8 bytes wide) set to `value`.
    fn with_header_field(sh_type: u32, field: usize, value: u64, width: usize) -> Vec<u8> {
        let mut data = PKTDEMO.to_vec();
        let shoff = u64::from_le_bytes(data[0x28..0x30].try_into().unwrap()) as usize;
        let shnum = u16::from_le_bytes(data[0x3c..0x3e].try_into().unwrap()) as usize;
        let at = (0..shnum)
            .map(|i| shoff + i * 64)
            .find(|&h| u32::from_le_bytes(data[h + 4..h + 8].try_into().unwrap()) == sh_type)
            .expect("pktdemo has such a section");
        data[at + field..at + field + width].copy_from_slice(&value.to_le_bytes()[..width]);
        data
    }

    fn error_of(data: &[u8]) -> String {
        ElfObject::parse(Path::new("p.o"), data).err().expect("refused").to_string()
    }

    #[test]
    fn relocations_must_link_to_the_symbol_table() {
        ElfObject::parse(Path::new("p.o"), PKTDEMO).expect("the original reads");
        let e = error_of(&with_header_field(elf::SHT_RELA.0, 40, 1, 4));
        assert!(e.starts_with("p.o: .rela.") && e.contains("links to section index 1, not to the symbol table"), "{e}");
    }

    #[test]
    fn the_first_bad_relocation_is_the_one_reported() {
        // Entries of a RELA section of a kernel object made bad, one after another,
        // each before the last: an offset past its section's end, a symbol
        // index past the table's.
        let rela = |data: &[u8]| {
            let header = FileHeader64::<LE>::parse(data).unwrap();
            let table = header.sections(LE, data).unwrap();
            let mut rela = table.enumerate().filter(|(_, sh)| sh.sh_type(LE) == elf::SHT_RELA);
            let (_, sh) = rela.find(|(_, sh)| sh.sh_size(LE) >= 4 * 24).unwrap();
            let target = table.section(object::SectionIndex(sh.sh_info(LE) as usize)).unwrap();
            (sh.sh_offset(LE) as usize, target.sh_size(LE))
        };
        let object: &[u8] = include_bytes!("../../corpus/kernel/def-scenario/mem.orig.o");
        let (at, target_size) = rela(object);
        let past_end = |data: &mut Vec<u8>, k: usize| {
            data[at + k * 24..at + k * 24 + 8].copy_from_slice(&(target_size - 1).to_le_bytes())
        };
        let bad_symbol = |data: &mut Vec<u8>, k: usize| data[at + k * 24 + 12..at + k * 24 + 16].fill(0xff);
        let mut data = object.to_vec();
        past_end(&mut data, 2);
        let e = error_of(&data);
        assert!(e.contains("relocation #2 writes past the end of"), "{e}");
        bad_symbol(&mut data, 1);
        let e = error_of(&data);
        assert!(e.contains("relocation #1 refers to symbol index 4294967295"), "{e}");
        past_end(&mut data, 0);
        let e = error_of(&data);
        assert!(e.contains("relocation #0 writes past the end of"), "{e}");
    }

    /// An object with a function of each name in `.text`, written by the
    /// `object` crate.
    pub(in crate::elf) fn with_functions(names: &[&str]) -> Vec<u8> {
        use object::write::{Object, Symbol as WSymbol, SymbolSection};
        let mut o = Object::new(object::BinaryFormat::Elf, object::Architecture::X86_64, object::Endianness::Little);
        let text = o.section_id(object::write::StandardSection::Text);
        o.append_section_data(text, &vec![0xc3; names.len()], 1);
        for (i, name) in names.iter().enumerate() {
            let local = i % 2 == 0;
            o.add_symbol(WSymbol {
                name: name.as_bytes().to_vec(),
                value: i as u64,
                size: 1,
                kind: object::SymbolKind::Text,
                scope: if local { object::SymbolScope::Compilation } else { object::SymbolScope::Linkage },
                weak: false,
                section: SymbolSection::Section(text),
                flags: object::SymbolFlags::None,
            });
        }
        o.write().unwrap()
    }

    #[test]
    fn demangled_groups_are_every_symbol_of_that_demangled_name() {
        // Names that demangle to themselves, to another present name, to an
        // absent one, and in two steps (`x.1.llvm.9` -> `x.1`, while `x.1`
        // itself demangles to `x`).
        let names = [
            "a",
            "a.1",
            "a.2",
            "a",
            "b.isra.0",
            "b.isra",
            "b.isra.1",
            "x.1.llvm.9",
            "x.1",
            "x",
            "y.llvm.3",
            "__UNIQUE_ID_q_5",
            "__UNIQUE_ID_q_6",
            "c.cold",
            "c",
            "only.7",
            "z",
        ];
        let data = with_functions(&names);
        let obj = ElfObject::parse(Path::new("n.o"), &data).unwrap();
        let named: Vec<&Symbol> = obj.symbols.iter().filter(|s| s.kind == SymbolKind::Func).collect();
        assert_eq!(named.len(), names.len());
        let expected =
            |d: &str| -> Vec<SymbolId> { named.iter().filter(|s| s.demangled() == d).map(|s| s.id).collect() };
        let mut listed: Vec<&str> = Vec::new();
        for (d, ids) in obj.demangled_names() {
            assert_eq!(ids, expected(d).as_slice(), "group of {d}");
            listed.push(d);
        }
        listed.sort_unstable();
        let mut wanted: Vec<&str> = named.iter().map(|s| s.demangled()).collect();
        wanted.sort_unstable();
        wanted.dedup();
        assert_eq!(listed, wanted, "each demangled name listed once");
        let full = |n: &str| -> Vec<SymbolId> { named.iter().filter(|s| s.name == n).map(|s| s.id).collect() };
        for probe in names.iter().chain(&["x.1", "b", "only", "absent", "y", "__UNIQUE_ID_q"]) {
            assert_eq!(obj.symbols_demangled(probe), expected(probe).as_slice(), "lookup of {probe}");
            assert_eq!(obj.symbols_named(probe), full(probe).as_slice(), "{probe} by full name");
        }
    }

    #[test]
    fn cold_parents_are_the_functions_their_names_and_files_say() {
        // Synthesized objects have `.cold` parts of statics and globals,
        // among other functions and statics of the same name.
        let by_scan = |obj: &ElfObject, c: &Symbol| -> Option<SymbolId> {
            let name = &c.name[..c.name.find(".cold")?];
            let functions = || obj.symbols.iter().filter(|s| s.name == name && s.kind == SymbolKind::Func);
            let local = functions().find(|s| s.is_local() && s.file == c.file);
            local.or_else(|| functions().find(|s| !s.is_local())).map(|s| s.id)
        };
        let (mut asked, mut found) = (0, 0);
        for (seed, merged) in [(1, true), (2, false)] {
            let layout = crate::synth::Layout { merged, sections_over_64k: false };
            let request = crate::synth::Request { seed, functions: 1500, mutations: 3, layout };
            let pair = crate::synth::synthesize(&request).unwrap();
            for bytes in [&pair.orig, &pair.patched] {
                let obj = ElfObject::parse(Path::new("synth.o"), bytes).unwrap();
                for c in obj.symbols.iter().filter(|s| s.name.contains(".cold")) {
                    let parent = obj.cold_parent(c.id);
                    assert_eq!(parent, by_scan(&obj, c), "{}", c.name);
                    (asked, found) = (asked + 1, found + parent.is_some() as usize);
                }
            }
        }
        assert!(found > 100, "{found} parents of {asked} parts");
    }

    #[test]
    fn table_order_is_each_sections_symbols_by_index() {
        let data = include_bytes!("../../corpus/kernel/def-scenario/mem.orig.o");
        let obj = ElfObject::parse(Path::new("mem.orig.o"), data).unwrap();
        let mut seen = 0;
        for sec in &obj.sections {
            let mut by_value: Vec<SymbolId> = obj.symbols_in(sec.id).collect();
            by_value.sort_unstable();
            assert_eq!(obj.symbols_in_table_order(sec.id), by_value, "{}", sec.name);
            seen += by_value.len();
        }
        assert!(seen > 20, "{seen} symbols in sections");
    }

    #[test]
    fn relocations_are_read_sorted_by_offset() {
        // pktdemo's `.rela.text.pkt_receive` with its two entries swapped.
        let obj = ElfObject::parse(Path::new("p.o"), PKTDEMO).unwrap();
        let sec = obj.sections.iter().find(|s| s.name == ".text.pkt_receive").unwrap();
        let rela = obj.section(sec.rela_section.unwrap());
        let sorted: Vec<(u64, u32, SymbolId)> =
            sec.relocs.iter().map(|r| (r.offset(), r.r_type(), r.symbol())).collect();
        assert!(sorted.len() == 2 && sorted[0].0 < sorted[1].0, "{sorted:?}");
        let mut data = PKTDEMO.to_vec();
        let at = rela.file_offset as usize;
        let (first, second) = (data[at..at + 24].to_vec(), data[at + 24..at + 48].to_vec());
        data[at..at + 24].copy_from_slice(&second);
        data[at + 24..at + 48].copy_from_slice(&first);
        let swapped = ElfObject::parse(Path::new("p.o"), &data).unwrap();
        let sec = swapped.sections.iter().find(|s| s.name == ".text.pkt_receive").unwrap();
        assert_eq!(sec.relocs.iter().map(|r| (r.offset(), r.r_type(), r.symbol())).collect::<Vec<_>>(), sorted);
    }

    #[test]
    fn sections_must_not_share_bytes() {
        // The first relocation section moved onto the file's first section:
        // out of header order.
        let e = error_of(&with_header_field(elf::SHT_RELA.0, 24, 0x40, 8));
        assert!(e.contains("overlap those of section"), "{e}");
        // Sections in file order, as `ld -r` writes them (gcc does not),
        // are checked without sorting: accepted when disjoint, refused when
        // one reaches into the next.
        let mut obj = ElfObject::parse(Path::new("p.o"), PKTDEMO).unwrap();
        let with_bytes: Vec<usize> = obj.sections.iter().filter(|s| occupies_file(s)).map(|s| s.id.index()).collect();
        assert!(with_bytes.len() > 3);
        let mut at = 0x40;
        for &i in &with_bytes {
            let s = &mut obj.sections[i];
            (s.file_offset, at) = (at, at + s.size);
        }
        check_disjoint(&obj.sections).expect("in file order, disjoint");
        let third = with_bytes[2];
        obj.sections[third].size += 1;
        let e = check_disjoint(&obj.sections).expect_err("one byte into the next").to_string();
        assert!(e.contains(&format!("overlap those of section {}", obj.sections[third].name)), "{e}");
    }
}
