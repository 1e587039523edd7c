//! Checks every livepatch object written by `klp diff` must pass: the
//! linker and readelf accept it, relocations are in bounds, it defines only
//! changed and new functions, its klp_func_ext table names the originals,
//! and references to existing unexported symbols are KLP relocations.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use klp::elf::{ElfObject, MappedFile, SymbolKind};

use super::strip_numbers;

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
    let file = MappedFile::open(out).map_err(|e| e.to_string())?;
    let o = file.parse().map_err(|e| e.to_string())?;
    let orig_file = MappedFile::open(orig).unwrap();
    let orig_obj = orig_file.parse().unwrap();
    relocations_in_bounds(&o)?;
    only_changed_and_new_functions(&o, expect)?;
    funcs_table_matches(&o, &orig_obj, expect)?;
    existing_references_are_klp(&o, &orig_obj, expect)?;
    special_entries_describe_copies(out)?;
    Ok(())
}

fn relocations_in_bounds(o: &ElfObject) -> Result<(), String> {
    for s in &o.sections {
        for r in &s.relocs {
            let width = klp::elf::reloc::width(r.r_type) as u64;
            if r.offset + width > s.size {
                return Err(format!(
                    "{}: relocation at {:#x} runs past the section end {:#x}",
                    s.name, r.offset, s.size
                ));
            }
            if r.symbol == 0 {
                return Err(format!("{}: relocation at {:#x} against the null symbol", s.name, r.offset));
            }
        }
    }
    Ok(())
}

fn only_changed_and_new_functions(o: &ElfObject, e: &Expect) -> Result<(), String> {
    let wanted: BTreeSet<String> = e.changed.iter().chain(e.new).map(|n| strip_numbers(n)).collect();
    for s in o.symbols.iter().filter(|s| s.kind == SymbolKind::Func && s.is_defined()) {
        let base = s.name.strip_prefix("__pfx_").unwrap_or(s.name);
        let base = base.split(".cold").next().unwrap();
        if !wanted.contains(&strip_numbers(base)) {
            return Err(format!("defines function {} that is neither changed nor new", s.name));
        }
    }
    for name in &wanted {
        if !o.symbols.iter().any(|s| s.kind == SymbolKind::Func && s.is_defined() && strip_numbers(s.name) == *name) {
            return Err(format!("changed or new function {name} is not defined"));
        }
    }
    Ok(())
}

/// The string an `R_X86_64_64` relocation at `offset` of `section` points at.
fn pointed_string(o: &ElfObject, section: &str, offset: u64) -> Option<String> {
    let s = o.section_by_name(section)?;
    let r = s.relocs.iter().find(|r| r.offset == offset)?;
    let target = o.symbol(r.symbol);
    let sec = o.symbol_section(target)?;
    let at = target.value as i64 + r.addend;
    Some(String::from_utf8_lossy(sec.c_str_at(at as u64)?).into_owned())
}

fn funcs_table_matches(o: &ElfObject, orig: &ElfObject, e: &Expect) -> Result<(), String> {
    let funcs = o.section_by_name(".init.klp_funcs").ok_or("no .init.klp_funcs")?;
    let n = funcs.size / 24;
    if n as usize != e.changed.len() {
        return Err(format!("{n} klp_func_ext entries for {} changed functions", e.changed.len()));
    }
    for i in 0..n {
        let name = pointed_string(o, ".init.klp_funcs", i * 24).ok_or("klp_func_ext without old_name")?;
        let sympos = u64::from_le_bytes(funcs.data[(i * 24 + 16) as usize..][..8].try_into().unwrap());
        let in_orig = orig.symbols_named(&name).iter().filter(|&&s| orig.symbol(s).kind == SymbolKind::Func).count();
        if in_orig == 0 {
            return Err(format!("old_name {name} is not a function of the original object"));
        }
        if (in_orig == 1) != (sympos == 0) || sympos > in_orig as u64 {
            return Err(format!("{name}: sympos {sympos} but {in_orig} functions of that name in the original"));
        }
        if !funcs.relocs.iter().any(|r| r.offset == i * 24 + 8 && o.symbol(r.symbol).is_defined()) {
            return Err(format!("{name}: new_func does not point at a defined function"));
        }
    }
    Ok(())
}

/// Every reference from copied code to a symbol the original object has,
/// unless exported, is a KLP relocation with its `__klp_relocs` entry.
fn existing_references_are_klp(o: &ElfObject, orig: &ElfObject, e: &Expect) -> Result<(), String> {
    let klp_sites: BTreeSet<(String, u64)> = o
        .sections
        .iter()
        .filter(|s| s.name.starts_with("__klp_relocs"))
        .flat_map(|s| {
            s.relocs.iter().filter(|r| r.offset % 24 == 0).map(|r| {
                let target = o.symbol(r.symbol);
                (o.symbol_section(target).map_or(String::new(), |t| t.name.to_owned()), r.addend as u64)
            })
        })
        .collect();
    for s in o.sections.iter().filter(|s| s.is_alloc() && !s.name.starts_with("__klp_relocs")) {
        for r in &s.relocs {
            let t = o.symbol(r.symbol);
            if t.is_defined() {
                continue;
            }
            if t.name.starts_with(".klp.tombstone.") {
                if !klp_sites.contains(&(s.name.to_owned(), r.offset)) {
                    return Err(format!(
                        "{}+{:#x}: placeholder {} without __klp_relocs entry",
                        s.name, r.offset, t.name
                    ));
                }
                continue;
            }
            let existing = !orig.symbols_named(t.name).is_empty();
            // Thunks and hooks the compiler calls are always plain references.
            if existing && !(e.exported)(t.name) && !klp::kernel::abi::is_codegen_symbol(t.name) {
                return Err(format!(
                    "{}+{:#x}: plain reference to existing unexported symbol {}",
                    s.name, r.offset, t.name
                ));
            }
        }
    }
    Ok(())
}

/// Every special-section entry of the output describes a function the
/// output defines (an entry for a kernel function would make the module
/// loader act on the running kernel's code, e.g. ftrace on `__mcount_loc`).
pub fn special_entries_describe_copies(out: &Path) -> Result<(), String> {
    let file = MappedFile::open(out).map_err(|e| e.to_string())?;
    let o = file.parse().map_err(|e| e.to_string())?;
    for s in o.sections.iter().filter(|s| klp::kernel::special::is_special_section(s.name)) {
        for r in &s.relocs {
            let t = o.symbol(r.symbol);
            if t.kind == SymbolKind::Func && !t.is_defined() {
                return Err(format!(
                    "{}+{:#x}: entry for {}, which this object does not define",
                    s.name, r.offset, t.name
                ));
            }
        }
    }
    Ok(())
}
