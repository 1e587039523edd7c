//! Re-linking: every OUT.o `klp diff` writes for a synthesized pair links
//! with the module skeleton by `ld -r -T verify/common/module.lds` (as
//! `verify/common/module.rs` does) with nothing on stderr, `readelf -a -W`
//! is silent on OUT.o and on the linked module, and every relocation of
//! OUT.o lies within its section (read with the `object` crate, not klp's
//! reader).

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::link;
use klp::synth::Request;

/// Cases by default: about half make a livepatch, each linked with ld and
/// read by readelf twice; 8192 cases took 37 s on the two-core machine
/// under load from another build (about 4100 livepatches linked).
const CASES: usize = 8192;

fn check(req: &Request, dir: &Path, livepatches: &AtomicUsize) -> Result<(), String> {
    let Some(l) = link::diff_and_link(req, dir)? else {
        return Ok(());
    };
    livepatches.fetch_add(1, Ordering::Relaxed);
    link::readelf_silent(&l.out).map_err(|e| format!("OUT.o: {e}"))?;
    link::readelf_silent(&l.module).map_err(|e| format!("module: {e}"))?;
    link::relocations_in_bounds(&l.out_bytes).map_err(|e| format!("OUT.o: {e} (mutations {:?})", l.pair.applied))?;
    l.clean()
}

#[test]
fn out_links_with_the_skeleton_and_stays_in_bounds() {
    if !link::tools_present("synth_relink") {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("synth-relink");
    let livepatches = AtomicUsize::new(0);
    common::run_cases(CASES, |req| check(req, &dir, &livepatches));
    let n = livepatches.load(Ordering::Relaxed);
    eprintln!("{n} of {} cases made a livepatch and were linked", common::case_count(CASES));
    assert!(n > 0, "no case made a livepatch");
    // About half the seeds make a livepatch (125 of the first 256); the
    // others are refused (changed data or __init code) or change nothing
    // but lines. Fewer than a quarter would mean the suite stopped testing.
    assert!(n * 4 >= common::case_count(CASES), "only {n} cases made a livepatch");
}
