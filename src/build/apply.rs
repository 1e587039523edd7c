//! Applying patches to the source tree with GNU patch (steps 2 and 6 of
//! `klp build`), every touched file saved in the stash first; and the
//! clean diff of what the patches really did (upstream's `fix_patches`):
//! regenerated from the files' bytes, so that hunk line numbers are exact
//! whatever offset or fuzz the patches applied with, which the `#line`
//! rewrite depends on.

use std::path::{Component, Path};
use std::process::Command;

use super::patch::{self, Patch};
use super::stash::Stash;
use crate::error::{Error, Result};

/// How a patch is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A user's patch: fuzz allowed (reported), files restored as they were.
    Check,
    /// Our regenerated patch: exact, and the sources restored with a new
    /// time so that make rebuilds them (see [`Stash::save_source`]).
    Build,
}

/// Apply `patch` (the contents of `file`) to `srctree` with `-p1`.
/// Returns GNU patch's notes about offsets and fuzz.
pub fn apply(srctree: &Path, file: &Path, patch: &Patch, stash: &mut Stash, mode: Mode) -> Result<Vec<String>> {
    for f in &patch.files {
        let rel = Path::new(f.path());
        let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain || rel.as_os_str().is_empty() {
            return Err(Error::usage(format!("{}: not a path inside the tree", f.path())).in_file(file));
        }
    }
    // Nothing is touched unless the whole patch applies.
    run_patch(srctree, file, mode, true)?;
    for f in &patch.files {
        let path = srctree.join(f.path());
        match mode {
            Mode::Check => stash.save(&path)?,
            Mode::Build => stash.save_source(&path)?,
        }
    }
    run_patch(srctree, file, mode, false)
}

fn run_patch(srctree: &Path, file: &Path, mode: Mode, dry_run: bool) -> Result<Vec<String>> {
    let abs = std::fs::canonicalize(file).map_err(|e| Error::io(file, "cannot read", &e))?;
    let mut cmd = Command::new("patch");
    cmd.arg("-p1").arg("-N").arg("-d").arg(srctree).arg("-i").arg(&abs);
    // No .orig or .rej files in the tree.
    cmd.args(["--no-backup-if-mismatch", "-r", "-"]);
    if mode == Mode::Build {
        cmd.arg("--fuzz=0");
    }
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().map_err(|e| Error::tool(format!("cannot run patch: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        return Ok(notes(&text, |l| l.contains("offset") || l.contains("fuzz")));
    }
    let failures = notes(&text, |l| {
        l.contains("FAILED") || l.contains("can't find file") || l.contains("Reversed") || l.contains("malformed")
    });
    let why = match failures.is_empty() {
        true => text.lines().chain(String::from_utf8_lossy(&out.stderr).lines()).last().unwrap_or("").to_owned(),
        false => failures.join("; "),
    };
    Err(Error::usage(format!("does not apply to {}: {why}", srctree.display())).in_file(file))
}

/// Lines of GNU patch's output for which `keep` holds, each with the file
/// it was about (`Hunk #2 FAILED at 40` becomes `fs/x.c: Hunk #2 FAILED at 40`).
fn notes(output: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut file = "";
    let mut out = Vec::new();
    for line in output.lines() {
        if let Some(f) = line.strip_prefix("checking file ").or_else(|| line.strip_prefix("patching file ")) {
            file = f.trim_matches('\'');
        } else if keep(line) {
            let line = line.trim_end_matches('.').trim_start_matches("Hunk #").to_owned();
            let line = if line.starts_with(|c: char| c.is_ascii_digit()) { format!("hunk #{line}") } else { line };
            out.push(if file.is_empty() { line } else { format!("{file}: {line}") });
        }
    }
    out
}

/// The patch the files in `stash` show now against their saved copies,
/// in the order of `paths` (relative to `srctree`), as `diff -Nup` makes it.
pub fn clean_diff(srctree: &Path, stash: &Stash, paths: &[String]) -> Result<Patch> {
    let mut text = String::new();
    for rel in paths {
        let now = srctree.join(rel);
        let Some(before) = stash.original(&now) else { continue };
        let before = before.unwrap_or(Path::new("/dev/null"));
        let after = if now.exists() { now.as_path() } else { Path::new("/dev/null") };
        let out = Command::new("diff")
            .args(["-up", "--label"])
            .arg(format!("a/{rel}"))
            .arg("--label")
            .arg(format!("b/{rel}"))
            .arg(before)
            .arg(after)
            .output()
            .map_err(|e| Error::tool(format!("cannot run diff: {e}")))?;
        match out.status.code() {
            Some(0) => {}
            Some(1) => text.push_str(&String::from_utf8_lossy(&out.stdout)),
            _ => {
                return Err(
                    Error::tool(format!("diff failed: {}", String::from_utf8_lossy(&out.stderr).trim())).in_file(&now)
                );
            }
        }
    }
    patch::parse(Path::new("(the patches as applied)"), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_file_and_the_hunk() {
        let out = "checking file fs/proc/cmdline.c\nHunk #2 FAILED at 40.\n1 out of 2 hunks FAILED\n";
        let got = notes(out, |l| l.contains("FAILED"));
        assert_eq!(got[0], "fs/proc/cmdline.c: hunk #2 FAILED at 40");
        let out = "patching file fs/proc/version.c\nHunk #1 succeeded at 12 with fuzz 1 (offset 2 lines).\n";
        assert_eq!(
            notes(out, |l| l.contains("fuzz")),
            ["fs/proc/version.c: hunk #1 succeeded at 12 with fuzz 1 (offset 2 lines)"]
        );
    }
}
