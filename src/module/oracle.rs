//! The loader oracle: does the livepatch module do what the patched kernel
//! would?
//!
//! The module is laid out at module addresses the way the kernel would place
//! its allocated sections; `.klp.sym.<obj>.<name>,<pos>` symbols are resolved
//! by [`Kernel`], the oracle's own reading of the parent (the linked vmlinux
//! or `.ko`, or the original object standing in for it) and its own
//! implementation of the livepatch core's lookup, which shares no code with
//! the extraction that chose the positions; then every function the module
//! carries is relocated (ordinary and KLP relocations). The same function of
//! the patched object is placed at the same address and relocated with each
//! reference resolved to where that thing lives for the running, patched
//! system: in the module if the module carries it (copies, strings), else in
//! the kernel, found by name and, for a local, by its FILE symbol. Equal
//! bytes mean the module does what the patched kernel would do.
//!
//! Which functions: every function the module's `klp_func_ext` entries name
//! as `new_func` (a replacement), and every other function of the module
//! that the patched object has by name (a clone: new functions, `.cold`
//! parts). The module's own code (the skeleton's functions and the module
//! entry points, see `is_module_own`) is not compared; it has no namesake
//! in the patched object unless that is a module with entry points too. Each compared
//! function gets a [`Verdict`]; one that could not be compared says why. For
//! a replacement the oracle also resolves `old_name,sympos` and requires it
//! to be the kernel's original of the patched function whose bytes matched.
//!
//! Compiled into the library (`klp check --patched`) and used by the tests.

mod kernel;

use std::cell::OnceCell;
use std::collections::HashMap;

use iced_x86::{Decoder, DecoderOptions};

use crate::elf::{ElfObject, Placement, Reloc, Section, SectionId, Symbol, SymbolId, SymbolKind, reloc};
use crate::kernel::abi::{self as klp, SHN_LIVEPATCH};
pub use kernel::{Identity, Kernel, Order, Place};

/// Where module sections are placed.
const MODULE_BASE: u64 = 0xffff_ffff_c000_0000;
/// Where symbols live that neither the module nor the kernel image defines
/// (new references to other objects): one address per name, on both sides.
const EXTERNAL_BASE: u64 = 0xffff_ffff_b000_0000;

fn external_address(name: &str) -> u64 {
    EXTERNAL_BASE + (xxhash_rust::xxh3::xxh3_64(name.as_bytes()) & 0xff_ffff) * 16
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The module's bytes equal the patched function's.
    Same,
    /// The first differing byte.
    Differs { offset: u64, module: u8, patched: u8 },
    /// Not what the patched kernel does, for a reason other than a byte: a
    /// symbol position the kernel resolves elsewhere or refuses, a
    /// replacement of the wrong function.
    Wrong(String),
    /// Not compared, and why (a size that differs, a reference the oracle
    /// cannot place, a position it cannot check without the parent).
    Unverified(String),
}

/// Why a function's bytes could not be produced or compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Wrong(String),
    Unverified(String),
}

impl Problem {
    fn message(self) -> String {
        match self {
            Problem::Wrong(e) | Problem::Unverified(e) => e,
        }
    }

    fn context(self, what: &str) -> Self {
        match self {
            Problem::Wrong(e) => Problem::Wrong(format!("{what}: {e}")),
            Problem::Unverified(e) => Problem::Unverified(format!("{what}: {e}")),
        }
    }
}

