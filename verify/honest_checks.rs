//! The checks say only what they compared: `klp diff --explain` shows the
//! instruction that differs where it is (a `.cold` part; of a static name,
//! the copy that changed), and `klp check --patched` fails on every function
//! of the module the loader oracle could not verify, and on a symbol
//! position that resolves to the wrong duplicate.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn work(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("honest-checks").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compile C `source` as `dir/<unit>.c` (the FILE symbol) into `dir/<out>`
/// with the kernel's flags that matter for the differ.
fn compile(dir: &Path, unit: &str, source: &str, out: &str) -> PathBuf {
    let src_dir = dir.join(format!("{out}.src"));
    std::fs::create_dir_all(&src_dir).unwrap();
    let src = src_dir.join(format!("{unit}.c"));
    std::fs::write(&src, source).unwrap();
    let obj = dir.join(out);
    let o = Command::new("gcc")
        .args(["-c", "-O2", "-ffunction-sections", "-fdata-sections", "-mcmodel=kernel", "-fno-pic"])
        .args(["-mno-red-zone", "-pg", "-mfentry", "-fno-asynchronous-unwind-tables", "-fno-stack-protector", "-w"])
        .arg("-o")
        .arg(&obj)
        .arg(&src)
        .output()
        .expect("run gcc");
    assert!(o.status.success(), "gcc: {}", String::from_utf8_lossy(&o.stderr));
    obj
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// `klp diff ORIG PATCHED OUT --objname vmlinux --explain FUNC`, which
/// must succeed; what it printed.
fn explain(dir: &Path, orig: &Path, patched: &Path, func: &str) -> String {
    let out = dir.join("out.o");
    let args = ["diff", orig.to_str().unwrap(), patched.to_str().unwrap(), out.to_str().unwrap()];
    let o = klp(&[&args[..], &["--objname", "vmlinux", "--explain", func]].concat());
    let shown = text(&o);
    assert!(o.status.success(), "{shown}");
    shown
}

#[test]
fn explain_shows_a_cold_difference_in_the_cold_part() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/cases/cold-split");
    let dir = work("explain-cold");
    let read = |f: &str| std::fs::read_to_string(case.join(f)).unwrap();
    let orig = compile(&dir, "queue", &read("orig.c"), "orig.o");
    let patched = compile(&dir, "queue", &read("patched.c"), "patched.o");
    let out = explain(&dir, &orig, &patched, "queue_push");
    let lines: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("queue_push: first difference")).collect();
    assert!(lines.len() >= 3, "no explanation:\n{out}");
    assert!(lines[0].ends_with(" of queue_push.cold"), "the cold part is not named:\n{out}");
    // Only the message changed: the instruction loading its address, in
    // the cold part, with each side's own string.
    for (line, side, message) in [(lines[1], "orig:", "queue %p full"), (lines[2], "patched:", "queue %p overflow")] {
        let shown = line.trim_start().strip_prefix(side).unwrap_or_else(|| panic!("{side} line:\n{out}")).trim();
        assert!(shown.starts_with("queue_push.cold+0x"), "not disassembled in queue_push.cold:\n{out}");
        assert!(shown.contains("mov ") && shown.contains(message), "not the differing instruction:\n{out}");
    }
}

/// `ld -r` of the units: a `vmlinux.o` in small.
fn merge(dir: &Path, units: &[PathBuf], out: &str) -> PathBuf {
    let merged = dir.join(out);
    let o = Command::new("ld").arg("-r").arg("-o").arg(&merged).args(units).output().expect("run ld");
    assert!(o.status.success(), "ld -r: {}", String::from_utf8_lossy(&o.stderr));
    merged
}

