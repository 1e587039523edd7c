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

/// The findings of issue 15 (`corpus/fuzz/regressions/*/finding-*`, written
/// by fuzz/make-findings.py): each mutated patched object is refused with
/// an error naming the file and saying why, on one line; `klp diff` exits 1
/// with that line and writes nothing.
#[test]
fn the_issue_findings_are_refused_naming_the_file() {
    let expected = [
        ("huge-function-size", "symbol pkt_csum: value 0x0 and size 0x9000000000000000 reach past the end"),
        ("huge-alignment", "alignment 0x10000000000 is larger than 0x200000"),
        ("alignment-that-wraps", "alignment 0xffffffffffffffff is not a power of two"),
        ("reference-into-the-symbol-table", ".symtab: cannot copy from a section of type 0x2"),
        ("reference-into-a-relocation-section", ".rela.text.pkt_receive: cannot copy from a section of type 0x4"),
        ("function-in-a-group-section", ".text.pkt_csum: cannot copy from a section of type 0x11"),
        ("function-in-a-hash-section", ".text.pkt_csum: cannot copy from a section of type 0x5"),
        ("newline-in-a-section-name", ".text.pkt\\ncsum: alignment 0x10000000000 is larger"),
    ];
    let dir = corpus().join("regressions/diff");
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-findings");
    std::fs::create_dir_all(&work).unwrap();
    for (name, phrase) in expected {
        let data = std::fs::read(dir.join(format!("finding-{name}"))).unwrap();
        let case = harness::DiffCase::decode(&data).unwrap();
        let e = match case.run() {
            Err(e) => e,
            Ok(_) => panic!("{name}: not refused"),
        };
        let line = e.to_string();
        assert!(line.starts_with(&format!("{}: ", harness::DIFF_PATHS.1)), "{name}: must name the file: {line}");
        assert!(line.contains(phrase), "{name}: expected '{phrase}' in: {line}");
        assert!(!line.contains('\n'), "{name}: {line}");

        // The command: exit 1, that one line, nothing written.
        let (orig, patched, out) = (
            work.join(format!("{name}.orig.o")),
            work.join(format!("{name}.patched.o")),
            work.join(format!("{name}.out.o")),
        );
        std::fs::write(&orig, &case.orig).unwrap();
        std::fs::write(&patched, &case.patched).unwrap();
        let _ = std::fs::remove_file(&out);
        let o = klp_cli(&[
            "diff",
            orig.to_str().unwrap(),
            patched.to_str().unwrap(),
            out.to_str().unwrap(),
            "--objname",
            "vmlinux",
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: one line expected: {stderr}");
        assert!(stderr.contains(patched.to_str().unwrap()) && stderr.contains(phrase), "{name}: {stderr}");
        assert!(!out.exists(), "{name}: an output was written");
    }

    // `klp checksum` on a symbol one byte larger than its section.
    let data = std::fs::read(corpus().join("regressions/parse/finding-symbol-larger-than-its-section")).unwrap();
    let e = match klp::elf::ElfObject::parse(Path::new("big.o"), &data) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a symbol larger than its section was accepted"),
    };
    assert!(
        e.starts_with("big.o: symbol pkt_csum: value 0x0 and size 0x2a reach past the end of .text.pkt_csum"),
        "{e}"
    );
    let path = work.join("big.o");
    std::fs::write(&path, &data).unwrap();
    let o = klp_cli(&["checksum", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty() && String::from_utf8_lossy(&o.stderr).contains("reach past the end"));
}

fn klp_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_klp")).args(args).output().expect("run klp")
}

/// Assemble `source` into an object in this test's directory.
fn assemble(name: &str, source: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-findings");
    std::fs::create_dir_all(&dir).unwrap();
    let (s, o) = (dir.join(format!("{name}.s")), dir.join(format!("{name}.o")));
    std::fs::write(&s, source).unwrap();
    let status = Command::new("as").arg("--64").arg("-o").arg(&o).arg(&s).status().expect("run as");
    assert!(status.success(), "as failed on {name}");
    std::fs::read(o).unwrap()
}

fn diff_error(orig: &[u8], patched: &[u8]) -> String {
    let case = harness::DiffCase { orig: orig.to_vec(), patched: patched.to_vec(), flags: 0 };
    match case.run() {
        Err(e) => e.to_string(),
        Ok(o) => match o.verdict {
            klp::pipeline::Verdict::Livepatch(b) => panic!("not refused: {} bytes written", b.len()),
            v => panic!("not refused: {v:?}"),
        },
    }
}

/// Many symbols on the same bytes made every stage's work (and the copies
/// extraction makes) grow with the square of the file: refused at read time.
#[test]
fn symbols_stacked_on_the_same_bytes_are_refused() {
    let function = ".section .text.big,\"ax\",@progbits\n.globl big\n.type big,@function\nbig:\n.fill 16384,1,0x90\nret\n.size big, .-big\n";
    let orig = assemble("stacked.orig", function);
    let aliases: String = (0..1200)
        .map(|i| format!(".globl alias{i}\n.type alias{i},@function\n.set alias{i}, big\n.size alias{i}, 16385\n"))
        .collect();
    let patched = assemble("stacked.patched", &format!("{function}{aliases}"));
    let e = diff_error(&orig, &patched);
    assert!(e.starts_with("patched.o: symbols cover") && e.contains("too many symbols on the same bytes"), "{e}");
}

/// New functions aligned to 2 MiB each (the largest alignment the reader
/// accepts): the padding would make OUT.o tens of MiB from a few KiB;
/// extraction refuses before allocating it.
#[test]
fn alignment_padding_cannot_make_the_output_huge() {
    let orig = assemble(
        "aligned.orig",
        ".section .text.keep,\"ax\",@progbits\n.globl keep\n.type keep,@function\nkeep:\nret\n.size keep, 1\n",
    );
    let functions: String = (0..12)
        .map(|i| format!(".section .text.f{i},\"ax\",@progbits\n.p2align 21\n.globl f{i}\n.type f{i},@function\nf{i}:\nret\n.size f{i}, 1\n"))
        .collect();
    let patched = assemble(
        "aligned.patched",
        &format!(
            ".section .text.keep,\"ax\",@progbits\n.globl keep\n.type keep,@function\nkeep:\nret\n.size keep, 1\n{functions}"
        ),
    );
    let e = diff_error(&orig, &patched);
    assert!(e.starts_with("patched.o: .text.f") && e.contains("the livepatch object would be larger than"), "{e}");
}
