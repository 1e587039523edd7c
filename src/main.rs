//! The `klp` command: argument parsing and output formatting only; the work
//! is in the library.

mod detach;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use klp::diff::{DiffOptions, DiffReport, Input};
use klp::elf::MappedFile;
use klp::error::escaped;
use klp::extract::ExtractOptions;
use klp::kernel::EntrySizes;
use klp::kernel::kallsyms::ParentSymbols;
use klp::kernel::symvers::Exports;
use klp::pipeline::{DiffRequest, Verdict};

/// Build Linux kernel livepatch objects.
#[derive(Parser)]
#[command(name = "klp", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Find the functions a patch changed between two builds of an object.
    Diff {
        orig: PathBuf,
        patched: PathBuf,
        /// Where the livepatch object is written (only when something changed).
        out: PathBuf,
        /// Write the report as JSON instead of text lines.
        #[arg(long)]
        json: bool,
        /// Show where FUNC first differs, disassembled in both objects (repeatable).
        #[arg(long, value_name = "FUNC")]
        explain: Vec<String>,
        /// Entry size of a special section (SECTION=N), for objects whose layout cannot be inferred.
        #[arg(long, value_name = "SECTION=N")]
        entsize: Vec<String>,
        /// Print per-stage wall times, bytes read, counts and peak memory to stderr.
        #[arg(long, alias = "timings")]
        stats: bool,
        /// Module.symvers of the target kernel: references to symbols vmlinux
        /// exports become ordinary undefined references.
        #[arg(long, value_name = "FILE")]
        symvers: Option<PathBuf>,
        /// The livepatch object name: vmlinux, or the module the object belongs to.
        #[arg(long, value_name = "NAME")]
        objname: Option<String>,
        /// The linked parent (vmlinux or MODULE.ko), for exact symbol positions.
        #[arg(long, value_name = "FILE")]
        parent: Option<PathBuf>,
        /// Output names for this kernel generation: current, or v6.19.
        #[arg(long, default_value = "current")]
        format: klp::kernel::abi::Format,
        /// Count line-number arguments as changes (no line-only rule).
        #[arg(long, hide = true)]
        no_line_rule: bool,
        /// Wait for the process's teardown, doing the work in this process
        /// rather than in a child (for measuring its CPU time and memory).
        #[arg(long)]
        no_fork: bool,
    },
    /// Build a livepatch module from source patches in a configured kernel tree.
    Build(BuildArgs),
    /// Build a loadable livepatch module from diff outputs with the kernel's kbuild.
    Module {
        /// Module name, e.g. livepatch-fix-cmdline.
        #[arg(long)]
        name: String,
        /// The kernel build tree (or module build tree) of the target kernel.
        #[arg(long, value_name = "DIR")]
        kdir: PathBuf,
        /// Module.symvers to build against, if not the tree's own.
        #[arg(long, value_name = "FILE")]
        symvers: Option<PathBuf>,
        /// The OUT.o files of klp diff.
        #[arg(required = true, value_name = "OUT.o")]
        objects: Vec<PathBuf>,
        /// Where the module goes (default: ./NAME.ko).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Do not replace earlier live patches (cumulative patches replace by default).
        #[arg(long)]
        no_replace: bool,
        /// Leave the module unconverted; for showing that the kernel refuses it.
        #[arg(long, hide = true)]
        skip_post_link: bool,
    },
    /// Convert a linked livepatch module's KLP relocations into the kernel's form, in place.
    PostLink { module: PathBuf },
    /// Check a livepatch module against every rule the kernel's loader enforces.
    Check {
        module: PathBuf,
        /// The linked parent (vmlinux or MODULE.ko): check symbol positions.
        #[arg(long, value_name = "FILE")]
        parent: Option<PathBuf>,
        /// The patched object: run the loader oracle, which relocates each
        /// function of the module and compares it with the patched object's.
        #[arg(long, value_name = "FILE")]
        patched: Option<PathBuf>,
        /// The original object, standing in for the kernel when no --parent is given
        /// (symbol positions among duplicates are then unverified).
        #[arg(long, value_name = "FILE")]
        orig: Option<PathBuf>,
        /// With --patched: do not fail on functions the oracle could not verify
        /// (they are still listed, each with the reason).
        #[arg(long, requires = "patched")]
        allow_unverified: bool,
    },
    /// Write a synthesized original and patched object and the ground truth
    /// of their diff, the same bytes for the same arguments.
    Synth {
        #[arg(long)]
        seed: u64,
        /// About how many functions the program has.
        #[arg(long, default_value_t = 100)]
        functions: usize,
        /// How many mutations the patched object gets.
        #[arg(long, default_value_t = 3)]
        mutations: usize,
        /// The `ld -r` merged form of vmlinux.o: most units' functions share
        /// `.text` (symbol-less holes between them), their data `.data`.
        #[arg(long)]
        merged: bool,
        /// More than 65,280 sections (extended numbering); raises the
        /// function count as far as that needs.
        #[arg(long)]
        sections_over_64k: bool,
        /// Where the truth goes: {"changed", "new", "removed", "line_only", "refused"}.
        #[arg(long, value_name = "TRUTH.json")]
        truth: PathBuf,
        orig: PathBuf,
        patched: PathBuf,
    },
    /// Print the checksum of every function and data object.
    Checksum {
        object: PathBuf,
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "SECTION=N")]
        entsize: Vec<String>,
    },
}

