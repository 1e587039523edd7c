//! Helpers of the property suites: the cases to run, the pair of a case,
//! and `klp diff` run in-process on it.
#![allow(dead_code)]

pub mod link;
pub mod regressions;

use std::path::Path;

use klp::diff::{DiffReport, Input};
use klp::pipeline::{DiffRequest, Verdict};
use klp::synth::{Layout, Pair, Request};

/// True under CI (`CI` set and not empty).
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Cases per suite: `PROPTEST_CASES`, else `default`.
pub fn case_count(default: usize) -> usize {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The first seed: `SYNTH_SEED`, else 0 (set it to explore other seeds).
pub fn first_seed() -> u64 {
    std::env::var("SYNTH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The request of case `i`: sizes and mutation counts vary with the seed;
/// the translation-unit form.
pub fn request(i: usize) -> Request {
    request_for_seed(first_seed().wrapping_add(i as u64))
}

/// The request of seed `seed`, as case `i` makes it.
pub fn request_for_seed(seed: u64) -> Request {
    let mix = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    let layout = Layout::default();
    Request { seed, functions: 20 + (mix % 140) as usize, mutations: 1 + (mix % 6) as usize, layout }
}

/// Case `i` of a suite that covers both forms: odd seeds in the merged
/// form of `vmlinux.o`, even ones in the translation-unit form.
pub fn request_in_either_form(i: usize) -> Request {
    let req = request(i);
    Request { layout: Layout { merged: req.seed % 2 == 1, ..req.layout }, ..req }
}

pub fn pair(req: &Request) -> Pair {
    klp::synth::synthesize(req).unwrap_or_else(|e| panic!("{}: synthesizer failed: {e}", req.command()))
}

/// What `klp diff ORIG PATCHED OUT --objname vmlinux` reports and decides.
pub struct Outcome {
    pub report: DiffReport,
    pub verdict: Verdict,
}

pub fn diff(orig: &[u8], patched: &[u8]) -> Result<Outcome, String> {
    run(&DiffRequest::vmlinux(Input::new(Path::new("a.o"), orig), Input::new(Path::new("b.o"), patched)))
}

/// The pipeline on `request`, its report without timings (they vary run to run).
fn run(request: &DiffRequest) -> Result<Outcome, String> {
    let outcome = klp::pipeline::diff(request).map_err(|e| e.to_string())?;
    let mut report = outcome.report;
    report.times = None;
    Ok(Outcome { report, verdict: outcome.verdict })
}

/// [`diff`] with `--parent PARENT` (a linked kernel): exact positions.
pub fn diff_with_parent(orig: &[u8], patched: &[u8], parent: &Path) -> Result<Outcome, String> {
    let parent = klp::kernel::kallsyms::ParentSymbols::read(parent).map_err(|e| e.to_string())?;
    let mut request = DiffRequest::vmlinux(Input::new(Path::new("a.o"), orig), Input::new(Path::new("b.o"), patched));
    request.extract.parent = Some(&parent);
    run(&request)
}

/// Where `klp diff`'s report and verdict differ from the pair's truth:
/// the changed, new, removed, line-only and refused sets, the new data,
/// and whether it refused.
pub fn truth_mismatches(pair: &Pair, got: &Outcome) -> Vec<String> {
    let (t, r) = (&pair.answer.truth, &got.report);
    let refused: Vec<String> = r.refusals.iter().map(|x| x.symbol.clone()).collect();
    let sets = [
        ("changed", &t.changed, sorted(&r.changed)),
        ("new", &t.new, sorted(&r.new_functions)),
        ("removed", &t.removed, sorted(&r.removed)),
        ("line_only", &t.line_only, sorted(&r.line_only)),
        ("refused", &t.refused, sorted(&refused)),
        ("new data", &pair.answer.new_data, sorted(&r.new_data)),
    ];
    let mut wrong: Vec<String> = (sets.into_iter().filter(|(_, want, got)| *want != got))
        .map(|(name, want, got)| format!("{name}: expected {want:?}, klp said {got:?}"))
        .collect();
    let refused_verdict = matches!(got.verdict, Verdict::Unpatchable(_));
    if refused_verdict == t.refused.is_empty() {
        wrong.push(format!("verdict {} but truth refused {:?}", verdict_name(&got.verdict), t.refused));
    }
    wrong
}

pub fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Unchanged => "unchanged",
        Verdict::Unpatchable(_) => "unpatchable",
        Verdict::Livepatch(_) => "livepatch",
    }
}

pub fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Run `check` on each case; collect failures, print the first few with
/// how to rebuild them, and fail if any. Asserts that cases ran.
pub fn run_cases(default: usize, check: impl Fn(&Request) -> Result<(), String>) {
    run_requests(default, request, check)
}

/// [`run_cases`] over both forms, half the cases each, and asserts that
/// both ran.
pub fn run_cases_in_both_forms(default: usize, check: impl Fn(&Request) -> Result<(), String>) {
    let merged = (0..case_count(default)).filter(|&i| request_in_either_form(i).layout.merged).count();
    assert!(case_count(default) < 2 || (merged > 0 && merged < case_count(default)), "one form only");
    eprintln!("{merged} cases in the merged form");
    run_requests(default, request_in_either_form, check)
}

fn run_requests(default: usize, request: fn(usize) -> Request, check: impl Fn(&Request) -> Result<(), String>) {
    let started = std::time::Instant::now();
    let kept = regressions::kept();
    let count = case_count(default);
    let mut failures = Vec::new();
    let mut ran = 0;
    for req in kept.iter().copied().chain((0..count).map(request)) {
        ran += 1;
        if let Err(why) = check(&req) {
            failures.push(failure(&req, why, &check));
        }
    }
    assert!(ran > 0 && ran == count + kept.len(), "no case ran");
    eprintln!(
        "{ran} cases ({} kept regressions) in {:.1} s, {} failed",
        kept.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed:\n{}",
        failures.len(),
        failures[..failures.len().min(80)].join("\n")
    );
}

/// A failure's report: why, how to rebuild it, and its shrunk form, whose
/// pair is written under `target/` and kept as a regression. Only the
/// first few failures of a run are shrunk (each shrink runs the check
/// tens of times).
fn failure(req: &Request, why: String, check: &impl Fn(&Request) -> Result<(), String>) -> String {
    static SHRUNK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut text = format!("seed {}: {why}\n  rebuild: {}", req.seed, req.command());
    if SHRUNK.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 5 {
        let (small, small_why) = regressions::shrink(req, check);
        let dir = regressions::write_pair(&small, &small_why);
        let kept = regressions::keep(&small, &dir);
        text += &format!("\n  shrunk: {} ({small_why}); pair in {}; {kept}", small.command(), dir.display());
    }
    text
}

/// Direct calls and jumps of OUT.o's functions that land outside their
/// function and have no relocation: a displacement copied from another
/// place, so a branch into whatever sits there now. Read with `object`
/// and decoded with iced-x86 here, not with klp's reader.
pub fn stale_branches(out: &[u8]) -> Result<Vec<String>, String> {
    use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
    let file = object::File::parse(out).map_err(|e| format!("OUT.o: {e}"))?;
    let mut stale = Vec::new();
    for sym in file.symbols().filter(|s| s.kind() == SymbolKind::Text && s.size() > 0) {
        let Some(sec) = sym.section_index().and_then(|i| file.section_by_index(i).ok()) else { continue };
        let data = sec.data().map_err(|e| e.to_string())?;
        let (start, end) = (sym.address(), sym.address() + sym.size());
        let Some(code) = data.get(start as usize..end as usize) else { continue };
        let relocated: Vec<u64> = sec.relocations().map(|(at, _)| at).collect();
        let mut decoder = iced_x86::Decoder::with_ip(64, code, start, iced_x86::DecoderOptions::NONE);
        for insn in decoder.iter() {
            let near = matches!(insn.op0_kind(), iced_x86::OpKind::NearBranch32 | iced_x86::OpKind::NearBranch64);
            let lands_inside = (start..end).contains(&insn.near_branch_target());
            let has_reloc = relocated.iter().any(|&at| at >= insn.ip() && at < insn.next_ip());
            if near && !lands_inside && !has_reloc {
                stale.push(format!("{}+{:#x}", sym.name().unwrap_or("?"), insn.ip() - start));
            }
        }
    }
    Ok(stale)
}
