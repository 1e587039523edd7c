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
    let dir = work_dir();
    let src = dir.join("demo.c");
    std::fs::write(&src, SOURCE).unwrap();
    let obj = dir.join("demo.o");
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