impl From<Problem> for Verdict {
    fn from(p: Problem) -> Self {
        match p {
            Problem::Wrong(e) => Verdict::Wrong(e),
            Problem::Unverified(e) => Verdict::Unverified(e),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FunctionVerdict {
    pub name: String,
    pub verdict: Verdict,
}

/// Verify every replacement and every clone of the patched object's
/// functions in `module` (see the module documentation). `orig`, when
/// given, identifies statics renumbered by the compiler: the one the
/// original versions of the functions using it use.
pub fn verify(
    module: &ElfObject,
    patched: &ElfObject,
    kernel: &Kernel,
    orig: Option<&ElfObject>,
) -> Vec<FunctionVerdict> {
    let layout = ModuleLayout::new(module, kernel);
    let replacements = replacements(module);
    let world = World { patched, module: &layout, kernel, orig, replacements: &replacements, users: OnceCell::new() };
    let mut out = Vec::new();
    for f in module.symbols.iter().filter(|s| s.kind == SymbolKind::Func && s.is_defined() && !s.is_prefix()) {
        let replaces: Vec<&Replacement> = replacements.iter().filter(|r| r.new_func == f.id).collect();
        let twins: Vec<SymbolId> = patched
            .symbols_named(f.name)
            .iter()
            .copied()
            .filter(|&p| {
                let s = patched.symbol(p);
                s.kind == SymbolKind::Func && s.is_defined() && !s.is_prefix()
            })
            .collect();
        if replaces.is_empty() && (twins.is_empty() || is_module_own(module, f)) {
            continue;
        }
        let verdict = match world.function(f, &twins, &replaces) {
            // The reasons quote names from the files: one line each.
            Verdict::Wrong(why) => Verdict::Wrong(crate::error::escaped(&why)),
            Verdict::Unverified(why) => Verdict::Unverified(crate::error::escaped(&why)),
            v => v,
        };
        out.push(FunctionVerdict { name: f.name.to_owned(), verdict });
    }
    out
}

/// The module's own code, whatever the patched object has: the entry
/// points every module has (`module_init()` and `module_exit()` alias the
/// module's functions as `init_module` and `cleanup_module`, so a clone of
/// that name could not be linked into it), and the skeleton's functions,
/// which are in its FILE block.
fn is_module_own(m: &ElfObject, f: &Symbol) -> bool {
    const ENTRY_POINTS: [&str; 2] = ["init_module", "cleanup_module"];
    const SKELETON_FILE: &str = "livepatch_skeleton.c";
    ENTRY_POINTS.contains(&f.name) || (f.is_local() && f.file.is_some_and(|file| m.symbol(file).name == SKELETON_FILE))
}

fn compare(module: &[u8], patched: &[u8]) -> Verdict {
    match module.iter().zip(patched).position(|(a, b)| a != b) {
        None => Verdict::Same,
        Some(i) => Verdict::Differs { offset: i as u64, module: module[i], patched: patched[i] },
    }
}

/// A `klp_func_ext` entry: `old_name,sympos` of `object` is replaced by `new_func`.
#[derive(Debug, Clone)]
struct Replacement {
    object: String,
    old_name: String,
    sympos: u64,
    new_func: SymbolId,
}

/// The module's `klp_object_ext` / `klp_func_ext` tables, read with the
/// ABI codec; entries it cannot read are `klp check`'s to report.
fn replacements(m: &ElfObject) -> Vec<Replacement> {
    let mut out = Vec::new();
    let Some(objects) = m.section_by_name(".init.klp_objects").or_else(|| m.section_by_name("__klp_objects")) else {
        return out;
    };
    for object in klp::object_entries(objects).unwrap_or_default() {
        let name =
            object.name.and_then(|p| p.string(m)).map_or("vmlinux".into(), |n| String::from_utf8_lossy(n).into_owned());
        let Some((funcs, start)) = object.funcs.and_then(|p| p.target(m)) else { continue };
        let end = start.saturating_add(u64::from(object.nr_funcs).saturating_mul(klp::KLP_FUNC_SIZE));
        for f in
            klp::func_entries(m.section(funcs)).unwrap_or_default().into_iter().filter(|f| (start..end).contains(&f.at))
        {
            let (Some(old_name), Some((sec, off))) =
                (f.old_name.and_then(|p| p.string(m)), f.new_func.and_then(|p| p.target(m)))
            else {
                continue;
            };
            let new_func = m.symbols_in(sec).find(|&id| {
                let s = m.symbol(id);
                s.kind == SymbolKind::Func && s.value == off && !s.is_prefix()
            });
            if let Some(new_func) = new_func {
                let old_name = String::from_utf8_lossy(old_name).into_owned();
                out.push(Replacement { object: name.clone(), old_name, sympos: f.sympos, new_func });
            }
        }
    }
    out
}

/// `.klp.sym.<obj>.<name>,<pos>` as the kernel parses it:
/// `sscanf(".klp.sym.%55[^.].%511[^,],%lu")`; what follows the digits is
/// ignored, as `sscanf` does.
fn parse_klp_sym(name: &str) -> Option<(&str, &str, u64)> {
    let rest = name.strip_prefix(".klp.sym.")?;
    let obj_len = rest.find('.')?;
    let (obj, rest) = (&rest[..obj_len], &rest[obj_len + 1..]);
    let sym_len = rest.find(',')?;
    let (sym, rest) = (&rest[..sym_len], &rest[sym_len + 1..]);
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let pos = rest[..digits].parse().ok()?;
    ((1..=klp::MAX_OBJNAME_LEN).contains(&obj.len()) && (1..=klp::MAX_SYMBOL_NAME_LEN).contains(&sym.len()))
        .then_some((obj, sym, pos))
}

/// Where a module symbol is.
#[derive(Debug, Clone)]
enum Address {
    At(u64),
    /// No address (not allocated, a placeholder).
    Nowhere,
    Unresolved(Problem),
}

/// The module at its load addresses, with every symbol resolved.
struct ModuleLayout<'a, 'd> {
    m: &'a ElfObject<'d>,
    section_address: Vec<Option<u64>>,
    symbol_address: Vec<Address>,
    /// Module string literals by content, for the patched side.
    strings: HashMap<&'d [u8], u64>,
    /// Module symbols by name (defined ones only).
    defined: HashMap<&'d str, Vec<SymbolId>>,
    /// KLP relocations by target section.
    klp_relocs: HashMap<SectionId, Vec<Reloc>>,
}

impl<'a, 'd> ModuleLayout<'a, 'd> {
    fn new(m: &'a ElfObject<'d>, kernel: &Kernel) -> Self {
        let mut next = MODULE_BASE;
        let section_address: Vec<Option<u64>> = m
            .sections
            .iter()
            .map(|s| {
                (s.is_alloc() && s.id.0 != 0).then(|| {
                    let at = kernel::align_up(next, s.addralign);
                    next = at.wrapping_add(s.size);
                    at
                })
            })
            .collect();
        let mut layout = ModuleLayout {
            m,
            section_address,
            symbol_address: Vec::new(),
            strings: HashMap::new(),
            defined: HashMap::new(),
            klp_relocs: HashMap::new(),
        };
        layout.symbol_address = m.symbols.iter().map(|s| layout.resolve_symbol(s, kernel)).collect();
        for s in m.sections.iter().filter(|s| s.is_strings() && s.is_alloc()) {
            let Some(base) = layout.section_address[s.id.index()] else { continue };
            let mut at = 0;
            for piece in s.data.split(|&b| b == 0) {
                layout.strings.entry(piece).or_insert(base.wrapping_add(at));
                at += piece.len() as u64 + 1;
            }
        }
        for s in m.symbols.iter().filter(|s| s.is_defined() && !s.name.is_empty()) {
            layout.defined.entry(s.name).or_default().push(s.id);
        }
        for s in m.sections.iter().filter(|s| s.flags & klp::SHF_RELA_LIVEPATCH != 0) {
            layout.klp_relocs.entry(SectionId(s.info)).or_default().extend(m.own_relocs(s.id).iter());
        }
        layout
    }

    fn resolve_symbol(&self, s: &Symbol, kernel: &Kernel) -> Address {
        match s.placement {
            Placement::Section(sec) => self
                .section_address
                .get(sec.index())
                .copied()
                .flatten()
                .map_or(Address::Nowhere, |a| Address::At(a.wrapping_add(s.value))),
            Placement::Reserved(SHN_LIVEPATCH) if s.name.starts_with(".klp.sym.") => match parse_klp_sym(s.name) {
                None => Address::Unresolved(Problem::Wrong(format!("{}: the kernel cannot parse this name", s.name))),
                Some((obj, name, pos)) => match kernel.resolve_klp(obj, name, pos) {
                    Ok(p) => Address::At(kernel.address(p)),
                    Err(e) => Address::Unresolved(e.context(s.name)),
                },
            },
            // The module loader resolves what is left against exports.
            Placement::Undefined if !s.name.is_empty() => Address::At(kernel.address(kernel.undefined(s.name))),
            _ => Address::Nowhere,
        }
    }

    fn symbol_address(&self, id: SymbolId) -> Result<u64, Problem> {
        let s = self.m.symbol(id);
        match self.symbol_address.get(id.index()) {
            Some(Address::At(a)) => Ok(*a),
            Some(Address::Unresolved(p)) => Err(p.clone()),
            _ if s.placement == Placement::Reserved(SHN_LIVEPATCH) => Err(Problem::Wrong(format!(
                "{} (SHN_LIVEPATCH, not a .klp.sym symbol) has no address, yet a relocation uses it",
                s.name
            ))),
            _ => Err(Problem::Unverified(format!("symbol {} has no address", s.name))),
        }
    }

    /// The module's bytes of function `f`, with its ordinary and KLP relocations applied.
    fn relocated_function(&self, f: &Symbol) -> Result<Vec<u8>, Problem> {
        let unverified = |why: String| Problem::Unverified(why);
        let sec = self.m.symbol_section(f).ok_or_else(|| unverified("outside any section".into()))?;
        let base = self.section_address[sec.id.index()]
            .ok_or_else(|| unverified(format!("in {}, which is not allocated", sec.name)))?;
        let mut bytes = function_bytes(sec, f).map_err(unverified)?.to_vec();
        let klp = self.klp_relocs.get(&sec.id).map_or(&[][..], Vec::as_slice);
        let in_range = |r: &&Reloc| r.offset() >= f.value && r.offset() < f.end();
        for r in sec.relocs.iter().filter(in_range).chain(klp.iter().filter(in_range)) {
            if r.r_type() == reloc::NONE {
                continue;
            }
            let site = format!("relocation at {}+{:#x}", f.name, r.offset() - f.value);
            let s = self.symbol_address(r.symbol()).map_err(|p| p.context(&site))?;
            apply(&mut bytes, r, f.value, base.wrapping_add(r.offset()), s).map_err(unverified)?;
        }
        Ok(bytes)
    }
}

/// The bytes of function `f` in its section.
fn function_bytes<'d>(sec: &Section<'d>, f: &Symbol) -> Result<&'d [u8], String> {
    usize::try_from(f.value).ok().zip(usize::try_from(f.end()).ok()).and_then(|(a, b)| sec.data.get(a..b)).ok_or_else(
        || format!("{} bytes at {:#x} lie outside {} ({} bytes)", f.size, f.value, sec.name, sec.data.len()),
    )
}

/// Write relocation `r` (of type `r.r_type`) with symbol value `s` at place `p`.
fn apply(bytes: &mut [u8], r: &Reloc, func_start: u64, p: u64, s: u64) -> Result<(), String> {
    let at = (r.offset() - func_start) as usize;
    let value = s.wrapping_add(r.addend() as u64);
    let (width, v) = match r.r_type() {
        reloc::R64 => (8, value),
        reloc::PC64 => (8, value.wrapping_sub(p)),
        reloc::PC32 | reloc::PLT32 => (4, value.wrapping_sub(p)),
        reloc::R32 | reloc::R32S => (4, value),
        other => return Err(format!("relocation type {other} at {:#x} is not supported by the oracle", r.offset())),
    };
    let field = bytes.get_mut(at..at + width).ok_or("relocation past the function end")?;
    field.copy_from_slice(&v.to_le_bytes()[..width]);
    Ok(())
}

/// Everything the patched side is resolved against.
struct World<'a, 'd> {
    patched: &'a ElfObject<'d>,
    module: &'a ModuleLayout<'a, 'd>,
    kernel: &'a Kernel,
    orig: Option<&'a ElfObject<'a>>,
    /// The module's `klp_func_ext` entries.
    replacements: &'a [Replacement],
    /// Patched locals -> the patched functions referring to them; built on first need.
    users: OnceCell<HashMap<SymbolId, Vec<SymbolId>>>,
}

impl World<'_, '_> {
    /// The verdict on module function `f`, whose namesakes in the patched
    /// object are `twins`, and which `replaces` names as `new_func`.
    fn function(&self, f: &Symbol, twins: &[SymbolId], replaces: &[&Replacement]) -> Verdict {
        let patched = self.patched;
        if twins.is_empty() {
            return Verdict::Unverified(format!("the patched object has no function {}", f.name));
        }
        let sized: Vec<SymbolId> = twins.iter().copied().filter(|&p| patched.symbol(p).size == f.size).collect();
        if sized.is_empty() {
            let sizes: Vec<String> = twins.iter().map(|&p| patched.symbol(p).size.to_string()).collect();
            return Verdict::Unverified(format!(
                "{} bytes in the module, {} in the patched object: not compared",
                f.size,
                sizes.join(" or ")
            ));
        }
        let (module_bytes, at) =
            match self.module.relocated_function(f).and_then(|b| Ok((b, self.module.symbol_address(f.id)?))) {
                Ok(v) => v,
                Err(p) => return p.into(),
            };
        let mut verdicts: Vec<Verdict> = Vec::new();
        for p in sized {
            let v = match self.patched_function(p, f, at) {
                Ok(bytes) => compare(&module_bytes, &bytes),
                Err(problem) => problem.into(),
            };
            let v = if v == Verdict::Same { self.replaced(p, replaces) } else { v };
            if v == Verdict::Same {
                return v;
            }
            verdicts.push(v);
        }
        // Several namesakes: a failure is definite only if it is for each.
        match verdicts.iter().find(|v| matches!(v, Verdict::Unverified(_))) {
            Some(Verdict::Unverified(why)) if verdicts.len() > 1 => Verdict::Unverified(format!(
                "{} functions of that name and size in the patched object, none shown equal ({why})",
                verdicts.len()
            )),
            Some(v) => v.clone(),
            None => verdicts.swap_remove(0),
        }
    }

