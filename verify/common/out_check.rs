//! Checks every livepatch object written by `klp diff` must pass: the
//! linker and readelf accept it, relocations are in bounds, it defines only
//! changed and new functions, its klp_func_ext table names the originals,
//! and references to existing unexported symbols are KLP relocations.
//!
//! The objects are read with the `object` crate, not with klp's own reader,
//! and every layout, relocation width and symbol list comes from the kernel,
//! the psABI or objtool (see each item), never from klp's constants: the
//! oracle must not share the code it checks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SectionFlags, SymbolKind};

use super::{layouts, strip_numbers};

/// A small module object of our own to link OUT.o with.
fn module_object() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("module-object");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("module-{:?}.c", std::thread::current().id()));
    std::fs::write(&src, "int klp_test_module_marker;\nint klp_test_init(void) { return klp_test_module_marker; }\n")
        .unwrap();
    let obj = src.with_extension("o");
    assert!(Command::new("gcc").args(["-c", "-O2", "-o"]).arg(&obj).arg(&src).status().unwrap().success());
    obj
}

pub struct Expect<'a> {
    pub changed: &'a [String],
    pub new: &'a [String],
    /// Names the output may reference as plain undefined symbols.
    pub exported: &'a dyn Fn(&str) -> bool,
}

type Obj<'a> = object::File<'a>;

/// Every check of issue 3's acceptance on one output object.
pub fn check_output(out: &Path, orig: &Path, expect: &Expect) -> Result<(), String> {
    let ld_out = out.with_extension("linked.o");
    let ld = Command::new("ld").arg("-r").arg("-o").arg(&ld_out).arg(module_object()).arg(out).output().unwrap();
    if !ld.status.success() || !ld.stderr.is_empty() {
        return Err(format!("ld -r: {}", String::from_utf8_lossy(&ld.stderr)));
    }
    let re = Command::new("readelf").args(["-a", "-W"]).arg(out).output().unwrap();
    if !re.status.success() || !re.stderr.is_empty() {
        return Err(format!("readelf -a -W: {}", String::from_utf8_lossy(&re.stderr)));
    }
    let data = std::fs::read(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let o = Obj::parse(&*data).map_err(|e| format!("{}: {e}", out.display()))?;
    let orig_data = std::fs::read(orig).unwrap();
    let orig_obj = Obj::parse(&*orig_data).unwrap();
    relocations_in_bounds(&o)?;
    only_changed_and_new_functions(&o, expect)?;
    funcs_table_matches(&o, &orig_obj, expect)?;
    existing_references_are_klp(&o, &orig_obj, expect)?;
    special_entries_describe_copies(&o, &orig_obj)?;
    Ok(())
}

fn name<'a>(s: &impl ObjectSymbol<'a>) -> &'a str {
    s.name().unwrap_or("")
}

fn r_type(flags: RelocationFlags) -> u32 {
    match flags {
        RelocationFlags::Elf { r_type } => r_type.0,
        other => panic!("not an ELF relocation: {other:?}"),
    }
}

/// Bytes an x86-64 relocation writes, from the psABI's table of relocation
/// types (System V ABI, AMD64 supplement, "Relocation Types": the word8,
/// word16, word32 and word64 fields), written here rather than taken from
/// klp. Any other type is unexpected in a kernel object.
fn psabi_width(r_type: u32) -> Option<u64> {
    use object::elf::*;
    let word = |types: &[RelocationType]| types.iter().any(|t| t.0 == r_type);
    if word(&[R_X86_64_NONE]) {
        Some(0)
    } else if word(&[R_X86_64_8, R_X86_64_PC8]) {
        Some(1)
    } else if word(&[R_X86_64_16, R_X86_64_PC16]) {
        Some(2)
    } else if word(&[
        R_X86_64_PC32,
        R_X86_64_GOT32,
        R_X86_64_PLT32,
        R_X86_64_GOTPCREL,
        R_X86_64_32,
        R_X86_64_32S,
        R_X86_64_TLSGD,
        R_X86_64_TLSLD,
        R_X86_64_DTPOFF32,
        R_X86_64_GOTTPOFF,
        R_X86_64_TPOFF32,
        R_X86_64_GOTPC32,
        R_X86_64_SIZE32,
        R_X86_64_GOTPC32_TLSDESC,
        R_X86_64_GOTPCRELX,
        R_X86_64_REX_GOTPCRELX,
    ]) {
        Some(4)
    } else if word(&[
        R_X86_64_64,
        R_X86_64_DTPMOD64,
        R_X86_64_DTPOFF64,
        R_X86_64_TPOFF64,
        R_X86_64_PC64,
        R_X86_64_GOTOFF64,
        R_X86_64_GOT64,
        R_X86_64_GOTPCREL64,
        R_X86_64_GOTPC64,
        R_X86_64_GOTPLT64,
        R_X86_64_PLTOFF64,
        R_X86_64_SIZE64,
    ]) {
        Some(8)
    } else {
        None
    }
}

