//! `klp build`: the steps from a source patch to a checked livepatch
//! module, in order, each announced with its number and elapsed time. The
//! tree is put back on every way out: the stash is restored after the
//! patched build, after an error, and after SIGINT or SIGTERM (caught by
//! [`Interrupt`]); a run killed outright leaves a stash the next run
//! restores first.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::apply::{self, Mode};
use super::changed_objects::{ObjectChange, changed_objects};
use super::line_directives::add_line_directives;
use super::make::{Interrupt, Make};
use super::original::{BuildKey, OriginalBuild};
use super::patch::{self, Patch};
use super::release::BuildStamp;
use super::stash::Stash;
use super::{preflight, release};
use crate::diff::{DiffOptions, Input, LineRule};
use crate::elf::MappedFile;
use crate::error::{Error, ErrorKind, Result};
use crate::extract::ExtractOptions;
use crate::kernel::config::KernelConfig;
use crate::kernel::kallsyms::ParentSymbols;
use crate::kernel::symvers::Exports;
use crate::pipeline::{DiffRequest, Verdict};

/// `klp build`'s options.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub patches: Vec<PathBuf>,
    pub srctree: PathBuf,
    /// `O=`; the source tree when `None`.
    pub build_dir: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub jobs: usize,
    /// Default: `klp-tmp` in the build directory.
    pub work_dir: Option<PathBuf>,
    pub keep_tmp: bool,
    pub no_replace: bool,
    pub explain: bool,
    pub verbose: bool,
    /// The differ's binary line-number rule (off only to show that the
    /// `#line` rewrite alone keeps unchanged functions unchanged).
    pub line_rule: LineRule,
    /// Rewrite the patches with `#line` directives (step 5).
    pub line_directives: bool,
}

/// How a successful run ended.
#[derive(Debug)]
pub enum BuildOutcome {
    Module {
        path: PathBuf,
        patched: Vec<PatchedObject>,
    },
    /// No object changed, or only line numbers: nothing written.
    NoChanges(String),
}

/// One object the module patches and what in it.
#[derive(Debug, Clone)]
pub struct PatchedObject {
    pub objname: String,
    pub changed: Vec<String>,
    pub new_functions: Vec<String>,
}

/// A failed run: the step, the error, and the step's log if it has one.
#[derive(Debug)]
pub struct Failure {
    pub step: Option<(u8, &'static str)>,
    pub error: Error,
    pub log: Option<PathBuf>,
}

const STEPS: u8 = 9;

/// Announces the steps on stderr.
struct Steps {
    current: Option<(u8, &'static str, Instant)>,
}

impl Steps {
    fn begin(&mut self, n: u8, title: &'static str) {
        eprintln!("[{n}/{STEPS}] {title}");
        self.current = Some((n, title, Instant::now()));
    }
    fn done(&mut self, what: &str) {
        if let Some((n, title, t)) = self.current.take() {
            eprintln!("[{n}/{STEPS}] {title}: {what} ({:.1} s)", t.elapsed().as_secs_f64());
        }
    }
    fn note(&self, what: &str) {
        eprintln!("    {what}");
    }
}

/// What the steps share.
struct Run<'a> {
    opts: &'a BuildOptions,
    make: Make,
    work: PathBuf,
    logs: PathBuf,
    config: KernelConfig,
    config_bytes: Vec<u8>,
    stop: &'a Interrupt,
    steps: Steps,
    /// The step whose log the failure should show.
    log: Option<PathBuf>,
}

/// Run `klp build`.
pub fn build(opts: &BuildOptions, stop: &Interrupt) -> std::result::Result<BuildOutcome, Box<Failure>> {
    let fail = |error: Error| Box::new(Failure { step: Some((1, CHECK_TREE)), error, log: None });
    let mut steps = Steps { current: None };
    steps.begin(1, CHECK_TREE);
    let (make, config_path) = check_tree(opts).map_err(fail)?;
    let config_bytes = std::fs::read(&config_path).map_err(|e| fail(Error::io(&config_path, "cannot read", &e)))?;
    let config = KernelConfig::read(&config_path).map_err(fail)?;
    preflight::check_config(&config, &config_path).map_err(fail)?;
    let work = match &opts.work_dir {
        Some(w) => absolute(w).map_err(fail)?,
        None => make.build_dir.join("klp-tmp"),
    };
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| fail(Error::io(&logs, "cannot create the work directory", &e)))?;
    steps.done(&format!("{} (work directory {})", make.build_dir.display(), work.display()));

