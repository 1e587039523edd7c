//! Whole modules: diff, link with our skeleton, post-link, then `klp check`
//! passes and the loader oracle shows every changed function resolving to
//! the patched object's bytes. For every kpatch case that diffs
//! successfully and every kernel pair.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn work(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("livepatch-modules").join(name)
}

/// Build the module and run check + oracle; `kernel` is `--parent X` or `--orig X`.
fn build_and_verify(
    name: &str,
    orig: &Path,
    patched: &Path,
    diff_args: &[&str],
    kernel: [&str; 2],
) -> Result<(), String> {
    let dir = work(name);
    let module = module::build_module(&dir, orig, patched, diff_args);
    let changed: Vec<String> = {
        let o = klp(&[
            &["diff", orig.to_str().unwrap(), patched.to_str().unwrap(), dir.join("again.o").to_str().unwrap()],
            diff_args,
        ]
        .concat());
        reported(&o.stdout, "changed function")
    };
    let mut args =
        vec!["check", module.to_str().unwrap(), kernel[0], kernel[1], "--patched", patched.to_str().unwrap()];
    if kernel[0] != "--orig" {
        args.extend(["--orig", orig.to_str().unwrap()]);
    }
    let o = klp(&args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        return Err(format!("klp check failed:\n{out}"));
    }
    for f in &changed {
        if !out.contains(&format!("oracle: {f}: same bytes as the patched object")) {
            return Err(format!("oracle did not confirm {f}:\n{out}"));
        }
    }
    Ok(())
}

