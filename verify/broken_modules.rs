//! Hand-broken livepatch modules: one rule broken each, and `klp check`
//! must reject each naming that rule. The good module they start from is
//! built from our own demo pair and must pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Minimal raw access to the module's headers, to break one thing at a time.
struct Raw {
    b: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Shdr {
    at: usize,
    name: String,
    name_at: usize,
    sh_type: u32,
    offset: usize,
    size: usize,
    link: u32,
    info: u32,
}

impl Raw {
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes(self.b[at..at + 2].try_into().unwrap())
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.b[at..at + 4].try_into().unwrap())
    }
    fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.b[at..at + 8].try_into().unwrap())
    }
    fn cstr(&self, at: usize) -> String {
        let end = self.b[at..].iter().position(|&c| c == 0).unwrap();
        String::from_utf8_lossy(&self.b[at..at + end]).into_owned()
    }
    fn sections(&self) -> Vec<Shdr> {
        let (shoff, n, strndx) = (self.u64(0x28) as usize, self.u16(0x3c) as usize, self.u16(0x3e) as usize);
        let strtab = self.u64(shoff + strndx * 64 + 24) as usize;
        (0..n)
            .map(|i| {
                let at = shoff + i * 64;
                let name_at = strtab + self.u32(at) as usize;
                Shdr {
                    at,
                    name: self.cstr(name_at),
                    name_at,
                    sh_type: self.u32(at + 4),
                    offset: self.u64(at + 24) as usize,
                    size: self.u64(at + 32) as usize,
                    link: self.u32(at + 40),
                    info: self.u32(at + 44),
                }
            })
            .collect()
    }
    fn section(&self, pred: impl Fn(&Shdr) -> bool) -> Shdr {
        self.sections().into_iter().find(|s| pred(s)).expect("section present")
    }
    /// (symbol index, entry offset, name offset in the file)
    fn symbols(&self) -> Vec<(usize, usize, usize, String)> {
        let symtab = self.section(|s| s.sh_type == 2);
        let strtab = self.sections()[symtab.link as usize].offset;
        (0..symtab.size / 24)
            .map(|i| {
                let at = symtab.offset + i * 24;
                let name_at = strtab + self.u32(at) as usize;
                (i, at, name_at, self.cstr(name_at))
            })
            .collect()
    }
    fn symbol(&self, pred: impl Fn(&str) -> bool) -> (usize, usize, usize, String) {
        self.symbols().into_iter().find(|s| pred(&s.3)).expect("symbol present")
    }
    /// Replace every occurrence (post-link leaves the old `.shstrtab` behind).
    fn replace_bytes(&mut self, from: &[u8], to: &[u8]) {
        assert_eq!(from.len(), to.len());
        let hits: Vec<usize> =
            self.b.windows(from.len()).enumerate().filter(|(_, w)| *w == from).map(|(i, _)| i).collect();
        assert!(!hits.is_empty(), "bytes present");
        for at in hits {
            self.b[at..at + to.len()].copy_from_slice(to);
        }
    }
    /// The first entry of the first `.klp.rela` section: (target section, offset, type).
    fn first_klp_site(&self) -> (Shdr, u64, u32) {
        let rela = self.section(|s| s.name.starts_with(".klp.rela."));
        let target = self.sections()[rela.info as usize].clone();
        (target, self.u64(rela.offset), self.u64(rela.offset + 8) as u32)
    }
}

fn work() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("broken-modules")
}

fn good_module() -> Vec<u8> {
    let dir = work().join(format!("good-{:?}", std::thread::current().id()));
    let objs = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/objects");
    let m = module::build_module(
        &dir,
        &objs.join("pktdemo.orig.o"),
        &objs.join("pktdemo.patched.o"),
        &["--objname", "vmlinux"],
    );
    std::fs::read(m).unwrap()
}