    // A stash left by a run that was killed outright goes back first.
    let stash_dir = work.join("stash");
    let (stash, leftover) = Stash::open(&stash_dir).map_err(fail)?;
    if !leftover.is_empty() {
        steps.note(&format!("restored {} files a killed run had changed", leftover.len()));
    }
    let mut guard = TreeGuard { stash: Some(stash), dir: stash_dir, original: None };
    let mut run = Run { opts, make, work, logs, config, config_bytes, stop, steps, log: None };
    let result = run.all_steps(&mut guard);
    let restored = guard.restore();
    let step = run.steps.current.map(|(n, title, _)| (n, title));
    let result = match (result, restored) {
        (Err(error), _) => Err(Box::new(Failure { step, error, log: run.log.take() })),
        (Ok(_), Err(error)) => Err(Box::new(Failure { step: None, error, log: None })),
        (Ok(outcome), Ok(())) => Ok(outcome),
    };
    if result.is_ok() && !opts.keep_tmp {
        run.clean_up();
    }
    result
}

const CHECK_TREE: &str = "check the tree and the configuration";

/// The tree and build directory, checked: a kernel source tree, configured.
fn check_tree(opts: &BuildOptions) -> Result<(Make, PathBuf)> {
    let srctree = absolute(&opts.srctree)?;
    for marker in ["Makefile", "Kconfig", "scripts/setlocalversion", "kernel/livepatch"] {
        if !srctree.join(marker).exists() {
            return Err(Error::usage(format!("not a kernel source tree (no {marker})")).in_file(&srctree));
        }
    }
    let build_dir = match &opts.build_dir {
        Some(b) => absolute(b)?,
        None => srctree.clone(),
    };
    let config = build_dir.join(".config");
    if !config.is_file() {
        return Err(Error::usage(
            "not a configured kernel tree (no .config): configure it first, e.g. make olddefconfig",
        )
        .in_file(&build_dir));
    }
    Ok((Make { srctree, build_dir, jobs: opts.jobs, verbose: opts.verbose }, config))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(p).map_err(|e| Error::io(p, "cannot resolve", &e))
}

/// The stash of the files changed in the tree, restored once on the way out.
struct TreeGuard {
    stash: Option<Stash>,
    dir: PathBuf,
    /// The original build and the source tree, once known: restored files
    /// are newer than the build, and it must know they are its sources.
    original: Option<(OriginalBuild, PathBuf)>,
}

impl TreeGuard {
    fn stash(&mut self) -> Result<&mut Stash> {
        if self.stash.is_none() {
            self.stash = Some(Stash::open(&self.dir)?.0);
        }
        Ok(self.stash.as_mut().expect("just opened"))
    }

    fn restore(&mut self) -> Result<()> {
        let Some(stash) = self.stash.take() else { return Ok(()) };
        let restored = stash.restore()?;
        let Some((original, srctree)) = &self.original else { return Ok(()) };
        let mut hashes = Vec::new();
        for path in restored {
            let Ok(rel) = path.strip_prefix(srctree) else { continue };
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, "cannot read", &e))?;
            hashes.push((rel.to_owned(), xxhash_rust::xxh3::xxh3_64(&bytes)));
        }
        original.record_restored(&hashes)
    }
}

impl Drop for TreeGuard {
    /// A panic must not leave the tree patched either.
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            eprintln!("klp build: error: restoring the tree: {e}");
        }
    }
}

