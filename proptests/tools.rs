//! The real tools as oracles: every synthesized object, and every OUT.o
//! `klp diff` writes for a pair, passes `ld -r`, `readelf -a -W` without a
//! warning or error, and `objdump -d` without a `(bad)` instruction.

mod common;

use std::path::Path;
use std::process::Command;

use klp::pipeline::Verdict;
use klp::synth::Request;

/// Cases by default: each runs the three tools on two or three objects;
/// 256 cases take about a minute on the two-core machine.
const CASES: usize = 256;

fn tools_present() -> bool {
    ["ld", "readelf", "objdump"]
        .iter()
        .all(|t| Command::new(t).arg("--version").output().is_ok_and(|o| o.status.success()))
}

fn run(tool: &str, args: &[&str]) -> Result<(String, String), String> {
    let out = Command::new(tool).args(args).output().map_err(|e| format!("{tool}: {e}"))?;
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    if !out.status.success() {
        return Err(format!("{tool} {args:?} failed: {stderr}"));
    }
    Ok((stdout, stderr))
}

fn check_object(path: &Path, scratch: &Path) -> Result<(), String> {
    let p = path.to_str().ok_or("path")?;
    let linked = scratch.join("linked.o");
    let (_, ld_err) = run("ld", &["-r", "-o", linked.to_str().ok_or("path")?, p])?;
    if !ld_err.is_empty() {
        return Err(format!("ld -r {p}: {ld_err}"));
    }
    let (out, err) = run("readelf", &["-a", "-W", p])?;
    let noisy =
        |s: &str| s.lines().find(|l| l.to_lowercase().contains("warning") || l.contains("Error")).map(str::to_owned);
    if let Some(line) = noisy(&err).or_else(|| noisy(&out)) {
        return Err(format!("readelf -a -W {p}: {line}"));
    }
    let (dis, _) = run("objdump", &["-d", p])?;
    if let Some(line) = dis.lines().find(|l| l.contains("(bad)")) {
        return Err(format!("objdump -d {p}: {line}"));
    }
    if !dis.contains("call") {
        return Err(format!("objdump -d {p}: no code disassembled"));
    }
    Ok(())
}

fn check(req: &Request, dir: &Path) -> Result<(), String> {
    let pair = common::pair(req);
    let scratch = dir.join(format!("seed{}", req.seed));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let write = |name: &str, bytes: &[u8]| -> Result<std::path::PathBuf, String> {
        let path = scratch.join(name);
        klp::elf::write::write_atomically(&path, bytes).map_err(|e| e.to_string())?;
        Ok(path)
    };
    check_object(&write("a.o", &pair.orig)?, &scratch)?;
    check_object(&write("b.o", &pair.patched)?, &scratch)?;
    if let Verdict::Livepatch(out) = common::diff(&pair.orig, &pair.patched)?.verdict {
        check_object(&write("out.o", &out)?, &scratch).map_err(|e| format!("OUT.o: {e}"))?;
    }
    std::fs::remove_dir_all(&scratch).map_err(|e| e.to_string())
}

#[test]
fn objects_pass_ld_readelf_and_objdump() {
    if !tools_present() {
        let missing = "missing tools: ld, readelf, objdump (binutils)";
        if common::under_ci() {
            panic!("{missing} (CI is set, so a missing tool is a failure)");
        }
        eprintln!("SKIPPED: synth_tools: {missing}");
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("synth-tools");
    common::run_cases_in_both_forms(CASES, |req| check(req, &dir));
}