    /// For a replacement: each `old_name,sympos` it replaces must resolve
    /// to the kernel's original of patched function `p`.
    fn replaced(&self, p: SymbolId, replaces: &[&Replacement]) -> Verdict {
        let (kernel, patched) = (self.kernel, self.patched);
        let f = patched.symbol(p);
        for r in replaces {
            let entry = format!("klp_func_ext {},{} of {}", r.old_name, r.sympos, r.object);
            let target = match kernel.resolve_klp(&r.object, &r.old_name, r.sympos) {
                Ok(Place::External(_)) => {
                    return Verdict::Unverified(format!("{entry}: that object is not {}", kernel.source()));
                }
                Ok(t) => t,
                Err(problem) => return problem.context(&entry).into(),
            };
            // The original: by the patched function's own name, else (the
            // compiler renumbered it) by the old name in the same FILE.
            let own = identity(patched, f);
            let original =
                kernel.locate(own).or_else(|e| kernel.locate(Identity { name: &r.old_name, ..own }).map_err(|_| e));
            match original {
                Err(e) => return Verdict::Unverified(format!("{entry}: the original of {}: {e}", f.name)),
                Ok(o) if o != target => {
                    return Verdict::Wrong(format!(
                        "{entry} resolves to {}, but this is the new code of {}",
                        kernel.describe(target),
                        kernel.describe(o)
                    ));
                }
                Ok(_) => {}
            }
        }
        Verdict::Same
    }

