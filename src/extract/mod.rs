//! Extract stage: from the classified diff, build the livepatch object.
//!
//! Every changed and new function is cloned with its call padding and
//! `.cold` parts. Each relocation inside a clone is re-targeted (spec §3.9,
//! §3.10): what the patch module must carry (new functions and data, string
//! literals, never-correlated statics, anonymous data) is copied in,
//! recursively; references to what the running kernel already has become
//! undefined references (exported by vmlinux, when `Module.symvers` says so)
//! or KLP relocations, encoded for the linker as a placeholder relocation
//! plus a `klp_reloc` entry that `klp post-link` converts. Special-section
//! entries describing cloned functions come along, and the livepatch
//! metadata (`klp_object_ext`, `klp_func_ext`, strings) is added.
//!
//! By job: `plan` decides how each reference is kept (no bytes),
//! `emit` clones code and data, `special` filters special-section
//! entries, `metadata` encodes the livepatch tables.

mod emit;
mod metadata;
mod plan;
mod special;

use std::collections::{BTreeMap, HashMap};

use crate::diff::{Analysis, PatchedSym};
use crate::elf::write::{OutPlacement, OutSection, OutSectionId, OutSymbol, OutSymbolId, OutputObject};
use crate::elf::{Binding, ElfObject, Section, SectionId, SymbolId, SymbolKind};
use crate::error::{Error, Result};
use crate::kernel::abi::{self as klp, Format};
use crate::kernel::kallsyms::ParentSymbols;
use crate::kernel::modinfo;
use crate::kernel::symvers::Exports;
use plan::Planner;

#[derive(Debug, Default)]
pub struct ExtractOptions<'a> {
    /// The livepatch object name (`vmlinux` or a module name).
    pub objname: Option<String>,
    pub exports: Option<&'a Exports>,
    pub parent: Option<&'a ParentSymbols>,
    pub format: Format,
}

/// The output object and what was decided on the way.
pub struct Extraction {
    pub object: OutputObject,
    pub objname: String,
    pub warnings: Vec<String>,
    /// KLP relocations emitted: (site section, offset, `.klp.sym` name).
    pub klp_relocs: Vec<(String, u64, String)>,
}

/// The livepatch object name of the diffed object: `--objname`, else the
/// `name=` record of `.modinfo`, else the path (`vmlinux.o`, or a module's
/// prelink object, recognised by its `.modinfo`).
pub fn objname(a: &Analysis, opts: &ExtractOptions) -> Result<String> {
    let mut from_file = None;
    let name = match &opts.objname {
        Some(n) => n.clone(),
        None => {
            let obj = &a.orig.obj;
            let modinfo = obj.section_by_name(".modinfo").map_or(&[][..], |m| m.data);
            let modinfo_name = modinfo::value(modinfo, "name").and_then(|n| std::str::from_utf8(n).ok());
            let path_stem = modinfo::module_name_from_path(&obj.path.to_string_lossy());
            let is_module_object = modinfo_name.is_some() || modinfo::value(modinfo, "license").is_some();
            if path_stem != "vmlinux" && !is_module_object {
                return Err(Error::usage(
                    "cannot tell which kernel object this is (no .modinfo, not vmlinux.o): pass --objname vmlinux for a translation unit of the kernel, or --objname MODULE for one of a module",
                )
                .in_file(&obj.path));
            }
            from_file = Some(&obj.path);
            modinfo_name.map_or(path_stem, str::to_owned)
        }
    };
    let module_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || name.len() > klp::MAX_OBJNAME_LEN || !name.chars().all(module_name_char) {
        let e = Error::usage(format!("object name '{}' is not a valid module name", crate::error::escaped(&name)));
        return Err(match from_file {
            Some(path) => e.in_file(path),
            None => e,
        });
    }
    Ok(name)
}

pub fn extract(a: &Analysis, opts: &ExtractOptions) -> Result<Extraction> {
    let objname = objname(a, opts)?;
    let mut b = Builder::new(a, opts, objname);
    b.include_changes();
    b.clone_included()?;
    b.extract_special_sections()?;
    b.callbacks()?;
    b.add_metadata()?;
    b.add_modinfo();
    b.add_stack_note();
    Ok(Extraction {
        klp_relocs: b
            .klp_relocs
            .iter()
            .map(|k| (b.out.sections[k.section].name.clone(), k.offset, b.out.symbols[k.klp_symbol].name.clone()))
            .collect(),
        object: b.out,
        objname: b.plan.objname,
        warnings: b.plan.warnings,
    })
}