/// `klp build`'s arguments.
#[derive(clap::Args)]
struct BuildArgs {
    /// Unified diffs to apply with -p1, in order.
    #[arg(required = true, value_name = "PATCH")]
    patches: Vec<PathBuf>,
    /// The kernel source tree.
    #[arg(long, value_name = "DIR", default_value = ".")]
    srctree: PathBuf,
    /// The build directory (make O=DIR); default: the source tree.
    #[arg(long, value_name = "DIR")]
    build_dir: Option<PathBuf>,
    /// The module to write (default: livepatch-<patch name>.ko).
    #[arg(short, long, value_name = "NAME.ko")]
    output: Option<PathBuf>,
    /// Parallel build jobs (default: every core).
    #[arg(short, long, value_name = "N")]
    jobs: Option<usize>,
    /// Where the original build and this run's files go (default: klp-tmp in the build directory).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Keep this run's files (patched objects, diff outputs, logs).
    #[arg(long)]
    keep_tmp: bool,
    /// Do not replace earlier live patches.
    #[arg(long)]
    no_replace: bool,
    /// Show where each changed function first differs.
    #[arg(long)]
    explain: bool,
    /// Show kbuild's own output.
    #[arg(short, long)]
    verbose: bool,
    /// Count line-number arguments as changes (no line-only rule).
    #[arg(long, hide = true)]
    no_line_rule: bool,
    /// Apply the patches as they are, without #line directives.
    #[arg(long, hide = true)]
    no_line_directives: bool,
}

impl BuildArgs {
    fn into_options(self) -> klp::build::flow::BuildOptions {
        klp::build::flow::BuildOptions {
            jobs: self.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            line_rule: line_rule(self.no_line_rule),
            line_directives: !self.no_line_directives,
            patches: self.patches,
            srctree: self.srctree,
            build_dir: self.build_dir,
            output: self.output,
            work_dir: self.work_dir,
            keep_tmp: self.keep_tmp,
            no_replace: self.no_replace,
            explain: self.explain,
            verbose: self.verbose,
        }
    }
}

/// Exit status for a change that cannot be live patched.
const EXIT_UNPATCHABLE: u8 = 2;

