//! The whole of `klp diff` as one call on bytes in memory: analyze the two
//! objects, refuse what cannot be live patched, extract, serialise. The CLI
//! only maps files in, prints and chooses the exit status; the synthesizer,
//! property suites, fuzzers and benches call this directly.

use std::time::Instant;

use crate::diff::{self, DiffOptions, DiffReport, Input, ObjectCounts};
use crate::error::{ErrorKind, Result};
use crate::extract::{self, ExtractOptions};

/// What to diff and how.
pub struct DiffRequest<'a> {
    pub orig: Input<'a>,
    pub patched: Input<'a>,
    pub diff: DiffOptions,
    pub extract: ExtractOptions<'a>,
    /// Functions whose first difference to disassemble (`--explain`).
    pub explain: Vec<String>,
}

impl<'a> DiffRequest<'a> {
    /// `klp diff ORIG PATCHED OUT --objname vmlinux` with every other option
    /// at its default: what the tests, benches and fuzzers run in-process.
    pub fn vmlinux(orig: Input<'a>, patched: Input<'a>) -> Self {
        DiffRequest {
            orig,
            patched,
            diff: DiffOptions::default(),
            extract: ExtractOptions { objname: Some("vmlinux".into()), ..Default::default() },
            explain: Vec::new(),
        }
    }
}

/// How the diff ended.
#[derive(Debug)]
pub enum Verdict {
    /// Nothing changed: nothing to write.
    Unchanged,
    /// A change that cannot be live patched, with the reasons.
    Unpatchable(Vec<String>),
    /// The livepatch object, as ELF bytes.
    Livepatch(Vec<u8>),
}

/// Extraction and write times, beyond the analysis stages of the report.
#[derive(Debug, Clone, Default)]
pub struct OutputTimes {
    pub extract_ms: f64,
    pub write_ms: f64,
}

#[derive(Debug)]
pub struct DiffOutcome {
    /// The findings; `times` is filled in (drop it for a reproducible report).
    pub report: DiffReport,
    pub explanations: Vec<String>,
    /// Ambiguities and extraction decisions worth a warning, one line each.
    pub warnings: Vec<String>,
    pub verdict: Verdict,
    pub output_times: OutputTimes,
    /// Counts of the original and the patched object.
    pub counts: (ObjectCounts, ObjectCounts),
}

/// Warnings name symbols and sections of the input: escaped, one line each.
fn one_line(warnings: Vec<String>) -> Vec<String> {
    warnings.iter().map(|w| crate::error::escaped(w)).collect()
}

/// Run `klp diff` on two objects in memory.
pub fn diff(req: &DiffRequest) -> Result<DiffOutcome> {
    conclude(req, &diff::analyze_bytes(req.orig, req.patched, &req.diff)?)
}

/// The rest of [`diff()`], given the analysis of `req`'s two objects with
/// `req.diff` ([`diff::analyze_bytes`]). The analysis needs nothing of
/// `req.extract`: a caller may read `--symvers` and `--parent` while it
/// runs.
pub fn conclude<'d>(req: &DiffRequest<'d>, analysis: &diff::Analysis<'d>) -> Result<DiffOutcome> {
    let mut report = analysis.report(&req.orig.path.display().to_string());
    report.times = Some(analysis.times.clone());
    let explanations = req.explain.iter().map(|name| analysis.explain(name)).collect::<Result<Vec<_>>>()?;
    let mut warnings: Vec<String> = report
        .uncorrelated
        .iter()
        .map(|a| {
            format!(
                "cannot pair {} original and {} patched symbols named '{}': treated as removed and new",
                a.orig.len(),
                a.patched.len(),
                a.name
            )
        })
        .collect();
    let counts = analysis.counts();
    let outcome = |verdict, warnings, output_times| DiffOutcome {
        report: report.clone(),
        explanations: explanations.clone(),
        warnings: one_line(warnings),
        verdict,
        output_times,
        counts: counts.clone(),
    };
    if !report.refusals.is_empty() {
        let reasons = report.refusals.iter().map(ToString::to_string).collect();
        return Ok(outcome(Verdict::Unpatchable(reasons), warnings, OutputTimes::default()));
    }
    if analysis.changes.is_empty() {
        return Ok(outcome(Verdict::Unchanged, warnings, OutputTimes::default()));
    }
    let started = Instant::now();
    let extraction = match extract::extract(analysis, &req.extract) {
        Ok(e) => e,
        Err(e) if e.kind == ErrorKind::Unpatchable => {
            return Ok(outcome(Verdict::Unpatchable(vec![e.to_string()]), warnings, OutputTimes::default()));
        }
        // An argument that does not fit (`--objname`) is no file's fault;
        // anything else extraction refuses is about the patched object,
        // unless the error names another file (`--parent`).
        Err(e) if e.kind == ErrorKind::Usage => return Err(e),
        Err(e) => return Err(e.in_file(req.patched.path)),
    };
    warnings.extend(extraction.warnings.iter().cloned());
    let extract_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let bytes = extraction.object.to_bytes().map_err(|e| e.in_file(req.patched.path))?;
    let times = OutputTimes { extract_ms, write_ms: started.elapsed().as_secs_f64() * 1e3 };
    Ok(outcome(Verdict::Livepatch(bytes), warnings, times))
}

/// Have glibc's malloc reuse freed memory instead of handing it back.
/// By default a block over 128 KiB is a mapping of its own, unmapped when
/// freed, so the next one faults in fresh zeroed pages: page faults were
/// a sixth of a `vmlinux.o` diff's CPU time, and reusing the parse's and
/// the checksums' freed blocks saves 10,000 of its 54,000. Blocks up to
/// 32 MiB (glibc's largest threshold) now come from the heap, which is
/// not trimmed, and two arenas keep the rayon workers' freed blocks from
/// sitting idle in arenas of their own. A process that lives for one
/// command loses nothing by keeping them.
///
/// For a process's `main` (the `klp` binary, and the benches, which
/// measure what it runs), first thing; the library itself never calls it.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets allocator parameters, under glibc's
    // arena lock, so any thread may call it at any time; blocks already
    // allocated keep their kind. A refused value (another libc's limits)
    // leaves the default, which is only slower.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