    /// The patched object's function `p`, placed at `at` and relocated
    /// against the module (what it carries) and the kernel (everything else).
    fn patched_function(&self, p: SymbolId, clone: &Symbol, at: u64) -> Result<Vec<u8>, Problem> {
        let (patched, module) = (self.patched, self.module);
        let unverified = Problem::Unverified;
        let f = patched.symbol(p);
        let sec = patched.symbol_section(f).ok_or_else(|| unverified("patched function outside any section".into()))?;
        let mut bytes = function_bytes(sec, f).map_err(unverified)?.to_vec();
        let insns = instruction_ends(sec, f);
        for r in sec.relocs_in(f.value, f.end()) {
            if r.r_type() == reloc::NONE {
                continue;
            }
            let bias = if reloc::is_pc_relative(r.r_type()) && sec.is_exec() { pc_bias(&insns, r.offset()) } else { 0 };
            let target = match self.reference_address(r, bias) {
                Err(Unplaced::Anonymous(aux, _))
                    if patched.section(aux).name == ".altinstr_aux"
                        && module.always_replaced(clone, instruction_start(&insns, r.offset()) - f.value) =>
                {
                    // Extraction drops it: the loader's alternatives rewrite
                    // the instruction on every CPU. Both fields stay zero.
                    continue;
                }
                Err(Unplaced::Anonymous(sec, off)) => {
                    module.anonymous_copy(patched, sec, off, clone, r.offset() - f.value, bias).map_err(unverified)?
                }
                other => other.map_err(|e| unverified(e.to_string()))?,
            };
            // S + A as the module sees it: the referenced byte minus the bias.
            let s_plus_a = target.wrapping_sub(bias as u64);
            let shifted = Reloc::new(r.offset(), r.r_type(), r.symbol(), 0);
            apply(&mut bytes, &shifted, f.value, at.wrapping_add(r.offset() - f.value), s_plus_a)
                .map_err(unverified)?;
        }
        Ok(bytes)
    }