fn main() -> ExitCode {
    klp::pipeline::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Diff {
            orig,
            patched,
            out,
            json,
            explain,
            entsize,
            stats,
            symvers,
            objname,
            parent,
            format,
            no_line_rule,
            no_fork,
        } => {
            let extract = ExtractArgs { symvers, objname, parent, format };
            let line_rule = line_rule(no_line_rule);
            let args = DiffArgs { orig, patched, out, json, explain, entsize, stats, line_rule };
            let run = || exit_status(run_diff(&args, &extract));
            return ExitCode::from(if no_fork { run() } else { detach::run_detached(run) });
        }
        Command::Build(args) => return run_build(&args.into_options()),
        Command::Checksum { object, json, entsize } => run_checksum(&object, json, &entsize),
        Command::Synth { seed, functions, mutations, merged, sections_over_64k, truth, orig, patched } => {
            let layout = klp::synth::Layout { merged, sections_over_64k };
            run_synth(&klp::synth::Request { seed, functions, mutations, layout }, &truth, &orig, &patched)
        }
        Command::PostLink { module } => run_post_link(&module),
        Command::Module { name, kdir, symvers, objects, output, no_replace, skip_post_link } => {
            let output = output.unwrap_or_else(|| klp::module::kbuild::default_output(&name));
            let opts =
                klp::module::kbuild::ModuleOptions { name, kdir, symvers, objects, output, no_replace, skip_post_link };
            run_module(&opts)
        }
        Command::Check { module, parent, patched, orig, allow_unverified } => {
            run_check(&module, parent.as_deref(), patched.as_deref(), orig.as_deref(), allow_unverified)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            report_error(&e);
            ExitCode::FAILURE
        }
    }
}

fn report_error(e: &anyhow::Error) {
    // Library errors escape the names they hold; messages of other layers
    // (the oracle's, clap's) may quote file names too.
    eprintln!("klp: error: {}", escaped(&format!("{e:#}")));
}

/// A command's exit status, its error reported.
fn exit_status(result: anyhow::Result<u8>) -> u8 {
    result.unwrap_or_else(|e| {
        report_error(&e);
        1
    })
}

fn entry_sizes(specs: &[String]) -> anyhow::Result<EntrySizes> {
    let mut sizes = EntrySizes::default();
    for s in specs {
        sizes.add_override(s)?;
    }
    Ok(sizes)
}

struct ExtractArgs {
    symvers: Option<PathBuf>,
    objname: Option<String>,
    parent: Option<PathBuf>,
    format: klp::kernel::abi::Format,
}

struct DiffArgs {
    orig: PathBuf,
    patched: PathBuf,
    out: PathBuf,
    json: bool,
    explain: Vec<String>,
    entsize: Vec<String>,
    stats: bool,
    line_rule: klp::diff::LineRule,
}

fn line_rule(off: bool) -> klp::diff::LineRule {
    if off { klp::diff::LineRule::Off } else { klp::diff::LineRule::On }
}

