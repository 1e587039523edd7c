//! Translation units compiled by gcc and merged with `ld -r`, as vmlinux.o
//! is: FILE symbols must be aligned across units added and removed by the
//! patch, so that same-named statics pair with their own unit's
//! (corpus/merged/*).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Compile each `(source, unit)` of `case` as `unit.c` (the name kbuild
/// would give it) and merge them in order with `ld -r`.
fn merged(case: &str, side: &str, units: &[(&str, &str)]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/merged").join(case);
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("merged").join(case).join(side);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let mut objects = Vec::new();
    for (k, (source, unit)) in units.iter().enumerate() {
        // A directory per unit: vmlinux.o has many units of one name (core.c).
        let dir = work.join(k.to_string());
        let obj = dir.join(format!("{unit}.o"));
        compile_unit("gcc", &src.join(source), &dir, &format!("{unit}.c"), &[], &obj);
        objects.push(obj);
    }
    let out = work.with_extension("o");
    let o = Command::new("ld").arg("-r").arg("-o").arg(&out).args(&objects).output().expect("run ld");
    assert!(o.status.success(), "ld -r {case}/{side}: {}", String::from_utf8_lossy(&o.stderr));
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Original a c d e, patched a b c e f, c's helper changed. a, c and e are
/// all `core.c` (a FILE name that repeats, so names alone do not pair
/// them), d is `util.c`, b and f are both `init.c`: the sequences must be
/// aligned around the unit removed and the units added, in order.
#[test]
fn units_added_and_removed_keep_the_others_paired() {
    if require(&[], &["gcc", "ld"]).is_none() {
        return;
    }
    let case = "files-added-removed";
    let orig = merged(case, "orig", &[("a.c", "core"), ("c.c", "core"), ("d.c", "util"), ("e.c", "core")]);
    let patched = merged(
        case,
        "patched",
        &[("a.c", "core"), ("b.c", "init"), ("c.patched.c", "core"), ("e.c", "core"), ("f.c", "init")],
    );
    let out = patched.with_extension("out.o");
    let o = klp(&[
        "diff",
        orig.to_str().unwrap(),
        patched.to_str().unwrap(),
        out.to_str().unwrap(),
        "--objname",
        "vmlinux",
    ]);
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stderr}");
    let report = |kind| sorted(reported(&o.stdout, kind));
    assert_eq!(report("changed function"), ["helper"], "{stdout}");
    assert_eq!(report("new function"), ["b_use", "f_use", "helper", "helper"], "{stdout}");
    assert_eq!(report("removed function"), ["d_use", "helper"], "{stdout}");
    assert!(!stderr.contains("cannot pair"), "{stderr}");
}