    /// The address of the byte relocation `r` refers to, for the patched system.
    fn reference_address(&self, r: &Reloc, bias: i64) -> Result<u64, Unplaced> {
        let (patched, module) = (self.patched, self.module);
        let t = patched.symbol(r.symbol());
        let Some(sec) = patched.symbol_section(t) else {
            return Ok(self.symbol_home(t)?.wrapping_add(r.addend().wrapping_add(bias) as u64));
        };
        let base = if t.kind == SymbolKind::Section { 0 } else { t.value as i64 };
        let at = base.wrapping_add(r.addend()).wrapping_add(bias);
        if sec.is_strings() {
            let text = sec.c_str_at(at as u64).ok_or_else(|| "string reference outside its section".to_owned())?;
            return module.strings.get(text).copied().ok_or_else(|| {
                Unplaced::Other(format!("string {:?} is not in the module", String::from_utf8_lossy(text)))
            });
        }
        // A constant-pool entry is its bytes, whatever label (`.LC<n>`) names it.
        let covering = if sec.is_constant_pool() {
            None
        } else if t.kind == SymbolKind::Section {
            patched.symbol_at(sec.id, at as u64).filter(|&s| patched.symbol(s).size > 0)
        } else {
            Some(t.id)
        };
        let Some(named) = covering else {
            return Err(Unplaced::Anonymous(sec.id, at as u64));
        };
        let named = patched.symbol(named);
        Ok(self.symbol_home(named)?.wrapping_add((at - named.value as i64) as u64))
    }