#[test]
fn explain_of_a_static_name_shows_the_one_that_changed() {
    // Two units each have a `static int show(int)`; the patch changes the
    // second. `--explain show` on the merged objects must explain that
    // one, not the first of the name (which has no difference).
    let dir = work("explain-duplicate-static");
    let unit = |n: u32, add: &str| {
        format!(
            "extern int printk(const char *, ...);\n\
             static __attribute__((noinline)) int show(int x) {{ printk(\"u{n} %d\\n\", x); return x * {n}{add}; }}\n\
             int entry{n}(int x) {{ return show(x) + 1; }}\n"
        )
    };
    let side = |name: &str, second: &str| {
        let a = compile(&dir, "first", &unit(1, ""), &format!("first.{name}.o"));
        let b = compile(&dir, "second", &unit(2, second), &format!("second.{name}.o"));
        merge(&dir, &[a, b], &format!("{name}.o"))
    };
    let (orig, patched) = (side("orig", ""), side("patched", " + 7"));
    let out = explain(&dir, &orig, &patched, "show");
    assert!(out.contains("changed function: show"), "{out}");
    assert!(!out.contains("no difference"), "the unchanged show was explained:\n{out}");
    assert!(out.lines().any(|l| l.starts_with("show: first difference at instruction")), "{out}");
}

// ---- raw edits of a linked module ----

use object::LittleEndian as LE;
use object::read::elf::{FileHeader, SectionHeader};

type Header = object::elf::FileHeader64<LE>;

/// File offset of the symbol-table entry of the function named `name`.
fn symbol_entry(bytes: &[u8], name: &str) -> usize {
    let h = Header::parse(bytes).unwrap();
    let sections = h.sections(LE, bytes).unwrap();
    let (_, symtab_header) =
        sections.iter().enumerate().find(|(_, s)| s.sh_type(LE) == object::elf::SHT_SYMTAB).expect("symtab");
    let symtab = sections.symbols(LE, bytes, object::elf::SHT_SYMTAB).unwrap();
    let index = symtab
        .iter()
        .position(|s| s.st_type() == object::elf::STT_FUNC && symtab.symbol_name(LE, s).unwrap() == name.as_bytes())
        .unwrap_or_else(|| panic!("no function {name}"));
    symtab_header.sh_offset(LE) as usize + index * 24
}

/// File range of the contents of section `name`.
fn section_range(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    let h = Header::parse(bytes).unwrap();
    let sections = h.sections(LE, bytes).unwrap();
    let s = sections.section_by_name(LE, name.as_bytes()).unwrap_or_else(|| panic!("no {name}")).1;
    let at = s.sh_offset(LE) as usize;
    at..at + s.sh_size(LE) as usize
}

/// Replace every occurrence (post-link leaves the old string table behind).
fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let hits: Vec<usize> = bytes.windows(from.len()).enumerate().filter(|(_, w)| *w == from).map(|(i, _)| i).collect();
    assert!(!hits.is_empty(), "{} not in the module", String::from_utf8_lossy(from));
    for at in hits {
        bytes[at..at + to.len()].copy_from_slice(to);
    }
}

