//! Bad input gives a one-line error naming the file and what is wrong,
//! exit status 1, and never a panic. Each case corrupts one field of a real
//! object built by gcc.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const SOURCE: &str = r#"
extern int printk(const char *fmt, ...);
static int counter;
int demo_show(int x) { counter += x; return printk("demo %d\n", counter); }
"#;

/// A directory of this test's own (tests run in parallel).
fn work_dir() -> PathBuf {
    let thread = std::thread::current();
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad-input").join(thread.name().unwrap_or("main"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn valid_object() -> Vec<u8> {
    compiled("demo", SOURCE)
}

/// `source` compiled by gcc as `name.o` in this test's directory.
fn compiled(name: &str, source: &str) -> Vec<u8> {
    let dir = work_dir();
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let obj = dir.join(format!("{name}.o"));
    let ok = Command::new("gcc")
        .args(["-c", "-O2", "-ffunction-sections", "-fdata-sections", "-o"])
        .arg(&obj)
        .arg(&src)
        .status()
        .unwrap()
        .success();
    assert!(ok, "gcc failed");
    std::fs::read(obj).unwrap()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// File offset of the header of the first section of type `sh_type`.
fn section_header(b: &[u8], sh_type: u32) -> usize {
    let shoff = u64_at(b, 0x28) as usize;
    let shnum = u16_at(b, 0x3c) as usize;
    (0..shnum).map(|i| shoff + i * 64).find(|&h| u32_at(b, h + 4) == sh_type).expect("section type present")
}

/// File offset of symbol `index` in `.symtab`.
fn symbol_entry(b: &[u8], index: usize) -> usize {
    u64_at(b, section_header(b, 2) + 24) as usize + index * 24
}

/// A defined symbol's index (the first with a section index other than 0).
fn defined_symbol(b: &[u8]) -> usize {
    let sh = section_header(b, 2);
    let count = u64_at(b, sh + 32) as usize / 24;
    (1..count).find(|&i| u16_at(b, symbol_entry(b, i) + 6) != 0).unwrap()
}

fn expect_error(name: &str, bytes: &[u8], phrase: &str) {
    let path = work_dir().join(format!("{name}.o"));
    std::fs::write(&path, bytes).unwrap();
    let good = work_dir().join("good.o");
    std::fs::write(&good, valid_object()).unwrap();
    for args in [
        vec!["diff", path.to_str().unwrap(), good.to_str().unwrap(), "/nonexistent/out.o"],
        vec!["diff", good.to_str().unwrap(), path.to_str().unwrap(), "/nonexistent/out.o"],
        vec!["checksum", path.to_str().unwrap()],
    ] {
        let o = klp(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: panic: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: one line expected: {stderr}");
        assert!(stderr.contains(path.to_str().unwrap()), "{name}: error must name the file: {stderr}");
        assert!(stderr.contains(phrase), "{name}: expected '{phrase}' in: {stderr}");
        assert!(o.stdout.is_empty(), "{name}: nothing on stdout on error");
    }
}

#[test]
fn empty_file() {
    expect_error("empty", &[], "file is empty");
}

#[test]
fn not_elf() {
    expect_error("text", b"this is not an object file\n", "not an ELF file");
}

#[test]
fn elf32() {
    let mut b = valid_object();
    b[4] = 1; // ELFCLASS32
    expect_error("elf32", &b, "32-bit ELF");
}

#[test]
fn executable_instead_of_relocatable() {
    let mut b = valid_object();
    b[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    expect_error("exec", &b, "an executable (ET_EXEC), not a relocatable object");
}

#[test]
fn another_machine() {
    let mut b = valid_object();
    b[0x12..0x14].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    expect_error("aarch64", &b, "machine 183 is not x86-64");
}

#[test]
fn truncated_section_table() {
    let b = valid_object();
    let shoff = u64_at(&b, 0x28) as usize;
    expect_error("truncated", &b[..shoff + 100], "cannot read the section header table");
}

#[test]
fn symbol_section_index_out_of_range() {
    let mut b = valid_object();
    let sym = symbol_entry(&b, defined_symbol(&b));
    b[sym + 6..sym + 8].copy_from_slice(&0x7000u16.to_le_bytes());
    expect_error("bad-shndx", &b, "out of range");
}

#[test]
fn relocation_against_missing_symbol() {
    let mut b = valid_object();
    let rela = u64_at(&b, section_header(&b, 4) + 24) as usize;
    let info = u64_at(&b, rela + 8);
    let bad = (0xffffu64 << 32) | (info & 0xffff_ffff);
    b[rela + 8..rela + 16].copy_from_slice(&bad.to_le_bytes());
    expect_error("bad-rsym", &b, "refers to symbol index 65535");
}

#[test]
fn relocated_section_index_out_of_range() {
    let mut b = valid_object();
    let rela = section_header(&b, 4);
    b[rela + 44..rela + 48].copy_from_slice(&9999u32.to_le_bytes());
    expect_error("bad-info", &b, "applies to section index 9999, out of range");
}

#[test]
fn symbol_name_outside_string_table() {
    let mut b = valid_object();
    let sym = symbol_entry(&b, defined_symbol(&b));
    b[sym..sym + 4].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    expect_error("bad-stname", &b, "outside the string table");
}

#[test]
fn section_name_outside_string_table() {
    let mut b = valid_object();
    let rela = section_header(&b, 4);
    b[rela..rela + 4].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    expect_error("bad-shname", &b, "outside the section name table");
}

#[test]
fn section_data_outside_file() {
    let mut b = valid_object();
    let text = section_header(&b, 1);
    b[text + 32..text + 40].copy_from_slice(&0x7fff_ffffu64.to_le_bytes());
    expect_error("bad-size", &b, "is outside the file");
}

#[test]
fn missing_file() {
    let o = klp(&["diff", "/nonexistent/a.o", "/nonexistent/b.o", "/tmp/out.o"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr.contains("/nonexistent/a.o: cannot open"), "{stderr}");
}

/// `valid_object()` with one more function, so that `klp diff` against it
/// has a new function to extract.
fn object_with_new_function() -> Vec<u8> {
    compiled("demo2", &format!("{SOURCE}\nint demo_new(int x) {{ return demo_show(x) + 1; }}\n"))
}

/// The index of the symbol named `name`.
fn symbol_named(b: &[u8], name: &str) -> usize {
    let symtab = section_header(b, 2);
    let strtab = u64_at(b, 0x28) as usize + u32_at(b, symtab + 40) as usize * 64;
    let strings = u64_at(b, strtab + 24) as usize;
    let count = u64_at(b, symtab + 32) as usize / 24;
    (0..count)
        .find(|&i| {
            let at = strings + u32_at(b, symbol_entry(b, i)) as usize;
            b[at..].starts_with(name.as_bytes()) && b[at + name.len()] == 0
        })
        .unwrap_or_else(|| panic!("no symbol {name}"))
}

/// Run klp and check the error contract: exit 1, one line on stderr naming
/// `file` and `place`, nothing on stdout, no panic.
fn expect_one_line_error(args: &[&str], file: &Path, place: &str) -> String {
    let o = klp(args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: panic: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: one line expected: {stderr}");
    assert!(stderr.contains(file.to_str().unwrap()), "{args:?}: error must name the file: {stderr}");
    assert!(stderr.contains(place), "{args:?}: error must say where ({place}): {stderr}");
    stderr
}

/// A new function whose st_size is 9 exabytes: extraction would have tried
/// to allocate that much. The reader refuses it before anything is written.
#[test]
fn new_function_with_a_huge_size() {
    let mut b = object_with_new_function();
    let sym = symbol_entry(&b, symbol_named(&b, "demo_new"));
    b[sym + 16..sym + 24].copy_from_slice(&(9u64 << 60).to_le_bytes());
    let dir = work_dir();
    let (orig, patched, out) = (dir.join("orig.o"), dir.join("huge.o"), dir.join("huge.out.o"));
    std::fs::write(&orig, valid_object()).unwrap();
    std::fs::write(&patched, &b).unwrap();
    let _ = std::fs::remove_file(&out);
    let args =
        ["diff", orig.to_str().unwrap(), patched.to_str().unwrap(), out.to_str().unwrap(), "--objname", "vmlinux"];
    let e = expect_one_line_error(&args, &patched, "symbol demo_new");
    assert!(e.contains("reach past the end"), "{e}");
    assert!(!out.exists(), "an output was written");
    expect_error("huge-size", &b, "reach past the end");
}

/// A function whose st_value lies past the end of its section.
#[test]
fn function_value_past_its_section() {
    let mut b = valid_object();
    let sym = symbol_entry(&b, symbol_named(&b, "demo_show"));
    b[sym + 8..sym + 16].copy_from_slice(&0x10_0000u64.to_le_bytes());
    expect_error("value-past-section", &b, "symbol demo_show: value 0x100000");
}

/// What the checks below start from: the demo pair linked with the
/// skeleton, not yet post-linked.
fn linked_module(name: &str) -> (PathBuf, PathBuf) {
    let dir = work_dir().join(name);
    let objs = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/objects");
    let patched = objs.join("pktdemo.patched.o");
    let out = module::diff_output(&dir, &objs.join("pktdemo.orig.o"), &patched, &["--objname", "vmlinux"]);
    let ko = dir.join("livepatch-test.ko");
    module::link_module(&dir, &[&out], &ko);
    (ko, patched)
}

fn section_header_named(b: &[u8], name: &str) -> usize {
    let shoff = u64_at(b, 0x28) as usize;
    let shnum = u16_at(b, 0x3c) as usize;
    let names = u64_at(b, shoff + u16_at(b, 0x3e) as usize * 64 + 24) as usize;
    (0..shnum)
        .map(|i| shoff + i * 64)
        .find(|&h| {
            let at = names + u32_at(b, h) as usize;
            b[at..].starts_with(name.as_bytes()) && b[at + name.len()] == 0
        })
        .unwrap_or_else(|| panic!("no section {name}"))
}

/// `klp check` on a module whose objects table has no bytes (SHT_NOBITS):
/// a violation naming the table, not a slice out of range.
#[test]
fn check_with_a_nobits_objects_table() {
    let (ko, _) = linked_module("nobits-objects");
    module::post_link(&ko);
    let mut b = std::fs::read(&ko).unwrap();
    let h = section_header_named(&b, ".init.klp_objects");
    b[h + 4..h + 8].copy_from_slice(&8u32.to_le_bytes()); // SHT_NOBITS
    std::fs::write(&ko, &b).unwrap();
    let o = klp(&["check", ko.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    let line = stdout.lines().find(|l| l.contains("objects-table")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.starts_with(ko.to_str().unwrap()) && line.contains(".init.klp_objects") && line.contains("NOBITS"),
        "{line}"
    );
}

/// `klp post-link` on a module with a section symbol whose st_shndx is out
/// of range: an error, and the module is left as it was.
#[test]
fn post_link_with_a_section_symbol_out_of_range() {
    let (ko, _) = linked_module("bad-section-symbol");
    let mut b = std::fs::read(&ko).unwrap();
    let symtab = section_header(&b, 2);
    let count = u64_at(&b, symtab + 32) as usize / 24;
    let section_symbol = (1..count).find(|&i| b[symbol_entry(&b, i) + 4] & 0xf == 3).expect("a section symbol");
    let at = symbol_entry(&b, section_symbol);
    b[at + 6..at + 8].copy_from_slice(&0xfe00u16.to_le_bytes());
    std::fs::write(&ko, &b).unwrap();
    let e = expect_one_line_error(&["post-link", ko.to_str().unwrap()], &ko, "out of range");
    assert!(e.contains("symbol"), "{e}");
    assert_eq!(std::fs::read(&ko).unwrap(), b, "post-link changed the module it refused");
}

/// `klp check --patched` where the patched object's function lies past its
/// section: an error naming the patched file, not a panic in the oracle.
#[test]
fn oracle_with_a_function_past_its_section() {
    let (ko, patched) = linked_module("oracle-past-section");
    module::post_link(&ko);
    let mut b = std::fs::read(&patched).unwrap();
    let sym = symbol_entry(&b, symbol_named(&b, "pkt_receive"));
    b[sym + 8..sym + 16].copy_from_slice(&0x10_0000u64.to_le_bytes());
    let bad = work_dir().join("pktdemo.bad.o");
    std::fs::write(&bad, &b).unwrap();
    let args = ["check", ko.to_str().unwrap(), "--patched", bad.to_str().unwrap(), "--orig", patched.to_str().unwrap()];
    expect_one_line_error(&args, &bad, "symbol pkt_receive");
}

/// `klp module` for a tree whose `.config` names a compiler this machine
/// does not have, or no compiler at all: one line naming the `.config`,
/// exit 1, before kbuild runs.
#[test]
fn module_for_a_tree_of_another_compiler() {
    let dir = work_dir();
    let kdir = dir.join("kdir");
    std::fs::create_dir_all(&kdir).unwrap();
    std::fs::write(kdir.join("Makefile"), "").unwrap();
    let obj = dir.join("diff-output.o");
    std::fs::write(&obj, valid_object()).unwrap();
    let config = kdir.join(".config");
    let clang_99 =
        "CONFIG_CC_VERSION_TEXT=\"clang version 99.0.0\"\nCONFIG_CC_IS_CLANG=y\nCONFIG_CLANG_VERSION=990000\n";
    let cases = [
        (clang_99, "clang version 99.0.0"),
        ("CONFIG_CC_IS_GCC=y\nCONFIG_GCC_VERSION=120200\n", "CONFIG_CC_VERSION_TEXT"),
    ];
    for (text, phrase) in cases {
        std::fs::write(&config, text).unwrap();
        let ko = dir.join("m.ko");
        let args = [
            "module",
            "--name",
            "m",
            "--kdir",
            kdir.to_str().unwrap(),
            "-o",
            ko.to_str().unwrap(),
            obj.to_str().unwrap(),
        ];
        let e = expect_one_line_error(&args, &config, ".config");
        assert!(e.contains(phrase), "{e}");
        assert!(!ko.exists(), "a module was written");
    }
}
