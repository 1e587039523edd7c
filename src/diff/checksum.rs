//! Checksum stage: a position-independent XXH3-64 per FUNC and OBJECT symbol.
//!
//! A function is decoded instruction by instruction (iced-x86). Each
//! instruction is reduced to a [`InsnDigest`]: its bytes with every relocated
//! field blanked and replaced by what the relocation means (target name with
//! compiler suffixes stripped plus the offset inside it, the string for string
//! literals, the constant for constant-pool entries), and for branches and
//! calls without a relocation, the opcode plus the destination as symbol and
//! offset. So moving code or data around the file changes nothing; changing
//! what the code does or refers to changes the digest. The special-section
//! entries describing the function (exception fixups, alternatives, bug sites,
//! jump labels) and its `.cold` part are folded in too.
//!
//! The per-instruction form ([`Fingerprint`]) is kept only where it is needed
//! (line-only detection, `--explain`); the checksum pass streams.
//!
//! Decoding is the expensive part, and for a function that is the same in
//! both objects it says nothing new. So the stage computes, for every
//! function, a [`quick`] key from its raw bytes and what its relocations
//! mean, equal for two functions only if their exact checksums are; the
//! exact checksum is computed on demand ([`Side::exact`]): for twins whose
//! keys differ, for the names the correlation cannot pair otherwise, and for
//! the few functions a key cannot describe.

mod quick;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustc_hash::FxHashMap as HashMap;

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Formatter, Instruction, IntelFormatter, Mnemonic, OpKind, Register,
};
use rayon::prelude::*;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::diff::line_rule::{self, Slot};
use crate::diff::snippet;
use crate::elf::{ElfObject, Referent, Reloc, Section, SymbolId, SymbolKind, reloc};
use crate::kernel::special::{SpecialEntry, SpecialIndex};

/// Offset of the `line` field in a 12-byte x86-64 `struct bug_entry`
/// (`bug_addr_disp`, `file_disp`, `line`, `flags`).
const BUG_ENTRY_LINE_OFFSET: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Checksum(pub u64);

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Checksums of one object, indexed by symbol id.
///
/// A data object's checksum is computed with the object. A function's exact
/// checksum decodes it, so it is computed only when asked for
/// ([`Side::exact`]); what is known up front is its [`quick`] key, which
/// is equal for two functions only if their exact checksums are.
///
/// Nine bytes a symbol: the value and what it is. The exact checksums
/// asked for later (a few hundred of a `vmlinux.o`'s 125,000 functions)
/// are kept aside; an `OnceLock` per symbol made this 32 bytes a symbol.
pub struct Checksums {
    kinds: Vec<SumKind>,
    values: Vec<u64>,
    /// Exact checksums of keyed functions, computed on demand. Sharded by
    /// symbol, and computed under the shard's lock: once each, and
    /// different functions on different cores.
    exact: Vec<Mutex<HashMap<SymbolId, Checksum>>>,
    /// Functions decoded instruction by instruction for their exact checksum.
    decoded: AtomicUsize,
    /// Functions with a checksum.
    pub functions: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SumKind {
    /// Sections, files, undefined and empty symbols: no value.
    None,
    /// A data object: the value is its checksum.
    Data,
    /// A function with a quick key: the value.
    Keyed,
    /// A function without one, decoded right away: the value is its exact checksum.
    Decoded,
}

const EXACT_SHARDS: usize = 64;

impl Checksums {
    /// Symbols with a checksum.
    pub fn count(&self) -> usize {
        self.kinds.iter().filter(|&&k| k != SumKind::None).count()
    }

    /// Functions decoded so far for their exact checksum.
    pub fn decoded(&self) -> usize {
        self.decoded.load(Ordering::Relaxed)
    }

    fn get(&self, id: SymbolId) -> Option<(SumKind, u64)> {
        Some((*self.kinds.get(id.index())?, self.values[id.index()]))
    }
}

/// The `.cold` parts of each parent function.
pub type ColdChildren = HashMap<SymbolId, Vec<SymbolId>>;

pub fn cold_children(obj: &ElfObject) -> ColdChildren {
    let mut map = ColdChildren::default();
    for &(child, parent) in obj.cold_parents() {
        if obj.symbol(child).kind == SymbolKind::Func {
            map.entry(parent).or_default().push(child);
        }
    }
    map
}

/// The most symbols one task checksums: a few milliseconds of work.
const STEAL_GRAIN: usize = 4096;

/// Checksum every data object and compute the quick key of every function,
/// in parallel. A function without quick key is decoded here.
pub fn compute(obj: &ElfObject, specials: &SpecialIndex, cold: &ColdChildren) -> Checksums {
    let envs = quick::SectionEnvs::build(obj);
    let decoded = AtomicUsize::new(0);
    // Section by section, not in table order: the sections, their bytes,
    // relocations and special entries are then read front to back.
    let order = obj.section_major_order();
    let sums: Vec<(SumKind, u64)> = order
        .par_iter()
        // Pieces small enough to steal: the two objects are checksummed at
        // once, and the core done first otherwise sat idle while the other
        // finished a quarter of its object alone (24 ms, median, of a def
        // diff).
        .with_max_len(STEAL_GRAIN)
        .map_init(quick::KeyScratch::default, |scratch, &id| {
            let sym = obj.symbol(id);
            match sym.kind {
                SymbolKind::Func if is_code(obj, id) => {
                    match quick::function_key(Refs::plain(obj), specials, cold, &envs, id, scratch) {
                        Some(key) => (SumKind::Keyed, key),
                        None => {
                            decoded.fetch_add(1, Ordering::Relaxed);
                            (SumKind::Decoded, function_checksum(Refs::plain(obj), specials, cold, id).0)
                        }
                    }
                }
                SymbolKind::Func | SymbolKind::Object | SymbolKind::Tls if sym.is_defined() => {
                    (SumKind::Data, object_checksum(obj, id, &mut scratch.data).0)
                }
                _ => (SumKind::None, 0),
            }
        })
        .collect();
    let (mut kinds, mut values) = (vec![SumKind::None; obj.symbols.len()], vec![0; obj.symbols.len()]);
    for (&id, (kind, value)) in order.iter().zip(sums) {
        (kinds[id.index()], values[id.index()]) = (kind, value);
    }
    let functions = kinds.iter().filter(|&&k| matches!(k, SumKind::Keyed | SumKind::Decoded)).count();
    let exact = (0..EXACT_SHARDS).map(|_| Mutex::default()).collect();
    Checksums { kinds, values, exact, decoded, functions }
}

/// One object with what the checksum stage computed about it.
pub struct Side<'a, 'd> {
    pub obj: &'a ElfObject<'d>,
    pub sums: &'a Checksums,
    pub specials: &'a SpecialIndex,
    pub cold: &'a ColdChildren,
}

impl Side<'_, '_> {
    /// The exact checksum of `id`; `None` for symbols that have none
    /// (sections, files, undefined, empty). A function is decoded the first
    /// time it is asked for.
    pub fn exact(&self, id: SymbolId) -> Option<Checksum> {
        let (kind, value) = self.sums.get(id)?;
        match kind {
            SumKind::None => None,
            SumKind::Data | SumKind::Decoded => Some(Checksum(value)),
            SumKind::Keyed => {
                let shard = &self.sums.exact[id.index() % EXACT_SHARDS];
                // A poisoned shard only means another thread panicked; its
                // entries are whole.
                let mut done = shard.lock().unwrap_or_else(|e| e.into_inner());
                Some(*done.entry(id).or_insert_with(|| {
                    self.sums.decoded.fetch_add(1, Ordering::Relaxed);
                    function_checksum(Refs::plain(self.obj), self.specials, self.cold, id)
                }))
            }
        }
    }

