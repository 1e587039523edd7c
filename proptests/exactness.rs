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
    let mut wrong = common::truth_mismatches(&pair, &got);
    if let Verdict::Livepatch(out) = &got.verdict {
        let stale = common::stale_branches(out)?;
        if !stale.is_empty() {
            wrong.push(format!("OUT.o branches without a relocation out of their function: {stale:?}"));
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    Err(format!("mutations {:?}: {}", pair.applied, wrong.join("; ")))
}

#[test]
fn klp_diff_reports_exactly_the_truth() {
    common::run_cases_in_both_forms(512, check);
}

/// Found by the merged form: two function-local statics in one shared
/// `.bss`, one removed with its function; `addl $N, x(%rip)` has its field
/// 5 bytes before the end of the instruction, and correlation read every
/// PC-relative reference with a bias of 4, so it saw the user of the
/// variable before `x`, could not pair `state` and reported it as new data.
#[test]
fn regression_seed_2009_merged_statics_in_one_bss() {
    let req = common::request_in_either_form(2009 - common::first_seed() as usize);
    assert!(req.layout.merged && req.seed == 2009);
    check(&req).unwrap();
}