/// Change the `sympos` of the `klp_func_ext` entry that has `from`.
fn set_func_sympos(bytes: &mut [u8], from: u64, to: u64) {
    let funcs = section_range(bytes, ".init.klp_funcs");
    let entry = (funcs.start..funcs.end)
        .step_by(24)
        .find(|&e| u64::from_le_bytes(bytes[e + 16..e + 24].try_into().unwrap()) == from)
        .unwrap_or_else(|| panic!("no klp_func_ext with sympos {from}"));
    bytes[entry + 16..entry + 24].copy_from_slice(&to.to_le_bytes());
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `klp check MODULE ARGS...`: exit status and stdout + stderr.
fn check(module: &Path, args: &[&Path]) -> (Option<i32>, String) {
    let mut all = vec!["check", module.to_str().unwrap()];
    all.extend(args.iter().map(|a| a.to_str().unwrap()));
    let o = klp(&all);
    (o.status.code(), text(&o))
}

// ---- klp check --patched fails on what it did not verify ----

#[test]
fn a_function_whose_size_changed_is_unverified_and_fails_the_check() {
    let objs = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/objects");
    let (orig, patched) = (objs.join("pktdemo.orig.o"), objs.join("pktdemo.patched.o"));
    let dir = work("size");
    let module = module::build_module(&dir, &orig, &patched, &["--objname", "vmlinux"]);
    let oracle = [Path::new("--orig"), &orig, Path::new("--patched"), &patched];
    let (code, out) = check(&module, &oracle);
    assert_eq!(code, Some(0), "{out}");
    for f in ["pkt_receive", "pkt_csum"] {
        assert!(out.contains(&format!("oracle: {f}: same bytes as the patched object")), "{out}");
    }
    // pkt_receive replaces the kernel's (klp_func_ext new_func); pkt_csum is a new function, cloned.
    let resized = |f: &str, delta: i64| {
        let mut bytes = std::fs::read(&module).unwrap();
        let size_at = symbol_entry(&bytes, f) + 16;
        let size = u64::from_le_bytes(bytes[size_at..size_at + 8].try_into().unwrap());
        let new_size = size.checked_add_signed(delta).unwrap();
        bytes[size_at..size_at + 8].copy_from_slice(&new_size.to_le_bytes());
        (write(&dir, &format!("{f}-{new_size}.ko"), &bytes), size, new_size)
    };
    for f in ["pkt_receive", "pkt_csum"] {
        let (broken, size, new_size) = resized(f, -1);
        let (code, out) = check(&broken, &oracle);
        assert_eq!(code, Some(1), "{f} with st_size {new_size}:\n{out}");
        let expected = format!("oracle-unverified: {f}: {new_size} bytes in the module, {size} in the patched object");
        assert!(out.contains(&expected), "{f} with st_size {new_size} not reported:\n{out}");
        assert!(!out.contains(": ok: "), "{out}");
        // Allowed explicitly: still listed, no failure.
        let allow = [&oracle[..], &[Path::new("--allow-unverified")]].concat();
        let (code, out) = check(&broken, &allow);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains(&expected) && out.contains("1 unverified (allowed by --allow-unverified)"), "{out}");
    }
    // A size reaching past the section is malformed input, refused when the module is read.
    let (broken, _, _) = resized("pkt_csum", 1 << 40);
    let (code, out) = check(&broken, &oracle);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("symbol pkt_csum") && !out.contains(": ok: ") && !out.contains("panicked"), "{out}");
}

// ---- symbol positions: the oracle counts them itself ----

const HELPER_A: &str = "static __attribute__((noipa)) int helper(int x) { return x + 1; }\n";
const HELPER_B: &str = "static __attribute__((noipa)) int helper(int x) { return x - 1; }\n";

/// Two translation units each with a static `helper`, linked into a
/// "vmlinux" whose linker script places b.c's text first: in address order
/// (the kernel's for vmlinux) a.c's helper is the second, in symbol-table
/// order (a.c's FILE block comes first) the first. Also a relocatable copy
/// standing for a module "target", where symbol-table order counts.
struct Duplicates {
    dir: PathBuf,
    orig: PathBuf,
    vmlinux: PathBuf,
    target_ko: PathBuf,
}

fn duplicates(test: &str) -> Duplicates {
    let dir = work(test);
    let a = compile(&dir, "a", &format!("{HELPER_A}int a_user(int x) {{ return helper(x) * 2; }}\n"), "a.o");
    let b = compile(&dir, "b", &format!("{HELPER_B}int b_user(int x) {{ return helper(x) * 3; }}\n"), "b.o");
    let orig = dir.join("orig.o");
    let ld = |args: &[&std::ffi::OsStr]| {
        let o = Command::new("ld").args(args).output().expect("run ld");
        assert!(o.status.success(), "ld: {}", String::from_utf8_lossy(&o.stderr));
    };
    ld(&["-r".as_ref(), "-o".as_ref(), orig.as_os_str(), a.as_os_str(), b.as_os_str()]);
    let script = write(
        &dir,
        "vmlinux.lds",
        b"ENTRY(a_user)\nSECTIONS {\n\
          .text 0xffffffff81100000 : { PROVIDE(__fentry__ = .); *(EXCLUDE_FILE(*b.o) .text EXCLUDE_FILE(*b.o) .text.*) }\n\
          .text.b 0xffffffff81000000 : { *b.o(.text .text.*) }\n\
          .data 0xffffffff81200000 : { *(.rodata .rodata.* .data .data.* .bss .bss.*) }\n}\n",
    );
    let vmlinux = dir.join("vmlinux");
    ld(&["-T".as_ref(), script.as_os_str(), "-o".as_ref(), vmlinux.as_os_str(), a.as_os_str(), b.as_os_str()]);
    let target_ko = dir.join("target.ko");
    std::fs::copy(&orig, &target_ko).unwrap();
    Duplicates { dir, orig, vmlinux, target_ko }
}

