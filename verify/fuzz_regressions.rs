//! Every input the fuzzers (fuzz/) found a bug with is kept in
//! `corpus/fuzz/regressions/<target>/` and replayed here through the
//! target's own code (`fuzz/src/lib.rs`, compiled into this test): a result
//! or a one-line error, never a panic. The seed corpora
//! (`corpus/fuzz/<target>/`) are replayed too. What `klp diff` writes from
//! any of them must also satisfy `readelf -a -W`.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGETS: [&str; 4] = ["parse", "post_link", "check", "diff"];

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    out.sort();
    out
}

/// readelf's complaints about an object klp wrote.
fn readelf_complaints(bytes: &[u8], name: &str) -> Option<String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-regressions");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.out.o"));
    std::fs::write(&path, bytes).unwrap();
    let o = Command::new("readelf").args(["-a", "-W"]).arg(&path).output().ok()?;
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    (!o.status.success() || !stderr.trim().is_empty()).then_some(stderr)
}

/// Replay every file of `<root>/<target>/`; the number replayed and the failures.
fn replay(root: &Path) -> (usize, Vec<String>) {
    let mut replayed = 0;
    let mut failures = Vec::new();
    for target in TARGETS {
        for path in files(&root.join(target)) {
            let data = std::fs::read(&path).unwrap();
            let name = format!("{target}/{}", path.file_name().unwrap().to_string_lossy());
            let run = catch_unwind(AssertUnwindSafe(|| match target {
                "parse" => harness::parse(&data),
                "post_link" => harness::post_link(&data),
                "check" => harness::check(&data),
                _ => {
                    if let Some(out) = harness::diff(&data)
                        && let Some(complaint) = readelf_complaints(&out, &name.replace('/', "-"))
                    {
                        panic!("readelf -a -W complains about OUT.o: {complaint}");
                    }
                }
            }));
            if run.is_err() {
                failures.push(name);
            }
            replayed += 1;
        }
    }
    (replayed, failures)
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/fuzz")
}

#[test]
fn every_saved_crash_input_gives_a_result_or_an_error() {
    let (replayed, failures) = replay(&corpus().join("regressions"));
    assert!(replayed > 0, "no input in corpus/fuzz/regressions/");
    assert!(failures.is_empty(), "{} of {replayed} inputs fail (panics above): {failures:?}", failures.len());
}

#[test]
fn every_seed_gives_a_result_or_an_error() {
    let (replayed, failures) = replay(&corpus());
    assert!(replayed > 0, "no seed in corpus/fuzz/");
    assert!(failures.is_empty(), "{} of {replayed} seeds fail (panics above): {failures:?}", failures.len());
}