/// A KLP relocation waiting for the `__klp_relocs` section.
struct PendingKlpReloc {
    section: OutSectionId,
    offset: u64,
    klp_symbol: OutSymbolId,
    addend: i64,
    r_type: u32,
}

/// The output object under construction, and what maps the patched
/// object's symbols and sections to it.
struct Builder<'a, 'd> {
    plan: Planner<'a, 'd>,
    a: &'a Analysis<'d>,
    p: &'a ElfObject<'d>,
    opts: &'a ExtractOptions<'a>,
    out: OutputObject,
    out_sections: HashMap<String, OutSectionId>,
    section_symbols: HashMap<OutSectionId, OutSymbolId>,
    /// Patched symbol -> its copy (or undefined reference) in the output.
    clones: HashMap<SymbolId, OutSymbolId>,
    /// Anonymous chunks copied: (section, start) -> (end, output section, offset).
    chunks: BTreeMap<(SectionId, u64), (u64, OutSectionId, u64)>,
    strings: HashMap<(OutSectionId, Vec<u8>), u64>,
    /// Symbols of the output referred to by name (placeholders, `.klp.sym`).
    by_name: HashMap<String, OutSymbolId>,
    klp_relocs: Vec<PendingKlpReloc>,
    /// Instruction (start, end) pairs of decoded code ranges.
    decoded: HashMap<(SectionId, u64), crate::x86::Boundaries>,
    /// Where `__patchable_function_entries` says compiler padding starts:
    /// found when first asked for, which in a `vmlinux.o` (where objtool
    /// has named the padding) is never; its 61,866 entries in the def
    /// `vmlinux.o` took about half of an extraction.
    padding_starts: std::cell::OnceCell<rustc_hash::FxHashSet<(SectionId, u64)>>,
    /// Bytes copied into the output so far (alignment padding included),
    /// and how many the patched object can justify (see [`Builder::copy`]).
    copied: u64,
    budget: u64,
}

/// Section types whose bytes extraction copies: code and data. A reference
/// into anything else (a symbol table, a string table, relocations, a
/// group, a hash table...) is not something a function can use.
const COPYABLE_TYPES: [u32; 6] = [
    object::elf::SHT_PROGBITS.0,
    object::elf::SHT_NOBITS.0,
    object::elf::SHT_NOTE.0,
    object::elf::SHT_INIT_ARRAY.0,
    object::elf::SHT_FINI_ARRAY.0,
    object::elf::SHT_PREINIT_ARRAY.0,
];

/// Section flags a copy keeps: what the bytes are. Group membership, link
/// order, info links and compression describe the input file's other
/// sections, which the output does not have.
const COPIED_FLAGS: u64 = object::elf::SHF_WRITE.0
    | object::elf::SHF_ALLOC.0
    | object::elf::SHF_EXECINSTR.0
    | object::elf::SHF_MERGE.0
    | object::elf::SHF_STRINGS.0
    | object::elf::SHF_TLS.0;

/// The output may hold this many times the patched object's bytes, plus
/// [`BUDGET_SLACK`] for alignment padding: a copy is made once per symbol,
/// so only overlapping symbols or absurd alignments reach it.
const BUDGET_FACTOR: u64 = 4;
const BUDGET_SLACK: u64 = 16 << 20;

impl<'a, 'd> Builder<'a, 'd> {
    fn new(a: &'a Analysis<'d>, opts: &'a ExtractOptions<'a>, objname: String) -> Self {
        Builder {
            plan: Planner::new(a, opts, objname),
            a,
            p: &a.patched.obj,
            opts,
            out: OutputObject::default(),
            out_sections: HashMap::new(),
            section_symbols: HashMap::new(),
            clones: HashMap::new(),
            chunks: BTreeMap::new(),
            strings: HashMap::new(),
            by_name: HashMap::new(),
            klp_relocs: Vec::new(),
            decoded: HashMap::new(),
            padding_starts: std::cell::OnceCell::new(),
            copied: 0,
            budget: a
                .patched
                .obj
                .sections
                .iter()
                .map(|s| s.data.len() as u64)
                .sum::<u64>()
                .saturating_mul(BUDGET_FACTOR)
                .saturating_add(BUDGET_SLACK),
        }
    }

    /// Append `len` bytes of patched section `src` from `start` to output
    /// section `osec`, at its next offset aligned to `align`; the offset.
    /// Refused when the output would grow past what the patched object can
    /// justify, before anything is allocated: what klp allocates stays
    /// proportional to its input.
    pub(super) fn copy(&mut self, osec: OutSectionId, src: &Section, start: u64, len: u64, align: u64) -> Result<u64> {
        self.charge(osec, src, start, len, align)?;
        Ok(self.out.sections[osec].append_from(src, start, len, align))
    }

