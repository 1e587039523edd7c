//! OUT.o of `klp diff`, checked against the linker, readelf and the rules a
//! livepatch object must follow, for every kpatch case that diffs
//! successfully and for the real kernel pairs.

mod common;

use std::path::{Path, PathBuf};

use common::out_check::{Expect, check_output};
use common::*;
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags};

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("extraction");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn diff_into(orig: &Path, patched: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let _ = std::fs::remove_file(out);
    let mut args = vec!["diff", orig.to_str().unwrap(), patched.to_str().unwrap(), out.to_str().unwrap()];
    args.extend_from_slice(extra);
    klp(&args)
}

#[test]
fn kpatch_outputs_link_and_follow_the_rules() {
    let Some(expected) = require_asset("corpus/kpatch-x86_64/EXPECTED.tsv", &["ld", "readelf", "gcc"]) else {
        return;
    };
    let dir = expected.parent().unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    let names: Vec<String> = std::fs::read_to_string(&expected)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| l.split('\t').nth(1) == Some("ok"))
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect();
    assert!(!names.is_empty(), "{} lists no `ok` case", expected.display());
    for name in &names {
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
    assert_eq!(checked, names.len(), "every `ok` case of EXPECTED.tsv checked");
}

#[test]
fn kernel_outputs_link_follow_the_rules_and_carry_the_demo() {
    let kernels = ["6.12-slim", "6.12-def"];
    if require(&strs(&kernel_assets(&kernels, DEMO_KERNEL_FILES)), &["zstd", "ld", "readelf", "gcc"]).is_none() {
        return;
    }
    let mut outputs = 0;
    for kernel in kernels {
        let dir = shared_dir().join("kernel").join(kernel);
        let symvers = dir.join("Module.symvers");
        let exports = vmlinux_exports(&symvers);
        let parent = unzstd_cached(&dir.join("vmlinux.zst"));
        let vmlinux =
            (unzstd_cached(&dir.join("vmlinux.o.orig.zst")), unzstd_cached(&dir.join("vmlinux.o.patched.zst")));
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
                let exported = |n: &str| with_symvers && exports.contains(n);
                let e = Expect { changed: &changed, new: &[], exported: &exported };
                check_output(&out, &orig, &e)
                    .unwrap_or_else(|err| panic!("{kernel} {what} symvers={with_symvers}: {err}"));
                if what == "vmlinux" {
                    demo_content(&out, with_symvers);
                }
                outputs += 1;
            }
        }
    }
    assert_eq!(outputs, 12, "3 pairs of each of 2 kernels, with and without Module.symvers");
}

/// What vmlinux exports, read from `Module.symvers` here rather than with
/// klp's own reader (which `--symvers` uses): one line per export,
/// `CRC<TAB>symbol<TAB>module<TAB>export type<TAB>namespace`
/// (Documentation/kbuild/modules.rst, "Symbols From the Kernel").
fn vmlinux_exports(symvers: &Path) -> std::collections::BTreeSet<String> {
    let text = std::fs::read_to_string(symvers).unwrap();
    let exports: std::collections::BTreeSet<String> = text
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4 && f[2] == "vmlinux")
        .map(|f| f[1].to_owned())
        .collect();
    assert!(!exports.is_empty(), "{}: no symbol exported by vmlinux", symvers.display());
    exports
}

/// The whole-kernel outputs carry both functions, their new string
/// literals, and a KLP relocation to `saved_command_line` (read with the
/// `object` crate, not klp's reader).
fn demo_content(out: &Path, with_symvers: bool) {
    let data = std::fs::read(out).unwrap();
    let o = object::File::parse(&*data).unwrap();
    for f in ["cmdline_proc_show", "version_proc_show"] {
        assert!(o.symbols().any(|s| s.name() == Ok(f) && !s.is_undefined()), "{f} missing");
    }
    let is_strings = |s: &object::Section| matches!(s.flags(), SectionFlags::Elf { sh_flags, .. } if sh_flags.0 & object::elf::SHF_STRINGS.0 != 0);
    let strings: String =
        o.sections().filter(is_strings).map(|s| String::from_utf8_lossy(s.data().unwrap()).into_owned()).collect();
    assert!(strings.contains(" kbuild_test_patched=1"), "cmdline literal missing");
    assert!(strings.contains("(patched: kbuild-test source patch)\n"), "version literal missing");
    let klp_syms: Vec<&str> =
        o.symbols().filter_map(|s| s.name().ok()).filter(|n| n.starts_with(".klp.sym.")).collect();
    assert!(klp_syms.contains(&".klp.sym.vmlinux.saved_command_line,0"), "{klp_syms:?}");
    if with_symvers {
        // seq_puts & co. are exported: plain references, not KLP ones.
        assert!(!klp_syms.iter().any(|n| n.contains(".seq_putc,")), "{klp_syms:?}");
    }
}

#[test]
fn diffing_twice_gives_identical_bytes() {
    let assets = kernel_assets(&["6.12-def"], &["vmlinux.o.orig.zst", "vmlinux.o.patched.zst"]);
    let Some(p) = require(&strs(&assets), &["zstd"]) else { return };
    let (orig, patched) = (unzstd_cached(&p[0]), unzstd_cached(&p[1]));
    let (a, b) = (tmp("twice-a.o"), tmp("twice-b.o"));
    for out in [&a, &b] {
        assert!(diff_into(&orig, &patched, out, &[]).status.success());
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "outputs differ");
}

#[test]
fn a_translation_unit_needs_an_object_name() {
    let assets = kernel_assets(&["6.12-slim"], &["cmdline.orig.o", "cmdline.patched.o"]);
    let Some(p) = require(&strs(&assets), &[]) else { return };
    let out = tmp("noname.o");
    let o = diff_into(&p[0], &p[1], &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pass --objname vmlinux"), "{stderr}");
    assert!(!out.exists(), "no output on error");
}

#[test]
fn v6_19_format_uses_the_older_names() {
    let assets = kernel_assets(&["6.12-slim"], &["cmdline.orig.o", "cmdline.patched.o"]);
    let Some(p) = require(&strs(&assets), &[]) else { return };
    let out = tmp("v619.o");
    let o = diff_into(&p[0], &p[1], &out, &["--objname", "vmlinux", "--format", "v6.19"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let data = std::fs::read(&out).unwrap();
    let obj = object::File::parse(&*data).unwrap();
    for s in ["__klp_objects", "__klp_funcs", "__klp_relocs"] {
        assert!(obj.section_by_name(s).is_some(), "{s} missing");
    }
    assert!(obj.symbols().count() > 1, "no symbols");
    assert!(obj.symbols().all(|s| !s.name().unwrap().starts_with(".klp.tombstone.")));
}
