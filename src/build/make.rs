//! Running the kernel's own build (steps 4 and 6 of `klp build`): make in
//! its own process group, its output in a log file, a progress bar while
//! it runs (plain lines when stderr is not a terminal), and a stop on
//! SIGINT or SIGTERM that takes the whole build down before the caller
//! puts the tree back.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Set by SIGINT or SIGTERM; asked between steps and while a build runs.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Catch SIGINT and SIGTERM from now on: they set the flag instead of
    /// killing the process, so that the tree can be restored.
    pub fn install() -> Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&flag))
                .map_err(|e| Error::tool(format!("cannot install a signal handler: {e}")))?;
        }
        Ok(Interrupt(flag))
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// An error if a signal came.
    pub fn check(&self) -> Result<()> {
        if self.requested() { Err(Error::interrupted("interrupted by a signal")) } else { Ok(()) }
    }
}

/// How to run kbuild for one tree.
#[derive(Debug, Clone)]
pub struct Make {
    pub srctree: PathBuf,
    /// `O=`, or the source tree itself.
    pub build_dir: PathBuf,
    pub jobs: usize,
    /// Show kbuild's own output on stderr (`-v`) instead of a progress bar.
    pub verbose: bool,
}

/// What one build did.
#[derive(Debug, Clone, Copy)]
pub struct BuildRun {
    /// Objects compiled (`CC` lines).
    pub compiled: usize,
}

impl Make {
    /// `make ARGS...` with the flags every `klp build` build needs.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("make");
        cmd.arg("-C").arg(&self.srctree);
        if self.build_dir != self.srctree {
            cmd.arg(format!("O={}", self.build_dir.display()));
        }
        cmd.arg(format!("-j{}", self.jobs.max(1)));
        cmd.args(args);
        cmd
    }

    /// `make -s kernelrelease`.
    pub fn kernel_release(&self) -> Result<String> {
        let out = self
            .command(&["-s", "kernelrelease"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::tool(format!("cannot run make: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || text.is_empty() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(Error::tool(format!(
                "make kernelrelease failed: {}",
                err.lines().last().unwrap_or("no output")
            ))
            .in_file(&self.srctree));
        }
        Ok(text)
    }

    /// Build `targets` with function and data sections and make variables
    /// `vars`, output to `log`. `expected`: how many objects a whole build
    /// compiles, when known.
    pub fn build(
        &self,
        targets: &[&str],
        vars: &[String],
        log: &Path,
        expected: Option<usize>,
        stop: &Interrupt,
    ) -> Result<BuildRun> {
        let mut args = vec!["KCFLAGS=-ffunction-sections -fdata-sections", "KBUILD_MODPOST_WARN=1"];
        args.extend(vars.iter().map(String::as_str));
        args.extend_from_slice(targets);
        let mut cmd = self.command(&args);
        let log_file = std::fs::File::create(log).map_err(|e| Error::io(log, "cannot create the build log", &e))?;
        let err_file = log_file.try_clone().map_err(|e| Error::io(log, "cannot write", &e))?;
        // Its own process group: a terminal's ^C reaches only klp, which
        // stops the whole build itself and then restores the tree.
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err_file).process_group(0);
        let mut child = cmd.spawn().map_err(|e| Error::tool(format!("cannot run make: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        let compiled = Arc::new(AtomicUsize::new(0));
        let reader = {
            let (compiled, verbose) = (Arc::clone(&compiled), self.verbose);
            std::thread::spawn(move || copy_output(stdout, log_file, &compiled, verbose))
        };
        let progress = Progress::new(expected, self.verbose);
        let status = loop {
            if stop.requested() {
                // SAFETY: kill(2) on the process group make leads; no memory is involved.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
                let _ = child.wait();
                let _ = reader.join();
                progress.finish();
                return Err(Error::interrupted("interrupted by a signal during the kernel build"));
            }
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => return Err(Error::tool(format!("cannot wait for make: {e}"))),
            }
            progress.show(compiled.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        };
        let _ = reader.join();
        progress.finish();
        if !status.success() {
            return Err(Error::tool(format!("make {} failed ({status})", targets.join(" "))).in_file(log));
        }
        Ok(BuildRun { compiled: compiled.load(Ordering::Relaxed) })
    }
}

/// The object whose compile command stands for the build's flags: every
/// kernel compiles `init/main.c`.
const FLAGS_OBJECT: &str = "init/.main.o.cmd";

/// The compile command kbuild last used for `init/main.o` in `build_dir`
/// (its `.cmd` file's first line), if it has one. The flags come partly
/// from compiler probes (`cc-option`) that kbuild runs on every make; two
/// builds of one tree compile alike only if this is the same.
pub fn compile_command(build_dir: &Path) -> Result<Option<String>> {
    let path = build_dir.join(FLAGS_OBJECT);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().next().map(str::to_owned)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, "cannot read", &e)),
    }
}

