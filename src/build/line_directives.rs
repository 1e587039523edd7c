//! Keep `__LINE__` of unchanged code as it was (upstream's
//! `fix-patch-lines`, our own implementation).
//!
//! A patch that adds or removes lines near the top of a file moves every
//! line below, and with them the `__LINE__` that `WARN()`, `might_sleep()`
//! and `pr_*` users compile into their code: functions the patch did not
//! touch would differ. After each run of added or removed lines in a `.c`
//! or `.h` file, an added `#line N` before the next context line gives that
//! line its old number N again.

use super::patch::{Hunk, Line, LineKind, Patch};

/// Where a directive could not go: the run of changes ends inside a macro
/// (the line before ends with `\`) and the macro does not end within the
/// hunk. Code below it keeps the shifted numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    /// The old-file line the directive would have restored.
    pub old_line: u32,
}

/// `patch` with `#line` directives added; and the places where none could go.
pub fn add_line_directives(patch: &Patch) -> (Patch, Vec<Skipped>) {
    let mut out = patch.clone();
    let mut skipped = Vec::new();
    for file in &mut out.files {
        let path = file.path().to_owned();
        if !is_c_source(&path) || file.is_added() || file.is_removed() {
            continue;
        }
        // Lines added by earlier hunks move the new-file start of later ones.
        let mut inserted = 0;
        for hunk in &mut file.hunks {
            let before = hunk.lines.len();
            hunk.new_start += inserted;
            if let Some(old_line) = rewrite_hunk(hunk) {
                skipped.push(Skipped { path: path.clone(), old_line });
            }
            inserted += (hunk.lines.len() - before) as u32;
        }
    }
    (out, skipped)
}

fn is_c_source(path: &str) -> bool {
    path.ends_with(".c") || path.ends_with(".h")
}

/// Insert the directives of one hunk; the old line of a directive that had
/// nowhere to go.
fn rewrite_hunk(hunk: &mut Hunk) -> Option<u32> {
    let trailing_before = trailing_context(&hunk.lines);
    let mut lines = Vec::with_capacity(hunk.lines.len() + 4);
    let mut old_line = hunk.old_start;
    // A run of changes ended and its directive is still to be placed.
    let mut pending = false;
    // The last line of the new file so far ends with `\`: a directive
    // here would land inside a macro definition.
    let mut continued = false;
    for line in hunk.lines.drain(..) {
        match line.kind {
            LineKind::Context => {
                if pending && !continued {
                    lines.push(Line::added(format!("#line {old_line}")));
                    pending = false;
                }
                old_line += 1;
            }
            LineKind::Removed => {
                pending = true;
                old_line += 1;
            }
            LineKind::Added => pending = true,
        }
        if line.in_new() {
            continued = line.text.ends_with('\\');
        }
        lines.push(line);
    }
    hunk.lines = lines;
    balance_context(hunk, trailing_before);
    // A run at the end of the hunk with context before it was placed; one
    // that ends the hunk is at the end of the file, where no line follows.
    let ends_in_change = hunk.lines.last().is_some_and(|l| l.kind != LineKind::Context);
    (pending && !ends_in_change).then_some(old_line)
}

fn leading_context(lines: &[Line]) -> usize {
    lines.iter().take_while(|l| l.kind == LineKind::Context).count()
}

fn trailing_context(lines: &[Line]) -> usize {
    lines.iter().rev().take_while(|l| l.kind == LineKind::Context).count()
}

