//! `klp post-link` and `klp check` on a module: our defconfig scenario
//! (corpus/kernel/def-scenario, mem.o) diffed, linked with the skeleton by
//! `ld -r` as verify/common/module.rs does, then converted and checked in
//! memory. `cargo bench --bench module`.

#[macro_use]
mod harness;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::{Criterion, criterion_group};
use klp::diff::Input;
use klp::elf::ElfObject;
use klp::pipeline::{DiffRequest, Verdict, diff};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The linked, not yet converted module.
fn linked_module(dir: &Path) -> Vec<u8> {
    let scenario = root().join("corpus/kernel/def-scenario");
    let (o, p) = (scenario.join("mem.orig.o"), scenario.join("mem.patched.o"));
    let (ob, pb) = (std::fs::read(&o).unwrap(), std::fs::read(&p).unwrap());
    let request = DiffRequest::vmlinux(Input::new(&o, &ob), Input::new(&p, &pb));
    let Verdict::Livepatch(out) = diff(&request).unwrap().verdict else { panic!("the scenario changes functions") };
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("out.o"), out).unwrap();
    let skeleton = dir.join("skeleton.o");
    let gcc = Command::new("gcc")
        .args(["-c", "-O2", "-DKLP_STANDALONE", "-ffunction-sections", "-fdata-sections", "-mcmodel=kernel"])
        .args(["-fno-pic", "-mno-red-zone", "-w", "-o"])
        .arg(&skeleton)
        .arg(root().join("src/module/skeleton/livepatch_skeleton.c"))
        .status()
        .unwrap();
    assert!(gcc.success(), "gcc");
    let ko = dir.join("module.ko");
    let ld = Command::new("ld")
        .args(["-r", "-T"])
        .arg(root().join("verify/common/module.lds"))
        .arg("-o")
        .arg(&ko)
        .arg(&skeleton)
        .arg(dir.join("out.o"))
        .status()
        .unwrap();
    assert!(ld.success(), "ld");
    std::fs::read(ko).unwrap()
}

fn benches(c: &mut Criterion) {
    let dir = root().join("target/bench-assets/module");
    let linked = linked_module(&dir);
    let path = dir.join("module.ko");
    c.bench_function("post-link", |b| b.iter(|| black_box(klp::module::postlink::convert(&path, &linked).unwrap())));
    let (converted, _) = klp::module::postlink::convert(&path, &linked).unwrap();
    let converted = converted.expect("the module has KLP relocations");
    c.bench_function("check", |b| {
        b.iter(|| {
            let m = ElfObject::parse(&path, &converted).unwrap();
            black_box(klp::module::check::check(&m, None).0.len())
        })
    });
}

criterion_group!(module_benches, benches);
main_like_klp!(module_benches);