#[test]
fn kpatch_modules_pass_check_and_the_oracle() {
    let Some(expected) = require_asset("corpus/kpatch-x86_64/EXPECTED.tsv", &["gcc", "ld"]) else { return };
    let dir = expected.parent().unwrap();
    let names: Vec<String> = std::fs::read_to_string(&expected)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| l.split('\t').nth(1) == Some("ok"))
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect();
    assert!(!names.is_empty(), "{} lists no `ok` case", expected.display());
    let mut failures = Vec::new();
    for name in &names {
        let (orig, patched) = (dir.join(format!("{name}.ORIG.o")), dir.join(format!("{name}.PATCHED.o")));
        if let Err(e) =
            build_and_verify(name, &orig, &patched, &["--objname", "vmlinux"], ["--orig", orig.to_str().unwrap()])
        {
            failures.push(format!("{name}: {e}"));
        }
    }
    eprintln!("{} of {} kpatch modules verified", names.len() - failures.len(), names.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn kernel_modules_pass_check_and_the_oracle() {
    let kernels = ["6.12-slim", "6.12-def"];
    if require(&strs(&kernel_assets(&kernels, DEMO_KERNEL_FILES)), &["zstd", "gcc", "ld"]).is_none() {
        return;
    }
    let mut modules = 0;
    for kernel in kernels {
        let dir = shared_dir().join("kernel").join(kernel);
        let vmlinux = unzstd_cached(&dir.join("vmlinux.zst"));
        let symvers = dir.join("Module.symvers");
        let pairs = [
            ("cmdline", dir.join("cmdline.orig.o"), dir.join("cmdline.patched.o")),
            ("version", dir.join("version.orig.o"), dir.join("version.patched.o")),
            (
                "vmlinux",
                unzstd_cached(&dir.join("vmlinux.o.orig.zst")),
                unzstd_cached(&dir.join("vmlinux.o.patched.zst")),
            ),
        ];
        for (what, orig, patched) in pairs {
            let args =
                ["--objname", "vmlinux", "--parent", vmlinux.to_str().unwrap(), "--symvers", symvers.to_str().unwrap()];
            build_and_verify(
                &format!("{kernel}-{what}"),
                &orig,
                &patched,
                &args,
                ["--parent", vmlinux.to_str().unwrap()],
            )
            .unwrap_or_else(|e| panic!("{kernel} {what}: {e}"));
            modules += 1;
        }
    }
    assert_eq!(modules, 6, "3 pairs of each of 2 kernels");
}

#[test]
fn converted_modules_look_right_to_readelf() {
    let objs = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/objects");
    let module = module::build_module(
        &work("readelf"),
        &objs.join("pktdemo.orig.o"),
        &objs.join("pktdemo.patched.o"),
        &["--objname", "vmlinux"],
    );
    let o = Command::new("readelf").args(["-S", "-r", "-s", "-W"]).arg(&module).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let klp_rela =
        text.lines().find(|l| l.contains(" .klp.rela.vmlinux.") && l.contains("RELA")).expect(".klp.rela section");
    let flags = klp_rela.split_whitespace().rev().nth(3).unwrap();
    assert!(flags.contains('o') && flags.contains('A'), "flags {flags} in: {klp_rela}");
    assert!(text.contains("OS [0xff20] .klp.sym.vmlinux."), "no SHN_LIVEPATCH symbols:\n{text}");
    assert!(o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_oracle_catches_a_wrong_klp_relocation() {
    let objs = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/objects");
    let (orig, patched) = (objs.join("pktdemo.orig.o"), objs.join("pktdemo.patched.o"));
    let module = module::build_module(&work("oracle-negative"), &orig, &patched, &["--objname", "vmlinux"]);
    let mut bytes = std::fs::read(&module).unwrap();
    // Shift the addend of the first Elf64_Rela (r_offset, r_info, r_addend)
    // of the first .klp.rela section (found with the object crate, not klp's reader).
    let at = {
        use object::{Object, ObjectSection};
        let m = object::File::parse(&*bytes).unwrap();
        let rela = m.sections().find(|s| s.name().is_ok_and(|n| n.starts_with(".klp.rela."))).expect(".klp.rela");
        let (start, size) = rela.file_range().expect("section data in the file");
        assert!(size >= 24, ".klp.rela holds no entry");
        start as usize
    };
    let addend = i64::from_le_bytes(bytes[at + 16..at + 24].try_into().unwrap()) + 8;
    bytes[at + 16..at + 24].copy_from_slice(&addend.to_le_bytes());
    let broken = work("oracle-negative").join("broken.ko");
    std::fs::write(&broken, &bytes).unwrap();
    let o = klp(&[
        "check",
        broken.to_str().unwrap(),
        "--orig",
        orig.to_str().unwrap(),
        "--patched",
        patched.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("oracle-differs: "), "{out}");
}

/// Assemble `asm` into an object in `dir`.
fn assemble(dir: &Path, name: &str, asm: &str) -> PathBuf {
    let src = dir.join(format!("{name}.s"));
    std::fs::write(&src, format!("{asm}.section .note.GNU-stack,\"\",@progbits\n")).unwrap();
    let obj = dir.join(format!("{name}.o"));
    let o = Command::new("as").arg("-o").arg(&obj).arg(&src).output().unwrap();
    assert!(o.status.success(), "as: {}", String::from_utf8_lossy(&o.stderr));
    obj
}

/// Link the demo diff output with the skeleton and `extra`, post-link, check.
fn post_link_with(name: &str, extra: &Path) -> (PathBuf, String) {
    let dir = work(name);
    let objs = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/objects");
    let out = module::diff_output(
        &dir,
        &objs.join("pktdemo.orig.o"),
        &objs.join("pktdemo.patched.o"),
        &["--objname", "vmlinux"],
    );
    let module = dir.join("m.ko");
    module::link_module(&dir, &[&out, extra], &module);
    module::post_link(&module);
    let o = klp(&["check", module.to_str().unwrap()]);
    assert!(o.status.success(), "check: {}", String::from_utf8_lossy(&o.stdout));
    let re = Command::new("readelf").args(["-S", "-g", "-r", "-W"]).arg(&module).output().unwrap();
    assert!(re.stderr.is_empty(), "readelf: {}", String::from_utf8_lossy(&re.stderr));
    (module, String::from_utf8_lossy(&re.stdout).into_owned())
}

#[test]
fn post_link_keeps_section_groups() {
    let dir = work("groups");
    std::fs::create_dir_all(&dir).unwrap();
    let asm = ".section .text.comdat_helper,\"axG\",@progbits,comdat_helper,comdat\n.globl comdat_helper\ncomdat_helper:\n ret\n";
    let extra = assemble(&dir, "group", asm);
    let (_, readelf) = post_link_with("groups", &extra);
    assert!(readelf.contains("COMDAT group section"), "the group is gone:\n{readelf}");
    assert!(readelf.contains(".klp.rela.vmlinux."), "{readelf}");
}

#[test]
fn post_link_handles_extended_section_numbering() {
    let dir = work("many-sections");
    std::fs::create_dir_all(&dir).unwrap();
    let mut asm = String::new();
    for i in 0..70_000 {
        asm.push_str(&format!(".section .data.many{i},\"aw\"\n.byte {}\n", i % 256));
    }
    let extra = assemble(&dir, "many", &asm);
    let (module, readelf) = post_link_with("many-sections", &extra);
    assert!(readelf.contains(".klp.rela.vmlinux."), "no klp rela section");
    let bytes = std::fs::read(&module).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[0x3c], bytes[0x3d]]), 0, "e_shnum must be 0 with extended numbering");
}