impl Run<'_> {
    fn all_steps(&mut self, guard: &mut TreeGuard) -> Result<BuildOutcome> {
        self.steps.begin(2, "check the patches");
        let patches = self.read_patches()?;
        let clean = self.dry_run(&patches, guard)?;
        self.stop.check()?;
        if clean.files.is_empty() {
            self.steps.done("they change no file");
            return Ok(BuildOutcome::NoChanges("the patches change no file".into()));
        }
        let files: Vec<&str> = clean.files.iter().map(|f| f.path()).collect();
        self.steps.done(&format!("apply cleanly; {} files: {}", files.len(), files.join(", ")));

        self.steps.begin(3, "freeze the kernel release");
        let release = self.make.kernel_release()?;
        release::freeze(&self.make.srctree, &release, guard.stash()?)?;
        self.steps.done(&release);

        self.steps.begin(4, "build the original kernel");
        let original = self.original(&release)?;
        guard.original = Some((original.clone(), self.make.srctree.clone()));
        self.stop.check()?;

        self.steps.begin(5, "keep line numbers (#line directives)");
        let fixed = self.fix_lines(&clean)?;

        self.steps.begin(6, "build the patched kernel");
        let since = self.patched_build(&fixed, &original, guard)?;
        self.stop.check()?;

        self.steps.begin(7, "find the changed objects");
        let changed = self.changed(&original, since)?;
        if changed.is_empty() {
            self.steps.done("none");
            return Ok(BuildOutcome::NoChanges("no object changed".into()));
        }
        self.steps.done(&changed.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", "));
        self.stop.check()?;

        self.steps.begin(8, "diff the changed objects");
        let diffs = self.diff(&original, &changed)?;
        if diffs.is_empty() {
            self.steps.done("no function changed");
            return Ok(BuildOutcome::NoChanges("no function changed (only line numbers or nothing)".into()));
        }
        self.steps.done(&format!("{} objects to patch", diffs.len()));
        self.stop.check()?;

        self.steps.begin(9, "build and check the module");
        let path = self.module(&original, &diffs)?;
        self.steps.done(&path.display().to_string());
        Ok(BuildOutcome::Module { path, patched: diffs.into_iter().map(|d| d.object).collect() })
    }

    fn read_patches(&self) -> Result<Vec<(PathBuf, Patch)>> {
        if self.opts.patches.is_empty() {
            return Err(Error::usage("no patch given"));
        }
        let mut out = Vec::new();
        for p in &self.opts.patches {
            let text = std::fs::read(p).map_err(|e| Error::io(p, "cannot read", &e))?;
            let text = String::from_utf8(text).map_err(|_| Error::malformed("not UTF-8 text").in_file(p))?;
            let parsed = patch::parse(p, &text)?;
            if parsed.files.is_empty() {
                return Err(Error::usage("not a patch: no file in it").in_file(p));
            }
            preflight::check_patch_paths(&parsed, p)?;
            out.push((p.clone(), parsed));
        }
        Ok(out)
    }

    /// Apply every patch in turn and put the tree back: the patches apply
    /// together, and what they do is taken as a clean diff.
    fn dry_run(&mut self, patches: &[(PathBuf, Patch)], guard: &mut TreeGuard) -> Result<Patch> {
        let mut paths: Vec<String> = Vec::new();
        let result = (|| {
            for (file, p) in patches {
                for note in apply::apply(&self.make.srctree, file, p, guard.stash()?, Mode::Check)? {
                    self.steps.note(&format!("{}: warning: {note}", file.display()));
                }
                for f in &p.files {
                    if !paths.iter().any(|q| q == f.path()) {
                        paths.push(f.path().to_owned());
                    }
                }
            }
            apply::clean_diff(&self.make.srctree, guard.stash()?, &paths)
        })();
        guard.restore()?;
        result
    }

    fn original(&mut self, release: &str) -> Result<OriginalBuild> {
        let key = BuildKey::new(&self.make, &self.config, &self.config_bytes, release);
        let why = match OriginalBuild::load(&self.work, &key)? {
            Ok(cached) => match cached.changed_source(&self.make.srctree, &self.work)? {
                None => {
                    self.steps.done(&format!("reusing the original build in {}", cached.dir.display()));
                    return Ok(cached);
                }
                Some(file) => format!("{} changed since the cached original build", file.display()),
            },
            Err(why) => why,
        };
        self.steps.note(&why);
        let log = self.logs.join("4-original.log");
        self.log = Some(log.clone());
        // The bar's total: what the largest earlier original build compiled.
        let expected = super::original::whole_build_size(&self.work);
        let run = self.make.build(&["vmlinux", "modules"], &[], &log, expected, self.stop)?;
        let kept = OriginalBuild::store(&self.work, &key, &self.make, SystemTime::now())?;
        super::original::note_build_size(&self.work, run.compiled)?;
        self.log = None;
        self.steps.done(&format!("{} objects compiled; kept in {}", run.compiled, kept.dir.display()));
        Ok(kept)
    }

    fn fix_lines(&mut self, clean: &Patch) -> Result<PathBuf> {
        let (fixed, skipped) =
            if self.opts.line_directives { add_line_directives(clean) } else { (clean.clone(), Vec::new()) };
        for s in &skipped {
            self.steps.note(&format!(
                "{}: no #line after the change ending before line {} (inside a macro): code below keeps shifted line numbers",
                s.path, s.old_line
            ));
        }
        let path = self.work.join("fixed.patch");
        crate::elf::write::write_atomically(&path, patch::write(&fixed).as_bytes())?;
        let what = if self.opts.line_directives { "patch rewritten" } else { "skipped (--no-line-directives)" };
        self.steps.done(&format!("{what}: {}", path.display()));
        Ok(path)
    }

    /// Apply the fixed patch, build, put the sources back. Returns when the
    /// build started: what it wrote is newer.
    fn patched_build(&mut self, fixed: &Path, original: &OriginalBuild, guard: &mut TreeGuard) -> Result<SystemTime> {
        let text = std::fs::read_to_string(fixed).map_err(|e| Error::io(fixed, "cannot read", &e))?;
        let p = patch::parse(fixed, &text)?;
        apply::apply(&self.make.srctree, fixed, &p, guard.stash()?, Mode::Build)?;
        let log = self.logs.join("6-patched.log");
        self.log = Some(log.clone());
        let since = SystemTime::now();
        let run = self.build_like(original, &log);
        guard.restore()?;
        let run = run?;
        self.log = None;
        self.steps.done(&format!("{} objects compiled; sources restored", run.compiled));
        Ok(since)
    }

    /// The patched build, with the original build's version banner (see
    /// [`BuildStamp`]) and compiled with its flags. Some
    /// flags come from compiler probes kbuild runs on every make; seen
    /// once here under load, two of them (`-falign-jumps=1`,
    /// `-fno-allow-store-data-races`) went missing and every object was
    /// rebuilt with other code. One more build is tried; then it is an error,
    /// never a diff of two differently compiled kernels.
    fn build_like(&mut self, original: &OriginalBuild, log: &Path) -> Result<super::make::BuildRun> {
        let stamp = original.stamp.make_variables();
        let expected = original.compile_command()?;
        let mut tries = 0;
        loop {
            let run = self.make.build(&["vmlinux", "modules"], &stamp, log, None, self.stop)?;
            let banner = BuildStamp::read(&self.make.build_dir)?;
            if banner != original.stamp {
                return Err(Error::tool(format!(
                    "the patched kernel's version banner is not the original's ({banner:?}, not {:?})",
                    original.stamp
                )));
            }
            let now = super::make::compile_command(&self.make.build_dir)?.unwrap_or_default();
            let Some(expected) = expected.as_deref().filter(|e| *e != now) else {
                return Ok(run);
            };
            let difference = super::make::command_difference(expected, &now);
            tries += 1;
            if tries == 2 {
                return Err(Error::tool(format!(
                    "kbuild compiles with other flags than the original build ({difference}); \
                     remove {} to build the original again",
                    original.dir.display()
                )));
            }
            // Kept: the probes' cause is not known yet, and this log is the evidence.
            let first = log.with_extension("first-try.log");
            std::fs::rename(log, &first).map_err(|e| Error::io(log, "cannot rename", &e))?;
            self.steps.note(&format!(
                "kbuild compiled with other flags than the original build ({difference}): building again \
                 (log of the first try: {})",
                first.display()
            ));
        }
    }

    /// The objects the patched build changed, copied to `<work>/patched`.
    fn changed(&self, original: &OriginalBuild, since: SystemTime) -> Result<Vec<PathBuf>> {
        let changes = changed_objects(&original.dir, &self.make.build_dir, &original.objects, since)?;
        let mut out = Vec::new();
        for c in changes {
            match c {
                ObjectChange::Changed(rel) => {
                    let to = self.work.join("patched").join(&rel);
                    if let Some(parent) = to.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, "cannot create", &e))?;
                    }
                    let from = self.make.build_dir.join(&rel);
                    std::fs::copy(&from, &to).map_err(|e| Error::io(&from, "cannot copy", &e))?;
                    out.push(rel);
                }
                ObjectChange::Removed(rel) => {
                    return Err(Error::unpatchable(format!(
                        "{}: the patched build no longer has this module; removing a module cannot be live patched",
                        rel.display()
                    )));
                }
            }
        }
        Ok(out)
    }

    fn diff(&mut self, original: &OriginalBuild, changed: &[PathBuf]) -> Result<Vec<ObjectDiff>> {
        let exports = Exports::read(&original.symvers())?;
        let mut out = Vec::new();
        for rel in changed {
            let (objname, parent_path) = if rel == Path::new("vmlinux.o") {
                ("vmlinux".to_owned(), original.vmlinux())
            } else {
                (module_name(rel), original.copy_of(&rel.with_extension("ko")))
            };
            let parent = ParentSymbols::read(&parent_path)?;
            let (fo, fp) =
                (MappedFile::open(&original.copy_of(rel))?, MappedFile::open(&self.work.join("patched").join(rel))?);
            let request = |explain: Vec<String>| DiffRequest {
                orig: Input::from(&fo),
                patched: Input::from(&fp),
                diff: DiffOptions { line_rule: self.opts.line_rule, ..Default::default() },
                extract: ExtractOptions {
                    objname: Some(objname.clone()),
                    exports: Some(&exports),
                    parent: Some(&parent),
                    ..Default::default()
                },
                explain,
            };
            let outcome = crate::pipeline::diff(&request(Vec::new()))?;
            let r = &outcome.report;
            for w in &outcome.warnings {
                self.steps.note(&format!("{objname}: warning: {w}"));
            }
            for (kind, names) in [
                ("new function", &r.new_functions),
                ("changed function", &r.changed),
                ("line-only change", &r.line_only),
                ("removed function", &r.removed),
                ("new data", &r.new_data),
            ] {
                for n in names {
                    self.steps.note(&format!("{objname}: {kind}: {}", crate::error::escaped(n)));
                }
            }
            let bytes = match outcome.verdict {
                Verdict::Unchanged => continue,
                Verdict::Unpatchable(reasons) => {
                    let reasons: Vec<String> = reasons.iter().map(|r| format!("{objname}: {r}")).collect();
                    return Err(Error::unpatchable(reasons.join("; ")));
                }
                Verdict::Livepatch(bytes) => bytes,
            };
            if self.opts.explain && !r.changed.is_empty() {
                let again = crate::pipeline::diff(&request(r.changed.clone()))?;
                for e in &again.explanations {
                    for line in e.lines() {
                        self.steps.note(line);
                    }
                }
            }
            let out_path = self.work.join("diff").join(rel);
            if let Some(parent) = out_path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, "cannot create", &e))?;
            }
            crate::elf::write::write_atomically(&out_path, &bytes)?;
            let object = PatchedObject {
                objname: objname.clone(),
                changed: r.changed.clone(),
                new_functions: r.new_functions.clone(),
            };
            out.push(ObjectDiff { object, output: out_path, parent: parent_path });
        }
        Ok(out)
    }

    fn module(&mut self, original: &OriginalBuild, diffs: &[ObjectDiff]) -> Result<PathBuf> {
        let name = preflight::module_name(self.opts.output.as_deref(), &self.opts.patches)?;
        let output = match &self.opts.output {
            Some(o) => o.clone(),
            None => crate::module::kbuild::default_output(&name),
        };
        let opts = crate::module::kbuild::ModuleOptions {
            name,
            kdir: self.make.build_dir.clone(),
            symvers: Some(original.symvers()),
            objects: diffs.iter().map(|d| d.output.clone()).collect(),
            output,
            no_replace: self.opts.no_replace,
            skip_post_link: false,
        };
        let steps = &self.steps;
        let path = crate::module::kbuild::build(&opts, &mut |s| steps.note(s))?;
        // Every symbol position against the kernel or module it patches.
        let file = MappedFile::open(&path)?;
        let m = file.parse()?;
        for d in diffs {
            let parent = ParentSymbols::read(&d.parent)?;
            let (violations, _) = crate::module::check::check(&m, Some(&parent));
            if let Some(v) = violations.first() {
                return Err(Error::tool(format!("the module breaks a livepatch rule: {v}")).in_file(&path));
            }
        }
        Ok(path)
    }

    /// Drop what only this run needed; the original build stays for the next.
    fn clean_up(&self) {
        for d in ["patched", "diff", "logs"] {
            let _ = std::fs::remove_dir_all(self.work.join(d));
        }
        let _ = std::fs::remove_file(self.work.join("fixed.patch"));
    }
}

/// One object's diff output and the linked object it patches.
struct ObjectDiff {
    object: PatchedObject,
    output: PathBuf,
    parent: PathBuf,
}

/// The kernel's name for the module of prelink object `rel`: its file
/// name, dashes as underscores (`KBUILD_MODNAME`).
fn module_name(rel: &Path) -> String {
    rel.file_stem().map_or(String::new(), |s| s.to_string_lossy().replace('-', "_"))
}

/// The exit status for `error`: 2 for a change that cannot be live
/// patched, 130 after a signal, 1 otherwise.
pub fn exit_status(error: &Error) -> u8 {
    match error.kind {
        ErrorKind::Unpatchable => 2,
        ErrorKind::Interrupted => 130,
        _ => 1,
    }
}
