//! `klp diff` at vmlinux.o scale: the whole diff and each stage alone, on
//! the Linux 6.12 pairs in ../shared/kernel (slim and defconfig; skipped,
//! saying so, when absent), on the largest kpatch pair, and the floor: the
//! least work any differ must do (walk every section header, symbol and
//! relocation of both objects and hash every executable section).
//!
//! `cargo bench --bench diff`; compare two runs with criterion baselines:
//! `cargo bench --bench diff -- --save-baseline before`, change, then
//! `cargo bench --bench diff -- --baseline before`.

#[macro_use]
mod harness;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use klp::diff::{DiffOptions, analyze_bytes, stages};
use klp::elf::ElfObject;
use klp::extract::ExtractOptions;
use klp::kernel::kallsyms::ParentSymbols;
use klp::kernel::symvers::Exports;
use klp::pipeline::{DiffRequest, diff};

mod assets;
use assets::{Pair, kernel_pair, largest_kpatch_pair};

fn kernel(c: &mut Criterion, name: &str) {
    let Some(pair) = kernel_pair(name) else { return };
    let mut g = c.benchmark_group(format!("kernel-{name}"));
    g.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    let opts = DiffOptions::default();
    let (o, p) = (pair.orig_input(), pair.patched_input());
    g.bench_function("read", |b| b.iter(|| black_box(ElfObject::parse(o.path, o.data).unwrap())));
    let orig = ElfObject::parse(o.path, o.data).unwrap();
    let specials = stages::special_index(&orig, &opts).unwrap();
    g.bench_function("special-index", |b| b.iter(|| black_box(stages::special_index(&orig, &opts).unwrap())));
    g.bench_function("checksum", |b| b.iter(|| black_box(stages::checksums(&orig, &specials))));
    let io = stages::index(ElfObject::parse(o.path, o.data).unwrap(), &opts).unwrap();
    let ip = stages::index(ElfObject::parse(p.path, p.data).unwrap(), &opts).unwrap();
    g.bench_function("correlate", |b| b.iter(|| black_box(stages::correlate(&io, &ip))));
    let pairs = stages::correlate(&io, &ip);
    g.bench_function("classify", |b| b.iter(|| black_box(stages::classify(&io, &ip, &pairs))));
    let analysis = analyze_bytes(o, p, &opts).unwrap();
    let extract = ExtractOptions { objname: Some("vmlinux".into()), ..Default::default() };
    g.bench_function("extract", |b| b.iter(|| black_box(klp::extract::extract(&analysis, &extract).unwrap())));
    let extraction = klp::extract::extract(&analysis, &extract).unwrap();
    g.bench_function("write", |b| b.iter(|| black_box(extraction.object.to_bytes().unwrap())));
    g.bench_function("diff", |b| b.iter(|| black_box(whole_diff(&pair, false))));
    if pair.symvers.is_some() && pair.parent.is_some() {
        g.bench_function("diff-symvers-parent", |b| b.iter(|| black_box(whole_diff(&pair, true))));
    }
    g.bench_function("floor", |b| b.iter(|| black_box(floor(o.data, p.data))));
    g.finish();
}

/// `klp diff` in-process, reading `--symvers` and `--parent` when asked.
fn whole_diff(pair: &Pair, with_extras: bool) -> usize {
    let exports = with_extras.then(|| Exports::read(pair.symvers.as_ref().unwrap()).unwrap());
    let parent = with_extras.then(|| ParentSymbols::read(pair.parent.as_ref().unwrap()).unwrap());
    let request = DiffRequest {
        orig: pair.orig_input(),
        patched: pair.patched_input(),
        diff: DiffOptions::default(),
        extract: ExtractOptions {
            objname: Some("vmlinux".into()),
            exports: exports.as_ref(),
            parent: parent.as_ref(),
            ..Default::default()
        },
        explain: Vec::new(),
    };
    let outcome = diff(&request).unwrap();
    outcome.report.changed.len()
}

/// The least a differ must do, one thread per object: every section
/// header, symbol and relocation visited, every executable section hashed.
fn floor(orig: &[u8], patched: &[u8]) -> u64 {
    let (a, b) = rayon::join(|| walk(orig), || walk(patched));
    a ^ b
}

fn walk(data: &[u8]) -> u64 {
    use object::read::elf::{FileHeader, SectionHeader, Sym};
    use object::{LittleEndian as LE, elf};
    let header = elf::FileHeader64::<LE>::parse(data).unwrap();
    let sections = header.sections(LE, data).unwrap();
    let mut acc = 0u64;
    for s in sections.iter() {
        acc = acc.wrapping_add(s.sh_size(LE));
        if s.sh_flags(LE).0 & elf::SHF_EXECINSTR.0 != 0 && s.sh_type(LE) != elf::SHT_NOBITS {
            acc ^= xxhash_rust::xxh3::xxh3_64(s.data(LE, data).unwrap());
        }
        if s.sh_type(LE) == elf::SHT_RELA {
            let relas: &[elf::Rela64<LE>] = s.data_as_array(LE, data).unwrap();
            acc = relas.iter().fold(acc, |a, r| a.wrapping_add(r.r_offset.get(LE) ^ r.r_info.get(LE)));
        }
    }
    let symbols = sections.symbols(LE, data, elf::SHT_SYMTAB).unwrap();
    symbols.iter().fold(acc, |a, s| a.wrapping_add(s.st_value(LE) ^ u64::from(s.st_name(LE))))
}

fn kpatch(c: &mut Criterion) {
    let Some(pair) = largest_kpatch_pair() else { return };
    let mut g = c.benchmark_group("kpatch-largest");
    g.bench_function("diff", |b| b.iter(|| black_box(whole_diff(&pair, false))));
    g.finish();
    eprintln!("kpatch-largest is {}", pair.name);
}

fn benches(c: &mut Criterion) {
    kpatch(c);
    kernel(c, "6.12-slim");
    kernel(c, "6.12-def");
}

criterion_group!(diff_benches, benches);
main_like_klp!(diff_benches);