/// The words of command `b` that `a` lacks and those it has besides, for
/// a message.
pub fn command_difference(a: &str, b: &str) -> String {
    let (wa, wb): (Vec<&str>, Vec<&str>) = (a.split_whitespace().collect(), b.split_whitespace().collect());
    let missing: Vec<&str> = wa.iter().copied().filter(|w| !wb.contains(w)).collect();
    let extra: Vec<&str> = wb.iter().copied().filter(|w| !wa.contains(w)).collect();
    format!("without {}; with {}", or_none(&missing), or_none(&extra))
}

fn or_none(words: &[&str]) -> String {
    if words.is_empty() { "nothing".to_owned() } else { words.join(" ") }
}

/// Make's output into the log, each line with the seconds since the build
/// started: the log shows where the time went (compiling, `vmlinux.o`,
/// the links, modpost).
fn copy_output(stdout: std::process::ChildStdout, mut log: std::fs::File, compiled: &AtomicUsize, verbose: bool) {
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line.trim_start().starts_with("CC ") {
            compiled.fetch_add(1, Ordering::Relaxed);
        }
        let _ = writeln!(log, "[{:8.2}] {line}", started.elapsed().as_secs_f64());
        if verbose {
            eprintln!("{line}");
        }
    }
}

/// On a terminal, a bar of the objects compiled against the number a whole
/// build compiles, when an earlier build of the tree told it; otherwise a
/// spinner with the count (an incremental build may compile three objects,
/// a first one thousands: only make knows). On other stderr a line every
/// half minute, so that a CI log shows the build moves.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    expected: Option<usize>,
    started: Instant,
    last_line: std::cell::Cell<Instant>,
    plain: bool,
}

impl Progress {
    fn new(expected: Option<usize>, verbose: bool) -> Self {
        let terminal = std::io::stderr().is_terminal() && !verbose;
        let bar = terminal.then(|| {
            let bar = match expected {
                Some(n) => indicatif::ProgressBar::new(n as u64).with_style(
                    indicatif::ProgressStyle::with_template("    [{bar:40}] {pos}/{len} objects compiled, {elapsed}")
                        .expect("valid template")
                        .progress_chars("=> "),
                ),
                None => indicatif::ProgressBar::new_spinner().with_style(
                    indicatif::ProgressStyle::with_template("    {spinner} {pos} objects compiled, {elapsed}")
                        .expect("valid template"),
                ),
            };
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Progress { bar, expected, started: now, last_line: std::cell::Cell::new(now), plain: !terminal && !verbose }
    }

    fn show(&self, compiled: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(compiled as u64);
        } else if self.plain && self.last_line.get().elapsed() >= Duration::from_secs(30) {
            self.last_line.set(Instant::now());
            let of = self.expected.map_or(String::new(), |n| format!(" of about {n}"));
            eprintln!("    {compiled}{of} objects compiled, {:.0} s", self.started.elapsed().as_secs_f64());
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flags_difference_names_the_flags_on_each_side() {
        let orig = "gcc -O2 -falign-jumps=1 -fno-allow-store-data-races -c -o init/main.o init/main.c";
        let patched = "gcc -O2 -c -o init/main.o init/main.c -fzero";
        assert_eq!(
            command_difference(orig, patched),
            "without -falign-jumps=1 -fno-allow-store-data-races; with -fzero"
        );
        assert_eq!(command_difference(orig, orig), "without nothing; with nothing");
    }
}
