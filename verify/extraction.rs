//! OUT.o of `klp diff`, checked against the linker, readelf and the rules a
//! livepatch object must follow, for every kpatch case that diffs
//! successfully and for the real kernel pairs.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use klp::elf::{ElfObject, MappedFile, SymbolKind};

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("extraction");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A small module object of our own to link OUT.o with.
fn module_object() -> PathBuf {
    let src = tmp(&format!("module-{:?}.c", std::thread::current().id()));
    std::fs::write(&src, "int klp_test_module_marker;\nint klp_test_init(void) { return klp_test_module_marker; }\n").unwrap();
    let obj = src.with_extension("o");
    assert!(Command::new("gcc").args(["-c", "-O2", "-o"]).arg(&obj).arg(&src).status().unwrap().success());
    obj
}

struct Expect<'a> {
    changed: &'a [String],
    new: &'a [String],
    /// Names the output may reference as plain undefined symbols.
    exported: &'a dyn Fn(&str) -> bool,
}

/// Every check of issue 3's acceptance on one output object.
fn check_output(out: &Path, orig: &Path, expect: &Expect) -> Result<(), String> {
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
    Ok(())
}

fn relocations_in_bounds(o: &ElfObject) -> Result<(), String> {
    for s in &o.sections {
        for r in &s.relocs {
            let width = klp::checksum::reloc_width(r.r_type) as u64;
            if r.offset + width > s.size {
                return Err(format!("{}: relocation at {:#x} runs past the section end {:#x}", s.name, r.offset, s.size));
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
                    return Err(format!("{}+{:#x}: placeholder {} without __klp_relocs entry", s.name, r.offset, t.name));
                }
                continue;
            }
            let existing = !orig.symbols_named(t.name).is_empty();
            if existing && !(e.exported)(t.name) {
                return Err(format!("{}+{:#x}: plain reference to existing unexported symbol {}", s.name, r.offset, t.name));
            }
        }
    }
    Ok(())
}

fn diff_into(orig: &Path, patched: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let _ = std::fs::remove_file(out);
    let mut args = vec!["diff", orig.to_str().unwrap(), patched.to_str().unwrap(), out.to_str().unwrap()];
    args.extend_from_slice(extra);
    klp(&args)
}

