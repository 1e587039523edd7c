//! `klp diff` answers from a child process and leaves the teardown to it
//! (src/detach.rs): what the caller sees must be exactly what `--no-fork`,
//! the work done in the process itself, gives: stdout, stderr, exit
//! status and OUT.o, for each of the three outcomes, and a child's death
//! by a signal.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn work_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("detached").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `corpus/cases/CASE/{orig,patched}.c` compiled by gcc into `dir`.
fn compiled_case(case: &str, dir: &Path) -> [PathBuf; 2] {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/cases").join(case);
    ["orig", "patched"].map(|side| {
        let obj = dir.join(format!("{side}.o"));
        let ok = Command::new("gcc")
            .args(["-c", "-O2", "-ffunction-sections", "-fdata-sections", "-o"])
            .arg(&obj)
            .arg(src.join(format!("{side}.c")))
            .status()
            .expect("run gcc")
            .success();
        assert!(ok, "gcc failed on {case}/{side}.c");
        obj
    })
}

/// Run `klp diff ORIG PATCHED OUT` with and without `--no-fork`, each
/// writing its own OUT, and check both answer alike; the status.
fn same_answer(name: &str, orig: &Path, patched: &Path) -> Option<i32> {
    let dir = work_dir(name);
    let run = |extra: &[&str], out: &str| -> (Output, Option<Vec<u8>>) {
        let out = dir.join(out);
        let mut args = vec![
            "diff",
            "--objname",
            "vmlinux",
            orig.to_str().unwrap(),
            patched.to_str().unwrap(),
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        (klp(&args), std::fs::read(&out).ok())
    };
    let (detached, detached_out) = run(&[], "detached.o");
    let (in_process, in_process_out) = run(&["--no-fork"], "in-process.o");
    let text =
        |o: &Output| (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
    assert_eq!(text(&detached), text(&in_process), "{name}: stdout and stderr");
    assert_eq!(detached.status.code(), in_process.status.code(), "{name}: exit status");
    assert_eq!(detached_out, in_process_out, "{name}: OUT.o");
    detached.status.code()
}

#[test]
fn a_changed_function_is_answered_alike() {
    let objects = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/objects");
    let status = same_answer("changed", &objects.join("pktdemo.orig.o"), &objects.join("pktdemo.patched.o"));
    assert_eq!(status, Some(0));
    let out = work_dir("changed-again").join("out.o");
    let o = klp(&[
        "diff",
        "--objname",
        "vmlinux",
        objects.join("pktdemo.orig.o").to_str().unwrap(),
        objects.join("pktdemo.patched.o").to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(!reported(&o.stdout, "changed function").is_empty(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(out.exists(), "the livepatch object is in place when klp returns");
}

#[test]
fn a_refusal_is_answered_alike() {
    let dir = work_dir("refusal-objects");
    let [orig, patched] = compiled_case("changed-data", &dir);
    assert_eq!(same_answer("refusal", &orig, &patched), Some(2));
}

#[test]
fn bad_input_is_answered_alike() {
    let dir = work_dir("bad-objects");
    let bad = dir.join("truncated.o");
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/objects/pktdemo.orig.o");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(same_answer("bad", &bad, &good), Some(1));
}

/// The process a caller waits for is the parent; the work is its child's.
/// A child that dies of a signal before it has reported a status must be
/// seen as the parent's own death, not as some exit status.
#[test]
fn a_child_killed_by_a_signal_is_the_parent_killed_alike() {
    use std::os::unix::process::ExitStatusExt;
    let assets = kernel_assets(&["6.12-def"], &["vmlinux.o.orig.zst", "vmlinux.o.patched.zst"]);
    // A whole vmlinux.o pair: the child works long enough (0.3 s) to be found.
    let Some(p) = require(&strs(&assets), &["zstd"]) else { return };
    let (orig, patched) = (unzstd_cached(&p[0]), unzstd_cached(&p[1]));
    let out = work_dir("killed").join("out.o");
    let mut parent = Command::new(env!("CARGO_BIN_EXE_klp"))
        .args(["diff", "--objname", "vmlinux"])
        .args([&orig, &patched, &out])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run klp");
    let children = format!("/proc/{0}/task/{0}/children", parent.id());
    let started = std::time::Instant::now();
    let child: i32 = loop {
        let listed = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(pid) = listed.split_whitespace().next() {
            break pid.parse().unwrap();
        }
        assert!(started.elapsed().as_secs() < 10, "klp diff started no child");
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    // SAFETY: sends a signal to the process just listed as klp's child.
    assert_eq!(unsafe { libc::kill(child, libc::SIGKILL) }, 0, "kill {child}");
    let status = parent.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the parent ended with {status:?}");
    assert!(!out.exists(), "no output from a killed diff");
}
