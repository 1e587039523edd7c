//! The real Linux 6.12 kernels in ../shared/kernel: the demo patch changes
//! exactly `cmdline_proc_show` and `version_proc_show`, whether diffed per
//! translation unit or as a whole `vmlinux.o`; any object diffed against
//! itself reports nothing.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const DEMO_CHANGED: &[&str] = &["cmdline_proc_show", "version_proc_show"];

fn diff(orig: &Path, patched: &Path) -> std::process::Output {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel-out.o");
    klp(&["diff", orig.to_str().unwrap(), patched.to_str().unwrap(), out.to_str().unwrap(), "--objname", "vmlinux"])
}

fn assert_reports(orig: &Path, patched: &Path, changed: &[&str]) {
    let o = diff(orig, patched);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}: {}", orig.display(), String::from_utf8_lossy(&o.stderr));
    let mut got = reported(&o.stdout, "changed function");
    got.sort();
    assert_eq!(got, changed, "{}: {stdout}", orig.display());
    // Nothing else: no new, removed or line-only functions, no new data.
    let other = stdout.lines().filter(|l| !l.contains(": changed function: ")).collect::<Vec<_>>();
    assert!(other.is_empty(), "{}: unexpected report lines {other:?}", orig.display());
    // Every symbol pairs: no correlation ambiguities.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("cannot pair"), "{}: {stderr}", orig.display());
}

const KERNELS: &[&str] = &["6.12-slim", "6.12-def"];
const UNITS: &[&str] = &["cmdline.orig.o", "cmdline.patched.o", "version.orig.o", "version.patched.o"];

fn vmlinux_pair(kernel: &str) -> Option<(PathBuf, PathBuf)> {
    let assets = kernel_assets(&[kernel], &["vmlinux.o.orig.zst", "vmlinux.o.patched.zst"]);
    let p = require(&strs(&assets), &["zstd"])?;
    Some((unzstd_cached(&p[0]), unzstd_cached(&p[1])))
}

#[test]
fn translation_unit_pairs_report_exactly_the_demo_functions() {
    if require(&strs(&kernel_assets(KERNELS, UNITS)), &[]).is_none() {
        return;
    }
    let mut pairs = 0;
    for kernel in KERNELS {
        let dir = shared_dir().join("kernel").join(kernel);
        for (unit, func) in [("cmdline", "cmdline_proc_show"), ("version", "version_proc_show")] {
            let orig = dir.join(format!("{unit}.orig.o"));
            let patched = dir.join(format!("{unit}.patched.o"));
            assert_reports(&orig, &patched, &[func]);
            assert_reports(&orig, &orig, &[]);
            assert_reports(&patched, &patched, &[]);
            pairs += 1;
        }
    }
    assert_eq!(pairs, 4, "two translation units of each of the two kernels");
}

#[test]
fn slim_vmlinux_reports_exactly_the_demo_functions() {
    let Some((orig, patched)) = vmlinux_pair("6.12-slim") else { return };
    assert_reports(&orig, &patched, DEMO_CHANGED);
    assert_reports(&orig, &orig, &[]);
}

#[test]
fn defconfig_vmlinux_reports_exactly_the_demo_functions() {
    let Some((orig, patched)) = vmlinux_pair("6.12-def") else { return };
    assert_reports(&orig, &patched, DEMO_CHANGED);
    assert_reports(&patched, &patched, &[]);
}

#[test]
fn json_report_and_explain_describe_the_change() {
    let assets = kernel_assets(&["6.12-slim"], &["cmdline.orig.o", "cmdline.patched.o"]);
    let Some(p) = require(&strs(&assets), &[]) else { return };
    let (orig, patched) = (&p[0], &p[1]);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("json-out.o");
    let o = klp(&[
        "diff",
        orig.to_str().unwrap(),
        patched.to_str().unwrap(),
        out.to_str().unwrap(),
        "--json",
        "--objname=vmlinux",
    ]);
    assert!(o.status.success());
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(report["changed"], serde_json::json!(["cmdline_proc_show"]));
    assert_eq!(report["new_functions"], serde_json::json!([]));
    let o = klp(&[
        "diff",
        orig.to_str().unwrap(),
        patched.to_str().unwrap(),
        out.to_str().unwrap(),
        "--explain",
        "cmdline_proc_show",
        "--objname=vmlinux",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("cmdline_proc_show: first difference at instruction #"), "{text}");
    assert!(
        text.contains("  orig:    cmdline_proc_show+0x") && text.contains("  patched: cmdline_proc_show+0x"),
        "{text}"
    );
    assert!(out.exists(), "OUT.o is written when something changed");
}