#[test]
fn kpatch_outputs_link_and_follow_the_rules() {
    let Some(dir) = shared_asset("corpus/kpatch-x86_64") else { return };
    let mut failures = Vec::new();
    let mut checked = 0;
    let names: Vec<String> = std::fs::read_to_string(dir.join("EXPECTED.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| l.split('\t').nth(1) == Some("ok"))
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect();
    for name in names {
        let (orig, patched) = (dir.join(format!("{name}.ORIG.o")), dir.join(format!("{name}.PATCHED.o")));
        let out = tmp(&format!("{name}.o"));
        let o = diff_into(&orig, &patched, &out, &["--objname", "vmlinux"]);
        if !o.status.success() {
            failures.push(format!("{name}: diff failed: {}", String::from_utf8_lossy(&o.stderr)));
            continue;
        }
        let changed = reported(&o.stdout, "changed function");
        let new = reported(&o.stdout, "new function");
        let never_exported = |_: &str| false;
        if let Err(e) = check_output(&out, &orig, &Expect { changed: &changed, new: &new, exported: &never_exported }) {
            failures.push(format!("{name}: {e}"));
        }
        checked += 1;
    }
    eprintln!("{checked} kpatch outputs checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn kernel_outputs_link_follow_the_rules_and_carry_the_demo() {
    for kernel in ["6.12-slim", "6.12-def"] {
        let Some(dir) = shared_asset(&format!("kernel/{kernel}")) else { continue };
        let symvers = dir.join("Module.symvers");
        let exports = klp::klp::Exports::read(&symvers).unwrap();
        let parent = unzstd_cached(&dir.join("vmlinux.zst"));
        let vmlinux = (unzstd_cached(&dir.join("vmlinux.o.orig.zst")), unzstd_cached(&dir.join("vmlinux.o.patched.zst")));
        let pairs = [
            ("cmdline", dir.join("cmdline.orig.o"), dir.join("cmdline.patched.o"), &["cmdline_proc_show"][..]),
            ("version", dir.join("version.orig.o"), dir.join("version.patched.o"), &["version_proc_show"][..]),
            ("vmlinux", vmlinux.0.clone(), vmlinux.1.clone(), &["cmdline_proc_show", "version_proc_show"][..]),
        ];
        for (what, orig, patched, want) in pairs {
            for with_symvers in [false, true] {
                let out = tmp(&format!("{kernel}-{what}-{with_symvers}.o"));
                let mut extra = vec!["--objname", "vmlinux", "--parent", parent.to_str().unwrap()];
                if with_symvers {
                    extra.extend(["--symvers", symvers.to_str().unwrap()]);
                }
                let o = diff_into(&orig, &patched, &out, &extra);
                assert!(o.status.success(), "{kernel} {what}: {}", String::from_utf8_lossy(&o.stderr));
                let mut changed = reported(&o.stdout, "changed function");
                changed.sort();
                assert_eq!(changed, want, "{kernel} {what}");
                let exported = |n: &str| with_symvers && exports.get(n).is_some_and(|e| e.module == "vmlinux");
                let e = Expect { changed: &changed, new: &[], exported: &exported };
                check_output(&out, &orig, &e).unwrap_or_else(|err| panic!("{kernel} {what} symvers={with_symvers}: {err}"));
                if what == "vmlinux" {
                    demo_content(&out, with_symvers);
                }
            }
        }
    }
}

/// The whole-kernel outputs carry both functions, their new string
/// literals, and a KLP relocation to `saved_command_line`.
fn demo_content(out: &Path, with_symvers: bool) {
    let file = MappedFile::open(out).unwrap();
    let o = file.parse().unwrap();
    for f in ["cmdline_proc_show", "version_proc_show"] {
        assert!(o.symbols_named(f).iter().any(|&s| o.symbol(s).is_defined()), "{f} missing");
    }
    let strings: String = o
        .sections
        .iter()
        .filter(|s| s.is_strings())
        .map(|s| String::from_utf8_lossy(s.data).into_owned())
        .collect();
    assert!(strings.contains(" kbuild_test_patched=1"), "cmdline literal missing");
    assert!(strings.contains("(patched: kbuild-test source patch)\n"), "version literal missing");
    let klp_syms: Vec<&str> = o.symbols.iter().map(|s| s.name).filter(|n| n.starts_with(".klp.sym.")).collect();
    assert!(klp_syms.contains(&".klp.sym.vmlinux.saved_command_line,0"), "{klp_syms:?}");
    if with_symvers {
        // seq_puts & co. are exported: plain references, not KLP ones.
        assert!(!klp_syms.iter().any(|n| n.contains(".seq_putc,")), "{klp_syms:?}");
    }
}

#[test]
fn diffing_twice_gives_identical_bytes() {
    let Some(dir) = shared_asset("kernel/6.12-def") else { return };
    let (orig, patched) = (unzstd_cached(&dir.join("vmlinux.o.orig.zst")), unzstd_cached(&dir.join("vmlinux.o.patched.zst")));
    let (a, b) = (tmp("twice-a.o"), tmp("twice-b.o"));
    for out in [&a, &b] {
        assert!(diff_into(&orig, &patched, out, &[]).status.success());
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "outputs differ");
}

#[test]
fn a_translation_unit_needs_an_object_name() {
    let Some(dir) = shared_asset("kernel/6.12-slim") else { return };
    let out = tmp("noname.o");
    let o = diff_into(&dir.join("cmdline.orig.o"), &dir.join("cmdline.patched.o"), &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pass --objname vmlinux"), "{stderr}");
    assert!(!out.exists(), "no output on error");
}

#[test]
fn v6_19_format_uses_the_older_names() {
    let Some(dir) = shared_asset("kernel/6.12-slim") else { return };
    let out = tmp("v619.o");
    let o = diff_into(&dir.join("cmdline.orig.o"), &dir.join("cmdline.patched.o"), &out, &["--objname", "vmlinux", "--format", "v6.19"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let file = MappedFile::open(&out).unwrap();
    let obj = file.parse().unwrap();
    for s in ["__klp_objects", "__klp_funcs", "__klp_relocs"] {
        assert!(obj.section_by_name(s).is_some(), "{s} missing");
    }
    assert!(obj.symbols.iter().all(|s| !s.name.starts_with(".klp.tombstone.")));
}