    /// Whether `a` of this object and `b` of `other` have equal exact
    /// checksums, decoding them only if their quick keys do not already say
    /// so; `None` if either has no checksum.
    pub fn same(&self, a: SymbolId, other: &Side, b: SymbolId) -> Option<bool> {
        if let (Some((SumKind::Keyed, x)), Some((SumKind::Keyed, y))) = (self.sums.get(a), other.sums.get(b))
            && x == y
        {
            return Some(true);
        }
        Some(self.exact(a)? == other.exact(b)?)
    }
}

fn is_code(obj: &ElfObject, id: SymbolId) -> bool {
    obj.symbol(id).size > 0 && obj.place(id).in_code
}

/// How references are named while hashing: by each symbol's own demangled
/// name, or, for the patched side after correlation, by its original twin's
/// name, so that a reference to a renamed twin (`foo.isra.0` that became
/// `foo.constprop.0.isra.0` with identical code) is not a change.
#[derive(Clone, Copy)]
pub struct Refs<'a, 'd> {
    pub obj: &'a ElfObject<'d>,
    rename: Option<&'a (dyn Fn(SymbolId) -> Option<&'d str> + Sync)>,
    /// The function being fingerprinted: references to it and its `.cold`
    /// parts are hashed by their part, not by name, so that a function's
    /// checksum does not depend on its own name (its `__mcount_loc` entry,
    /// a recursive call, the jumps between it and its cold part), and an
    /// IPA clone that gcc renamed with identical code keeps its checksum.
    this: Option<SymbolId>,
}

impl<'a, 'd> Refs<'a, 'd> {
    pub fn plain(obj: &'a ElfObject<'d>) -> Self {
        Refs { obj, rename: None, this: None }
    }

    pub fn renamed(obj: &'a ElfObject<'d>, rename: &'a (dyn Fn(SymbolId) -> Option<&'d str> + Sync)) -> Self {
        Refs { obj, rename: Some(rename), this: None }
    }

    fn name(&self, id: SymbolId) -> &'d str {
        self.rename.and_then(|f| f(id)).unwrap_or(self.obj.symbol(id).demangled())
    }

    pub fn target(&self, r: &Reloc, adjusted: i64) -> Target<'d> {
        self.target_and_symbol(r, adjusted).0
    }

    /// [`Refs::target`] and the named symbol it stands for, if any.
    fn target_and_symbol(&self, r: &Reloc, adjusted: i64) -> (Target<'d>, Option<SymbolId>) {
        match Target::resolve_ref(self.obj, r, adjusted, Some(*self)) {
            Resolved::Symbol(id, offset) => (self.symbol_target(id, offset), Some(id)),
            Resolved::Other(target) => (target, None),
        }
    }

    /// A resolved target, with a named symbol as these references name it.
    fn named(&self, resolved: Resolved<'d>) -> Target<'d> {
        match resolved {
            Resolved::Symbol(id, offset) => self.symbol_target(id, offset),
            Resolved::Other(target) => target,
        }
    }

    fn symbol_target(&self, id: SymbolId, offset: i64) -> Target<'d> {
        match self.own_part(id) {
            Some(part) => Target::Own { part, offset },
            None => Target::Symbol { name: self.name(id), offset },
        }
    }

    /// For the function being fingerprinted: "" for itself, the suffix
    /// (`.cold`, without a number) for one of its cold parts.
    fn own_part(&self, id: SymbolId) -> Option<&'d str> {
        let this = self.this?;
        if id == this {
            return Some("");
        }
        let (sym, top) = (self.obj.symbol(id), self.obj.symbol(this));
        let suffix = (sym.is_cold_child() && self.obj.cold_parent(id) == Some(this))
            .then(|| sym.name.get(top.name.len()..))??;
        // Older gcc numbers cold parts (`.cold.13`); the number says nothing.
        Some(crate::elf::demangle(suffix))
    }

    fn code_address(&self, sec: &Section<'d>, address: u64) -> Target<'d> {
        match self.obj.symbol_at(sec.id, address) {
            Some(id) => self.symbol_target(id, address as i64 - self.obj.symbol(id).value as i64),
            None => Target::Anonymous { section: strip_numeric_suffix(sec.name), offset: address as i64 },
        }
    }
}

/// One decoded instruction of a function, reduced to what matters.
#[derive(Debug, Clone)]
pub struct InsnDigest<'d> {
    /// Offset in the function's section.
    pub offset: u64,
    pub digest: u64,
    /// Set for `mov $imm32, %reg` into an argument register and for
    /// `push $imm`: the digest without the immediate, and where it goes (a
    /// possible line number, see [`crate::diff::line_rule`]).
    pub line_immediate: Option<(u64, Slot)>,
    /// Where this instruction puts the address of a string naming a source
    /// location: a file or function name.
    pub location_argument: Option<Slot>,
    /// `mov %src, %dst` between 64-bit registers: (dst, src).
    pub register_copy: Option<(Register, Register)>,
    /// The instruction pushes something on the stack.
    pub pushes: bool,
    /// The instruction moves %rsp (a push or pop, or a write to %rsp): a
    /// store to the stack before it is not where the next call looks.
    pub moves_stack: bool,
    /// For a `jmp` to elsewhere in the same function (part): where it lands,
    /// as a section offset.
    pub jumps_to: Option<u64>,
    /// For calls and tail calls: the callee's demangled name.
    pub callee: Option<&'d str>,
}

