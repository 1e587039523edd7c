//! `klp build` on real Linux 6.12 trees (verify/common/kernel_tree.rs):
//! source patch in, module out, loaded into the booted slim kernel under
//! QEMU; the original build reused by the next run; the tree byte-identical
//! after SIGINT during the patched build; `#line` directives alone keeping
//! functions below a change unchanged; and each bad input refused with the
//! tree untouched.
//!
//! The first run unpacks and builds the kernel (about 4 minutes on 2 cores
//! per tree); later runs reuse the trees and `klp build`'s cached original.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::boot::*;
use common::kernel_tree::*;
use common::*;

fn corpus(rel: &str) -> PathBuf {
    root().join("corpus/kernel").join(rel)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `klp build` in `tree`, echoing its step lines to the test's stderr.
fn klp_build(tree: &Tree, args: &[&str]) -> Output {
    let t = Instant::now();
    let o = tree.klp_build(args).output().expect("run klp build");
    for l in stderr(&o).lines().filter(|l| l.starts_with('[') || l.starts_with("    ")) {
        eprintln!("  {l}");
    }
    eprintln!("  klp build {}: {} in {:.1} s", args.join(" "), o.status, t.elapsed().as_secs_f64());
    o
}

/// The bytes of each file, by path: to show a tree came back as it was.
fn checksums(root: &Path, files: &[&str]) -> BTreeMap<String, Vec<u8>> {
    files.iter().map(|f| (f.to_string(), std::fs::read(root.join(f)).unwrap_or_default())).collect()
}

/// The demo patch, then our slim scenario, each built by `klp build` in the
/// slim tree and loaded into the slim kernel; the second run reuses the
/// original build of the first.
#[test]
fn slim_demo_and_scenario_modules_load_and_the_second_build_reuses_the_original() {
    let Some(k) = kernel("6.12-slim", 1, &["demo.patch"]) else { return };
    let Some(tree) = slim_tree() else { return };
    let dir = work_dir("klp-build-slim");

    let demo_ko = dir.join("livepatch-demo.ko");
    let o = klp_build(&tree, &[k.dir.join("demo.patch").to_str().unwrap(), "-o", demo_ko.to_str().unwrap(), "-v"]);
    assert!(o.status.success(), "klp build demo.patch:\n{}", stderr(&o));
    // -v: kbuild's own lines.
    assert!(stderr(&o).lines().any(|l| l.trim_start().starts_with("CC") && l.ends_with("fs/proc/cmdline.o")));
    assert!(stdout(&o).contains("patches vmlinux: cmdline_proc_show, version_proc_show"), "{}", stdout(&o));
    let log = k.boot(&dir, &[demo_ko], None);
    assert_demo_effect(&log, "livepatch-demo");

    let scenario_ko = dir.join("livepatch-scenario.ko");
    let patch = corpus("slim-scenario/scenario.patch");
    let o = klp_build(&tree, &[patch.to_str().unwrap(), "-o", scenario_ko.to_str().unwrap(), "--explain"]);
    assert!(o.status.success(), "klp build scenario.patch:\n{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("m_show: first difference at instruction"), "--explain: {err}");
    assert!(err.contains("[4/9] build the original kernel: reusing the original build"), "{err}");
    assert!(err.contains("vmlinux: new function: mounts_klp_note.isra.0"), "{err}");
    let log = k.boot(&dir, &[scenario_ko], Some(&corpus("slim-scenario/scenario.sh")));
    assert_slim_scenario_effect(&log, "livepatch-scenario");
    for l in log.livepatch_lines() {
        eprintln!("    {l}");
    }
}

/// A patch that adds three lines near the top of kernel/ucount.c, above
/// four WARN_ON_ONCE users and two BUG_ON users, and changes put_ucounts():
/// with the differ's line-number rule off, only put_ucounts() differs, by
/// the `#line` rewrite alone. Without the rewrite the same run reports the
/// WARN users too (or refuses the changed `__init` function): the check can fail.
#[test]
fn line_directives_alone_keep_the_functions_below_a_change_unchanged() {
    let Some(tree) = bug_tree() else { return };
    let dir = work_dir("klp-build-line-directives");
    let patch = corpus("line-shift-scenario/ucount.patch");
    let ko = dir.join("livepatch-ucount.ko");
    let args = [patch.to_str().unwrap(), "-o", ko.to_str().unwrap(), "--no-line-rule"];
    let o = klp_build(&tree, &args);
    assert!(o.status.success(), "klp build ucount.patch:\n{}", stderr(&o));
    assert!(stdout(&o).contains("patches vmlinux: put_ucounts\n"), "{}\n{}", stdout(&o), stderr(&o));

    let mut without = args.to_vec();
    without.push("--no-line-directives");
    let o = klp_build(&tree, &without);
    let err = stderr(&o);
    let changed: Vec<&str> = err.lines().filter_map(|l| l.trim().strip_prefix("vmlinux: changed function: ")).collect();
    assert!(
        changed.len() > 1 || o.status.code() == Some(2),
        "without #line directives only {changed:?} changed: the test shows nothing\n{err}"
    );
    eprintln!("  without #line directives: exit {:?}, changed {changed:?}", o.status.code());
}

/// SIGINT during the patched build: klp build stops the build, restores
/// the tree, exits 130; every file the patch touches and the release
/// script it froze are byte-identical to before.
#[test]
fn sigint_during_the_patched_build_leaves_the_tree_as_it_was() {
    let Some(tree) = slim_tree() else { return };
    let patch = corpus("slim-scenario/scenario.patch");
    let files = ["fs/namespace.c", "fs/drop_caches.c", "scripts/setlocalversion"];
    let before = checksums(&tree.src, &files);
    let dir = work_dir("klp-build-sigint");
    let ko = dir.join("never.ko");
    let mut child = tree
        .klp_build(&[patch.to_str().unwrap(), "-o", ko.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("run klp build");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line == "[6/9] build the patched kernel" {
            break;
        }
    }
    assert_eq!(seen.last().map(String::as_str), Some("[6/9] build the patched kernel"), "{seen:?}");
    // The patch is applied and make is compiling.
    std::thread::sleep(Duration::from_millis(1500));
    let patched_now = checksums(&tree.src, &files);
    assert_ne!(patched_now, before, "the patch was not applied when the signal came");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    let said = rest.join("\n");
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(said.contains("interrupted by a signal during the kernel build"), "{said}");
    assert!(said.contains("the source tree is restored"), "{said}");
    assert_eq!(checksums(&tree.src, &files), before, "the tree is not as it was");
    assert!(!tree.build.join("klp-tmp/stash").exists(), "a stash is left");
    assert!(!ko.exists());
}

/// A patch whose hunk does not apply: the error names the patch, the file
/// and the hunk; nothing in the tree changed.
#[test]
fn a_patch_that_does_not_apply_is_named_with_its_file_and_hunk() {
    let Some(tree) = slim_tree() else { return };
    let dir = work_dir("klp-build-bad-patch");
    let patch = dir.join("stale.patch");
    std::fs::write(
        &patch,
        "--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n@@ -1,3 +1,3 @@\n-no such line\n+x\n context\n context\n",
    )
    .unwrap();
    let before = checksums(&tree.src, &["fs/proc/cmdline.c"]);
    let o = klp_build(&tree, &[patch.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("stale.patch") && err.contains("fs/proc/cmdline.c: hunk #1 FAILED"), "{err}");
    assert_eq!(checksums(&tree.src, &["fs/proc/cmdline.c"]), before);
}

/// A patch that changes no object's code (a comment): "no changes
/// detected", exit 0, no module written.
#[test]
fn a_patch_without_effect_writes_nothing() {
    let Some(tree) = slim_tree() else { return };
    let dir = work_dir("klp-build-no-effect");
    let patch = dir.join("comment.patch");
    let c = std::fs::read_to_string(tree.src.join("fs/proc/cmdline.c")).unwrap();
    let line = c.lines().find(|l| l.contains("seq_puts") || l.contains("seq_printf")).expect("a seq_ line");
    let n = c.lines().position(|l| l == line).unwrap() + 1;
    std::fs::write(
        &patch,
        format!("--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n@@ -{n} +{n} @@\n-{line}\n+{line} /* no code */\n"),
    )
    .unwrap();
    let ko = dir.join("livepatch-comment.ko");
    let o = klp_build(&tree, &[patch.to_str().unwrap(), "-o", ko.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("no changes detected"), "{}", stdout(&o));
    assert!(!ko.exists(), "a module was written");
}

/// A later `klp build` from another shell, host or CI job (another
/// `KBUILD_BUILD_HOST` and timestamp) still compares like with like: the
/// patched build gets the original's version banner. Were it rebuilt with
/// its own, `linux_banner` would change length and move the jump tables of
/// hundreds of functions in `vmlinux.o`'s `.rodata`.
#[test]
fn a_later_build_in_another_environment_keeps_the_original_banner() {
    let Some(k) = kernel("6.12-slim", 1, &["demo.patch"]) else { return };
    let Some(tree) = slim_tree() else { return };
    let dir = work_dir("klp-build-banner");
    let patch = k.dir.join("demo.patch");
    let ko = dir.join("livepatch-demo.ko");
    let args = [patch.to_str().unwrap(), "-o", ko.to_str().unwrap()];
    // The original build, in the usual environment (reused if cached).
    let o = klp_build(&tree, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = Instant::now();
    let o = tree
        .klp_build(&args)
        .env("KBUILD_BUILD_HOST", "another-build-host.example")
        .env("KBUILD_BUILD_TIMESTAMP", "Tue Feb  2 12:00:00 UTC 2027")
        .output()
        .expect("run klp build");
    let err = stderr(&o);
    eprintln!("  elsewhere: {} in {:.1} s", o.status, t.elapsed().as_secs_f64());
    assert!(o.status.success(), "{err}");
    assert!(err.contains("reusing the original build"), "{err}");
    assert!(stdout(&o).contains("patches vmlinux: cmdline_proc_show, version_proc_show"), "{}", stdout(&o));
}

/// A change to `__init` code cannot be live patched: exit 2 with the
/// differ's reason, no module.
#[test]
fn a_change_that_cannot_be_live_patched_exits_2_with_the_reason() {
    let Some(tree) = slim_tree() else { return };
    let dir = work_dir("klp-build-unpatchable");
    let c = std::fs::read_to_string(tree.src.join("fs/proc/cmdline.c")).unwrap();
    let line = c.lines().find(|l| l.contains("proc_create_single")).expect("the init function's call");
    let n = c.lines().position(|l| l == line).unwrap() + 1;
    let patch = dir.join("init.patch");
    std::fs::write(
        &patch,
        format!(
            "--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n@@ -{n} +{n},2 @@\n {line}\n+\tpr_info(\"klp: init changed\\n\");\n"
        ),
    )
    .unwrap();
    let ko = dir.join("livepatch-init.ko");
    let o = klp_build(&tree, &[patch.to_str().unwrap(), "-o", ko.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("proc_cmdline_init"), "{err}");
    assert!(!ko.exists());
}

/// A directory that is not a kernel tree, a build directory that is not
/// configured, and a configuration without live patching: refused before
/// anything is touched.
#[test]
fn not_a_kernel_tree_and_no_live_patching_are_refused_by_name() {
    let dir = work_dir("klp-build-not-a-tree");
    let patch = dir.join("x.patch");
    std::fs::write(&patch, "--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+b\n").unwrap();
    let o = klp(&["build", "--srctree", dir.to_str().unwrap(), patch.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(dir.to_str().unwrap()) && err.contains("not a kernel source tree"), "{err}");

    let Some(tree) = slim_tree() else { return };
    let build = dir.join("build");
    std::fs::create_dir_all(&build).unwrap();
    let o = klp(&[
        "build",
        "--srctree",
        tree.src.to_str().unwrap(),
        "--build-dir",
        build.to_str().unwrap(),
        patch.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("not a configured kernel tree (no .config)"), "{err}");

    let config = std::fs::read_to_string(tree.build.join(".config")).unwrap();
    let without: String =
        config.lines().filter(|l| !l.starts_with("CONFIG_LIVEPATCH=")).map(|l| format!("{l}\n")).collect();
    std::fs::write(build.join(".config"), without).unwrap();
    let o = klp(&[
        "build",
        "--srctree",
        tree.src.to_str().unwrap(),
        "--build-dir",
        build.to_str().unwrap(),
        patch.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(".config") && err.contains("CONFIG_LIVEPATCH is not set"), "{err}");
    assert!(!build.join("klp-tmp").exists());
}
