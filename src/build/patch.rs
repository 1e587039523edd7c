//! Unified diffs (`diff -u`, `git diff`, `git format-patch`) as data: the
//! files a patch touches, their hunks and lines. Parsing checks every hunk's
//! counts against its lines; writing recounts them, so that a rewrite may
//! add or drop lines freely.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};

/// A whole patch: text before the first file (a commit message), then files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub preamble: Vec<String>,
    pub files: Vec<FilePatch>,
}

/// The changes to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    /// Lines before `---` (`diff --git`, `index`, mode lines), kept as they are.
    pub header: Vec<String>,
    /// The `---` and `+++` lines' text after the marker (`a/fs/x.c`, `/dev/null`).
    pub old: String,
    pub new: String,
    pub hunks: Vec<Hunk>,
    /// Lines after the last hunk that belong to no file (a `-- ` signature).
    pub trailer: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// First line of the hunk in the old and new file (1-based; 0 for an empty side).
    pub old_start: u32,
    pub new_start: u32,
    /// What follows the second `@@` (the enclosing function, as diff guesses it).
    pub section: String,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Context,
    Removed,
    Added,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub kind: LineKind,
    pub text: String,
    /// Followed by `\ No newline at end of file`.
    pub no_newline: bool,
}

impl Line {
    pub fn added(text: impl Into<String>) -> Self {
        Line { kind: LineKind::Added, text: text.into(), no_newline: false }
    }

    /// In the old file (context or removed).
    pub fn in_old(&self) -> bool {
        self.kind != LineKind::Added
    }

    /// In the new file (context or added).
    pub fn in_new(&self) -> bool {
        self.kind != LineKind::Removed
    }
}

impl FilePatch {
    /// The path the patch gives the file, without git's `a/`/`b/` prefix
    /// and any timestamp (`/dev/null` for an added or removed file's other side).
    pub fn path(&self) -> &str {
        let name = if self.new == "/dev/null" || self.new.starts_with("/dev/null\t") { &self.old } else { &self.new };
        let name = name.split('\t').next().unwrap_or(name);
        name.strip_prefix("b/").or_else(|| name.strip_prefix("a/")).unwrap_or(name)
    }

    pub fn is_added(&self) -> bool {
        self.old.split('\t').next() == Some("/dev/null")
    }

    pub fn is_removed(&self) -> bool {
        self.new.split('\t').next() == Some("/dev/null")
    }
}

impl Hunk {
    pub fn old_count(&self) -> u32 {
        self.lines.iter().filter(|l| l.in_old()).count() as u32
    }

    pub fn new_count(&self) -> u32 {
        self.lines.iter().filter(|l| l.in_new()).count() as u32
    }
}

/// Parse `text`, the contents of the patch file `path` (named in errors
/// with the line they are about).
pub fn parse(path: &Path, text: &str) -> Result<Patch> {
    Parser { path, lines: text.lines().collect(), at: 0 }.patch()
}

struct Parser<'t> {
    path: &'t Path,
    lines: Vec<&'t str>,
    at: usize,
}

impl<'t> Parser<'t> {
    fn error(&self, line: usize, message: String) -> Error {
        Error::malformed(format!("line {}: {message}", line + 1)).in_file(self.path)
    }

