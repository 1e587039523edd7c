//! Exactness: for synthesized pairs with known answers, `klp diff` reports
//! exactly the changed, new, removed, line-only and refused functions (and
//! the new data) that the mutations imply, in both forms; and no branch
//! of OUT.o leaves its function without a relocation (in the merged form
//! gas resolves calls between a unit's functions itself).

mod common;

use klp::pipeline::Verdict;
use klp::synth::Request;

fn check(req: &Request) -> Result<(), String> {
    let pair = common::pair(req);
    let got = common::diff(&pair.orig, &pair.patched)?;
    let t = &pair.answer.truth;
    let r = &got.report;
    let refused: Vec<String> = r.refusals.iter().map(|x| x.symbol.clone()).collect();
    let sets = [
        ("changed", &t.changed, common::sorted(&r.changed)),
        ("new", &t.new, common::sorted(&r.new_functions)),
        ("removed", &t.removed, common::sorted(&r.removed)),
        ("line_only", &t.line_only, common::sorted(&r.line_only)),
        ("refused", &t.refused, common::sorted(&refused)),
        ("new data", &pair.answer.new_data, common::sorted(&r.new_data)),
    ];
    let mut wrong = Vec::new();
    for (name, want, got) in sets {
        if *want != got {
            wrong.push(format!("{name}: expected {want:?}, klp said {got:?}"));
        }
    }
    if let Verdict::Livepatch(out) = &got.verdict {
        let stale = common::stale_branches(out)?;
        if !stale.is_empty() {
            wrong.push(format!("OUT.o branches without a relocation out of their function: {stale:?}"));
        }
    }
    let refused_verdict = matches!(got.verdict, Verdict::Unpatchable(_));
    if refused_verdict == t.refused.is_empty() {
        wrong.push(format!("verdict {:?} but truth refused {:?}", verdict_name(&got.verdict), t.refused));
    }
    if wrong.is_empty() {
        return Ok(());
    }
    Err(format!("mutations {:?}: {}", pair.applied, wrong.join("; ")))
}

fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Unchanged => "unchanged",
        Verdict::Unpatchable(_) => "unpatchable",
        Verdict::Livepatch(_) => "livepatch",
    }
}

#[test]
fn klp_diff_reports_exactly_the_truth() {
    common::run_cases_in_both_forms(512, check);
}
