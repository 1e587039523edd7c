//! ThinLTO-promoted statics (`name.llvm.<hash>`), on objects built at test
//! time from corpus/thinlto/* with clang -flto=thin and `ld.lld -r`, as the
//! kernel makes its LTO vmlinux.o. What a unit each symbol belongs to is
//! read from the objects with readelf (every promoted static of a unit
//! carries the unit's hash), not from klp.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Compile `case/side/*.c` to bitcode and link them, in `units` order,
/// with `ld.lld -r` (which runs ThinLTO) into one object.
fn build(case: &str, side: &str, units: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/thinlto").join(case).join(side);
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("thinlto").join(case).join(side);
    std::fs::create_dir_all(&work).unwrap();
    let mut objects = Vec::new();
    for unit in units {
        let obj = work.join(format!("{unit}.o"));
        let file = format!("{unit}.c");
        compile_unit("clang", &src.join(&file), &work.join("src"), &file, &["-flto=thin"], &obj);
        objects.push(obj);
    }
    let out = work.with_extension("o");
    let o = Command::new("ld.lld").arg("-r").arg("-o").arg(&out).args(&objects).output().expect("run ld.lld");
    assert!(o.status.success(), "ld.lld -r {case}/{side}: {}", String::from_utf8_lossy(&o.stderr));
    out
}

/// Symbol names of `obj`, by readelf.
fn symbols(obj: &Path) -> Vec<String> {
    let o = Command::new("readelf").arg("-sW").arg(obj).output().expect("run readelf");
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.split_whitespace().nth(7)).map(str::to_owned).collect()
}

/// The promoted name `stem.llvm.<hash>` in `obj` whose hash is the one of
/// `anchor.llvm.<hash>`: the same unit's.
fn same_unit_as(obj: &Path, stem: &str, anchor: &str) -> String {
    let names = symbols(obj);
    let hash_of = |s: &str| {
        names.iter().filter_map(|n| n.strip_prefix(&format!("{s}.llvm."))).map(str::to_owned).collect::<Vec<_>>()
    };
    let [hash] = &hash_of(anchor)[..] else { panic!("{}: no single {anchor}.llvm.*: {names:?}", obj.display()) };
    let name = format!("{stem}.llvm.{hash}");
    assert!(names.contains(&name), "{}: no {name}", obj.display());
    name
}

/// `klp diff ORIG PATCHED OUT --objname vmlinux EXTRA...`.
fn diff(orig: &Path, patched: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["diff", orig.to_str().unwrap(), patched.to_str().unwrap(), out.to_str().unwrap()];
    args.extend(["--objname", "vmlinux"]);
    args.extend(extra);
    klp(&args)
}

/// The original function `--explain` shows for patched function `name`.
fn explained_original(orig: &Path, patched: &Path, name: &str) -> String {
    let out = patched.with_extension("explain.o");
    let o = diff(orig, patched, &out, &["--explain", name]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = text.lines().find_map(|l| l.trim_start().strip_prefix("orig:")).unwrap_or_else(|| panic!("{text}"));
    line.trim_start().split('+').next().unwrap().to_owned()
}

/// Two changed statics `bump` of two units, promoted in both builds with
/// new hashes, the patched side linked in another order: each pairs with
/// its own unit's original, which the unique `a_only`/`b_only` of each unit
/// tell. And a plain local promoted only in the patched build (`helper`)
/// pairs with its plain name and keeps that name in the module.
#[test]
fn promoted_statics_pair_by_their_units() {
    if require(&[], &["clang", "ld.lld", "readelf"]).is_none() {
        return;
    }
    let orig = build("promoted-twins", "orig", &["a", "b", "c"]);
    let patched = build("promoted-twins", "patched", &["b", "a", "c"]);
    let out = patched.with_extension("out.o");
    let o = diff(&orig, &patched, &out, &[]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut changed = reported(&o.stdout, "changed function");
    changed.sort();
    let mut want =
        vec![same_unit_as(&patched, "bump", "a_only"), same_unit_as(&patched, "bump", "b_only"), "use_all".to_owned()];
    want.sort();
    assert_eq!(changed, want, "{stdout}");
    let mut checked = 0;
    for anchor in ["a_only", "b_only"] {
        let new = same_unit_as(&patched, "bump", anchor);
        assert_eq!(explained_original(&orig, &patched, &new), same_unit_as(&orig, "bump", anchor), "{new}");
        checked += 1;
    }
    assert_eq!(checked, 2);
    // helper: a plain local of a.c in the original, `helper.llvm.<hash>` in
    // the patched build, referred to by the changed use_all().
    assert!(symbols(&orig).contains(&"helper".to_owned()), "helper is promoted in the original too");
    same_unit_as(&patched, "helper", "a_only");
    let klp_syms: Vec<String> = symbols(&out).into_iter().filter(|n| n.starts_with(".klp.sym.")).collect();
    assert!(klp_syms.iter().any(|n| n.starts_with(".klp.sym.vmlinux.helper,")), "{klp_syms:?}");
    assert!(!klp_syms.iter().any(|n| n.contains("helper.llvm.")), "{klp_syms:?}");
}

/// The same without the unique statics: nothing tells which unit's hash
/// became which, and klp refuses, naming every candidate.
#[test]
fn ambiguous_promoted_statics_are_an_error_naming_them() {
    if require(&[], &["clang", "ld.lld", "readelf"]).is_none() {
        return;
    }
    let orig = build("promoted-ambiguous", "orig", &["a", "b", "c"]);
    let patched = build("promoted-ambiguous", "patched", &["a", "b", "c"]);
    let out = patched.with_extension("out.o");
    // Left by an earlier run, it would hide or fake the check below.
    let _ = std::fs::remove_file(&out);
    let o = diff(&orig, &patched, &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(&format!("{}: ", orig.display())), "names the file: {stderr}");
    let mut named = 0;
    for obj in [&orig, &patched] {
        for name in symbols(obj).iter().filter(|n| n.starts_with("bump.llvm.")) {
            assert!(stderr.contains(name.as_str()), "{name} not named: {stderr}");
            named += 1;
        }
    }
    assert_eq!(named, 4, "{stderr}");
    assert!(!out.exists(), "an output was written");
}

/// A translation unit of an LTO build is LLVM bitcode: klp says so and
/// where the machine code is, in one line naming the file, exit 1.
#[test]
fn bitcode_is_refused_pointing_at_the_lto_linked_object() {
    if require(&[], &["clang", "ld.lld", "readelf"]).is_none() {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("thinlto/bitcode");
    std::fs::create_dir_all(&dir).unwrap();
    let unit = dir.join("a.o");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/thinlto/promoted-ambiguous/orig/a.c");
    compile_unit("clang", &src, &dir, "a.c", &["-flto=thin"], &unit);
    assert_eq!(std::fs::read(&unit).unwrap().get(..4), Some(&b"BC\xc0\xde"[..]), "clang -flto=thin made no bitcode");
    let o = diff(&unit, &unit, &unit.with_extension("out.o"), &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(unit.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("LLVM bitcode") && stderr.contains("vmlinux.o"), "{stderr}");
}