/// One special-section entry describing the function.
#[derive(Debug, Clone)]
pub struct EntryDigest {
    pub entry: SpecialEntry,
    pub digest: u64,
    /// The digest with a `__bug_table` line field blanked.
    pub without_line: u64,
}

/// Everything a function checksum is made of, in order.
#[derive(Debug, Clone)]
pub struct Fingerprint<'d> {
    pub function: SymbolId,
    pub insns: Vec<InsnDigest<'d>>,
    pub entries: Vec<EntryDigest>,
    pub cold: Vec<Fingerprint<'d>>,
}

impl Fingerprint<'_> {
    pub fn checksum(&self) -> Checksum {
        let mut h = Xxh3::new();
        self.feed(&mut h);
        Checksum(h.digest())
    }

    fn feed(&self, h: &mut Xxh3) {
        h.update(b"F");
        for i in &self.insns {
            h.update(&i.digest.to_le_bytes());
        }
        h.update(b"E");
        for e in &self.entries {
            h.update(&e.digest.to_le_bytes());
        }
        for c in &self.cold {
            h.update(b"C");
            c.feed(h);
        }
    }
}

/// Decode function `id` (and its `.cold` parts) into its fingerprint.
pub fn function_fingerprint<'d>(
    refs: Refs<'_, 'd>,
    specials: &SpecialIndex,
    cold: &ColdChildren,
    id: SymbolId,
) -> Fingerprint<'d> {
    let refs = Refs { this: refs.this.or(Some(id)), ..refs };
    let entries = specials.entries_of(id).iter().map(|e| entry_digest(refs, e)).collect();
    let children = cold.get(&id).map_or(&[][..], Vec::as_slice);
    Fingerprint {
        function: id,
        insns: decode_function(refs, id),
        entries,
        cold: children.iter().map(|&c| function_fingerprint(refs, specials, &ColdChildren::default(), c)).collect(),
    }
}

/// The checksum of function `id`, streamed: the same value as its
/// [`Fingerprint::checksum`], without keeping the instructions.
pub(crate) fn function_checksum(
    refs: Refs<'_, '_>,
    specials: &SpecialIndex,
    cold: &ColdChildren,
    id: SymbolId,
) -> Checksum {
    let mut h = Xxh3::new();
    feed_function(refs, specials, cold, id, &mut h);
    Checksum(h.digest())
}

/// What [`Fingerprint::feed`] feeds for the fingerprint of `id`.
fn feed_function(refs: Refs<'_, '_>, specials: &SpecialIndex, cold: &ColdChildren, id: SymbolId, h: &mut Xxh3) {
    let refs = Refs { this: refs.this.or(Some(id)), ..refs };
    h.update(b"F");
    decode_each(refs, id, |i| h.update(&i.digest.to_le_bytes()));
    h.update(b"E");
    for e in specials.entries_of(id) {
        h.update(&entry_digest(refs, e).digest.to_le_bytes());
    }
    for &c in cold.get(&id).map_or(&[][..], Vec::as_slice) {
        h.update(b"C");
        feed_function(refs, specials, &ColdChildren::default(), c, h);
    }
}

fn decode_function<'d>(refs: Refs<'_, 'd>, id: SymbolId) -> Vec<InsnDigest<'d>> {
    let mut out = Vec::new();
    decode_each(refs, id, |i| out.push(i));
    out
}

/// Decode function `id` and hand each instruction's digest to `each`.
fn decode_each<'d>(refs: Refs<'_, 'd>, id: SymbolId, mut each: impl FnMut(InsnDigest<'d>)) {
    let obj = refs.obj;
    let sym = obj.symbol(id);
    let Some(sec) = obj.symbol_section(sym) else {
        return;
    };
    let start = sym.value.min(sec.data.len() as u64);
    let end = sym.end().min(sec.data.len() as u64);
    let code = &sec.data[start as usize..end as usize];
    let mut decoder = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    let mut buf = Vec::with_capacity(64);
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        let offset = insn.ip();
        let len = insn.len() as u64;
        let bytes = &sec.data[offset as usize..(offset + len) as usize];
        let relocs = sec.relocs_in(offset, offset + len);
        let immediate = decoder.get_constant_offsets(&insn);
        buf.clear();
        let mut callee = None;
        let mut line_immediate = None;
        let mut location = false;
        // Only an instruction that passes an address can pass a location.
        let argument_slot = address_argument(&insn);
        let mut jumps_to = None;
        if relocs.is_empty() && crate::x86::is_near_branch(&insn) && immediate.has_immediate() {
            // Position-independent branch: opcode, then where it lands.
            buf.push(b'B');
            buf.extend_from_slice(&bytes[..immediate.immediate_offset()]);
            let dest = insn.near_branch_target();
            if insn.flow_control() == FlowControl::UnconditionalBranch && (start..end).contains(&dest) {
                jumps_to = Some(dest);
            }
            let target = refs.code_address(sec, dest);
            callee = callee_of(&insn, target);
            target.feed(&mut buf);
        } else {
            buf.push(b'I');
            let start_len = buf.len();
            buf.extend_from_slice(bytes);
            for r in relocs {
                blank(&mut buf[start_len..], (r.offset() - offset) as usize, reloc::width(r.r_type()));
            }
            if let Some(slot) = relocs.is_empty().then(|| immediate_argument(&insn)).flatten() {
                let imm = immediate.immediate_offset();
                line_immediate = Some((xxh3_64(&buf[..start_len + imm]), slot));
            }
            for r in relocs {
                buf.push((r.offset() - offset) as u8);
                buf.extend_from_slice(&reloc::class(r.r_type()).to_le_bytes());
                let adjusted = adjusted_addend(r, offset + len);
                let (target, named) = refs.target_and_symbol(r, adjusted);
                location |= argument_slot.is_some() && names_location(obj, target, named);
                callee = callee.or(callee_of(&insn, target));
                target.feed(&mut buf);
            }
        }
        let location_argument = argument_slot.filter(|_| location);
        let register_copy = (matches!(insn.code(), Code::Mov_rm64_r64 | Code::Mov_r64_rm64)
            && insn.op0_kind() == OpKind::Register
            && insn.op1_kind() == OpKind::Register)
            .then(|| (insn.op0_register(), insn.op1_register()));
        let pushes = insn.mnemonic() == Mnemonic::Push;
        let moves_stack = insn.stack_pointer_increment() != 0
            || (insn.op0_kind() == OpKind::Register && insn.op0_register().full_register() == Register::RSP);
        each(InsnDigest {
            offset,
            digest: xxh3_64(&buf),
            line_immediate,
            location_argument,
            register_copy,
            pushes,
            moves_stack,
            jumps_to,
            callee,
        });
    }
}