    /// Where a patched symbol lives for the patched system: the module's
    /// copy that stands for it if there is one, else the kernel's.
    fn symbol_home(&self, s: &Symbol) -> Result<u64, String> {
        let kernel = self.kernel;
        if let Some(copy) = self.module_copy_of(s) {
            return self.module.symbol_address(copy).map_err(Problem::message);
        }
        if !s.is_defined() {
            return Ok(kernel.address(kernel.undefined(s.name)));
        }
        // A `.cold` part runs as the rest of its parent and jumps back into
        // it: the kernel's old one would return into the old parent's code.
        if let Some((parent, _)) = s.name.split_once(".cold")
            && s.is_cold_child()
            && self.module.defined.contains_key(parent)
            && !self.module.defined.contains_key(s.name)
        {
            return Err(format!("{}: the module carries {parent} but not this part of it", s.name));
        }
        // A renumbered static's name may be another static's in the kernel
        // (`flags.0` became `flags.2`, and the kernel has a `flags.2` too):
        // what the original users used comes first.
        if kernel::without_numeric_suffix(s.name) != s.name
            && let (Some(orig), Some(o)) = (self.orig, self.static_counterpart(s))
            && let Ok(p) = kernel.locate(identity(orig, orig.symbol(o)))
        {
            return Ok(kernel.address(p));
        }
        match kernel.locate(identity(self.patched, s)) {
            Ok(p) => Ok(kernel.address(p)),
            Err(e) => match (self.orig, self.static_counterpart(s)) {
                (Some(orig), Some(o)) => kernel
                    .locate(identity(orig, orig.symbol(o)))
                    .map(|p| kernel.address(p))
                    .map_err(|e| format!("{}: {e}", s.name)),
                _ => Err(format!("{}: {e}", s.name)),
            },
        }
    }

    /// The module's copy of patched symbol `s`: among the module's symbols
    /// of its name, the one that replaces the kernel's `s` (a static `show`
    /// of one file is not the changed `show` of another the module carries),
    /// or the only one, if it replaces nothing or where `s` is in the kernel
    /// cannot be told; for a `.cold` part, the one its parent's copy reaches.
    fn module_copy_of(&self, s: &Symbol) -> Option<SymbolId> {
        let copies = self.module.defined.get(s.name)?;
        let own = self.kernel.locate(identity(self.patched, s)).ok();
        let replaced = |copy: SymbolId| self.replacements.iter().filter(move |r| r.new_func == copy);
        let stands_for = |copy: SymbolId, at: Place| {
            replaced(copy).any(|r| self.kernel.resolve_klp(&r.object, &r.old_name, r.sympos).is_ok_and(|t| t == at))
        };
        if let Some(at) = own.filter(|_| s.is_local())
            && copies.iter().any(|&c| replaced(c).next().is_some())
        {
            return copies.iter().copied().find(|&c| stands_for(c, at));
        }
        if let [one] = copies[..] {
            return Some(one);
        }
        // A `.cold` part goes with its parent: the copy the module's copy of
        // this part's parent jumps to (two changed `do_work`s of two files
        // bring two `do_work.cold`s, which names alone do not tell apart).
        let parent = self.patched.cold_parent(s.id).filter(|_| s.is_cold_child())?;
        let m = self.module.m;
        let parent_copy = m.symbol(self.module_copy_of(self.patched.symbol(parent))?);
        let code = m.symbol_section(parent_copy)?;
        let mut reached = code.relocs_in(parent_copy.value, parent_copy.end()).iter().map(|r| r.symbol());
        reached.find(|t| copies.contains(t))
    }