fn relocations_in_bounds(o: &Obj) -> Result<(), String> {
    let mut seen = 0;
    for s in o.sections() {
        let sname = s.name().unwrap_or("?");
        for (offset, r) in s.relocations() {
            let t = r_type(r.flags());
            let width = psabi_width(t).ok_or_else(|| format!("{sname}+{offset:#x}: relocation type {t}"))?;
            if offset + width > s.size() {
                return Err(format!("{sname}: relocation at {offset:#x} runs past the section end {:#x}", s.size()));
            }
            if !matches!(r.target(), RelocationTarget::Symbol(i) if i.0 != 0) {
                return Err(format!("{sname}: relocation at {offset:#x} against the null symbol"));
            }
            seen += 1;
        }
    }
    // Every output has at least its klp_func_ext/klp_object_ext pointers.
    if seen == 0 { Err("no relocation at all".into()) } else { Ok(()) }
}

fn is_defined_func(s: &object::Symbol) -> bool {
    s.kind() == SymbolKind::Text && !s.is_undefined()
}

fn only_changed_and_new_functions(o: &Obj, e: &Expect) -> Result<(), String> {
    let wanted: BTreeSet<String> = e.changed.iter().chain(e.new).map(|n| strip_numbers(n)).collect();
    for s in o.symbols().filter(is_defined_func) {
        let base = name(&s).strip_prefix("__pfx_").unwrap_or(name(&s));
        let base = base.split(".cold").next().unwrap();
        if !wanted.contains(&strip_numbers(base)) {
            return Err(format!("defines function {} that is neither changed nor new", name(&s)));
        }
    }
    for wanted_name in &wanted {
        if !o.symbols().any(|s| is_defined_func(&s) && strip_numbers(name(&s)) == *wanted_name) {
            return Err(format!("changed or new function {wanted_name} is not defined"));
        }
    }
    Ok(())
}

/// What the relocation at `offset` of `section` points at: the target
/// section's index and the offset in it (symbol value plus addend).
fn pointee(o: &Obj, section: &object::Section, offset: u64) -> Option<(object::SectionIndex, u64)> {
    let (_, r) = section.relocations().find(|(at, _)| *at == offset)?;
    let RelocationTarget::Symbol(i) = r.target() else { return None };
    let target = o.symbol_by_index(i).ok()?;
    Some((target.section_index()?, target.address().wrapping_add(r.addend() as u64)))
}

/// The string an `R_X86_64_64` relocation at `offset` of `section` points at.
fn pointed_string(o: &Obj, section: &object::Section, offset: u64) -> Option<String> {
    let (sec, at) = pointee(o, section, offset)?;
    let data = o.section_by_index(sec).ok()?.data().ok()?;
    let tail = data.get(at as usize..)?;
    let end = tail.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&tail[..end]).into_owned())
}

/// `.init.klp_funcs` is an array of upstream's `struct klp_func_ext`
/// (old_name, new_func, sympos; layout computed by gcc).
fn funcs_table_matches(o: &Obj, orig: &Obj, e: &Expect) -> Result<(), String> {
    let size = layouts::size_of("klp_func_ext");
    let (old_name, new_func, sympos) = (
        layouts::offset_of("klp_func_ext.old_name"),
        layouts::offset_of("klp_func_ext.new_func"),
        layouts::offset_of("klp_func_ext.sympos"),
    );
    let funcs = o.section_by_name(".init.klp_funcs").ok_or("no .init.klp_funcs")?;
    let data = funcs.data().map_err(|e| e.to_string())?;
    if funcs.size() % size != 0 {
        return Err(format!(".init.klp_funcs: {} bytes, not a whole number of klp_func_ext", funcs.size()));
    }
    let n = funcs.size() / size;
    if n as usize != e.changed.len() {
        return Err(format!("{n} klp_func_ext entries for {} changed functions", e.changed.len()));
    }
    for i in 0..n {
        let entry = i * size;
        let fname = pointed_string(o, &funcs, entry + old_name).ok_or("klp_func_ext without old_name")?;
        let pos = u64::from_le_bytes(data[(entry + sympos) as usize..][..8].try_into().unwrap());
        let in_orig = orig.symbols().filter(|s| s.kind() == SymbolKind::Text && name(s) == fname).count();
        if in_orig == 0 {
            return Err(format!("old_name {fname} is not a function of the original object"));
        }
        if (in_orig == 1) != (pos == 0) || pos > in_orig as u64 {
            return Err(format!("{fname}: sympos {pos} but {in_orig} functions of that name in the original"));
        }
        let new_func_defined = funcs.relocations().any(|(at, r)| {
            at == entry + new_func
                && matches!(r.target(), RelocationTarget::Symbol(s)
                    if o.symbol_by_index(s).is_ok_and(|s| !s.is_undefined()))
        });
        if !new_func_defined {
            return Err(format!("{fname}: new_func does not point at a defined function"));
        }
    }
    Ok(())
}