/// `mov $imm32, %reg32` into an argument register, `push $imm`, or (as
/// clang passes stack arguments, into space reserved beforehand) `mov
/// $imm, N(%rsp)`: how x86-64 passes a small constant, a line number among
/// them, to a call.
fn immediate_argument(insn: &Instruction) -> Option<Slot> {
    match insn.code() {
        Code::Mov_r32_imm32 if line_rule::is_argument_register(insn.op0_register()) => {
            Some(Slot::Register(insn.op0_register().full_register()))
        }
        Code::Pushq_imm32 | Code::Pushq_imm8 => Some(Slot::Stack),
        Code::Mov_rm32_imm32 | Code::Mov_rm64_imm32 => stack_store_slot(insn),
        _ => None,
    }
}

/// For a store to `N(%rsp)`, N a multiple of 8: the stack argument slot it
/// writes while %rsp stays where the call finds it.
fn stack_store_slot(insn: &Instruction) -> Option<Slot> {
    if insn.op0_kind() != OpKind::Memory || insn.memory_base() != Register::RSP || insn.memory_index() != Register::None
    {
        return None;
    }
    let displacement = insn.memory_displacement64();
    (displacement.is_multiple_of(8) && displacement / 8 < 16).then_some(Slot::StackAt(displacement as u8 / 8))
}

/// The callee of a call, or of a jump to another function (a tail call).
fn callee_of<'d>(insn: &Instruction, target: Target<'d>) -> Option<&'d str> {
    match (insn.flow_control(), target) {
        (FlowControl::Call | FlowControl::UnconditionalBranch, Target::Symbol { name, .. }) => Some(name),
        _ => None,
    }
}

/// Where `mov $addr, %reg`, `lea addr(%rip), %reg`, `push $addr` or `mov
/// $addr, N(%rsp)` puts the address it holds.
fn address_argument(insn: &Instruction) -> Option<Slot> {
    match insn.mnemonic() {
        Mnemonic::Mov | Mnemonic::Lea if insn.op0_kind() == OpKind::Register => {
            Some(Slot::Register(insn.op0_register().full_register()))
        }
        Mnemonic::Mov => stack_store_slot(insn),
        Mnemonic::Push if insn.op0_kind() != OpKind::Register => Some(Slot::Stack),
        _ => None,
    }
}