    /// A static of the patched object the compiler renumbered (`lock.65417`):
    /// the one static of the same stem that the original versions of the
    /// functions using it use (`lock.65414`), if they agree on one.
    fn static_counterpart(&self, s: &Symbol) -> Option<SymbolId> {
        let (orig, patched) = (self.orig?, self.patched);
        if !s.is_local() {
            return None;
        }
        // A static is renumbered (`lock.65414` -> `lock.65417`); an IPA
        // clone may also be renamed (`get.isra.1` -> `get.constprop.0.isra.1`).
        fn stem(kind: SymbolKind, name: &str) -> &str {
            match kind {
                SymbolKind::Func => name.split('.').next().unwrap_or(name),
                _ => kernel::without_numeric_suffix(name),
            }
        }
        // gcc numbers function-local statics only: a plain `buf` is never a `buf.N`.
        let numbered = |name: &str| kernel::without_numeric_suffix(name) != name;
        let (kind, cold, wanted, suffixed) = (s.kind, s.is_cold_child(), stem(s.kind, s.name), numbered(s.name));
        let users = self.users.get_or_init(|| local_users(patched));
        let mut found: Vec<SymbolId> = users
            .get(&s.id)?
            .iter()
            .filter_map(|&u| original_function(orig, patched, u, stem))
            .flat_map(|of| referenced(orig, of))
            .filter(|&id| {
                let o = orig.symbol(id);
                o.is_local()
                    && o.kind == kind
                    && o.is_cold_child() == cold
                    && stem(o.kind, o.name) == wanted
                    && (kind == SymbolKind::Func || numbered(o.name) == suffixed)
            })
            .collect();
        found.sort_unstable();
        found.dedup();
        match found[..] {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// The original of patched function `u`: the function of its name in a FILE
/// of the same name, else (a renamed clone) the one of its stem there, if
/// there is exactly one.
fn original_function(
    orig: &ElfObject,
    patched: &ElfObject,
    u: SymbolId,
    stem: fn(SymbolKind, &str) -> &str,
) -> Option<SymbolId> {
    let user = patched.symbol(u);
    let file_name = |obj: &ElfObject, s: &Symbol| s.file.map(|f| obj.symbol(f).name.to_owned());
    let home = file_name(patched, user);
    let in_home = |id: &SymbolId| {
        let o = orig.symbol(*id);
        o.kind == SymbolKind::Func && o.is_defined() && file_name(orig, o) == home
    };
    let by_name: Vec<SymbolId> = orig.symbols_named(user.name).iter().copied().filter(in_home).collect();
    let candidates = if by_name.is_empty() && user.name.contains('.') {
        let wanted = stem(user.kind, user.name);
        (orig.symbols.iter().map(|s| s.id))
            .filter(|id| in_home(id) && stem(SymbolKind::Func, orig.symbol(*id).name) == wanted)
            .filter(|id| {
                orig.symbol(*id).name.contains('.') && orig.symbol(*id).is_cold_child() == user.is_cold_child()
            })
            .collect()
    } else {
        by_name
    };
    match candidates[..] {
        [one] => Some(one),
        _ => None,
    }
}

/// How the kernel finds patched-object (or original-object) symbol `s`.
fn identity<'a>(obj: &'a ElfObject, s: &'a Symbol) -> Identity<'a> {
    Identity { name: s.name, local: s.is_local(), file: s.file.map(|f| (obj.symbol(f).name, file_occurrence(obj, s))) }
}

/// The symbols function `f` refers to (a section symbol plus addend counts
/// as the symbol there).
fn referenced<'a>(obj: &'a ElfObject, f: SymbolId) -> impl Iterator<Item = SymbolId> + 'a {
    let f = obj.symbol(f);
    let sec = obj.symbol_section(f);
    let relocs = sec.map_or(&[][..], |sec| sec.relocs_in(f.value, f.end()));
    // The field's distance to its instruction's end: not always 4
    // (`addl $1, x(%rip)` has an immediate after the field).
    let insns = sec.filter(|s| s.is_exec()).map(|s| instruction_ends(s, f)).unwrap_or_default();
    relocs.iter().filter_map(move |r| {
        let t = obj.symbol(r.symbol());
        if t.kind != SymbolKind::Section {
            return Some(t.id);
        }
        let bias = if reloc::is_pc_relative(r.r_type()) && !insns.is_empty() { pc_bias(&insns, r.offset()) } else { 0 };
        obj.symbol_at(t.section()?, u64::try_from(r.addend().saturating_add(bias)).ok()?)
    })
}

/// Every local of `obj` that a function refers to, with those functions.
fn local_users(obj: &ElfObject) -> HashMap<SymbolId, Vec<SymbolId>> {
    let mut users: HashMap<SymbolId, Vec<SymbolId>> = HashMap::new();
    for f in obj.symbols.iter().filter(|s| s.kind == SymbolKind::Func && s.is_defined() && s.size > 0) {
        for t in referenced(obj, f.id).filter(|&t| obj.symbol(t).is_local()) {
            let list = users.entry(t).or_default();
            if list.last() != Some(&f.id) {
                list.push(f.id);
            }
        }
    }
    users
}

/// Why a patched reference has no address yet.
enum Unplaced {
    /// Data no symbol covers: section and offset.
    Anonymous(SectionId, u64),
    Other(String),
}

impl std::fmt::Display for Unplaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unplaced::Anonymous(s, off) => write!(f, "anonymous data at section #{s}+{off:#x}"),
            Unplaced::Other(e) => f.write_str(e),
        }
    }
}

impl From<String> for Unplaced {
    fn from(s: String) -> Self {
        Unplaced::Other(s)
    }
}

impl ModuleLayout<'_, '_> {
    /// The module has an `.altinstructions` entry for the instruction at
    /// `func_off` of `clone` that every CPU takes (`X86_FEATURE_ALWAYS`),
    /// as `static_cpu_has()` has for its `jmp` into `.altinstr_aux`.
    fn always_replaced(&self, clone: &Symbol, func_off: u64) -> bool {
        const ALT_ENTRY: u64 = 14;
        const FEATURE_ALWAYS: u16 = 3 * 32 + 21;
        let m = self.m;
        let Some(csec) = clone.section() else { return false };
        let site = clone.value + func_off;
        m.sections.iter().filter(|s| s.name == ".altinstructions").any(|alt| {
            alt.relocs.iter().filter(|r| r.offset() % ALT_ENTRY == 0).any(|r| {
                let t = m.symbol(r.symbol());
                let base = if t.kind == SymbolKind::Section { 0 } else { t.value as i64 };
                let at = r.offset() as usize + 8;
                let feature = alt.data.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
                t.section() == Some(csec)
                    && base.wrapping_add(r.addend()) == site as i64
                    && feature == Some(FEATURE_ALWAYS)
            })
        })
    }