/// What the compiler itself references and objtool must see in the module
/// as ordinary relocations: `__fentry__` (the `__mcount_loc` call sites),
/// the return and indirect-branch thunks (objtool's `arch_is_rethunk` and
/// `arch_is_retpoline`, tools/objtool/arch/x86/decode.c: names starting
/// with `__x86_indirect_`; `__x86_return_thunk`, `srso_return_thunk`, and
/// 6.12's `its_return_thunk`), and `__stack_chk_fail` (the stack protector).
fn is_compiler_reference(name: &str) -> bool {
    matches!(name, "__fentry__" | "__x86_return_thunk" | "srso_return_thunk" | "its_return_thunk" | "__stack_chk_fail")
        || name.starts_with("__x86_indirect_")
}

fn is_alloc(s: &object::Section) -> bool {
    matches!(s.flags(), SectionFlags::Elf { sh_flags, .. } if sh_flags.0 & object::elf::SHF_ALLOC.0 != 0)
}

/// Every reference from copied code to a symbol the original object has,
/// unless exported, is a KLP relocation with its `__klp_relocs` entry (an
/// array of objtool's `struct klp_reloc`, whose `offset` field points at the
/// site).
fn existing_references_are_klp(o: &Obj, orig: &Obj, e: &Expect) -> Result<(), String> {
    let (size, site) = (layouts::size_of("klp_reloc"), layouts::offset_of("klp_reloc.offset"));
    let mut klp_sites: BTreeSet<(String, u64)> = BTreeSet::new();
    for s in o.sections().filter(|s| s.name().is_ok_and(|n| n.starts_with("__klp_relocs"))) {
        if s.size() % size != 0 {
            return Err(format!("{}: {} bytes, not a whole number of klp_reloc", s.name().unwrap(), s.size()));
        }
        for entry in (0..s.size()).step_by(size as usize) {
            if let Some((sec, at)) = pointee(o, &s, entry + site) {
                let sec_name = o.section_by_index(sec).ok().and_then(|t| t.name().ok()).unwrap_or("").to_owned();
                klp_sites.insert((sec_name, at));
            }
        }
    }
    let orig_names: BTreeSet<&str> = orig.symbols().map(|s| name(&s)).filter(|n| !n.is_empty()).collect();
    for s in o.sections().filter(|s| is_alloc(s) && !s.name().unwrap_or("").starts_with("__klp_relocs")) {
        let sname = s.name().unwrap_or("?");
        for (offset, r) in s.relocations() {
            let RelocationTarget::Symbol(i) = r.target() else { continue };
            let t = o.symbol_by_index(i).map_err(|e| e.to_string())?;
            if !t.is_undefined() {
                continue;
            }
            let tname = name(&t);
            if tname.starts_with(".klp.tombstone.") {
                if !klp_sites.contains(&(sname.to_owned(), offset)) {
                    return Err(format!("{sname}+{offset:#x}: placeholder {tname} without __klp_relocs entry"));
                }
                continue;
            }
            let existing = orig_names.contains(tname);
            if existing && !(e.exported)(tname) && !is_compiler_reference(tname) {
                return Err(format!("{sname}+{offset:#x}: plain reference to existing unexported symbol {tname}"));
            }
        }
    }
    Ok(())
}

/// The kernel's sections of entries describing code, from its headers and
/// include/asm-generic/vmlinux.lds.h (x86-64), and the ones objtool writes
/// (`.retpoline_sites`, `.return_sites`, `.call_sites`, `.ibt_endbr_seal`).
const SPECIAL_SECTIONS: &[&str] = &[
    "__ex_table",
    "__bug_table",
    "__jump_table",
    ".altinstructions",
    ".parainstructions",
    ".static_call_sites",
    ".smp_locks",
    "__mcount_loc",
    ".kcfi_traps",
    ".retpoline_sites",
    ".return_sites",
    ".call_sites",
    ".ibt_endbr_seal",
];

/// Every special-section entry of the output describes a function the
/// output defines (an entry for a kernel function would make the module
/// loader act on the running kernel's code, e.g. ftrace on `__mcount_loc`):
/// no relocation of a special section refers to a function the output does
/// not define, whether a FUNC symbol or an undefined name that is a function
/// of the original object.
fn special_entries_describe_copies(o: &Obj, orig: &Obj) -> Result<(), String> {
    let orig_funcs: BTreeSet<&str> =
        orig.symbols().filter(|s| s.kind() == SymbolKind::Text).map(|s| name(&s)).collect();
    for s in o.sections().filter(|s| s.name().is_ok_and(|n| SPECIAL_SECTIONS.contains(&n))) {
        for (offset, r) in s.relocations() {
            let RelocationTarget::Symbol(i) = r.target() else { continue };
            let t = o.symbol_by_index(i).map_err(|e| e.to_string())?;
            let tname = name(&t);
            let kernel_name = tname.strip_prefix(".klp.tombstone.").unwrap_or(tname);
            if t.is_undefined() && (t.kind() == SymbolKind::Text || orig_funcs.contains(kernel_name)) {
                return Err(format!(
                    "{}+{offset:#x}: entry for {tname}, which this object does not define",
                    s.name().unwrap()
                ));
            }
        }
    }
    Ok(())
}