    fn peek(&self) -> Option<&'t str> {
        self.lines.get(self.at).copied()
    }

    /// The next file's header lines: everything up to a `---` followed by `+++`.
    fn header(&mut self) -> Option<Vec<String>> {
        let start = self.at;
        while self.at + 1 < self.lines.len() {
            if self.lines[self.at].starts_with("--- ") && self.lines[self.at + 1].starts_with("+++ ") {
                return Some(self.lines[start..self.at].iter().map(|l| l.to_string()).collect());
            }
            self.at += 1;
        }
        self.at = start;
        None
    }

    fn patch(mut self) -> Result<Patch> {
        let mut files = Vec::new();
        let mut preamble = None;
        while let Some(header) = self.header() {
            let (lead, header) = match preamble {
                // Before the first file: the commit message, then `diff --git`
                // and `index` lines, which belong to the file.
                None => split_preamble(header),
                Some(_) => (Vec::new(), header),
            };
            preamble.get_or_insert(lead);
            files.push(self.file(header)?);
        }
        if files.is_empty() {
            return Err(Error::malformed("no file changes in the patch (no `---`/`+++` lines)").in_file(self.path));
        }
        // Whatever follows the last hunk stays with the last file.
        let rest: Vec<String> = self.lines[self.at..].iter().map(|l| l.to_string()).collect();
        if let Some(last) = files.last_mut() {
            last.trailer.extend(rest);
        }
        Ok(Patch { preamble: preamble.unwrap_or_default(), files })
    }

    fn file(&mut self, header: Vec<String>) -> Result<FilePatch> {
        let old = self.lines[self.at]["--- ".len()..].to_owned();
        let new = self.lines[self.at + 1]["+++ ".len()..].to_owned();
        self.at += 2;
        let mut file = FilePatch { header, old, new, hunks: Vec::new(), trailer: Vec::new() };
        while self.peek().is_some_and(|l| l.starts_with("@@ ")) {
            file.hunks.push(self.hunk()?);
        }
        if file.hunks.is_empty() {
            return Err(self.error(self.at, format!("no hunk for {}", file.path())));
        }
        Ok(file)
    }

    fn hunk(&mut self) -> Result<Hunk> {
        let at = self.at;
        let (old_start, old_count, new_start, new_count, section) =
            parse_hunk_header(self.lines[at]).ok_or_else(|| self.error(at, "not a hunk header".into()))?;
        self.at += 1;
        let mut hunk = Hunk { old_start, new_start, section, lines: Vec::new() };
        let (mut old, mut new) = (0u32, 0u32);
        while old < old_count || new < new_count {
            let Some(text) = self.peek() else { break };
            let kind = match text.as_bytes().first() {
                Some(b' ') => LineKind::Context,
                // Some tools drop the space of an empty context line.
                None => LineKind::Context,
                Some(b'-') => LineKind::Removed,
                Some(b'+') => LineKind::Added,
                Some(b'\\') => {
                    self.no_newline(&mut hunk)?;
                    continue;
                }
                _ => break,
            };
            let line = Line { kind, text: text.get(1..).unwrap_or_default().to_owned(), no_newline: false };
            old += u32::from(line.in_old());
            new += u32::from(line.in_new());
            hunk.lines.push(line);
            self.at += 1;
        }
        if old != old_count || new != new_count {
            let counts = format!("-{old_count} +{new_count}");
            return Err(self.error(at, format!("hunk says {counts} lines but has -{old} +{new}")));
        }
        // A marker after the hunk's last line.
        if self.peek().is_some_and(|l| l.starts_with('\\')) {
            self.no_newline(&mut hunk)?;
        }
        Ok(hunk)
    }

    fn no_newline(&mut self, hunk: &mut Hunk) -> Result<()> {
        let at = self.at;
        let last = hunk.lines.last_mut().ok_or_else(|| self.error(at, "`\\` marker before any line".into()))?;
        last.no_newline = true;
        self.at += 1;
        Ok(())
    }
}

/// `From`/`Subject`/message lines, then the `diff`/`index` lines of the file.
fn split_preamble(mut header: Vec<String>) -> (Vec<String>, Vec<String>) {
    let file_start = header.iter().rposition(|l| l.starts_with("diff ")).unwrap_or(header.len());
    let file = header.split_off(file_start);
    (header, file)
}

