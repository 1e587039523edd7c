//! The kpatch unit-test object pairs (../shared/corpus/kpatch-x86_64) against
//! their oracle, EXPECTED.tsv. Cases where we knowingly differ are listed,
//! with the reason, in corpus/KNOWN-DIFFERENCES.md; the list must be exact.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;

struct Case {
    name: String,
    expect: String,
    changed: Vec<String>,
    new: Vec<String>,
}

fn list(field: &str) -> Vec<String> {
    if field == "-" { Vec::new() } else { sorted_stripped(field.split(',')) }
}

fn cases(dir: &Path) -> Vec<Case> {
    let tsv = std::fs::read_to_string(dir.join("EXPECTED.tsv")).unwrap();
    tsv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Case { name: f[0].into(), expect: f[1].into(), changed: list(f[2]), new: list(f[3]) }
        })
        .collect()
}

/// `NAME.env` sizes (kpatch's *_STRUCT_SIZE variables) as --entsize options.
fn entsize_args(dir: &Path, case: &str) -> Vec<String> {
    let Ok(env) = std::fs::read_to_string(dir.join(format!("{case}.env"))) else {
        return Vec::new();
    };
    let section = |var: &str| match var {
        "JUMP_STRUCT_SIZE" => Some("__jump_table"),
        "EX_STRUCT_SIZE" => Some("__ex_table"),
        "BUG_STRUCT_SIZE" => Some("__bug_table"),
        "ALT_STRUCT_SIZE" => Some(".altinstructions"),
        "PARA_STRUCT_SIZE" => Some(".parainstructions"),
        "STATIC_CALL_STRUCT_SIZE" => Some(".static_call_sites"),
        _ => None,
    };
    env.lines()
        .filter_map(|l| l.split_once('='))
        .filter_map(|(k, v)| section(k.trim()).map(|s| format!("--entsize={s}={}", v.trim())))
        .collect()
}

/// Check one case; `Err` says how we differ from the oracle.
fn check(dir: &Path, work: &Path, case: &Case) -> Result<(), String> {
    let orig = dir.join(format!("{}.ORIG.o", case.name));
    let mut patched = dir.join(format!("{}.PATCHED.o", case.name));
    if !patched.exists() {
        patched = dir.join(format!("{}.PATCHED.FAIL.o", case.name));
    }
    let out = work.join(format!("{}.o", case.name));
    let mut args =
        vec!["diff".to_owned(), orig.display().to_string(), patched.display().to_string(), out.display().to_string()];
    args.push("--objname=vmlinux".to_owned());
    args.extend(entsize_args(dir, &case.name));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = klp(&refs);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let changed = sorted_stripped(reported(&o.stdout, "changed function"));
    let new = sorted_stripped(reported(&o.stdout, "new function"));
    match case.expect.as_str() {
        "error" => {
            if o.status.code() != Some(2) {
                return Err(format!("expected exit 2, got {:?}; stderr: {stderr}", o.status.code()));
            }
            if !stderr.contains("error: changed init code: ") {
                return Err(format!("refusal does not name the init function: {stderr}"));
            }
        }
        "nochange" => {
            if !changed.is_empty() || o.status.code() != Some(0) {
                return Err(format!("expected no change, got changed {changed:?}, exit {:?}", o.status.code()));
            }
        }
        _ => {
            if o.status.code() != Some(0) {
                return Err(format!("exit {:?}: {stderr}", o.status.code()));
            }
            if changed != case.changed || new != case.new {
                return Err(format!(
                    "changed {changed:?} new {new:?}; expected changed {:?} new {:?}",
                    case.changed, case.new
                ));
            }
        }
    }
    Ok(())
}

/// Case names listed in KNOWN-DIFFERENCES.md as `## case-name`.
fn known_differences() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/KNOWN-DIFFERENCES.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().filter_map(|l| l.strip_prefix("## ")).map(|s| s.trim().to_owned()).collect()
}

#[test]
fn kpatch_corpus_matches_the_oracle() {
    let Some(expected) = require_asset("corpus/kpatch-x86_64/EXPECTED.tsv", &[]) else { return };
    let dir = expected.parent().unwrap();
    let all = cases(dir);
    assert_eq!(all.len(), 37, "EXPECTED.tsv should list 37 cases");
    // A directory of this run's own: two test runs at once (a CI clone
    // beside a checkout) must not write each other's outputs.
    let work = std::env::temp_dir().join(format!("klp-kpatch-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let mut differing = BTreeSet::new();
    for case in &all {
        match check(dir, &work, case) {
            Ok(()) => eprintln!("ok      {}", case.name),
            Err(why) => {
                eprintln!("DIFFERS {}: {why}", case.name);
                differing.insert(case.name.clone());
            }
        }
    }
    std::fs::remove_dir_all(&work).unwrap();
    let passed = all.len() - differing.len();
    eprintln!("{passed} of {} kpatch cases equal the oracle", all.len());
    assert!(passed >= 35, "only {passed} of 37 cases match EXPECTED.tsv");
    assert_eq!(differing, known_differences(), "corpus/KNOWN-DIFFERENCES.md must list exactly the differing cases");
}
