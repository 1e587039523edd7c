//! Determinism: a seed means the same objects and the same truth, and the
//! same pair gives a byte-identical OUT.o, run to run and whatever the
//! number of threads the diff runs on.

mod common;

use klp::pipeline::Verdict;
use klp::synth::Request;

fn out_bytes(orig: &[u8], patched: &[u8], threads: usize) -> Result<Option<Vec<u8>>, String> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| e.to_string())?;
    let outcome = pool.install(|| common::diff(orig, patched))?;
    Ok(match outcome.verdict {
        Verdict::Livepatch(bytes) => Some(bytes),
        _ => None,
    })
}

fn check(req: &Request) -> Result<(), String> {
    let (a, b) = (common::pair(req), common::pair(req));
    if a.orig != b.orig || a.patched != b.patched {
        return Err("the same request gave different objects".into());
    }
    if a.answer != b.answer {
        return Err(format!("the same request gave different truths: {:?} / {:?}", a.answer, b.answer));
    }
    let one = out_bytes(&a.orig, &a.patched, 1)?;
    let two = out_bytes(&a.orig, &a.patched, 2)?;
    let again = out_bytes(&a.orig, &a.patched, 2)?;
    if one != two || two != again {
        return Err("OUT.o differs between runs (1 thread, 2 threads, 2 threads again)".into());
    }
    Ok(())
}

#[test]
fn same_seed_same_objects_same_pair_same_output() {
    common::run_cases_in_both_forms(512, check);
}

#[test]
fn different_seeds_give_different_objects() {
    // A constant synthesizer would pass the suite above.
    let one = Request { seed: 1, functions: 50, mutations: 2, layout: Default::default() };
    let (a, b) = (common::pair(&one), common::pair(&Request { seed: 2, ..one }));
    assert_ne!(a.orig, b.orig);
    assert_ne!(a.orig, a.patched);
    // The form changes the layout, not the program (400 functions: enough
    // units that one in four shares its sections).
    let units = Request { functions: 400, ..one };
    let merged = klp::synth::Layout { merged: true, sections_over_64k: false };
    let (tu, merged) = (common::pair(&units), common::pair(&Request { layout: merged, ..units }));
    assert_ne!(merged.orig, tu.orig);
    assert_eq!(merged.answer, tu.answer);
}