/// `@@ -12,7 +12,8 @@ int foo(void)`: starts, counts (1 when left out) and section.
fn parse_hunk_header(line: &str) -> Option<(u32, u32, u32, u32, String)> {
    let rest = line.strip_prefix("@@ -")?;
    let (ranges, section) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let range = |r: &str| -> Option<(u32, u32)> {
        match r.split_once(',') {
            Some((s, c)) => Some((s.parse().ok()?, c.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let ((os, oc), (ns, nc)) = (range(old)?, range(new)?);
    Some((os, oc, ns, nc, section.to_owned()))
}

/// The patch as text, each hunk's counts recomputed from its lines.
pub fn write(patch: &Patch) -> String {
    let mut out = String::new();
    for l in &patch.preamble {
        let _ = writeln!(out, "{l}");
    }
    for f in &patch.files {
        for l in &f.header {
            let _ = writeln!(out, "{l}");
        }
        let _ = writeln!(out, "--- {}\n+++ {}", f.old, f.new);
        for h in &f.hunks {
            let range = |start: u32, count: u32| match count {
                1 => format!("{start}"),
                _ => format!("{start},{count}"),
            };
            let (old, new) = (range(h.old_start, h.old_count()), range(h.new_start, h.new_count()));
            let _ = writeln!(out, "@@ -{old} +{new} @@{}", h.section);
            for l in &h.lines {
                let marker = match l.kind {
                    LineKind::Context => ' ',
                    LineKind::Removed => '-',
                    LineKind::Added => '+',
                };
                let _ = writeln!(out, "{marker}{}", l.text);
                if l.no_newline {
                    out.push_str("\\ No newline at end of file\n");
                }
            }
        }
        for l in &f.trailer {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIT: &str = "From 1234 Mon Sep 17 00:00:00 2001
Subject: [PATCH] demo: change

A message.
---
 fs/demo.c | 3 ++-
diff --git a/fs/demo.c b/fs/demo.c
index 111..222 100644
--- a/fs/demo.c
+++ b/fs/demo.c
@@ -10,6 +10,7 @@ static int demo(void)
 \tint a;
 \tint b;
-\ta = 1;
+\ta = 2;
+\tb = 3;
 \treturn a;
 }
 
-- 
2.39.2
";

    #[test]
    fn a_git_patch_reads_and_writes_back_as_it_was() {
        let p = parse(Path::new("x.patch"), GIT).unwrap();
        assert_eq!(p.preamble.len(), 6, "{:?}", p.preamble);
        let f = &p.files[0];
        assert_eq!(f.header, ["diff --git a/fs/demo.c b/fs/demo.c", "index 111..222 100644"]);
        assert_eq!((f.path(), f.hunks.len()), ("fs/demo.c", 1));
        let h = &f.hunks[0];
        assert_eq!((h.old_start, h.old_count(), h.new_start, h.new_count()), (10, 6, 10, 7));
        assert_eq!(h.section, " static int demo(void)");
        assert_eq!(f.trailer, ["-- ", "2.39.2"]);
        assert_eq!(write(&p), GIT);
    }

    #[test]
    fn missing_newline_markers_stay_on_their_lines() {
        let text = "--- a/x.c\n+++ b/x.c\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n";
        let p = parse(Path::new("x.patch"), text).unwrap();
        let lines = &p.files[0].hunks[0].lines;
        assert!(!lines[0].no_newline && lines[1].no_newline && lines[2].no_newline);
        assert_eq!(write(&p), text);
    }

    #[test]
    fn added_and_removed_files_and_single_line_ranges() {
        let text = "--- /dev/null\n+++ b/new.h\n@@ -0,0 +1 @@\n+#define X 1\n--- a/old.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-int x;\n";
        let p = parse(Path::new("x.patch"), text).unwrap();
        assert_eq!(p.files.len(), 2);
        assert!(p.files[0].is_added() && p.files[0].path() == "new.h");
        assert!(p.files[1].is_removed() && p.files[1].path() == "old.c");
        assert_eq!(write(&p), text);
    }

    #[test]
    fn wrong_counts_and_garbage_are_errors_naming_the_line() {
        let short = "--- a/x.c\n+++ b/x.c\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n";
        let e = parse(Path::new("p.patch"), short).unwrap_err().to_string();
        assert!(e.contains("p.patch") && e.contains("line 3") && e.contains("-3 +3"), "{e}");
        let e = parse(Path::new("p.patch"), "hello\n").unwrap_err().to_string();
        assert!(e.contains("no file changes"), "{e}");
        let e = parse(Path::new("p.patch"), "--- a/x.c\n+++ b/x.c\n@@ -x +1 @@\n").unwrap_err().to_string();
        assert!(e.contains("line 3: not a hunk header"), "{e}");
    }
}
