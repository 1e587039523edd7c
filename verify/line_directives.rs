//! The `#line` rewrite of `klp build` against real tools
//! (corpus/line-directives): `diff -Nupr` makes the patch, GNU patch
//! applies the rewritten one without fuzz or offset, and gcc compiles both
//! trees. Functions the patch did not change keep their bytes with the
//! directives and lose them without (so the check can fail).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use klp::build::{line_directives, patch};

fn run(dir: &Path, program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).current_dir(dir).args(args).output().unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn copy_tree(from: &Path, to: &Path) {
    let o = Command::new("cp").arg("-r").arg(from).arg(to).output().expect("run cp");
    assert!(o.status.success(), "cp -r {}: {}", from.display(), String::from_utf8_lossy(&o.stderr));
}

/// Apply `patch_text` to a copy of `a/` named `name`; GNU patch must say
/// nothing but the files it patches.
fn applied(work: &Path, name: &str, patch_text: &str) -> PathBuf {
    let tree = work.join(name);
    copy_tree(&work.join("a"), &tree);
    let file = work.join(format!("{name}.patch"));
    std::fs::write(&file, patch_text).unwrap();
    let o = run(&tree, "patch", &["-p1", "--no-backup-if-mismatch", "-i", file.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "patch {name}: {out}{}", String::from_utf8_lossy(&o.stderr));
    let noise: Vec<&str> = out.lines().filter(|l| !l.starts_with("patching file ")).collect();
    assert!(noise.is_empty(), "patch {name} applied with: {noise:?}");
    tree
}

/// The code bytes of every function of every `.c` file of `tree`, by name.
fn functions(tree: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let drivers = tree.join("drivers");
    for entry in std::fs::read_dir(&drivers).unwrap() {
        let src = entry.unwrap().path();
        if src.extension().is_none_or(|e| e != "c") {
            continue;
        }
        let obj = src.with_extension("o");
        let o = Command::new("gcc")
            .current_dir(tree)
            .args(["-c", "-Iinclude"])
            .args(KERNEL_CFLAGS)
            .arg("-o")
            .arg(&obj)
            .arg(src.strip_prefix(tree).unwrap())
            .output()
            .expect("run gcc");
        assert!(o.status.success(), "gcc {}: {}", src.display(), String::from_utf8_lossy(&o.stderr));
        for name in text_sections(&obj) {
            let bin = obj.with_extension(format!("{name}.bin"));
            let section = format!(".text.{name}");
            let o = Command::new("objcopy")
                .args(["-O", "binary", "--only-section", &section])
                .arg(&obj)
                .arg(&bin)
                .output()
                .expect("run objcopy");
            assert!(o.status.success(), "objcopy {section}: {}", String::from_utf8_lossy(&o.stderr));
            out.insert(name, std::fs::read(&bin).unwrap());
        }
    }
    out
}

/// Names of the `.text.<function>` sections readelf lists.
fn text_sections(obj: &Path) -> Vec<String> {
    let o = Command::new("readelf").args(["-S", "-W"]).arg(obj).output().expect("run readelf");
    let text = String::from_utf8_lossy(&o.stdout);
    text.split_whitespace().filter_map(|w| w.strip_prefix(".text.")).map(str::to_owned).collect()
}

fn changed_between(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    a.iter().filter(|(name, code)| b.get(*name).is_some_and(|c| c != *code)).map(|(n, _)| n.clone()).collect()
}

#[test]
fn directives_keep_the_bytes_of_code_below_a_change() {
    if require(&[], &["gcc", "objcopy", "readelf", "patch", "diff"]).is_none() {
        return;
    }
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/line-directives");
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("line-directives");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    copy_tree(&corpus.join("a"), &work.join("a"));
    copy_tree(&corpus.join("b"), &work.join("b"));
    let o = run(&work, "diff", &["-Nupr", "a", "b"]);
    assert_eq!(o.status.code(), Some(1), "diff: {}", String::from_utf8_lossy(&o.stderr));
    let plain = String::from_utf8(o.stdout).unwrap();

    let parsed = patch::parse(Path::new("plain.patch"), &plain).unwrap();
    assert_eq!(patch::write(&parsed), plain, "the patch reads and writes back unchanged");
    let (fixed, skipped) = line_directives::add_line_directives(&parsed);
    assert!(skipped.is_empty(), "{skipped:?}");
    let fixed = patch::write(&fixed);
    assert!(fixed.matches("+#line ").count() >= 5, "{fixed}");

    let orig = functions(&work.join("a"));
    let with_plain = functions(&applied(&work, "plain", &plain));
    let with_lines = functions(&applied(&work, "fixed", &fixed));
    // Only directives were added: the fixed tree is the patched tree.
    for file in ["drivers/demo.c", "include/demo.h", "drivers/tail.c", "drivers/append.c", "drivers/new.c"] {
        let want = std::fs::read_to_string(work.join("b").join(file)).unwrap();
        let got = std::fs::read_to_string(work.join("fixed").join(file)).unwrap();
        let stripped: String = got.split_inclusive('\n').filter(|l| !l.starts_with("#line ")).collect();
        assert_eq!(stripped, want, "{file}");
    }
    assert!(!work.join("fixed/drivers/gone.c").exists());

    let changed = ["demo_fifth", "demo_first", "demo_fourth", "tail_last"];
    assert_eq!(changed_between(&orig, &with_lines), changed, "changed with the directives");
    let plain_changed = changed_between(&orig, &with_plain);
    for shifted in ["demo_second", "demo_third"] {
        assert!(
            plain_changed.contains(&shifted.to_owned()),
            "{shifted} differs without the directives: {plain_changed:?}"
        );
    }
    for new in ["append_added", "brand_new", "tail_added"] {
        assert!(with_lines.contains_key(new) && !orig.contains_key(new), "{new}");
    }
    assert!(orig.contains_key("gone") && !with_lines.contains_key("gone"));
}

/// A user's patch that GNU patch applies 3 lines off (its hunk header is
/// stale) is regenerated from the files' bytes with the true line numbers,
/// which the `#line` rewrite depends on; the stash then puts the tree back
/// byte for byte, and a patch that does not apply names its file and hunk.
#[test]
fn a_patch_applied_at_an_offset_is_regenerated_with_exact_lines() {
    use klp::build::apply::{self, Mode};
    use klp::build::stash::Stash;
    if require(&[], &["patch", "diff", "cp"]).is_none() {
        return;
    }
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/line-directives");
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("line-directives-offset");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let tree = work.join("tree");
    copy_tree(&corpus.join("a"), &tree);
    let before = std::fs::read(tree.join("drivers/tail.c")).unwrap();
    // tail_last's body is at line 11; the patch says 14.
    let stale = "--- a/drivers/tail.c\n+++ b/drivers/tail.c\n@@ -13,3 +13,3 @@\n {\n-\treturn v + 100;\n+\treturn v + 101;\n }\n";
    let file = work.join("stale.patch");
    std::fs::write(&file, stale).unwrap();
    let p = patch::parse(&file, stale).unwrap();
    let (mut stash, _) = Stash::open(&work.join("stash")).unwrap();
    let notes = apply::apply(&tree, &file, &p, &mut stash, Mode::Check).unwrap();
    assert!(
        notes.iter().any(|n| n.starts_with("drivers/tail.c: hunk #1 succeeded") && n.contains("offset")),
        "{notes:?}"
    );
    let clean = apply::clean_diff(&tree, &stash, &["drivers/tail.c".to_owned()]).unwrap();
    let hunk = &clean.files[0].hunks[0];
    let body = before.split(|&b| b == b'\n').position(|l| l == b"\treturn v + 100;").unwrap() as u32 + 1;
    assert!(hunk.old_start <= body && body < hunk.old_start + hunk.old_count(), "{}", patch::write(&clean));
    // The exact patch applies without fuzz or offset to the original.
    stash.restore().unwrap();
    assert_eq!(std::fs::read(tree.join("drivers/tail.c")).unwrap(), before);
    let exact = work.join("exact.patch");
    std::fs::write(&exact, patch::write(&clean)).unwrap();
    let (mut stash, _) = Stash::open(&work.join("stash")).unwrap();
    let notes = apply::apply(&tree, &exact, &clean, &mut stash, Mode::Build).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    stash.restore().unwrap();
    assert_eq!(std::fs::read(tree.join("drivers/tail.c")).unwrap(), before);

    let wrong = "--- a/drivers/tail.c\n+++ b/drivers/tail.c\n@@ -1,1 +1,1 @@\n-no such line\n+x\n";
    let file = work.join("wrong.patch");
    std::fs::write(&file, wrong).unwrap();
    let p = patch::parse(&file, wrong).unwrap();
    let (mut stash, _) = Stash::open(&work.join("stash")).unwrap();
    let e = apply::apply(&tree, &file, &p, &mut stash, Mode::Check).unwrap_err().to_string();
    assert!(e.contains("wrong.patch") && e.contains("drivers/tail.c: hunk #1 FAILED"), "{e}");
    stash.restore().unwrap();
    assert_eq!(std::fs::read(tree.join("drivers/tail.c")).unwrap(), before);
}