/// `klp build`: exit 0 with a module or no changes, 2 for a change that
/// cannot be live patched, 130 after a signal, 1 for other errors.
fn run_build(opts: &klp::build::flow::BuildOptions) -> ExitCode {
    use klp::build::flow::{BuildOutcome, Failure};
    let stop = match klp::build::make::Interrupt::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("klp build: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match klp::build::flow::build(opts, &stop) {
        Ok(BuildOutcome::Module { path, patched }) => {
            for o in &patched {
                let mut names: Vec<String> = o.changed.iter().map(|n| escaped(n)).collect();
                names.extend(o.new_functions.iter().map(|n| format!("{} (new)", escaped(n))));
                println!("{}: patches {}: {}", path.display(), escaped(&o.objname), names.join(", "));
            }
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Ok(BuildOutcome::NoChanges(why)) => {
            println!("klp build: no changes detected: {why}; nothing written");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            let Failure { step, error, log } = *failure;
            let at = step.map_or(String::new(), |(n, title)| format!("step {n} ({title}) failed: "));
            eprintln!("klp build: error: {at}{}", escaped(&error.to_string()));
            if let Some(log) = log {
                print_log_tail(&log);
            }
            if error.kind == klp::error::ErrorKind::Interrupted {
                eprintln!("klp build: the source tree is restored");
            }
            ExitCode::from(klp::build::flow::exit_status(&error))
        }
    }
}

/// The last lines of a failed step's log, and where the whole log is.
fn print_log_tail(log: &std::path::Path) {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines[lines.len().saturating_sub(20)..] {
        eprintln!("    {}", escaped(l));
    }
    eprintln!("klp build: full log: {}", log.display());
}

fn run_diff(args: &DiffArgs, extract: &ExtractArgs) -> anyhow::Result<u8> {
    let started = std::time::Instant::now();
    let (fo, fp) = (MappedFile::open(&args.orig)?, MappedFile::open(&args.patched)?);
    let (orig, patched) = (Input::from(&fo), Input::from(&fp));
    let diff = DiffOptions { entry_sizes: entry_sizes(&args.entsize)?, line_rule: args.line_rule };
    // Only extraction needs `--symvers` and `--parent`: they are read on a
    // thread of their own while the objects are analysed. The analysis
    // keeps both cores busy nearly throughout; this thread fills the idle
    // moments it leaves.
    let (extras, analysis) = std::thread::scope(|s| {
        let extras = s.spawn(|| Extras::read(extract));
        let analysis = klp::diff::analyze_bytes(orig, patched, &diff);
        (extras.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), analysis)
    });
    // A bad `--symvers` or `--parent` is reported first, as when they were
    // read before the objects.
    let extras = extras?;
    let request = DiffRequest {
        orig,
        patched,
        diff,
        extract: ExtractOptions {
            objname: extract.objname.clone(),
            exports: extras.exports.as_ref(),
            parent: extras.parent.as_ref(),
            format: extract.format,
        },
        explain: args.explain.clone(),
    };
    let analysis = analysis?;
    let mut outcome = klp::pipeline::conclude(&request, &analysis)?;
    // The process ends with this command: its exit unmaps the analysis
    // whole, where dropping it read each of 330,000 sections first (3 ms,
    // on one core, after everything else).
    std::mem::forget(analysis);
    let times = outcome.report.times.take();
    if args.stats {
        outcome.report.times = times.clone();
    }
    let objname = &escaped(&outcome.report.objname);
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &outcome.report)?;
        writeln!(stdout)?;
    } else {
        print_report(&mut stdout, &outcome.report)?;
    }
    for e in &outcome.explanations {
        writeln!(stdout, "{e}")?;
    }
    for w in &outcome.warnings {
        eprintln!("{objname}: warning: {w}");
    }
    let code = match &outcome.verdict {
        Verdict::Unchanged => 0,
        Verdict::Unpatchable(reasons) => {
            for r in reasons {
                eprintln!("{objname}: error: {r}");
            }
            EXIT_UNPATCHABLE
        }
        Verdict::Livepatch(bytes) => {
            klp::elf::write::write_atomically(&args.out, bytes)?;
            0
        }
    };
    if args.stats {
        let read = fo.bytes().len() + fp.bytes().len();
        let extra_files = [extract.symvers.as_deref(), extract.parent.as_deref()];
        let extra: u64 = extra_files.iter().flatten().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
        let stats = Stats { extras_ms: extras.ms, times: times.unwrap_or_default(), read_bytes: read as u64 + extra };
        print_stats(&stats, &outcome, started.elapsed());
    }
    // Unmapping 200 MB of `vmlinux.o` took 7 ms: left to the process's
    // exit, which the caller does not wait for (see `detach`).
    std::mem::forget((fo, fp));
    Ok(code)
}

/// `--symvers` and `--parent`, read.
struct Extras {
    exports: Option<Exports>,
    parent: Option<ParentSymbols>,
    /// How long reading them took, beside the analysis.
    ms: f64,
}

impl Extras {
    fn read(args: &ExtractArgs) -> klp::error::Result<Self> {
        let started = std::time::Instant::now();
        let exports = args.symvers.as_deref().map(Exports::read).transpose()?;
        let parent = args.parent.as_deref().map(ParentSymbols::read).transpose()?;
        Ok(Extras { exports, parent, ms: started.elapsed().as_secs_f64() * 1e3 })
    }
}

struct Stats {
    /// Reading `--symvers` and `--parent`, beside the other stages.
    extras_ms: f64,
    times: klp::diff::StageTimes,
    read_bytes: u64,
}