    /// Count `len` bytes aligned to `align` about to be appended to `osec`
    /// (from `src` at `start`, for the error) against the budget.
    pub(super) fn charge(&mut self, osec: OutSectionId, src: &Section, start: u64, len: u64, align: u64) -> Result<()> {
        let out = &self.out.sections[osec];
        if out.is_nobits() {
            return Ok(());
        }
        let size = out.data.len() as u64;
        let growth = size.checked_next_multiple_of(align.max(1)).and_then(|at| at.checked_add(len)).map(|g| g - size);
        self.spend(growth.unwrap_or(u64::MAX), src, start)
    }

    /// Count `n` more bytes of output (made from `src` at `start`) against the budget.
    pub(super) fn spend(&mut self, n: u64, src: &Section, start: u64) -> Result<()> {
        match self.copied.checked_add(n) {
            Some(total) if total <= self.budget => {
                self.copied = total;
                Ok(())
            }
            _ => Err(Error::malformed(format!(
                "the livepatch object would be larger than {:#x} bytes, {BUDGET_FACTOR} times the patched object (overlapping symbols or huge alignments?)",
                self.budget
            ))
            .in_section(src.name)
            .at_offset(start)
            .in_file(&self.p.path)),
        }
    }

    /// Changed and new functions, with their `.cold` parts.
    fn include_changes(&mut self) {
        let roots = self.a.changes.changed.iter().chain(&self.a.changes.new_functions);
        for &PatchedSym(id) in roots {
            self.plan.included.insert(id);
            for &child in self.a.patched.cold.get(&id).map_or(&[][..], Vec::as_slice) {
                self.plan.included.insert(child);
            }
        }
    }

    fn clone_included(&mut self) -> Result<()> {
        let mut ids: Vec<SymbolId> = self.plan.included.iter().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.clone_symbol(id, true)?;
        }
        Ok(())
    }

    /// The output section that copies of `sec`'s bytes go to: one per name,
    /// of `sec`'s type and flags (those that describe the bytes). A section
    /// that holds no code or data is refused, and so is a second section of
    /// the same name that disagrees on having bytes in the file.
    pub(super) fn out_section_like(&mut self, sec: &Section) -> Result<OutSectionId> {
        let refuse = |why: String| Err(Error::malformed(why).in_section(sec.name).in_file(&self.p.path));
        if !COPYABLE_TYPES.contains(&sec.sh_type) {
            return refuse(format!("cannot copy from a section of type {:#x}: it holds no code or data", sec.sh_type));
        }
        if let Some(&id) = self.out_sections.get(sec.name) {
            if self.out.sections[id].is_nobits() != sec.is_nobits() {
                return refuse("two sections of this name, one with bytes in the file and one without".into());
            }
            return Ok(id);
        }
        // The writer aligns the section's place in the file: up to that much padding.
        self.spend(sec.addralign, sec, 0)?;
        let section = OutSection::new(sec.name, sec.sh_type, sec.flags & COPIED_FLAGS, sec.addralign, sec.entsize);
        let id = self.out.add_section(section);
        self.out_sections.insert(sec.name.to_owned(), id);
        Ok(id)
    }

    pub(super) fn new_out_section(
        &mut self,
        name: &str,
        sh_type: u32,
        flags: u64,
        align: u64,
        entsize: u64,
    ) -> OutSectionId {
        let id = self.out.add_section(OutSection::new(name, sh_type, flags, align, entsize));
        self.out_sections.insert(name.to_owned(), id);
        id
    }

    pub(super) fn section_symbol(&mut self, sec: OutSectionId) -> OutSymbolId {
        if let Some(&s) = self.section_symbols.get(&sec) {
            return s;
        }
        let s = self.out.add_symbol(OutSymbol {
            name: String::new(),
            kind: SymbolKind::Section,
            bind: Binding::Local,
            placement: OutPlacement::Section(sec),
            value: 0,
            size: 0,
            other: 0,
        });
        self.section_symbols.insert(sec, s);
        s
    }

    pub(super) fn undefined_symbol(&mut self, name: String, kind: SymbolKind, bind: Binding) -> OutSymbolId {
        if let Some(&s) = self.by_name.get(&name) {
            return s;
        }
        let s = self.out.add_symbol(OutSymbol {
            name: name.clone(),
            kind,
            bind,
            placement: OutPlacement::Undefined,
            value: 0,
            size: 0,
            other: 0,
        });
        self.by_name.insert(name, s);
        s
    }
}