/// A reference to a string that names a source location: a file path
/// (`__FILE__`, ending in `.c` or `.h`) or a function name. gcc keeps
/// `__func__` in an object named `__func__.N` (also `__FUNCTION__.N`,
/// `__PRETTY_FUNCTION__.N`); clang makes it an ordinary string literal,
/// which counts when it is the name of a function of the object (the one
/// that passes it, or one inlined into it that kept an out-of-line copy).
fn names_location(obj: &ElfObject, target: Target, named: Option<SymbolId>) -> bool {
    const FUNCTION_NAMES: [&str; 3] = ["__func__", "__FUNCTION__", "__PRETTY_FUNCTION__"];
    let function_name = named.map(|id| obj.symbol(id)).is_some_and(|s| {
        s.kind == SymbolKind::Object
            && FUNCTION_NAMES
                .iter()
                .any(|f| s.name.strip_prefix(f).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')))
    });
    let Target::String(text) = target else { return function_name };
    let names_function = || {
        std::str::from_utf8(text)
            .is_ok_and(|name| obj.symbols_named(name).iter().any(|&id| obj.symbol(id).kind == SymbolKind::Func))
    };
    function_name || text.ends_with(b".c") || text.ends_with(b".h") || names_function()
}

/// The addend as an offset from the referenced symbol: PC-relative fields in
/// code are relative to the end of the instruction, not of the field.
fn adjusted_addend(r: &Reloc, insn_end: u64) -> i64 {
    // Relocation arithmetic is modulo 2^64, as the linker's.
    if reloc::is_pc_relative(r.r_type()) {
        r.addend().wrapping_add(insn_end.saturating_sub(r.offset()) as i64)
    } else {
        r.addend()
    }
}

fn blank(bytes: &mut [u8], at: usize, width: usize) {
    let end = (at + width).min(bytes.len());
    if at < end {
        bytes[at..end].fill(0);
    }
}

/// What a reference points at, independent of layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'d> {
    /// A named symbol (demangled) and the offset inside it.
    Symbol { name: &'d str, offset: i64 },
    /// A string literal, by content.
    String(&'d [u8]),
    /// A constant-pool entry, by content.
    Constant(&'d [u8]),
    /// Anonymous data no symbol covers, by section name (numeric suffix stripped) and offset.
    Anonymous { section: &'d str, offset: i64 },
    /// The function being hashed itself (`part` ""), or one of its `.cold`
    /// parts (`part` its suffix), whatever the function is called.
    Own { part: &'d str, offset: i64 },
    /// Anonymous code no symbol covers (a snippet in a section shared by
    /// several functions), by section name and the digest of the snippet's
    /// instructions: where it sits depends on the other snippets.
    Snippet { section: &'d str, digest: u64 },
}

/// What a relocation refers to, a named symbol not yet named: by its own
/// name, its twin's or its part ([`Refs::symbol_target`]), or its name's
/// hash (the quick keys).
enum Resolved<'d> {
    /// A named symbol and the offset into it.
    Symbol(SymbolId, i64),
    Other(Target<'d>),
}

impl<'d> Target<'d> {
    /// What relocation `r` refers to; `adjusted` is its addend as an offset
    /// from the referenced symbol or section start.
    pub fn of_reloc(obj: &ElfObject<'d>, r: &Reloc, adjusted: i64) -> Self {
        Self::resolve(obj, r, adjusted).0
    }

    /// Also returns the named symbol a `Target::Symbol` stands for.
    fn resolve(obj: &ElfObject<'d>, r: &Reloc, adjusted: i64) -> (Self, Option<SymbolId>) {
        Self::resolve_in(obj, r, adjusted, Some(Refs::plain(obj)))
    }

    /// `snippets`: hash anonymous code by content, naming its references as
    /// these do; `None` inside a snippet, whose references elsewhere into
    /// anonymous code stay offsets.
    fn resolve_in(
        obj: &ElfObject<'d>,
        r: &Reloc,
        adjusted: i64,
        snippets: Option<Refs<'_, 'd>>,
    ) -> (Self, Option<SymbolId>) {
        match Self::resolve_ref(obj, r, adjusted, snippets) {
            Resolved::Symbol(id, offset) => (Target::Symbol { name: obj.symbol(id).demangled(), offset }, Some(id)),
            Resolved::Other(target) => (target, None),
        }
    }

    /// [`Self::resolve_in`] up to naming a named symbol: the quick keys
    /// name it by its place's name hash and [`Refs`] perhaps by its twin's
    /// name, and reading the symbol for its own name was a cache miss for
    /// each of a `vmlinux.o`'s references.
    fn resolve_ref(obj: &ElfObject<'d>, r: &Reloc, adjusted: i64, snippets: Option<Refs<'_, 'd>>) -> Resolved<'d> {
        let (section, at, named) = match obj.referent(r, adjusted.wrapping_sub(r.addend())) {
            Referent::External(id) => return Resolved::Symbol(id, adjusted),
            Referent::Place { section, offset, named } => (section, offset, named),
        };
        // The place says whether the section holds strings or constants:
        // its header (a cache miss) is read only then, or for anonymous
        // places.
        if obj.place(r.symbol()).in_merged_section {
            let sec = obj.section(section);
            if sec.is_strings() {
                return Resolved::Other(Target::String(
                    u64::try_from(at).ok().and_then(|o| sec.c_str_at(o)).unwrap_or_default(),
                ));
            }
            if sec.is_constant_pool() {
                let bytes =
                    usize::try_from(at).ok().and_then(|o| sec.data.get(o..o.checked_add(sec.entsize as usize)?));
                return Resolved::Other(Target::Constant(bytes.unwrap_or_default()));
            }
        }
        if let Some(id) = named.symbol() {
            return Resolved::Symbol(id, at.wrapping_sub(obj.place(id).value as i64));
        }
        let sec = obj.section(section);
        Resolved::Other(match u64::try_from(at) {
            Ok(entry) if let Some(refs) = snippets.filter(|_| sec.is_exec() && !sec.is_nobits()) => {
                let digest = snippet_digest(refs, sec, entry);
                Target::Snippet { section: strip_numeric_suffix(sec.name), digest }
            }
            _ => Target::Anonymous { section: strip_numeric_suffix(sec.name), offset: at },
        })
    }

    fn feed(&self, buf: &mut Vec<u8>) {
        let (tag, bytes, offset) = match *self {
            Target::Symbol { name, offset } => (b'S', name.as_bytes(), Some(offset)),
            Target::String(s) => (b'"', s, None),
            Target::Constant(c) => (b'K', c, None),
            Target::Anonymous { section, offset } => (b'A', section.as_bytes(), Some(offset)),
            Target::Snippet { section, digest } => (b'N', section.as_bytes(), Some(digest as i64)),
            Target::Own { part, offset } => (b'@', part.as_bytes(), Some(offset)),
        };
        buf.push(tag);
        buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        buf.extend_from_slice(bytes);
        if let Some(o) = offset {
            buf.extend_from_slice(&o.to_le_bytes());
        }
    }
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Target::Symbol { name, offset } => write!(f, "{name}{offset:+#x}"),
            Target::String(s) => write!(f, "{:?}", String::from_utf8_lossy(s)),
            Target::Constant(c) => write!(f, "constant {c:02x?}"),
            Target::Anonymous { section, offset } => write!(f, "{section}{offset:+#x}"),
            Target::Snippet { section, digest } => write!(f, "snippet {digest:016x} in {section}"),
            Target::Own { part, offset } => write!(f, "(this function){part}{offset:+#x}"),
        }
    }
}

/// The digest of the snippet of anonymous code at `entry`: each reachable
/// instruction relative to the entry, relocated fields blanked and replaced
/// by what they refer to, branches within the snippet by where they land.
/// Its references back into the function being hashed are its own (so
/// renaming the function changes nothing), as `refs` names them.
fn snippet_digest(refs: Refs<'_, '_>, sec: &Section, entry: u64) -> u64 {
    let obj = refs.obj;
    let snippet = snippet::walk(obj, sec, entry);
    let mut buf = Vec::with_capacity(snippet.insns.len() * 24);
    for (&ip, insn) in &snippet.insns {
        let end = insn.next_ip();
        buf.extend_from_slice(&(ip as i64 - entry as i64).to_le_bytes());
        let relocs = sec.relocs_in(ip, end);
        if relocs.is_empty() && crate::x86::is_near_branch(insn) {
            buf.push(b'B');
            buf.extend_from_slice(&(insn.code() as u32).to_le_bytes());
            buf.extend_from_slice(&(insn.near_branch_target() as i64 - entry as i64).to_le_bytes());
            continue;
        }
        buf.push(b'I');
        let start = buf.len();
        buf.extend_from_slice(&sec.data[ip as usize..end as usize]);
        for r in relocs {
            blank(&mut buf[start..], (r.offset() - ip) as usize, reloc::width(r.r_type()));
        }
        for r in relocs {
            buf.push((r.offset() - ip) as u8);
            buf.extend_from_slice(&reloc::class(r.r_type()).to_le_bytes());
            refs.named(Target::resolve_ref(obj, r, adjusted_addend(r, end), None)).feed(&mut buf);
        }
    }
    xxh3_64(&buf)
}

fn strip_numeric_suffix(name: &str) -> &str {
    let t = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if t.is_empty() { name } else { t }
}

/// Checksum of a data object: size, bytes (relocated fields blanked), and
/// what each relocation inside it refers to.
/// The checksum of data object `id`: its size, its bytes with relocated
/// fields blanked, and what each relocation refers to. `buf` is scratch: a
/// `vmlinux.o` has 60,000 data objects.
fn object_checksum(obj: &ElfObject, id: SymbolId, buf: &mut Vec<u8>) -> Checksum {
    let sym = obj.symbol(id);
    let mut head = [0u8; 9];
    head[0] = b'O';
    head[1..].copy_from_slice(&sym.size.to_le_bytes());
    let Some(sec) = obj.symbol_section(sym) else { return Checksum(xxh3_64(&head)) };
    let start = sym.value.min(sec.data.len() as u64) as usize;
    let end = sym.end().min(sec.data.len() as u64) as usize;
    let relocs = sec.relocs_in(sym.value, sym.end());
    if relocs.is_empty() {
        // Nothing to blank: hashed where it lies (tables of megabytes).
        let mut h = Xxh3::new();
        h.update(&head);
        h.update(&sec.data[start..end]);
        return Checksum(h.digest());
    }
    buf.clear();
    buf.extend_from_slice(&head);
    let data_start = buf.len();
    buf.extend_from_slice(&sec.data[start..end]);
    for r in relocs {
        blank(&mut buf[data_start..], (r.offset() - sym.value) as usize, reloc::width(r.r_type()));
    }
    for r in relocs {
        buf.extend_from_slice(&(r.offset() - sym.value).to_le_bytes());
        buf.extend_from_slice(&reloc::class(r.r_type()).to_le_bytes());
        Target::of_reloc(obj, r, r.addend()).feed(buf);
    }
    Checksum(xxh3_64(buf))
}

fn entry_digest(refs: Refs, entry: &SpecialEntry) -> EntryDigest {
    entry_digest_in(refs, entry, &mut Vec::with_capacity(128))
}

/// [`entry_digest`] with a scratch buffer: a vmlinux.o has about two
/// million entries, and the quick keys digest them all.
fn entry_digest_in(refs: Refs, entry: &SpecialEntry, buf: &mut Vec<u8>) -> EntryDigest {
    let obj = refs.obj;
    let sec = obj.section(entry.section);
    let (start, end) = (entry.start(), entry.end());
    let relocs = entry.relocs_of(sec);
    buf.clear();
    buf.extend_from_slice(sec.name.as_bytes());
    buf.push(0);
    let data_start = buf.len();
    buf.extend_from_slice(sec.data.get(start as usize..end as usize).unwrap_or_default());
    for r in relocs {
        blank(&mut buf[data_start..], (r.offset() - start) as usize, reloc::width(r.r_type()));
    }
    for r in relocs {
        buf.extend_from_slice(&(r.offset() - start).to_le_bytes());
        buf.extend_from_slice(&reloc::class(r.r_type()).to_le_bytes());
        let target = obj.place(r.symbol());
        let target_sec = target.section().map(|s| obj.section(s));
        if let Some(repl) = target_sec.filter(|s| s.name == ".altinstr_replacement") {
            feed_alt_replacement(refs, repl, (target.value as i64).wrapping_add(r.addend()), entry, buf);
        } else {
            refs.target(r, r.addend()).feed(buf);
        }
    }
    let digest = xxh3_64(buf);
    let without_line = match bug_line_field(sec.name, entry.size.into(), relocs, start) {
        Some(at) => {
            blank(&mut buf[data_start..], at, 2);
            xxh3_64(buf)
        }
        None => digest,
    };
    EntryDigest { entry: *entry, digest, without_line }
}

/// Offset of the line field within a `__bug_table` entry that has one.
fn bug_line_field(section: &str, size: u64, relocs: &[Reloc], start: u64) -> Option<usize> {
    let has_file = relocs.iter().any(|r| r.offset() == start + 4);
    (section == "__bug_table" && size == 12 && has_file).then_some(BUG_ENTRY_LINE_OFFSET)
}

/// Hash the replacement code of an alternative. Its length is the
/// `replacementlen` byte of the entry: the last byte of a 14-byte entry
/// (v4.x+ with 32-bit feature flags), byte 11 of 12/13-byte entries.
fn feed_alt_replacement(refs: Refs, repl: &Section, at: i64, entry: &SpecialEntry, buf: &mut Vec<u8>) {
    let alt = refs.obj.section(entry.section);
    let len_at = match entry.size {
        14 => 13,
        12 | 13 => 11,
        _ => return buf.push(b'?'),
    };
    let len = alt.data.get((entry.start() + len_at) as usize).copied().unwrap_or(0) as u64;
    let Ok(start) = u64::try_from(at) else {
        return buf.push(b'?');
    };
    let end = (start + len).min(repl.data.len() as u64);
    let start = start.min(end);
    buf.push(b'R');
    let data_start = buf.len();
    buf.extend_from_slice(&repl.data[start as usize..end as usize]);
    let relocs = repl.relocs_in(start, end);
    for r in relocs {
        blank(&mut buf[data_start..], (r.offset() - start) as usize, reloc::width(r.r_type()));
    }
    for r in relocs {
        buf.extend_from_slice(&(r.offset() - start).to_le_bytes());
        refs.target(r, r.addend()).feed(buf);
    }
}

/// Where two fingerprints first differ: the instruction (or entry) index.
#[derive(Debug)]
pub enum FirstDifference<'a, 'd> {
    Instruction { orig: Option<&'a InsnDigest<'d>>, patched: Option<&'a InsnDigest<'d>>, index: usize },
    Entry { orig: Option<&'a EntryDigest>, patched: Option<&'a EntryDigest> },
    Cold { orig: Option<&'a Fingerprint<'d>>, patched: Option<&'a Fingerprint<'d>> },
}

pub fn first_difference<'a, 'd>(a: &'a Fingerprint<'d>, b: &'a Fingerprint<'d>) -> Option<FirstDifference<'a, 'd>> {
    let n = a.insns.len().max(b.insns.len());
    if let Some(index) = (0..n).find(|&i| a.insns.get(i).map(|x| x.digest) != b.insns.get(i).map(|x| x.digest)) {
        return Some(FirstDifference::Instruction { orig: a.insns.get(index), patched: b.insns.get(index), index });
    }
    let n = a.entries.len().max(b.entries.len());
    if let Some(i) = (0..n).find(|&i| a.entries.get(i).map(|x| x.digest) != b.entries.get(i).map(|x| x.digest)) {
        return Some(FirstDifference::Entry { orig: a.entries.get(i), patched: b.entries.get(i) });
    }
    let n = a.cold.len().max(b.cold.len());
    for i in 0..n {
        match (a.cold.get(i), b.cold.get(i)) {
            (Some(x), Some(y)) => {
                if let Some(d) = first_difference(x, y) {
                    return Some(d);
                }
            }
            (orig, patched) => return Some(FirstDifference::Cold { orig, patched }),
        }
    }
    None
}

/// Disassemble the instruction at `offset` of the section holding function
/// `func`, with what each relocation in it refers to.
pub fn disassemble(obj: &ElfObject, func: SymbolId, offset: u64) -> String {
    let sym = obj.symbol(func);
    let Some(sec) = obj.symbol_section(sym) else {
        return String::from("(no code)");
    };
    let end = sym.end().min(sec.data.len() as u64);
    let Some(code) = sec.data.get(offset as usize..end as usize) else {
        return String::from("(out of range)");
    };
    let mut decoder = Decoder::with_ip(64, code, offset, DecoderOptions::NONE);
    let insn = decoder.decode();
    let mut text = String::new();
    IntelFormatter::new().format(&insn, &mut text);
    let bytes = &code[..insn.len()];
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut line =
        format!("{}+{:#x}: {:<24} {}", crate::error::escaped(sym.name), offset - sym.value, hex.join(" "), text);
    for r in sec.relocs_in(offset, offset + insn.len() as u64) {
        let adjusted = adjusted_addend(r, offset + insn.len() as u64);
        let target = crate::error::escaped(&Target::of_reloc(obj, r, adjusted).to_string());
        line.push_str(&format!("  [{} -> {target}]", reloc::name(r.r_type())));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::special::EntrySizes;
    use crate::synth::model::{CallPadding, Callee, Ending, FuncId, Function, Op, Program, TextKind, Unit};

    /// A unit with one IPA clone that calls itself and has a cold part.
    fn clone_named(name: &str) -> Vec<u8> {
        clone_with(name, &[])
    }

    /// [`clone_named`] with `extra` operations first.
    fn clone_with(name: &str, extra: &[Op]) -> Vec<u8> {
        let f = Function {
            id: FuncId(1),
            name: name.into(),
            global: false,
            text: TextKind::Text,
            body: [extra, &[Op::Unlikely { limit: 9 }, Op::Call { callee: Callee::Func(FuncId(1)) }]].concat(),
            ending: Ending::Return,
            cold: Some(vec![Op::Call { callee: Callee::Extern("_printk".into()) }]),
            pad: 0,
        };
        let unit = Unit {
            file: "a.c".into(),
            source_path: "a.c".into(),
            functions: vec![f],
            variables: Vec::new(),
            strings: Vec::new(),
            constants: Vec::new(),
        };
        let p = Program { units: vec![unit], padding: CallPadding::None, next_id: 1, objtool_sites: false };
        crate::synth::write::write(&p, Default::default()).unwrap()
    }

    fn checksum_of(bytes: &[u8], name: &str) -> Checksum {
        let obj = ElfObject::parse(std::path::Path::new("x.o"), bytes).unwrap();
        let specials = SpecialIndex::build(&obj, &EntrySizes::default()).unwrap();
        let cold = cold_children(&obj);
        let sums = compute(&obj, &specials, &cold);
        let side = Side { obj: &obj, sums: &sums, specials: &specials, cold: &cold };
        side.exact(obj.symbols_named(name)[0]).unwrap()
    }

    #[test]
    fn data_checksums_stream_as_they_would_hash_at_once() {
        // `object_checksum` hashes a relocation-free object in two pieces
        // without copying it; the value must be the one-shot hash of both.
        for len in [0usize, 1, 7, 100, 231, 232, 1000, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let head = *b"O12345678";
            let mut h = Xxh3::new();
            h.update(&head);
            h.update(&data);
            assert_eq!(h.digest(), xxh3_64(&[&head[..], &data].concat()), "{len} bytes");
        }
    }

    #[test]
    fn a_function_checksum_does_not_depend_on_its_own_name() {
        // Found by the synthesizer (klp synth --seed 7 --functions 42
        // --mutations 3, whose CloneRename renames open_2.isra.1 to
        // open_2.constprop.0.isra.1): the function's __mcount_loc
        // entry, a recursive call and the jumps to and from its cold part
        // named the function, so a renamed IPA clone with identical code
        // never paired with its original and was reported removed and new.
        let a = checksum_of(&clone_named("foo.isra.0"), "foo.isra.0");
        let b = checksum_of(&clone_named("foo.constprop.0.isra.0"), "foo.constprop.0.isra.0");
        assert_eq!(a, b);
    }

    #[test]
    fn bytes_under_a_relocation_do_not_count() {
        // What a relocated field holds in the object is overwritten when it
        // is linked: only the relocation says what it will be. Garbage there
        // (an assembler that stores the addend in place, a tool that leaves
        // bytes behind) must not make the function differ.
        let bytes = clone_named("foo");
        let obj = ElfObject::parse(std::path::Path::new("x.o"), &bytes).unwrap();
        let id = obj.symbols_named("foo")[0];
        let sec = obj.symbol_section(obj.symbol(id)).unwrap();
        let sym = obj.symbol(id);
        let fields: Vec<(usize, usize)> = sec
            .relocs_in(sym.value, sym.end())
            .iter()
            .map(|r| {
                (sec.data.as_ptr() as usize - bytes.as_ptr() as usize + r.offset() as usize, reloc::width(r.r_type()))
            })
            .collect();
        assert!(fields.len() >= 2, "the function has relocations");
        let mut garbled = bytes.clone();
        for &(at, width) in &fields {
            garbled[at..at + width].fill(0xa5);
        }
        assert_ne!(garbled, bytes);
        assert_eq!(checksum_of(&garbled, "foo"), checksum_of(&bytes, "foo"));
    }

    #[test]
    fn bytes_under_relocations_count_nowhere() {
        // The same rule for data, special-section entries and alternative
        // replacements: a unit with two exception-table entries and two
        // replacements that call (the second of each starts inside its
        // section) and a table of pointers, every relocated field garbled.
        use crate::synth::model::{Replacement, VarId, VarKind, Variable};
        let f = Function {
            id: FuncId(1),
            name: "f".into(),
            global: true,
            text: TextKind::Text,
            body: vec![
                Op::UserLoad { fixup_type: 3 },
                Op::UserLoad { fixup_type: 1 },
                Op::Load { var: VarId(3), offset: 0 },
                Op::Alternative { feature: 3, replacement: Replacement::CallExtern("entry_ibpb") },
                Op::Alternative { feature: 4, replacement: Replacement::CallExtern("clear_bhb_loop") },
            ],
            ending: Ending::Return,
            cold: None,
            pad: 0,
        };
        let var = |id: u32, name: &str, pointers: Vec<(u32, FuncId)>| Variable {
            id: VarId(id),
            name: name.into(),
            global: true,
            kind: VarKind::Data,
            bytes: vec![7; 16],
            pointers,
        };
        let unit = Unit {
            file: "a.c".into(),
            source_path: "a.c".into(),
            functions: vec![f],
            variables: vec![var(2, "before", Vec::new()), var(3, "ops", vec![(8, FuncId(1))])],
            strings: Vec::new(),
            constants: Vec::new(),
        };
        let p = Program { units: vec![unit], padding: CallPadding::None, next_id: 4, objtool_sites: false };
        for merged in [false, true] {
            let bytes =
                crate::synth::write::write(&p, crate::synth::Layout { merged, sections_over_64k: false }).unwrap();
            let obj = ElfObject::parse(std::path::Path::new("x.o"), &bytes).unwrap();
            let mut garbled = bytes.clone();
            let mut fields = 0;
            for sec in &obj.sections {
                // From the header: an empty section's bytes are no slice of the file.
                let base = sec.file_offset as usize;
                for r in sec.relocs.iter() {
                    let at = base + r.offset() as usize;
                    garbled[at..at + reloc::width(r.r_type())].fill(0xa5);
                    fields += 1;
                }
            }
            assert!(fields >= 6, "{fields} relocated fields");
            for name in ["f", "ops"] {
                assert_eq!(checksum_of(&garbled, name), checksum_of(&bytes, name), "{name}, merged: {merged}");
            }
        }
    }

    #[test]
    fn only_unconditional_jumps_are_followed() {
        // The line rule walks from an argument to its call through `jmp`s
        // (gcc's merged tails); a conditional branch may not be taken, so
        // following it could pair an immediate with the wrong call.
        let bytes = clone_with("foo", &[Op::SetImm { reg: crate::synth::model::Reg::Edi, value: 5 }, Op::ExitIfZero]);
        let obj = ElfObject::parse(std::path::Path::new("x.o"), &bytes).unwrap();
        let refs = Refs::plain(&obj);
        let insns = decode_function(refs, obj.symbols_named("foo")[0]);
        let sym = obj.symbol(obj.symbols_named("foo")[0]);
        let sec = obj.symbol_section(sym).unwrap();
        let mut decoder =
            iced_x86::Decoder::with_ip(64, &sec.data[sym.value as usize..sym.end() as usize], sym.value, 0);
        let conditional: Vec<u64> =
            decoder.iter().filter(|i| i.flow_control() == FlowControl::ConditionalBranch).map(|i| i.ip()).collect();
        assert!(!conditional.is_empty(), "the function has a conditional branch");
        for i in insns.iter().filter(|i| conditional.contains(&i.offset)) {
            assert_eq!(i.jumps_to, None, "the branch at {:#x}", i.offset);
        }
    }

    #[test]
    fn address_arguments_by_destination() {
        use iced_x86::{Code, Instruction, MemoryOperand, Register};
        let insn = |r: Result<Instruction, iced_x86::IcedError>| r.unwrap();
        let to_rdi = insn(Instruction::with2(Code::Mov_r64_imm64, Register::RDI, 0x1000u64));
        assert_eq!(address_argument(&to_rdi), Some(Slot::Register(Register::RDI)));
        let on_stack =
            insn(Instruction::with2(Code::Mov_rm64_imm32, MemoryOperand::with_base_displ(Register::RSP, 8), 0x1000));
        assert_eq!(address_argument(&on_stack), Some(Slot::StackAt(1)), "clang's 8th argument");
        assert_eq!(address_argument(&insn(Instruction::with1(Code::Pushq_imm32, 0x1000))), Some(Slot::Stack));
        assert_eq!(address_argument(&insn(Instruction::with1(Code::Push_r64, Register::RAX))), None, "a register");
    }

    #[test]
    fn a_snippet_that_jumps_back_does_not_name_its_function() {
        // Found by the synthesizer's `.altinstr_aux` snippets (seeds 61,
        // 115, 199 of the exactness suite): the `static_cpu_has()` snippet
        // jumps back into the function by section symbol plus offset, and
        // its digest named the function, so a renamed IPA clone did not pair.
        let ops = [Op::CpuHas { bit: 12 }];
        let a = checksum_of(&clone_with("foo.isra.0", &ops), "foo.isra.0");
        let b = checksum_of(&clone_with("foo.constprop.0.isra.0", &ops), "foo.constprop.0.isra.0");
        assert_eq!(a, b);
        assert_ne!(a, checksum_of(&clone_named("foo.isra.0"), "foo.isra.0"), "the snippet counts");
    }
}

#[cfg(test)]
mod streaming_tests {
    use std::path::Path;

    use super::*;
    use crate::kernel::EntrySizes;

    #[test]
    fn the_streamed_checksum_is_the_fingerprints() {
        let data = include_bytes!("../../corpus/kernel/def-scenario/mem.patched.o");
        let obj = ElfObject::parse(Path::new("mem.patched.o"), data).unwrap();
        let specials = SpecialIndex::build(&obj, &EntrySizes::default()).unwrap();
        let cold = cold_children(&obj);
        let mut compared = 0;
        for s in obj.symbols.iter().filter(|s| s.kind == SymbolKind::Func && is_code(&obj, s.id)) {
            let streamed = function_checksum(Refs::plain(&obj), &specials, &cold, s.id);
            assert_eq!(
                streamed,
                function_fingerprint(Refs::plain(&obj), &specials, &cold, s.id).checksum(),
                "{}",
                s.name
            );
            compared += 1;
        }
        assert!(compared > 10, "{compared} functions compared");
    }
}
