//! Our own C corpus (corpus/cases/*): each case is compiled at test time with
//! gcc and kernel-like flags, diffed, and checked against its `expected` file.
//! A case whose `expected` says `compilers gcc clang` is compiled and checked
//! with clang too (clang-built kernels: other code shapes, same answers).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use common::{layouts, out_check};

#[derive(Debug, Default)]
struct Expected {
    changed: BTreeSet<String>,
    new: BTreeSet<String>,
    removed: Option<BTreeSet<String>>,
    line_only: Option<BTreeSet<String>>,
    /// `new-data`, `ignored-section`, `ignored-function`: checked when given.
    new_data: Option<BTreeSet<String>>,
    ignored_sections: Option<BTreeSet<String>>,
    ignored_functions: Option<BTreeSet<String>>,
    exit: i32,
    refused: Vec<String>,
    /// `compilers gcc clang`: which compilers the case is checked with (gcc alone by default).
    compilers: Vec<String>,
    /// `reports nothing`: not a single line on stdout (no new data either).
    reports_nothing: bool,
    /// Checks of OUT.o: `defines`, `undefined`, `klp-sym`, `entries`, `section`, `section-size`.
    output: Vec<(String, String)>,
}

fn parse_expected(text: &str) -> Expected {
    let mut e = Expected::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (kind, value) = line.split_once(char::is_whitespace).expect("`kind value` line");
        let value = strip_numbers(value.trim());
        match kind {
            "changed" => drop(e.changed.insert(value)),
            "new" => drop(e.new.insert(value)),
            "removed" => drop(e.removed.get_or_insert_default().insert(value)),
            "line-only" => drop(e.line_only.get_or_insert_default().insert(value)),
            "new-data" => drop(e.new_data.get_or_insert_default().insert(value)),
            "ignored-section" => drop(e.ignored_sections.get_or_insert_default().insert(value)),
            "ignored-function" => drop(e.ignored_functions.get_or_insert_default().insert(value)),
            "exit" => e.exit = value.parse().expect("exit status"),
            "refused" => e.refused.push(value),
            "compilers" => e.compilers = value.split_whitespace().map(str::to_owned).collect(),
            "reports" => {
                assert_eq!(value, "nothing", "`reports nothing` is the only form");
                e.reports_nothing = true;
            }
            "defines" | "undefined" | "klp-sym" | "entries" | "section" | "section-size" => {
                e.output.push((kind.to_owned(), line.split_once(char::is_whitespace).unwrap().1.trim().to_owned()))
            }
            other => panic!("unknown expectation '{other}'"),
        }
    }
    if e.compilers.is_empty() {
        e.compilers.push("gcc".into());
    }
    for c in &e.compilers {
        assert!(c == "gcc" || c == "clang", "unknown compiler '{c}' (gcc or clang)");
    }
    e
}

/// Compile `src` as `<unit>.c`, the way both builds of a kernel see the same
/// file name: kbuild runs gcc in the tree with a relative path, which ends up
/// in the FILE symbol and in every `__FILE__`.
pub fn compile_as(src: &Path, unit: &str, out: &Path) {
    compile_with("gcc", src, unit, out)
}

fn compile_with(compiler: &str, src: &Path, unit: &str, out: &Path) {
    compile_unit(compiler, src, &out.with_extension("src"), &format!("{unit}.c"), &[], out);
}

fn set(names: Vec<String>) -> BTreeSet<String> {
    names.iter().map(|n| strip_numbers(n)).collect()
}

fn expected_of(dir: &Path) -> Expected {
    parse_expected(&std::fs::read_to_string(dir.join("expected")).unwrap())
}

