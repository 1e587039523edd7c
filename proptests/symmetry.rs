//! Self-diff and reverse diff: an object diffed against itself reports
//! nothing and writes nothing; the pair diffed the other way round reports
//! the same changed and line-only functions with new and removed swapped.

mod common;

use klp::elf::demangle;
use klp::pipeline::Verdict;
use klp::synth::Request;

fn self_diff(which: &str, bytes: &[u8]) -> Result<(), String> {
    let got = common::diff(bytes, bytes)?;
    let r = &got.report;
    let quiet = r.changed.is_empty()
        && r.new_functions.is_empty()
        && r.removed.is_empty()
        && r.line_only.is_empty()
        && r.new_data.is_empty()
        && r.refusals.is_empty()
        && r.uncorrelated.is_empty();
    match (quiet, &got.verdict) {
        (true, Verdict::Unchanged) => Ok(()),
        _ => Err(format!("{which} against itself: {r:?}")),
    }
}

/// Names without `.N` suffixes, sorted: renumbering mutations rename
/// twins, and each direction prints its own patched side's names.
fn stems(names: &[String]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|n| demangle(n).to_owned()).collect();
    v.sort();
    v
}

fn check(req: &Request) -> Result<(), String> {
    let pair = common::pair(req);
    self_diff("the original", &pair.orig)?;
    self_diff("the patched object", &pair.patched)?;
    if !pair.answer.truth.refused.is_empty() {
        return Ok(());
    }
    let f = common::diff(&pair.orig, &pair.patched)?.report;
    let b = common::diff(&pair.patched, &pair.orig)?.report;
    let pairs = [
        ("changed", stems(&f.changed), stems(&b.changed)),
        ("line-only", stems(&f.line_only), stems(&b.line_only)),
        ("new -> removed", common::sorted(&f.new_functions), common::sorted(&b.removed)),
        ("removed -> new", common::sorted(&f.removed), common::sorted(&b.new_functions)),
    ];
    for (what, forward, backward) in pairs {
        if forward != backward {
            return Err(format!("{what}: forward {forward:?}, backward {backward:?} (mutations {:?})", pair.applied));
        }
    }
    Ok(())
}

#[test]
fn self_diff_is_silent_and_reverse_diff_mirrors() {
    common::run_cases_in_both_forms(512, check);
}