fn check_bytes(name: &str, bytes: &[u8], extra: &[&str]) -> (i32, String) {
    let path = work().join(format!("{name}.ko"));
    std::fs::create_dir_all(work()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let mut args = vec!["check", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = klp(&args);
    (o.status.code().unwrap(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

fn expect_rule(name: &str, raw: &Raw, rule: &str) {
    expect_rule_with(name, raw, rule, &[]);
}

fn expect_rule_with(name: &str, raw: &Raw, rule: &str, extra: &[&str]) {
    let (code, out) = check_bytes(name, &raw.b, extra);
    assert_eq!(code, 1, "{name}: klp check accepted a module breaking {rule}:\n{out}");
    assert!(out.lines().any(|l| l.contains(&format!(": {rule}: "))), "{name}: no '{rule}' violation in:\n{out}");
}

#[test]
fn the_good_module_passes() {
    let (code, out) = check_bytes("good", &good_module(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": ok: 1 functions"), "{out}");
}

#[test]
fn wrong_klp_rela_flags() {
    let mut r = Raw { b: good_module() };
    let s = r.section(|s| s.name.starts_with(".klp.rela."));
    let flags = r.u64(s.at + 8) & !0x0010_0000;
    r.b[s.at + 8..s.at + 16].copy_from_slice(&flags.to_le_bytes());
    expect_rule("flags", &r, "klp-rela-flags");
}

#[test]
fn wrong_klp_rela_type() {
    let mut r = Raw { b: good_module() };
    let s = r.section(|s| s.name.starts_with(".klp.rela."));
    r.b[s.at + 4..s.at + 8].copy_from_slice(&1u32.to_le_bytes());
    expect_rule("type", &r, "klp-rela-type");
}

#[test]
fn klp_rela_name_not_matching_its_section() {
    let mut r = Raw { b: good_module() };
    let s = r.section(|s| s.name.starts_with(".klp.rela."));
    let last = s.name_at + s.name.len() - 1;
    r.b[last] = b'X';
    expect_rule("rela-name", &r, "klp-rela-name");
}

#[test]
fn klp_rela_info_not_allocated() {
    let mut r = Raw { b: good_module() };
    let s = r.section(|s| s.name.starts_with(".klp.rela."));
    // sh_info naming the symbol table: a section the module never loads.
    let symtab = r.sections().iter().position(|s| s.sh_type == 2).unwrap() as u32;
    r.b[s.at + 44..s.at + 48].copy_from_slice(&symtab.to_le_bytes());
    expect_rule("info", &r, "klp-rela-link");
}

/// Every relocation section is read against the one symbol table, so one
/// linked elsewhere is refused when the module is read, before any rule.
#[test]
fn klp_rela_link_not_symtab() {
    let mut r = Raw { b: good_module() };
    let s = r.section(|s| s.name.starts_with(".klp.rela."));
    r.b[s.at + 40..s.at + 44].copy_from_slice(&0u32.to_le_bytes());
    let (code, out) = check_bytes("link", &r.b, &[]);
    assert_eq!(code, 1, "{out}");
    let error = format!("link.ko: {}: links to section index 0, not to the symbol table", s.name);
    assert!(out.lines().count() == 1 && out.contains(&error), "{out}");
}

#[test]
fn unmarked_klp_symbol() {
    let mut r = Raw { b: good_module() };
    let (_, at, _, _) = r.symbol(|n| n.starts_with(".klp.sym."));
    r.b[at + 6..at + 8].copy_from_slice(&0u16.to_le_bytes());
    expect_rule("unmarked", &r, "klp-sym-not-livepatch");
}

#[test]
fn badly_named_klp_symbol() {
    let mut r = Raw { b: good_module() };
    let (_, _, name_at, name) = r.symbol(|n| n.starts_with(".klp.sym."));
    let comma = name_at + name.rfind(',').unwrap();
    r.b[comma] = b'_';
    expect_rule("symname", &r, "klp-sym-name");
}

#[test]
fn module_section_referencing_vmlinux() {
    let mut r = Raw { b: good_module() };
    let s = r.section(|s| s.name.starts_with(".klp.rela.vmlinux."));
    r.b[s.name_at + ".klp.rela.vmlinu".len()] = b'y';
    expect_rule("vmlinux-ref", &r, "module-references-vmlinux");
}

#[test]
fn nonzero_klp_site() {
    let mut r = Raw { b: good_module() };
    let (target, offset, _) = r.first_klp_site();
    r.b[target.offset + offset as usize] = 0x5a;
    expect_rule("nonzero", &r, "klp-site-nonzero");
}

#[test]
fn doubly_relocated_klp_site() {
    let mut r = Raw { b: good_module() };
    let (target, offset, r_type) = r.first_klp_site();
    let ordinary = r.section(|s| {
        s.sh_type == 4
            && s.info as usize == r.sections().iter().position(|x| x.at == target.at).unwrap()
            && !s.name.starts_with(".klp")
    });
    let entry = (0..ordinary.size / 24).map(|i| ordinary.offset + i * 24).find(|&e| r.u64(e) == offset).unwrap();
    let info = (r.u64(entry + 8) & !0xffff_ffff) | u64::from(r_type);
    r.b[entry + 8..entry + 16].copy_from_slice(&info.to_le_bytes());
    expect_rule("double", &r, "klp-site-doubly-relocated");
}

#[test]
fn missing_livepatch_modinfo() {
    let mut r = Raw { b: good_module() };
    r.replace_bytes(b"livepatch=Y", b"livepatch=N");
    expect_rule("modinfo", &r, "modinfo-livepatch");
}

#[test]
fn non_gpl_license() {
    let mut r = Raw { b: good_module() };
    r.replace_bytes(b"license=GPL\0", b"license=BSD\0");
    expect_rule("license", &r, "modinfo-license");
}

#[test]
fn post_link_skipped() {
    let dir = work().join("unconverted");
    let objs = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/objects");
    let out = module::diff_output(
        &dir,
        &objs.join("pktdemo.orig.o"),
        &objs.join("pktdemo.patched.o"),
        &["--objname", "vmlinux"],
    );
    let module = dir.join("unconverted.ko");
    module::link_module(&dir, &[&out], &module);
    expect_rule("unconverted", &Raw { b: std::fs::read(module).unwrap() }, "not-converted");
}

#[test]
fn klp_func_without_old_name() {
    let mut r = Raw { b: good_module() };
    let funcs = r.sections().iter().position(|s| s.name == ".init.klp_funcs").unwrap();
    let rela = r.section(|s| s.sh_type == 4 && s.info as usize == funcs);
    let entry = (0..rela.size / 24).map(|i| rela.offset + i * 24).find(|&e| r.u64(e) == 0).unwrap();
    r.b[entry..entry + 8].copy_from_slice(&16u64.to_le_bytes());
    expect_rule("old-name", &r, "funcs-table");
}

#[test]
fn unsized_new_function() {
    let mut r = Raw { b: good_module() };
    let (_, at, _, _) = r.symbol(|n| n == "pkt_receive");
    r.b[at + 16..at + 24].copy_from_slice(&0u64.to_le_bytes());
    expect_rule("unsized", &r, "new-function-size");
}

#[test]
fn missing_objects_table() {
    let mut r = Raw { b: good_module() };
    r.replace_bytes(b".init.klp_objects\0", b".init.klp_objectz\0");
    expect_rule("objects", &r, "objects-table");
}

#[test]
fn sympos_zero_for_a_duplicated_name() {
    let r = Raw { b: good_module() };
    let (_, _, _, klp_name) = r.symbol(|n| n.starts_with(".klp.sym.vmlinux.") && n.ends_with(",0"));
    let target = klp_name.strip_prefix(".klp.sym.vmlinux.").unwrap().strip_suffix(",0").unwrap().to_owned();
    // A "vmlinux" with two local symbols of that name.
    let dir = work().join("dup-parent");
    std::fs::create_dir_all(&dir).unwrap();
    let mut objs = Vec::new();
    for i in 0..2 {
        let src = dir.join(format!("part{i}.c"));
        std::fs::write(
            &src,
            format!("static int {target}[2] __attribute__((used));\nint use{i}(void) {{ return {target}[0]; }}\n"),
        )
        .unwrap();
        let obj = dir.join(format!("part{i}.o"));
        assert!(Command::new("gcc").args(["-c", "-O2", "-o"]).arg(&obj).arg(&src).status().unwrap().success());
        objs.push(obj);
    }
    let parent = dir.join("vmlinux");
    let ok = Command::new("ld").args(["-e", "0", "-o"]).arg(&parent).args(&objs).status().unwrap().success();
    assert!(ok, "linking the test parent");
    expect_rule_with("sympos", &r, "klp-sym-sympos", &["--parent", parent.to_str().unwrap()]);
}

/// Two outputs patching the same function in one module: m_show of our slim
/// scenario (a local function, so the objects link twice without clashing).
#[test]
fn the_same_function_patched_twice() {
    let dir = work().join("twice");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/kernel/slim-scenario");
    let out = module::diff_output(
        &dir,
        &corpus.join("namespace.orig.o"),
        &corpus.join("namespace.patched.o"),
        &["--objname", "vmlinux"],
    );
    let module = dir.join("twice.ko");
    module::link_module(&dir, &[&out, &out], &module);
    module::post_link(&module);
    expect_rule("twice", &Raw { b: std::fs::read(&module).unwrap() }, "func-duplicate");
}

/// A module with call padding: our defconfig scenario's drivers/char/mem.c
/// pair, linked without objtool (so no `__pfx_` symbol yet), with one
/// `__pfx_read_null` added by objcopy per `(start, size)`, `start` counted
/// back from read_null. objcopy cannot size a symbol; the size is set here.
fn padded_module(name: &str, prefixes: &[(u64, u64)]) -> Raw {
    let dir = work().join(name);
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/kernel/def-scenario");
    let out =
        module::diff_output(&dir, &corpus.join("mem.orig.o"), &corpus.join("mem.patched.o"), &["--objname", "vmlinux"]);
    let linked = dir.join("linked.ko");
    module::link_module(&dir, &[&out], &linked);
    let function = Raw { b: std::fs::read(&linked).unwrap() }.symbol_value("read_null");
    assert_eq!(function, 16, "read_null follows its 16 bytes of padding");
    let module = dir.join(format!("{name}.ko"));
    let mut objcopy = Command::new("objcopy");
    for (start, _) in prefixes {
        objcopy.arg("--add-symbol").arg(format!("__pfx_read_null=.text.read_null:{},function,local", function - start));
    }
    let o = objcopy.arg(&linked).arg(&module).output().expect("run objcopy");
    assert!(o.status.success(), "objcopy: {}", String::from_utf8_lossy(&o.stderr));
    let mut raw = Raw { b: std::fs::read(&module).unwrap() };
    let entries: Vec<usize> =
        raw.symbols().into_iter().filter(|s| s.3 == "__pfx_read_null").map(|(_, at, _, _)| at).collect();
    assert_eq!(entries.len(), prefixes.len(), "objcopy added the prefixes");
    for (at, (_, size)) in entries.into_iter().zip(prefixes) {
        raw.b[at + 16..at + 24].copy_from_slice(&size.to_le_bytes());
    }
    std::fs::write(&module, &raw.b).unwrap();
    module::post_link(&module);
    Raw { b: std::fs::read(&module).unwrap() }
}

impl Raw {
    fn symbol_value(&self, name: &str) -> u64 {
        let (_, at, _, _) = self.symbol(|n| n == name);
        self.u64(at + 8)
    }
}

/// The prefix objtool gives a clone in the module build is fine on its own.
#[test]
fn one_prefix_over_the_padding_passes() {
    let raw = padded_module("one-prefix", &[(16, 16)]);
    let (code, out) = check_bytes("one-prefix", &raw.b, &[]);
    assert_eq!(code, 0, "{out}");
}

/// What a `__pfx_` copied from vmlinux.o next to objtool's own looks like
/// for a static function (for a global one the module does not even link).
#[test]
fn two_prefixes_of_one_function() {
    expect_rule("two-prefixes", &padded_module("two-prefixes", &[(16, 16), (16, 16)]), "prefix-duplicate");
}

#[test]
fn prefix_not_ending_at_its_function() {
    expect_rule("prefix-short", &padded_module("prefix-short", &[(16, 8)]), "prefix-padding");
}

#[test]
fn prefix_over_bytes_that_are_not_padding() {
    let mut raw = padded_module("prefix-int3", &[(16, 16)]);
    let text = raw.section(|s| s.name == ".text.read_null");
    raw.b[text.offset..text.offset + 16].fill(0xcc);
    expect_rule("prefix-int3", &raw, "prefix-padding");
}