/// The module of a patch to a.c (`a_source`), diffed with `diff_args`.
fn duplicates_module(d: &Duplicates, name: &str, a_source: &str, diff_args: &[&str]) -> (PathBuf, PathBuf) {
    let dir = d.dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let a = compile(&dir, "a", a_source, "a.o");
    let b = d.dir.join("b.o");
    let patched = dir.join("patched.o");
    let o = Command::new("ld").arg("-r").arg("-o").arg(&patched).arg(&a).arg(&b).output().unwrap();
    assert!(o.status.success(), "ld: {}", String::from_utf8_lossy(&o.stderr));
    (module::build_module(&dir, &d.orig, &patched, diff_args), patched)
}

#[test]
fn the_oracle_catches_a_klp_sym_position_naming_the_other_duplicate() {
    let d = duplicates("duplicates-klp-sym");
    let (vmlinux, orig) = (d.vmlinux.to_str().unwrap(), d.orig.to_str().unwrap());
    // a_user changed: it calls the running kernel's a.c helper, a KLP relocation.
    let a_user = format!("{HELPER_A}int a_user(int x) {{ return helper(x) * 5 + 1; }}\n");
    let (module, patched) = duplicates_module(&d, "klp-sym", &a_user, &["--objname", "vmlinux", "--parent", vmlinux]);
    let bytes = std::fs::read(&module).unwrap();
    let right = b".klp.sym.vmlinux.helper,2\0";
    assert!(bytes.windows(right.len()).any(|w| w == right), "a.c's helper is the second by address");
    let with_parent = [Path::new("--parent"), &d.vmlinux, Path::new("--patched"), &patched];
    let (code, out) = check(&module, &with_parent);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("oracle: a_user: same bytes as the patched object"), "{out}");

    // The same module pointing at b.c's helper: klp check's own rules accept
    // it (position 1 exists), the oracle does not.
    let mut wrong = bytes.clone();
    replace_all(&mut wrong, right, b".klp.sym.vmlinux.helper,1\0");
    let wrong = write(module.parent().unwrap(), "wrong-sympos.ko", &wrong);
    let (code, out) = check(&wrong, &[Path::new("--parent"), &d.vmlinux]);
    assert_eq!(code, Some(0), "position 1 exists, so the rules pass:\n{out}");
    let (code, out) = check(&wrong, &with_parent);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("oracle-differs: a_user+0x"), "{out}");

    // Without --parent klp diff guesses in symbol-table order: 1, b.c's by
    // address. The oracle, given the parent, says so.
    let (guessed, patched) = duplicates_module(&d, "klp-sym-guessed", &a_user, &["--objname", "vmlinux"]);
    let (code, out) = check(&guessed, &with_parent);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("oracle-differs: a_user+0x"), "{out}");

    // With only the original object the order of duplicates is unknown:
    // unverified, which fails unless allowed.
    let stand_in = [Path::new("--orig"), Path::new(orig), Path::new("--patched"), &patched];
    let (code, out) = check(&module, &stand_in);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("oracle-unverified: a_user: relocation at a_user+0x")
            && out.contains(".klp.sym.vmlinux.helper,2: position 2 among 2 symbols of that name")
            && out.contains("not known without --parent"),
        "{out}"
    );
    let (code, out) = check(&module, &[&stand_in[..], &[Path::new("--allow-unverified")]].concat());
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn in_a_module_positions_count_in_symbol_table_order() {
    let d = duplicates("duplicates-module");
    let a_user = format!("{HELPER_A}int a_user(int x) {{ return helper(x) * 5 + 1; }}\n");
    let target_ko = d.target_ko.to_str().unwrap();
    let (module, patched) =
        duplicates_module(&d, "module-target", &a_user, &["--objname", "target", "--parent", target_ko]);
    let mut bytes = std::fs::read(&module).unwrap();
    let right = b".klp.sym.target.helper,1\0";
    assert!(bytes.windows(right.len()).any(|w| w == right), "a.c's helper is the first in the symbol table");
    let args = [Path::new("--parent"), &d.target_ko, Path::new("--patched"), &patched];
    let (code, out) = check(&module, &args);
    assert_eq!(code, Some(0), "{out}");
    replace_all(&mut bytes, right, b".klp.sym.target.helper,2\0");
    let (code, out) = check(&write(&d.dir.join("module-target"), "wrong.ko", &bytes), &args);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("oracle-differs: a_user+0x"), "{out}");
}

