//! More than 65,280 sections (`klp synth --sections-over-64k`), as the
//! real `vmlinux.o` has: extended numbering as `ld` writes it (`e_shnum`
//! 0 and `e_shstrndx` `SHN_XINDEX` with the real values in section 0,
//! `SHN_XINDEX` in `st_shndx` with `.symtab_shndx`), read back here with
//! `object`'s raw ELF structures rather than klp's reader; `readelf -a -W`
//! is silent on it and `ld -r` takes it; `klp diff` reports exactly the
//! truth. Two big pairs, not hundreds: the translation-unit form (75,000
//! functions) and the merged form (100,000). `readelf -r` rereads the
//! symbol table per relocation section, so it runs on the first object
//! only (about 20 s; call padding off, so fewer sections and symbols).

mod common;

use std::path::Path;
use std::process::Command;

use klp::synth::{Layout, Request};
use object::elf;
use object::read::elf::{FileHeader, SectionHeader, Sym};

/// A seed whose program has no call padding (`CallPadding::None`).
const UNPADDED_SEED: u64 = 7;

/// What the ELF header and tables say, read with `object`'s raw structures.
struct Numbering {
    e_shnum: u16,
    e_shstrndx: elf::SymbolSection,
    /// Section 0's `sh_size` and `sh_link`: the real count and string table index.
    real_count: u64,
    real_shstrndx: u32,
    has_symtab_shndx: bool,
    xindex_symbols: usize,
}

fn numbering(bytes: &[u8]) -> Result<Numbering, String> {
    let e = object::Endianness::Little;
    let header = elf::FileHeader64::<object::Endianness>::parse(bytes).map_err(|x| x.to_string())?;
    let sections = header.sections(e, bytes).map_err(|x| x.to_string())?;
    let null = sections.iter().next().ok_or("no section 0")?;
    let symbols = sections.symbols(e, bytes, elf::SHT_SYMTAB).map_err(|x| x.to_string())?;
    Ok(Numbering {
        e_shnum: header.e_shnum.get(e),
        e_shstrndx: header.e_shstrndx.get(e),
        real_count: null.sh_size(e),
        real_shstrndx: null.sh_link(e),
        has_symtab_shndx: sections.iter().any(|s| s.sh_type(e) == elf::SHT_SYMTAB_SHNDX),
        xindex_symbols: symbols.iter().filter(|s| s.st_shndx(e) == elf::SHN_XINDEX).count(),
    })
}

fn check_numbering(bytes: &[u8]) -> Result<(), String> {
    let n = numbering(bytes)?;
    if n.e_shnum != 0 || n.e_shstrndx != elf::SHN_XINDEX {
        return Err(format!("e_shnum {} e_shstrndx {:?}: not extended numbering", n.e_shnum, n.e_shstrndx));
    }
    if n.real_count <= 65_280 || u64::from(n.real_shstrndx) >= n.real_count {
        return Err(format!("section 0 says {} sections, .shstrtab {}", n.real_count, n.real_shstrndx));
    }
    if !n.has_symtab_shndx || n.xindex_symbols == 0 {
        return Err(format!("{} symbols with SHN_XINDEX, .symtab_shndx {}", n.xindex_symbols, n.has_symtab_shndx));
    }
    eprintln!("{} sections, {} symbols past SHN_LORESERVE", n.real_count, n.xindex_symbols);
    Ok(())
}

fn tool(name: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(name).args(args).output().map_err(|e| format!("{name}: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() || !stderr.is_empty() {
        return Err(format!("{name} {args:?}: {stderr}"));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn check_tools(dir: &Path, name: &str, bytes: &[u8], readelf: bool) -> Result<(), String> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
    let p = path.to_str().ok_or("path")?;
    tool("ld", &["-r", "-o", dir.join("linked.o").to_str().ok_or("path")?, p])?;
    if readelf {
        let out = tool("readelf", &["-a", "-W", p])?;
        if let Some(line) = out.lines().find(|l| l.to_lowercase().contains("warning") || l.contains("Error")) {
            return Err(format!("readelf -a -W {name}: {line}"));
        }
    }
    Ok(())
}

fn check(req: &Request, readelf: bool) -> Result<(), String> {
    let started = std::time::Instant::now();
    let pair = common::pair(req);
    check_numbering(&pair.orig)?;
    check_numbering(&pair.patched)?;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("synth-many-sections-{}", req.seed));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    check_tools(&dir, "a.o", &pair.orig, readelf)?;
    check_tools(&dir, "b.o", &pair.patched, false)?;
    let got = common::diff(&pair.orig, &pair.patched)?;
    let wrong = common::truth_mismatches(&pair, &got);
    if !wrong.is_empty() {
        return Err(format!("{}: {}", req.command(), wrong.join("; ")));
    }
    std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    eprintln!("{}: {:.1} s", req.command(), started.elapsed().as_secs_f64());
    Ok(())
}

fn request(seed: u64, merged: bool) -> Request {
    Request { seed, functions: 0, mutations: 6, layout: Layout { merged, sections_over_64k: true } }
}

#[test]
fn over_65280_sections_in_the_translation_unit_form() {
    if common::link::tools_present("synth_many_sections") {
        check(&request(UNPADDED_SEED, false), true).unwrap();
    }
}

#[test]
fn over_65280_sections_in_the_merged_form() {
    if common::link::tools_present("synth_many_sections") {
        check(&request(2, true), false).unwrap();
    }
}
