//! The checks say only what they compared: `klp diff --explain` shows the
//! instruction that differs where it is (a `.cold` part), and `klp check
//! --patched` fails on every function of the module the loader oracle could
//! not verify, and on a symbol position that resolves to the wrong duplicate.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn work(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("honest-checks").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compile C `source` as `dir/<unit>.c` (the FILE symbol) into `dir/<out>`
/// with the kernel's flags that matter for the differ.
fn compile(dir: &Path, unit: &str, source: &str, out: &str) -> PathBuf {
    let src_dir = dir.join(format!("{out}.src"));
    std::fs::create_dir_all(&src_dir).unwrap();
    let src = src_dir.join(format!("{unit}.c"));
    std::fs::write(&src, source).unwrap();
    let obj = dir.join(out);
    let o = Command::new("gcc")
        .args(["-c", "-O2", "-ffunction-sections", "-fdata-sections", "-mcmodel=kernel", "-fno-pic"])
        .args(["-mno-red-zone", "-pg", "-mfentry", "-fno-asynchronous-unwind-tables", "-fno-stack-protector", "-w"])
        .arg("-o")
        .arg(&obj)
        .arg(&src)
        .output()
        .expect("run gcc");
    assert!(o.status.success(), "gcc: {}", String::from_utf8_lossy(&o.stderr));
    obj
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn explain_shows_a_cold_difference_in_the_cold_part() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/cases/cold-split");
    let dir = work("explain-cold");
    let read = |f: &str| std::fs::read_to_string(case.join(f)).unwrap();
    let orig = compile(&dir, "queue", &read("orig.c"), "orig.o");
    let patched = compile(&dir, "queue", &read("patched.c"), "patched.o");
    let o = klp(&[
        "diff",
        orig.to_str().unwrap(),
        patched.to_str().unwrap(),
        dir.join("out.o").to_str().unwrap(),
        "--objname",
        "vmlinux",
        "--explain",
        "queue_push",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let lines: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("queue_push: first difference")).collect();
    assert!(lines.len() >= 3, "no explanation:\n{out}");
    assert!(lines[0].ends_with(" of queue_push.cold"), "the cold part is not named:\n{out}");
    // Only the message changed: the instruction loading its address, in
    // the cold part, with each side's own string.
    for (line, side, message) in [(lines[1], "orig:", "queue %p full"), (lines[2], "patched:", "queue %p overflow")] {
        let shown = line.trim_start().strip_prefix(side).unwrap_or_else(|| panic!("{side} line:\n{out}")).trim();
        assert!(shown.starts_with("queue_push.cold+0x"), "not disassembled in queue_push.cold:\n{out}");
        assert!(shown.contains("mov ") && shown.contains(message), "not the differing instruction:\n{out}");
    }
}