#[test]
fn the_oracle_catches_a_replacement_of_the_other_duplicate() {
    let d = duplicates("duplicates-func-ext");
    // a.c's helper itself changed: klp_func_ext helper,2 (by address).
    let helper = "static __attribute__((noipa)) int helper(int x) { return x + 7; }\n\
                  int a_user(int x) { return helper(x) * 2; }\n";
    let vmlinux = d.vmlinux.to_str().unwrap();
    let (module, patched) = duplicates_module(&d, "func-ext", helper, &["--objname", "vmlinux", "--parent", vmlinux]);
    let args = [Path::new("--parent"), &d.vmlinux, Path::new("--patched"), &patched];
    let (code, out) = check(&module, &args);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("oracle: helper: same bytes as the patched object"), "{out}");
    let mut bytes = std::fs::read(&module).unwrap();
    set_func_sympos(&mut bytes, 2, 1);
    let wrong = write(&d.dir.join("func-ext"), "wrong.ko", &bytes);
    let (code, out) = check(&wrong, &[Path::new("--parent"), &d.vmlinux]);
    assert_eq!(code, Some(0), "position 1 exists, so the rules pass:\n{out}");
    let (code, out) = check(&wrong, &args);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("oracle-differs: helper: klp_func_ext helper,1 of vmlinux resolves to helper of b.c")
            && out.contains("but this is the new code of helper of a.c"),
        "{out}"
    );
}

#[test]
fn the_oracle_catches_a_replacement_of_the_other_m_show_in_a_real_vmlinux() {
    let Some(vmlinux) = require_asset("kernel/6.12-slim/vmlinux.zst", &["zstd", "gcc", "ld"]) else { return };
    let vmlinux = unzstd_cached(&vmlinux);
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/kernel/slim-scenario");
    let (orig, patched) = (scenario.join("namespace.orig.o"), scenario.join("namespace.patched.o"));
    let dir = work("m_show");
    let args = ["--objname", "vmlinux", "--parent", vmlinux.to_str().unwrap()];
    let module = module::build_module(&dir, &orig, &patched, &args);
    let oracle = [Path::new("--parent"), &vmlinux, Path::new("--patched"), &patched];
    let (code, out) = check(&module, &oracle);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("oracle: m_show: same bytes as the patched object"), "{out}");
    // kernel/module/procfs.c's m_show is the first by address.
    let mut bytes = std::fs::read(&module).unwrap();
    set_func_sympos(&mut bytes, 2, 1);
    let (code, out) = check(&write(&dir, "wrong.ko", &bytes), &oracle);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("oracle-differs: m_show: klp_func_ext m_show,1 of vmlinux resolves to m_show of procfs.c"),
        "{out}"
    );
}
