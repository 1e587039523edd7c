//! Growth of the whole `klp diff` with the size of the object: synthesized
//! pairs in the `ld -r` merged form of `vmlinux.o` (`klp synth --merged`)
//! of 1k, 10k, 100k and 300k functions, each generated once, outside the
//! timed loop. The target is linear growth: from 10k to 300k functions
//! (30 times the work) the time should grow at most 35 times.
//!
//! `cargo bench -p klp-benches --bench synth`; `SYNTH_BENCH_SIZES=1000,10000`
//! runs fewer sizes.
//!
//! Measured on the 2-core machine at 4bcf32b (2026-12-04): one full run
//! gave 5.08 ms, 59.7 ms, 685 ms and 2.08 s; eleven runs of 10k and 300k
//! alone (`SYNTH_BENCH_SIZES=10000,300000`) gave 300k/10k ratios from 24
//! to 43, median 31. The ratio is highest when the machine is fastest: the
//! 10k case (38-104 ms) speeds up more than the 300k one (1.62-2.51 s),
//! whose time is mostly waiting on memory; the fastest runs of each give
//! 42. Synthesis takes 0.3 s, 2.8 s and 8.7 s for 10k, 100k and 300k.
//! Before a91899e (a function's key asked about every cold part of its
//! section; the funnel compared every static of a name with every other):
//! 23.7 ms, 283 ms, 5.08 s and 20.0 s under load, 71 times.

#[macro_use]
mod harness;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group};
use klp::diff::Input;
use klp::pipeline::{DiffRequest, diff};
use klp::synth::{Layout, Request, synthesize};

const SIZES: &[usize] = &[1_000, 10_000, 100_000, 300_000];

fn sizes() -> Vec<usize> {
    match std::env::var("SYNTH_BENCH_SIZES") {
        Ok(list) => list.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => SIZES.to_vec(),
    }
}

/// A merged-form pair of `functions` functions with a few mutations.
fn pair(functions: usize) -> klp::synth::Pair {
    let layout = Layout { merged: true, sections_over_64k: false };
    let req = Request { seed: 1, functions, mutations: 6, layout };
    let started = Instant::now();
    let pair = synthesize(&req).unwrap_or_else(|e| panic!("{}: {e}", req.command()));
    eprintln!(
        "{}: {:.1} s, {} + {} bytes",
        req.command(),
        started.elapsed().as_secs_f64(),
        pair.orig.len(),
        pair.patched.len()
    );
    pair
}

/// `klp diff ORIG PATCHED OUT --objname vmlinux` in-process, OUT.o written to memory.
fn whole_diff(orig: &[u8], patched: &[u8]) -> usize {
    let request = DiffRequest::vmlinux(Input::new(Path::new("a.o"), orig), Input::new(Path::new("b.o"), patched));
    let outcome = diff(&request).unwrap();
    outcome.report.changed.len()
}

fn synthesized(c: &mut Criterion) {
    let mut g = c.benchmark_group("synth-merged-diff");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for functions in sizes() {
        let pair = pair(functions);
        g.bench_with_input(BenchmarkId::from_parameter(functions), &pair, |b, p| {
            b.iter(|| black_box(whole_diff(&p.orig, &p.patched)))
        });
    }
    g.finish();
}

criterion_group!(benches, synthesized);
main_like_klp!(benches);