    /// Anonymous data the module carries a copy of: the module's own
    /// relocation at the same place of the clone says where, and that is
    /// accepted only if the bytes there (outside relocated fields) equal the
    /// patched object's, in a section of the same name.
    fn anonymous_copy(
        &self,
        patched: &ElfObject,
        sec: SectionId,
        off: u64,
        clone: &Symbol,
        func_off: u64,
        bias: i64,
    ) -> Result<u64, String> {
        let unverifiable =
            |why: &str| format!("reference to anonymous data at {}+{off:#x}: {why}", patched.section(sec).name);
        let m = self.m;
        let csec = m.symbol_section(clone).ok_or_else(|| unverifiable("clone outside any section"))?;
        let site = clone.value + func_off;
        let r = csec
            .relocs_in(site, site + 1)
            .iter()
            .find(|r| r.r_type() != reloc::NONE)
            .ok_or_else(|| unverifiable("the module has no relocation there"))?;
        let t = m.symbol(r.symbol());
        let tsec = m.symbol_section(t).ok_or_else(|| unverifiable("the module refers outside itself"))?;
        let src = patched.section(sec);
        if tsec.name != src.name {
            return Err(unverifiable(&format!("the module refers to {} instead", tsec.name)));
        }
        let mod_off = (t.value as i64).wrapping_add(r.addend()).wrapping_add(bias) as u64;
        // A pool entry is compared alone: the module copies the entries it
        // needs, not their neighbours.
        let window = if src.is_constant_pool() { src.entsize.max(1) } else { 64 };
        let n = src.size.saturating_sub(off).min(tsec.size.saturating_sub(mod_off)).min(window);
        let relocated = |s: &Section, at: u64| {
            s.relocs_in(at.saturating_sub(7), at + 1)
                .iter()
                .any(|r| at < r.offset() + crate::elf::reloc::width(r.r_type()) as u64)
        };
        let same = (0..n).all(|i| {
            relocated(src, off + i)
                || relocated(tsec, mod_off + i)
                || src.data.get((off + i) as usize) == tsec.data.get((mod_off + i) as usize)
        });
        if n == 0 || !same {
            return Err(unverifiable("the module's bytes there differ"));
        }
        Ok(self.section_address[tsec.id.index()].ok_or_else(|| unverifiable("not allocated"))? + mod_off)
    }
}

/// Among same-named locals in FILE blocks of the same name, the index of `s`.
fn file_occurrence(obj: &ElfObject, s: &Symbol) -> usize {
    let file_name = |id: SymbolId| obj.symbol(id).file.map(|f| obj.symbol(f).name);
    obj.symbols_named(s.name)
        .iter()
        .filter(|&&id| obj.symbol(id).is_local() && file_name(id) == file_name(s.id))
        .position(|&id| id == s.id)
        .unwrap_or(0)
}

fn instruction_ends(sec: &Section, f: &Symbol) -> Vec<(u64, u64)> {
    let Ok(code) = function_bytes(sec, f) else { return Vec::new() };
    let mut d = Decoder::with_ip(64, code, f.value, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let i = d.decode();
        out.push((i.ip(), i.ip() + i.len() as u64));
    }
    out
}

/// The start of the instruction holding byte `offset`.
fn instruction_start(insns: &[(u64, u64)], offset: u64) -> u64 {
    let i = insns.partition_point(|&(start, _)| start <= offset);
    insns.get(i.wrapping_sub(1)).map_or(offset, |&(start, _)| start)
}

fn pc_bias(insns: &[(u64, u64)], offset: u64) -> i64 {
    let i = insns.partition_point(|&(start, _)| start <= offset);
    match i.checked_sub(1).map(|i| insns[i]) {
        Some((_, end)) if end > offset => end as i64 - offset as i64,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn klp_sym_names_parse_as_the_kernel_scans_them() {
        assert_eq!(parse_klp_sym(".klp.sym.vmlinux.lock.65414,2"), Some(("vmlinux", "lock.65414", 2)));
        assert_eq!(parse_klp_sym(".klp.sym.xfs.foo.isra.0,0"), Some(("xfs", "foo.isra.0", 0)));
        // sscanf stops at the digits.
        assert_eq!(parse_klp_sym(".klp.sym.vmlinux.foo,1x"), Some(("vmlinux", "foo", 1)));
        for bad in [".klp.sym.vmlinux.foo", ".klp.sym.vmlinux.foo,", ".klp.sym..foo,0", ".klp.sym.vmlinux.,0"] {
            assert_eq!(parse_klp_sym(bad), None, "{bad}");
        }
        let long_obj = format!(".klp.sym.{}.foo,0", "m".repeat(56));
        assert_eq!(parse_klp_sym(&long_obj), None);
    }
}