fn check_case(dir: &Path, compiler: &str) -> Result<(), String> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let expected = expected_of(dir);
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("corpus").join(compiler).join(&name);
    std::fs::create_dir_all(&work).unwrap();
    let (orig, patched) = (work.join("orig.o"), work.join("patched.o"));
    compile_with(compiler, &dir.join("orig.c"), &name, &orig);
    compile_with(compiler, &dir.join("patched.c"), &name, &patched);
    let name = format!("{name} ({compiler})");
    let out = work.join("out.o");
    let _ = std::fs::remove_file(&out);
    let o = klp(&[
        "diff",
        orig.to_str().unwrap(),
        patched.to_str().unwrap(),
        out.to_str().unwrap(),
        "--objname",
        "vmlinux",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let mut problems = Vec::new();
    if o.status.code() != Some(expected.exit) {
        problems.push(format!("exit {:?}, expected {}; stderr: {stderr}", o.status.code(), expected.exit));
    }
    // Every case's symbols can be paired: a warning that some could not is a bug.
    if let Some(w) = stderr.lines().find(|l| l.contains("cannot pair")) {
        problems.push(format!("unexpected warning: {w}"));
    }
    for sym in &expected.refused {
        if !stderr.lines().any(|l| l.contains("error: ") && l.contains(&format!(": {sym} ("))) {
            problems.push(format!("refusal does not name {sym}: {stderr}"));
        }
    }
    let compare = |what: &str, got: BTreeSet<String>, want: &BTreeSet<String>, problems: &mut Vec<String>| {
        if &got != want {
            problems.push(format!("{what}: got {got:?}, expected {want:?}"));
        }
    };
    compare("changed", set(reported(&o.stdout, "changed function")), &expected.changed, &mut problems);
    compare("new", set(reported(&o.stdout, "new function")), &expected.new, &mut problems);
    if let Some(want) = &expected.removed {
        compare("removed", set(reported(&o.stdout, "removed function")), want, &mut problems);
    }
    if let Some(want) = &expected.line_only {
        compare("line-only", set(reported(&o.stdout, "line-only change")), want, &mut problems);
    }
    let optional = [
        ("new data", &expected.new_data),
        ("ignoring section", &expected.ignored_sections),
        ("ignoring function", &expected.ignored_functions),
    ];
    for (what, want) in optional {
        if let Some(want) = want {
            let got = reported(&o.stdout, what);
            if set(got.clone()).len() != got.len() {
                problems.push(format!("{what}: reported more than once: {got:?}"));
            }
            compare(what, set(got), want, &mut problems);
        }
    }
    if expected.reports_nothing && !o.stdout.is_empty() {
        problems.push(format!("expected no report, got: {}", String::from_utf8_lossy(&o.stdout).trim_end()));
    }
    let (changed, new) = (reported(&o.stdout, "changed function"), reported(&o.stdout, "new function"));
    if expected.exit == 0 && (!changed.is_empty() || !new.is_empty()) {
        let never_exported = |_: &str| false;
        let e = out_check::Expect { changed: &changed, new: &new, exported: &never_exported };
        if let Err(why) = out_check::check_output(&out, &orig, &e) {
            problems.push(format!("OUT.o: {why}"));
        }
        problems.extend(check_output_expectations(&out, &expected.output));
    } else if out.exists() {
        problems.push("OUT.o written although nothing is to be patched".into());
    }
    if problems.is_empty() { Ok(()) } else { Err(format!("{name}: {}", problems.join("; "))) }
}

/// The `defines`, `undefined`, `klp-sym`, `section`, `section-size` and
/// `entries` expectations, read from OUT.o with the `object` crate (not
/// klp's reader); a symbol name matches with its numeric suffixes stripped.
fn check_output_expectations(out: &Path, checks: &[(String, String)]) -> Vec<String> {
    use object::{Object, ObjectSection, ObjectSymbol};
    let data = std::fs::read(out).unwrap();
    let obj = object::File::parse(&*data).unwrap();
    let defined = |name: &str| {
        obj.symbols().any(|s| !s.is_undefined() && s.name().is_ok_and(|n| n == name || strip_numbers(n) == name))
    };
    let section_size = |name: &str| obj.section_by_name(name).map(|s| s.size());
    let mut problems = Vec::new();
    for (kind, arg) in checks {
        let ok = match kind.as_str() {
            "defines" => defined(arg),
            "undefined" => !defined(arg),
            "klp-sym" => obj.symbols().any(|s| {
                s.name()
                    .ok()
                    .and_then(|n| n.strip_prefix(".klp.sym.vmlinux."))
                    .and_then(|r| r.rsplit_once(','))
                    .is_some_and(|(n, _)| strip_numbers(n) == *arg)
            }),
            "section" => section_size(arg).is_some(),
            "section-size" => {
                let (sec, n) = arg.split_once(char::is_whitespace).expect("section-size SECTION BYTES");
                section_size(sec) == Some(n.trim().parse().expect("section size"))
            }
            "entries" => {
                // The entry size is that of the kernel's structure, computed
                // by gcc (verify/common/kernel_layouts.c), not klp's.
                let (sec, n) = arg.split_once(char::is_whitespace).expect("entries SECTION N");
                let n: u64 = n.trim().parse().expect("entry count");
                let size = section_size(sec).unwrap_or(0);
                size % layouts::entry_size(sec) == 0 && size / layouts::entry_size(sec) == n
            }
            _ => unreachable!(),
        };
        if !ok {
            problems.push(format!("OUT.o: expected {kind} {arg}"));
        }
    }
    problems
}

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/cases");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

#[test]
fn every_corpus_case_gives_its_expected_outcome() {
    let dirs = case_dirs();
    assert!(dirs.len() >= 12, "corpus/cases should hold at least 12 cases");
    let failures: Vec<String> = dirs.iter().filter_map(|d| check_case(d, "gcc").err()).collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), dirs.len(), failures.join("\n"));
}

/// The cases marked `compilers gcc clang`, compiled with clang: its
/// `__func__` is a plain string and its stack arguments are stores into
/// space reserved beforehand, and the answers must not change.
#[test]
fn clang_corpus_cases_give_the_same_outcome() {
    if require(&[], &["clang"]).is_none() {
        return;
    }
    let dirs: Vec<PathBuf> =
        case_dirs().into_iter().filter(|d| expected_of(d).compilers.iter().any(|c| c == "clang")).collect();
    assert!(dirs.len() >= 3, "at least three corpus cases should be checked with clang, found {}", dirs.len());
    let failures: Vec<String> = dirs.iter().filter_map(|d| check_case(d, "clang").err()).collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), dirs.len(), failures.join("\n"));
    eprintln!("clang: {} corpus cases", dirs.len());
}

#[test]
fn every_corpus_object_diffed_against_itself_reports_nothing() {
    let dirs = case_dirs();
    assert!(!dirs.is_empty(), "corpus/cases holds no case");
    for dir in dirs {
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("corpus-self").join(dir.file_name().unwrap());
        std::fs::create_dir_all(&work).unwrap();
        let obj = work.join("patched.o");
        compile_as(&dir.join("patched.c"), "patched", &obj);
        let o = klp(&["diff", obj.to_str().unwrap(), obj.to_str().unwrap(), work.join("out.o").to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", dir.display(), String::from_utf8_lossy(&o.stderr));
        assert!(o.stdout.is_empty(), "{}: {}", dir.display(), String::from_utf8_lossy(&o.stdout));
    }
}