/// `--stats`, on stderr.
fn print_stats(s: &Stats, o: &klp::pipeline::DiffOutcome, wall: std::time::Duration) {
    let t = &s.times;
    let out = &o.output_times;
    eprintln!(
        "stats: read {:.1} ms, checksum {:.1} ms, correlate {:.1} ms, classify {:.1} ms, extract {:.1} ms, write {:.1} ms; symvers+parent {:.1} ms beside them",
        t.read_ms, t.checksum_ms, t.correlate_ms, t.classify_ms, out.extract_ms, out.write_ms, s.extras_ms
    );
    for (side, c) in [("orig", &o.counts.0), ("patched", &o.counts.1)] {
        eprintln!(
            "stats: {side}: {} sections, {} symbols, {} relocations, {} functions checksummed, {} decoded",
            c.sections, c.symbols, c.relocations, c.functions_checksummed, c.functions_decoded
        );
    }
    let output = match &o.verdict {
        Verdict::Livepatch(b) => b.len(),
        _ => 0,
    };
    eprintln!(
        "stats: {:.3} s wall, {} CPU, {:.1} MB read, {output} bytes written, peak RSS {}",
        wall.as_secs_f64(),
        cpu_seconds().map_or("unknown".to_owned(), |s| format!("{s:.3} s")),
        s.read_bytes as f64 / 1e6,
        peak_rss().map_or("unknown".to_owned(), |kb| format!("{:.0} MB", kb as f64 / 1024.0))
    );
}

/// The CPU time (user and system) of this process's threads so far: a
/// caller's own measure sees only the parent that waits for it (`detach`).
fn cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `getrusage` fills the struct it is given, or fails and we do
    // not read it.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// The process's peak resident set (`VmHWM`), in KiB.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run_check(
    module: &std::path::Path,
    parent: Option<&std::path::Path>,
    patched: Option<&std::path::Path>,
    orig: Option<&std::path::Path>,
    allow_unverified: bool,
) -> anyhow::Result<ExitCode> {
    let parent_path = parent;
    let parent = parent.map(ParentSymbols::read).transpose()?;
    let file = MappedFile::open(module)?;
    let m = file.parse()?;
    let (violations, summary) = klp::module::check::check(&m, parent.as_ref());
    let name = escaped(&module.display().to_string());
    for v in &violations {
        println!("{name}: {v}");
    }
    let mut failed = !violations.is_empty();
    if let Some(patched) = patched {
        failed |= !run_oracle(&name.to_string(), &m, patched, parent_path, orig, allow_unverified)?;
    }
    if failed {
        return Ok(ExitCode::FAILURE);
    }
    println!("{name}: ok: {} functions, {} KLP relocations", summary.functions, summary.klp_relocations);
    Ok(ExitCode::SUCCESS)
}

/// Run the loader oracle; false if a function differs, or could not be
/// verified and that is not allowed.
fn run_oracle(
    name: &str,
    m: &klp::elf::ElfObject,
    patched: &std::path::Path,
    parent: Option<&std::path::Path>,
    orig: Option<&std::path::Path>,
    allow_unverified: bool,
) -> anyhow::Result<bool> {
    use klp::module::oracle::{Kernel, Verdict};
    let kernel = match (parent, orig) {
        (Some(p), _) => Kernel::read(p),
        (None, Some(orig)) => Kernel::stand_in(orig),
        (None, None) => anyhow::bail!("--patched needs --parent (the linked kernel) or --orig (the original object)"),
    }
    .map_err(anyhow::Error::msg)?;
    let pf = MappedFile::open(patched)?;
    let p = pf.parse()?;
    let orig_file = orig.map(MappedFile::open).transpose()?;
    let orig_obj = orig_file.as_ref().map(|f| f.parse()).transpose()?;
    let verdicts = klp::module::oracle::verify(m, &p, &kernel, orig_obj.as_ref());
    let (mut same, mut unverified, mut wrong) = (0, 0, 0);
    for v in verdicts {
        match v.verdict {
            Verdict::Same => {
                same += 1;
                println!("{name}: oracle: {}: same bytes as the patched object", escaped(&v.name))
            }
            Verdict::Differs { offset, module, patched } => {
                wrong += 1;
                println!(
                    "{name}: oracle-differs: {}+{offset:#x}: module {module:#04x}, patched {patched:#04x}",
                    escaped(&v.name)
                )
            }
            Verdict::Wrong(why) => {
                wrong += 1;
                println!("{name}: oracle-differs: {}", escaped(&format!("{}: {why}", v.name)))
            }
            Verdict::Unverified(why) => {
                unverified += 1;
                println!("{name}: oracle-unverified: {}", escaped(&format!("{}: {why}", v.name)))
            }
        }
    }
    let allowed = if allow_unverified && unverified > 0 { " (allowed by --allow-unverified)" } else { "" };
    println!("{name}: oracle: {same} functions verified, {wrong} differ, {unverified} unverified{allowed}");
    Ok(wrong == 0 && (unverified == 0 || allow_unverified))
}

