//! What happens to a failing case: it is shrunk to the smallest request of
//! the same seed that still fails (fewer functions, fewer mutations), its
//! pair and truth are written under `target/`, and the line that keeps it
//! is printed, to be committed with the fix in
//! `proptests/regressions/<suite>.txt`, which every run replays before its
//! own cases (our counterpart of proptest's regression files, for a runner
//! whose cases are seeds).

use std::path::{Path, PathBuf};

use klp::synth::{Layout, Request};

/// The suite's regression file.
pub fn file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("proptests/regressions")
        .join(format!("{}.txt", env!("CARGO_CRATE_NAME")))
}

/// `--seed N --functions M --mutations K [--merged] [--sections-over-64k]`.
pub fn line(req: &Request) -> String {
    let merged = if req.layout.merged { " --merged" } else { "" };
    let many = if req.layout.sections_over_64k { " --sections-over-64k" } else { "" };
    format!("--seed {} --functions {} --mutations {}{merged}{many}", req.seed, req.functions, req.mutations)
}

pub fn parse_line(text: &str) -> Option<Request> {
    let mut req = Request { seed: 0, functions: 0, mutations: 0, layout: Layout::default() };
    let mut words = text.split_whitespace();
    let mut seen = 0;
    while let Some(w) = words.next() {
        match w {
            "--seed" => req.seed = words.next()?.parse().ok()?,
            "--functions" => req.functions = words.next()?.parse().ok()?,
            "--mutations" => req.mutations = words.next()?.parse().ok()?,
            "--merged" => req.layout.merged = true,
            "--sections-over-64k" => req.layout.sections_over_64k = true,
            _ => return None,
        }
        seen += 1;
    }
    (seen >= 3).then_some(req)
}

/// The requests kept in the suite's file (`#` starts a comment). A line
/// that does not parse fails the suite: a regression must not go silently.
pub fn kept() -> Vec<Request> {
    let Ok(text) = std::fs::read_to_string(file()) else { return Vec::new() };
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("{}: not a request: {l:?}", file().display())))
        .collect()
}

/// The smallest request of `req`'s seed and layout that `check` fails:
/// function counts 1, 2, 4, ... below `req`'s, each with 1 to `req`'s
/// mutations, first failing one wins; else `req`. A many-sections request
/// keeps its size (it is what makes it one).
pub fn shrink(req: &Request, check: &impl Fn(&Request) -> Result<(), String>) -> (Request, String) {
    let sizes: Vec<usize> = match req.layout.sections_over_64k {
        true => vec![req.functions],
        false => std::iter::successors(Some(1usize), |n| Some(n * 2)).take_while(|&n| n < req.functions).collect(),
    };
    for functions in sizes {
        for mutations in 1..=req.mutations.max(1) {
            let smaller = Request { functions, mutations, ..*req };
            if let Err(why) = check(&smaller) {
                return (smaller, why);
            }
        }
    }
    let why = check(req).err().unwrap_or_default();
    (*req, why)
}

/// Write the pair and truth of `req` under `target/`; where it went.
pub fn write_pair(req: &Request, why: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("synth-failures")
        .join(env!("CARGO_CRATE_NAME"))
        .join(format!("seed{}-f{}-m{}", req.seed, req.functions, req.mutations));
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(pair) = klp::synth::synthesize(req) {
        let _ = std::fs::write(dir.join("orig.o"), &pair.orig);
        let _ = std::fs::write(dir.join("patched.o"), &pair.patched);
        let _ = std::fs::write(dir.join("truth.json"), pair.answer.truth.to_json());
    }
    let _ = std::fs::write(dir.join("failure.txt"), format!("{}\n{why}\n", req.command()));
    dir
}

/// How to keep `req`: the line for the suite's file, also written next to
/// the pair. The tree is never written: a fault planted by hand to try a
/// property fails cases too, and those must not become regressions.
pub fn keep(req: &Request, dir: &Path) -> String {
    let entry = line(req);
    let _ = std::fs::write(dir.join("regression.txt"), format!("{entry}\n"));
    format!("to keep it, add `{entry}` to {}", file().display())
}

#[test]
fn lines_read_back_as_their_requests() {
    let req =
        Request { seed: 9, functions: 4, mutations: 2, layout: Layout { merged: true, sections_over_64k: false } };
    assert_eq!(parse_line(&line(&req)), Some(req));
    assert_eq!(parse_line("--seed 1"), None);
    assert_eq!(parse_line("--seed x --functions 1 --mutations 1"), None);
}