/// GNU patch takes a hunk with less context after its changes than before
/// them for one at the end of the file, and applies it elsewhere only with
/// fuzz. A directive that waited for the end of a macro shortens the
/// context after; drop as many lines of context before.
fn balance_context(hunk: &mut Hunk, trailing_before: usize) {
    let (leading, trailing) = (leading_context(&hunk.lines), trailing_context(&hunk.lines));
    if trailing >= trailing_before || trailing >= leading {
        return;
    }
    let drop = leading - trailing;
    hunk.lines.drain(..drop);
    hunk.old_start += drop as u32;
    hunk.new_start += drop as u32;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::patch::{parse, write};
    use std::path::Path;

    fn rewrite(text: &str) -> (String, Vec<Skipped>) {
        let (p, skipped) = add_line_directives(&parse(Path::new("t.patch"), text).unwrap());
        (write(&p), skipped)
    }

    #[test]
    fn a_directive_follows_each_run_of_changes_with_the_old_line() {
        // Two runs in one hunk: an addition, then a replacement.
        let text = "--- a/k.c\n+++ b/k.c\n@@ -10,6 +10,7 @@\n a\n+new\n b\n c\n-d\n+e\n f\n g\n";
        let (got, skipped) = rewrite(text);
        let want = "--- a/k.c\n+++ b/k.c\n@@ -10,6 +10,9 @@\n a\n+new\n+#line 11\n b\n c\n-d\n+e\n+#line 14\n f\n g\n";
        assert_eq!(got, want);
        assert!(skipped.is_empty());
    }

    #[test]
    fn removed_lines_only_and_several_hunks() {
        let text =
            "--- a/k.c\n+++ b/k.c\n@@ -1,4 +1,3 @@\n a\n-b\n c\n d\n@@ -40,3 +39,4 @@ int f(void)\n x\n+y\n z\n w\n";
        let (got, _) = rewrite(text);
        let want = "--- a/k.c\n+++ b/k.c\n@@ -1,4 +1,4 @@\n a\n-b\n+#line 3\n c\n d\n@@ -40,3 +40,5 @@ int f(void)\n x\n+y\n+#line 41\n z\n w\n";
        assert_eq!(got, want);
    }

    #[test]
    fn headers_too_but_not_other_files_or_whole_new_files() {
        let h = "--- a/include/k.h\n+++ b/include/k.h\n@@ -5,3 +5,4 @@\n a\n+b\n c\n d\n";
        assert!(rewrite(h).0.contains("+#line 6\n"));
        for path in ["Makefile", "arch/x86/entry.S", "Documentation/k.rst"] {
            let other = h.replace("include/k.h", path);
            assert_eq!(rewrite(&other).0, other, "{path}");
        }
        let added = "--- /dev/null\n+++ b/k.c\n@@ -0,0 +1,2 @@\n+int a;\n+int b;\n";
        assert_eq!(rewrite(added).0, added);
    }

    #[test]
    fn a_change_at_the_end_of_the_file_needs_none() {
        let text = "--- a/k.c\n+++ b/k.c\n@@ -8,3 +8,3 @@\n a\n b\n-c\n\\ No newline at end of file\n+c;\n";
        let (got, skipped) = rewrite(text);
        assert_eq!(got, text);
        assert!(skipped.is_empty());
    }

    #[test]
    fn a_file_without_a_trailing_newline_keeps_its_marker() {
        let text = "--- a/k.c\n+++ b/k.c\n@@ -1,2 +1,3 @@\n+x\n a\n b\n\\ No newline at end of file\n";
        let (got, _) = rewrite(text);
        assert_eq!(got, "--- a/k.c\n+++ b/k.c\n@@ -1,2 +1,4 @@\n+x\n+#line 1\n a\n b\n\\ No newline at end of file\n");
    }

    #[test]
    fn never_inside_a_macro_definition() {
        // The change ends on a continued line: the directive waits for the
        // macro's last line.
        let text = "--- a/k.c\n+++ b/k.c\n@@ -1,5 +1,6 @@\n #define M(x) \\\n+\tfoo(x); \\\n \tbar(x); \\\n \tbaz(x)\n int a;\n int b;\n";
        let (got, skipped) = rewrite(text);
        assert!(got.contains(" \tbaz(x)\n+#line 4\n int a;\n"), "{got}");
        assert!(skipped.is_empty());
        // Three lines of context after the changes became two: the hunk
        // keeps two before them, so that patch does not take it for the
        // end of the file.
        let text =
            "--- a/k.c\n+++ b/k.c\n@@ -1,6 +1,7 @@\n x\n y\n #define M \\\n+\tfoo(); \\\n \tbar()\n int a;\n int b;\n";
        let (got, _) = rewrite(text);
        let want = "--- a/k.c\n+++ b/k.c\n@@ -2,5 +2,7 @@\n y\n #define M \\\n+\tfoo(); \\\n \tbar()\n+#line 5\n int a;\n int b;\n";
        assert_eq!(got, want);
        // A macro that outlasts the hunk: no directive, and it is said.
        let text = "--- a/k.c\n+++ b/k.c\n@@ -1,2 +1,3 @@\n #define M(x) \\\n+\tfoo(x); \\\n \tbar(x); \\\n";
        let (got, skipped) = rewrite(text);
        assert!(!got.contains("#line"), "{got}");
        assert_eq!(skipped, [Skipped { path: "k.c".into(), old_line: 3 }]);
    }
}