fn run_module(opts: &klp::module::kbuild::ModuleOptions) -> anyhow::Result<ExitCode> {
    let mut step = |s: &str| eprintln!("klp module: {s}");
    let out = klp::module::kbuild::build(opts, &mut step)?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn run_post_link(module: &std::path::Path) -> anyhow::Result<ExitCode> {
    use klp::module::postlink::Outcome;
    let m = escaped(&module.display().to_string());
    match klp::module::postlink::post_link(module)? {
        Outcome::Converted { relocations, sections } => {
            println!("{m}: converted {relocations} KLP relocations into {sections} .klp.rela sections")
        }
        Outcome::AlreadyConverted => println!("{m}: already converted (has .klp.rela sections): nothing to do"),
        Outcome::NothingToConvert => println!("{m}: no __klp_relocs section: nothing to convert"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(w: &mut impl Write, r: &DiffReport) -> std::io::Result<()> {
    let obj = escaped(&r.objname);
    for name in &r.new_functions {
        writeln!(w, "{obj}: new function: {}", escaped(name))?;
    }
    for name in &r.changed {
        writeln!(w, "{obj}: changed function: {}", escaped(name))?;
    }
    for name in &r.line_only {
        writeln!(w, "{obj}: line-only change: {}", escaped(name))?;
    }
    for name in &r.removed {
        writeln!(w, "{obj}: removed function: {}", escaped(name))?;
    }
    for name in &r.ignored_sections {
        writeln!(w, "{obj}: ignoring section: {}", escaped(name))?;
    }
    for name in &r.ignored {
        writeln!(w, "{obj}: ignoring function: {}", escaped(name))?;
    }
    for name in &r.new_data {
        writeln!(w, "{obj}: new data: {}", escaped(name))?;
    }
    Ok(())
}

fn run_synth(
    req: &klp::synth::Request,
    truth: &std::path::Path,
    orig: &std::path::Path,
    patched: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let pair = klp::synth::synthesize(req).map_err(|e| anyhow::anyhow!("synth: {e}"))?;
    klp::elf::write::write_atomically(orig, &pair.orig)?;
    klp::elf::write::write_atomically(patched, &pair.patched)?;
    klp::elf::write::write_atomically(truth, pair.answer.truth.to_json().as_bytes())?;
    let applied: Vec<String> = pair.applied.iter().map(|m| format!("{m:?}")).collect();
    eprintln!("klp synth: seed {}: mutations: {}", req.seed, applied.join(", "));
    Ok(ExitCode::SUCCESS)
}

fn run_checksum(object: &std::path::Path, json: bool, entsize: &[String]) -> anyhow::Result<ExitCode> {
    let sizes = entry_sizes(entsize)?;
    let file = MappedFile::open(object)?;
    let obj = file.parse()?;
    let rows = klp::diff::checksum_table(&obj, &DiffOptions { entry_sizes: sizes, ..Default::default() })?;
    let mut stdout = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut stdout, &rows)?;
        writeln!(stdout)?;
    } else {
        for r in rows {
            writeln!(stdout, "{} {:?} {}", r.checksum, r.kind, r.name)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
