//! The end-to-end test against the oracle that matters: build livepatch
//! modules with `klp diff` and `klp module` for the real Linux 6.12 kernels
//! in ../shared/kernel, boot each kernel under QEMU (TCG) with the modules in
//! a busybox initramfs (verify/kernel/init.sh is its /init), and read from
//! the serial log that each module loads, its transition finishes, it does
//! what the patch says, and disabling it brings the old behaviour back.
//!
//! Needs ../shared/kernel and qemu-system-x86, busybox-static, cpio, make,
//! gcc with libc6-dev, bc, flex, bison and libelf-dev, which `.ci/run`
//! installs. Without any of them a test says SKIPPED on stderr, except under
//! CI (`CI` set), where it fails naming what is missing: a green CI must
//! mean the kernel ran.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use common::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One of the kernels in ../shared/kernel, ready to build modules for.
struct Kernel {
    name: &'static str,
    dir: PathBuf,
    /// The module build tree, unpacked from kdev.tar.zst.
    kdev: PathBuf,
    /// The linked vmlinux, for exact symbol positions.
    vmlinux: PathBuf,
    cpus: u32,
}

/// What the boot test runs besides klp: QEMU, what the initramfs is made
/// of (a static busybox, cpio, gzip; gcc and libc.a for a static helper),
/// kbuild's tools and headers, and the unpackers of the assets.
const TOOLS: &[&str] = &[
    "qemu-system-x86_64",
    "timeout",
    STATIC_BUSYBOX,
    "cpio",
    "gzip",
    "make",
    "gcc",
    "/usr/lib/x86_64-linux-gnu/libc.a",
    "bc",
    "flex",
    "bison",
    "/usr/include/libelf.h",
    "objcopy",
    "readelf",
    "zstd",
    "tar",
];

/// What kbuild runs besides [`TOOLS`] for a clang (`LLVM=1`) kernel.
const CLANG_TOOLS: &[&str] = &["clang", "ld.lld", "llvm-ar", "llvm-nm", "llvm-objcopy", "llvm-readelf"];

/// What every boot test uses of a kernel's assets.
const KERNEL_FILES: &[&str] = &["bzImage", "vmlinux.zst", "kdev.tar.zst", "Module.symvers"];
/// The demo patch's object pairs, per translation unit and as vmlinux.o.
const DEMO_UNITS: &[&str] = &["cmdline.orig.o", "cmdline.patched.o", "version.orig.o", "version.patched.o"];
const DEMO_VMLINUX_O: &[&str] = &["vmlinux.o.orig.zst", "vmlinux.o.patched.zst"];

/// The kernel `name` (with `files` of its assets besides [`KERNEL_FILES`])
/// and every tool, or `None` after saying visibly what is missing (a failure
/// under CI). The assets are ../shared/kernel/NAME, or KLP_KERNEL_ASSETS/NAME
/// for kernels rebuilt by verify/kernel/rebuild-assets.sh.
fn kernel(name: &'static str, cpus: u32, files: &[&str]) -> Option<Kernel> {
    let (root, label) = match std::env::var_os("KLP_KERNEL_ASSETS") {
        Some(assets) => (PathBuf::from(assets), "$KLP_KERNEL_ASSETS"),
        None => (shared_dir().join("kernel"), "../shared/kernel"),
    };
    let assets: Vec<String> = KERNEL_FILES.iter().chain(files).map(|f| format!("{name}/{f}")).collect();
    let mut tools = TOOLS.to_vec();
    if name.ends_with("-lto") {
        tools.extend(CLANG_TOOLS);
    }
    require_from(&root, label, &strs(&assets), &tools)?;
    let dir = root.join(name);
    let kdev = unpack_kdev(&dir);
    let vmlinux = unzstd_cached(&dir.join("vmlinux.zst"));
    Some(Kernel { name, dir, kdev, vmlinux, cpus })
}

/// Unpack the kernel's module build tree once per test run.
fn unpack_kdev(dir: &Path) -> PathBuf {
    static UNPACKED: OnceLock<Mutex<HashMap<PathBuf, PathBuf>>> = OnceLock::new();
    let mut done = UNPACKED.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = done.get(dir) {
        return k.clone();
    }
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kdev").join(name);
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::create_dir_all(&dest).unwrap();
    let status = Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(dir.join("kdev.tar.zst"))
        .arg("-C")
        .arg(&dest)
        .status()
        .expect("run tar");
    assert!(status.success(), "unpacking {}/kdev.tar.zst", dir.display());
    let kdev = dest.join("kdev");
    done.insert(dir.to_owned(), kdev.clone());
    kdev
}

fn work_dir(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel-boot").join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Kernel {
    /// `klp diff` as klp-build would run it for vmlinux; returns the report.
    fn diff(&self, orig: &Path, patched: &Path, out: &Path) -> String {
        self.diff_with(orig, patched, out, Exports::Symvers)
    }

    fn diff_with(&self, orig: &Path, patched: &Path, out: &Path, exports: Exports) -> String {
        let symvers = self.dir.join("Module.symvers");
        let mut args = vec![
            "diff",
            orig.to_str().unwrap(),
            patched.to_str().unwrap(),
            out.to_str().unwrap(),
            "--objname",
            "vmlinux",
            "--parent",
            self.vmlinux.to_str().unwrap(),
        ];
        if exports == Exports::Symvers {
            args.extend(["--symvers", symvers.to_str().unwrap()]);
        }
        let o = klp(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "klp diff {}: {stderr}", orig.display());
        assert!(out.exists(), "klp diff {} wrote no output", orig.display());
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `klp module` against this kernel's build tree.
    fn module(&self, dir: &Path, name: &str, outputs: &[PathBuf], extra: &[&str]) -> PathBuf {
        let ko = dir.join(format!("{name}.ko"));
        let mut args =
            vec!["module", "--name", name, "--kdir", self.kdev.to_str().unwrap(), "-o", ko.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend(outputs.iter().map(|p| p.to_str().unwrap()));
        // Without LLVM in the environment: klp module finds the kernel's
        // compiler in its .config (LLVM=1 for the clang kernel).
        let o = Command::new(env!("CARGO_BIN_EXE_klp")).args(&args).env_remove("LLVM").output().expect("run klp");
        assert!(o.status.success(), "klp module {name}: {}", String::from_utf8_lossy(&o.stderr));
        eprintln!(
            "{}",
            String::from_utf8_lossy(&o.stderr).lines().find(|l| l.contains("kernel built with")).unwrap_or("")
        );
        if !extra.contains(&"--skip-post-link") {
            // Symbol positions too, against the kernel the module is for.
            let o = klp(&["check", ko.to_str().unwrap(), "--parent", self.vmlinux.to_str().unwrap()]);
            assert!(o.status.success(), "klp check {name}: {}", String::from_utf8_lossy(&o.stdout));
        }
        ko
    }

    /// Boot with `modules` in the initramfs; the serial log, parsed.
    fn boot(&self, dir: &Path, modules: &[PathBuf], scenario: Option<&Path>) -> BootLog {
        self.boot_with(dir, modules, scenario, &[])
    }

    /// Boot with `modules`, the `scenario` script and extra programs in /bin.
    fn boot_with(&self, dir: &Path, modules: &[PathBuf], scenario: Option<&Path>, bins: &[PathBuf]) -> BootLog {
        let initrd = dir.join("initramfs.cpio.gz");
        let mut mk = Command::new("bash");
        mk.arg(root().join("verify/kernel/mkinitramfs.sh")).arg(&initrd);
        if let Some(s) = scenario {
            mk.arg("--scenario").arg(s);
        }
        for b in bins {
            mk.arg("--bin").arg(b);
        }
        let st = mk.args(modules).status().expect("run mkinitramfs.sh");
        assert!(st.success(), "mkinitramfs.sh failed");
        let start = Instant::now();
        let o = Command::new("timeout")
            .args(["300", "qemu-system-x86_64", "-m", "512", "-smp"])
            .arg(self.cpus.to_string())
            // One host thread runs every vCPU in turn. With a thread per vCPU
            // the defconfig kernel sometimes oopsed at boot ("Oops: int3" in
            // sched_clock_cpu, before any module): TCG served a stale
            // translation of code another vCPU had just text_poke'd. The
            // guest still has two CPUs, and a transition must still reach
            // the tasks of both.
            .args(["-accel", "tcg,thread=single"])
            .args(["-nographic", "-no-reboot", "-net", "none", "-kernel"])
            .arg(self.dir.join("bzImage"))
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 panic=-1 loglevel=3"])
            .output()
            .expect("run qemu-system-x86_64");
        let serial = String::from_utf8_lossy(&o.stdout).into_owned();
        std::fs::write(dir.join("serial.log"), &serial).unwrap();
        eprintln!(
            "{}: booted in {:.1} s (serial log: {})",
            self.name,
            start.elapsed().as_secs_f64(),
            dir.join("serial.log").display()
        );
        let log = BootLog::parse(&serial);
        assert!(log.has("done"), "{}: the guest did not finish (qemu {}); serial log:\n{serial}", self.name, o.status);
        assert_eq!(log.value("cpus"), self.cpus.to_string(), "{}: CPUs online", self.name);
        log
    }
}

/// How references to what vmlinux exports are kept.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exports {
    /// `--symvers`: ordinary undefined references.
    Symvers,
    /// No `--symvers`: every reference to an existing symbol a KLP relocation.
    AllKlp,
}

/// What /init printed (`KLP-TEST: ` lines) and the kernel log it dumped.
struct BootLog {
    lines: Vec<String>,
    dmesg: Vec<String>,
}

impl BootLog {
    fn parse(serial: &str) -> Self {
        let mut lines = Vec::new();
        let mut dmesg = Vec::new();
        let mut in_dmesg = false;
        for raw in serial.lines() {
            let l = raw.trim_end_matches('\r');
            // The first line shares the serial line with the firmware's escapes.
            if let Some(i) = l.find("KLP-TEST: ") {
                let t = &l[i + "KLP-TEST: ".len()..];
                match t {
                    "dmesg begin" => in_dmesg = true,
                    "dmesg end" => in_dmesg = false,
                    _ => {}
                }
                lines.push(t.to_owned());
            } else if in_dmesg {
                dmesg.push(l.to_owned());
            }
        }
        BootLog { lines, dmesg }
    }

    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    fn value(&self, key: &str) -> &str {
        let prefix = format!("{key}: ");
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no `{key}` line in the serial log; /init said:\n{}", self.lines.join("\n")))
    }

    fn expect(&self, line: &str) {
        assert!(
            self.has(line),
            "no `{line}` in the serial log; /init said:\n{}\nkernel log:\n{}",
            self.lines.join("\n"),
            self.dmesg.join("\n")
        );
    }

    /// The kernel's own lines about livepatching and module loading, for the note.
    fn livepatch_lines(&self) -> Vec<&str> {
        self.dmesg.iter().map(String::as_str).filter(|l| l.contains("livepatch") || l.contains("klp")).collect()
    }

    /// No livepatch or module-loader error, and no WARNING, BUG or Oops.
    fn assert_kernel_log_clean(&self) {
        const ANYWHERE: &[&str] = &[
            "WARNING:",
            "BUG:",
            "Oops",
            "Call Trace",
            "Invalid relocation",
            "Unknown symbol",
            "overflow in relocation",
            "is not marked as a livepatch symbol",
            "incorrectly formatted name",
            "unresolvable ambiguity",
            "kallsyms size lookup failed",
        ];
        // Other failures only where livepatch or a module speaks (the
        // defconfig kernel's own boot has "failed to load regulatory.db").
        const LIVEPATCH: &[&str] = &["fail", "error", "not found", "invalid", "unable", "refus"];
        let bad: Vec<&String> = self
            .dmesg
            .iter()
            .filter(|l| {
                ANYWHERE.iter().any(|b| l.contains(b))
                    || (l.contains("livepatch") && LIVEPATCH.iter().any(|b| l.to_lowercase().contains(b)))
            })
            .collect();
        assert!(
            bad.is_empty(),
            "the kernel log has errors:\n{}",
            bad.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
        );
    }
}

const CMDLINE_MARK: &str = "kbuild_test_patched=1";
const VERSION_MARK: &str = "(patched: kbuild-test source patch)";

/// The demo patch took effect exactly while the module was enabled.
fn assert_demo_effect(log: &BootLog, module: &str) {
    log.expect(&format!("insmod ok {module}.ko"));
    log.expect(&format!("LIVEPATCH {} enabled=1 transition=0", module.replace('-', "_")));
    for phase in ["before", "disabled"] {
        assert!(
            !log.value(&format!("{phase} cmdline")).contains(CMDLINE_MARK),
            "{phase}: {}",
            log.value(&format!("{phase} cmdline"))
        );
        assert!(
            !log.value(&format!("{phase} version")).contains(VERSION_MARK),
            "{phase}: {}",
            log.value(&format!("{phase} version"))
        );
    }
    assert!(log.value("patched cmdline").ends_with(CMDLINE_MARK), "patched: {}", log.value("patched cmdline"));
    assert!(log.value("patched version").contains(VERSION_MARK), "patched: {}", log.value("patched version"));
    log.expect(&format!("rmmod ok {}", module.replace('-', "_")));
    log.assert_kernel_log_clean();
    for l in log.livepatch_lines() {
        eprintln!("    {l}");
    }
}

/// The demo, diffed per translation unit (fs/proc/cmdline.o, fs/proc/version.o).
fn demo_from_units(k: &Kernel, test: &str) {
    let t = Instant::now();
    let dir = work_dir(test);
    let mut outs = Vec::new();
    for (unit, func) in [("cmdline", "cmdline_proc_show"), ("version", "version_proc_show")] {
        let out = dir.join(format!("{unit}.out.o"));
        let report = k.diff(&k.dir.join(format!("{unit}.orig.o")), &k.dir.join(format!("{unit}.patched.o")), &out);
        assert_eq!(reported(report.as_bytes(), "changed function"), [func], "{report}");
        outs.push(out);
    }
    let ko = k.module(&dir, "livepatch-demo", &outs, &[]);
    let log = k.boot(&dir, &[ko], None);
    assert_demo_effect(&log, "livepatch-demo");
    eprintln!("{test}: {:.1} s", t.elapsed().as_secs_f64());
}

/// The demo, diffed as the whole vmlinux.o.
fn demo_from_vmlinux_o(k: &Kernel, test: &str) {
    let t = Instant::now();
    let dir = work_dir(test);
    let orig = unzstd_cached(&k.dir.join("vmlinux.o.orig.zst"));
    let patched = unzstd_cached(&k.dir.join("vmlinux.o.patched.zst"));
    let out = dir.join("vmlinux.out.o");
    let report = k.diff(&orig, &patched, &out);
    let mut changed = reported(report.as_bytes(), "changed function");
    changed.sort();
    assert_eq!(changed, ["cmdline_proc_show", "version_proc_show"], "{report}");
    let ko = k.module(&dir, "livepatch-demo-vmlinux", &[out], &[]);
    let log = k.boot(&dir, &[ko], None);
    assert_demo_effect(&log, "livepatch-demo-vmlinux");
    eprintln!("{test}: {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn slim_demo_from_translation_units_loads_and_takes_effect() {
    let Some(k) = kernel("6.12-slim", 1, DEMO_UNITS) else { return };
    demo_from_units(&k, "slim-demo-units");
}

#[test]
fn slim_demo_from_vmlinux_o_loads_and_takes_effect() {
    let Some(k) = kernel("6.12-slim", 1, DEMO_VMLINUX_O) else { return };
    demo_from_vmlinux_o(&k, "slim-demo-vmlinux");
}

/// The check can fail: a module whose KLP relocations were never converted
/// (post-link skipped) is refused by the kernel, and nothing is patched.
#[test]
fn slim_kernel_refuses_a_module_without_post_link() {
    let Some(k) = kernel("6.12-slim", 1, &["cmdline.orig.o", "cmdline.patched.o"]) else { return };
    let dir = work_dir("slim-no-post-link");
    let out = dir.join("cmdline.out.o");
    k.diff(&k.dir.join("cmdline.orig.o"), &k.dir.join("cmdline.patched.o"), &out);
    let ko = k.module(&dir, "livepatch-unconverted", &[out], &["--skip-post-link"]);
    let log = k.boot(&dir, &[ko], None);
    log.expect("insmod refused livepatch-unconverted.ko");
    assert!(!log.lines.iter().any(|l| l.starts_with("LIVEPATCH ")), "a patch was registered: {:?}", log.lines);
    assert!(!log.value("patched cmdline").contains(CMDLINE_MARK));
    // The placeholders are global until post-link marks them SHN_LIVEPATCH,
    // so the module loader cannot resolve them.
    let why: Vec<&String> = log
        .dmesg
        .iter()
        .filter(|l| l.contains("livepatch_unconverted: Unknown symbol .klp.tombstone.saved_command_line"))
        .collect();
    assert!(!why.is_empty(), "the kernel did not say why it refused the module:\n{}", log.dmesg.join("\n"));
    for l in &why {
        eprintln!("    {l}");
    }
}

/// Our own scenario (corpus/kernel/slim-scenario): a new static function
/// called by a changed one, a function-local static that must stay the
/// running kernel's, and a changed function whose name is not unique in
/// vmlinux (m_show, the second of two: sympos 2).
#[test]
fn slim_scenario_new_function_static_local_and_sympos() {
    let Some(k) = kernel("6.12-slim", 1, &[]) else { return };
    let t = Instant::now();
    let dir = work_dir("slim-scenario");
    let corpus = root().join("corpus/kernel/slim-scenario");
    let mut outs = Vec::new();
    let mut reports = String::new();
    for unit in ["namespace", "drop_caches"] {
        let out = dir.join(format!("{unit}.out.o"));
        reports += &k.diff(&corpus.join(format!("{unit}.orig.o")), &corpus.join(format!("{unit}.patched.o")), &out);
        outs.push(out);
    }
    let mut changed = reported(reports.as_bytes(), "changed function");
    changed.sort();
    assert_eq!(changed, ["drop_caches_sysctl_handler", "m_show"], "{reports}");
    assert_eq!(sorted_stripped(reported(reports.as_bytes(), "new function")), ["mounts_klp_note.isra"], "{reports}");
    let ko = k.module(&dir, "livepatch-scenario", &outs, &[]);
    let log = k.boot(&dir, &[ko], Some(&corpus.join("scenario.sh")));
    log.expect("insmod ok livepatch-scenario.ko");
    log.expect("LIVEPATCH livepatch_scenario enabled=1 transition=0");
    // m_show of fs/namespace.c, not of kernel/module/procfs.c, calls the new function.
    assert_eq!(log.value("before mounts-marker"), "0");
    assert_ne!(log.value("patched mounts-marker"), "0", "the patched m_show did not run");
    assert_eq!(log.value("disabled mounts-marker"), "0");
    // The patched handler sees the running kernel's stfu (4, set before the patch).
    assert_eq!(log.value("before drop_caches-lines"), "0");
    assert_eq!(log.value("patched drop_caches-lines"), "1");
    assert_eq!(log.value("patched drop_caches-last"), "klp-scenario: drop_caches 1 stfu=4");
    assert_eq!(log.value("disabled drop_caches-lines"), "1", "the patched handler still ran after disabling");
    log.expect("rmmod ok livepatch_scenario");
    log.assert_kernel_log_clean();
    for l in log.livepatch_lines() {
        eprintln!("    {l}");
    }
    eprintln!("slim-scenario: {:.1} s", t.elapsed().as_secs_f64());
}

/// The clang ThinLTO kernel: its translation units are bitcode, so the demo
/// comes from the LTO-linked vmlinux.o only, and `klp module` must find out
/// from the tree's .config that the module is built with LLVM=1.
#[test]
fn lto_demo_from_vmlinux_o_loads_and_takes_effect() {
    let Some(k) = kernel("6.12-lto", 1, DEMO_VMLINUX_O) else { return };
    demo_from_vmlinux_o(&k, "lto-demo-vmlinux");
}

#[test]
fn def_demo_from_translation_units_loads_and_takes_effect_on_two_cpus() {
    let Some(k) = kernel("6.12-def", 2, DEMO_UNITS) else { return };
    demo_from_units(&k, "def-demo-units");
}

#[test]
fn def_demo_from_vmlinux_o_loads_and_takes_effect_on_two_cpus() {
    let Some(k) = kernel("6.12-def", 2, DEMO_VMLINUX_O) else { return };
    demo_from_vmlinux_o(&k, "def-demo-vmlinux");
}

#[test]
fn def_scenario_with_symvers() {
    let Some(k) = kernel("6.12-def", 2, &[]) else { return };
    def_scenario(&k, "def-scenario", Exports::Symvers);
}

/// The same with every reference to vmlinux a KLP relocation: the jump
/// table's key, the static call's trampoline, the alternative's call.
#[test]
fn def_scenario_all_klp_relocations() {
    let Some(k) = kernel("6.12-def", 2, &[]) else { return };
    def_scenario(&k, "def-scenario-all-klp", Exports::AllKlp);
}

/// The global-function scenario of the defconfig kernel
/// (corpus/kernel/global-scenario, ../shared/kernel/6.12-def/global.patch):
/// the global ksys_sync() calls the new global klp_sync_note(), diffed as
/// the whole vmlinux.o, where objtool has named the call padding `__pfx_`.
#[test]
fn def_global_function_from_vmlinux_o() {
    let Some(k) = kernel("6.12-def", 2, &["vmlinux.o.orig.zst", "vmlinux.o.global.zst"]) else { return };
    let orig = unzstd_cached(&k.dir.join("vmlinux.o.orig.zst"));
    let patched = unzstd_cached(&k.dir.join("vmlinux.o.global.zst"));
    global_scenario(&k, "def-global-vmlinux", &orig, &patched);
}

/// The same from the translation unit fs/sync.o, where objtool has not run.
#[test]
fn def_global_function_from_translation_unit() {
    let Some(k) = kernel("6.12-def", 2, &["sync.orig.o", "sync.patched.o"]) else { return };
    global_scenario(&k, "def-global-units", &k.dir.join("sync.orig.o"), &k.dir.join("sync.patched.o"));
}

fn global_scenario(k: &Kernel, test: &str, orig: &Path, patched: &Path) {
    let t = Instant::now();
    let dir = work_dir(test);
    let out = dir.join("sync.out.o");
    let report = k.diff(orig, patched, &out);
    assert_eq!(reported(report.as_bytes(), "changed function"), ["ksys_sync"], "{report}");
    assert_eq!(reported(report.as_bytes(), "new function"), ["klp_sync_note"], "{report}");
    assert_eq!(reported(report.as_bytes(), "new data"), ["klp_sync_calls"], "{report}");
    let ko = k.module(&dir, "livepatch-global", &[out], &[]);
    assert_ibt_ready(&ko, &["ksys_sync".to_owned(), "klp_sync_note".to_owned()]);
    let log = k.boot(&dir, &[ko], Some(&root().join("corpus/kernel/global-scenario/scenario.sh")));
    log.expect("insmod ok livepatch-global.ko");
    log.expect("LIVEPATCH livepatch_global enabled=1 transition=0");
    assert_eq!(log.value("before sync-lines"), "0");
    assert_eq!(log.value("patched sync-lines"), "2", "each sync calls the patched ksys_sync once");
    assert_eq!(log.value("patched sync-last"), "klp-global: sync call 2");
    assert_eq!(log.value("disabled sync-lines"), "2", "ksys_sync still patched after disabling");
    log.expect("rmmod ok livepatch_global");
    log.assert_kernel_log_clean();
    for l in log.dmesg.iter().filter(|l| l.contains("klp-global") || l.contains("livepatch")) {
        eprintln!("    {l}");
    }
    eprintln!("{test}: {:.1} s", t.elapsed().as_secs_f64());
}

/// Our defconfig scenario (corpus/kernel/def-scenario), the global
/// si_meminfo() of mm/show_mem.c and four functions of
/// drivers/char/mem.c, each reached through a file_operations pointer: a
/// jump label on a key flipped while patched (read_null), alternatives
/// (write_null), a static call (read_zero, whose clear_user() also has an
/// exception-table entry), an exception-table entry with its fixup label in
/// the function (write_full); both fixups are exercised with an unmapped
/// buffer.
fn def_scenario(k: &Kernel, test: &str, exports: Exports) {
    let t = Instant::now();
    let dir = work_dir(test);
    let corpus = root().join("corpus/kernel/def-scenario");
    // One object pair per translation unit: drivers/char/mem.o, mm/show_mem.o.
    let mut outputs = Vec::new();
    let mut report = String::new();
    for unit in ["mem", "show_mem"] {
        let out = dir.join(format!("{unit}.out.o"));
        report += &k.diff_with(
            &corpus.join(format!("{unit}.orig.o")),
            &corpus.join(format!("{unit}.patched.o")),
            &out,
            exports,
        );
        outputs.push(out);
    }
    let mut changed = reported(report.as_bytes(), "changed function");
    changed.sort();
    assert_eq!(changed, ["read_null", "read_zero", "si_meminfo", "write_full", "write_null"], "{report}");
    assert_eq!(report.lines().count(), 5, "{report}");
    let ko = k.module(&dir, "livepatch-def-scenario", &outputs, &[]);
    assert_ibt_ready(&ko, &changed);
    let efault = build_efault(&dir);
    let log = k.boot_with(&dir, &[ko], Some(&corpus.join("scenario.sh")), &[efault]);
    log.expect("insmod ok livepatch-def-scenario.ko");
    log.expect("LIVEPATCH livepatch_def_scenario enabled=1 transition=0");
    for key in ["read_null-off", "read_null-on", "write_null", "read_zero", "write_full", "si_meminfo"] {
        assert_eq!(log.value(&format!("before {key}")), "0", "{key} logged before the patch");
        assert_ne!(log.value(&format!("patched {key}")), "0", "the patched {key} did not run");
        assert_eq!(
            log.value(&format!("disabled {key}")),
            log.value(&format!("patched {key}")),
            "{key} still patched after disabling"
        );
    }
    for phase in ["before", "patched", "disabled"] {
        assert_eq!(log.value(&format!("{phase} read_zero-bytes")), "0/4096", "/dev/zero {phase}");
    }
    // The global si_meminfo(): /proc/meminfo's MemTotal is the same in every
    // phase, and the patched function logged exactly that value, once.
    let total = log.value("before si_meminfo-total");
    let kb: u64 = total.strip_suffix(" kB").and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(kb > 0, "MemTotal before: {total:?}");
    for phase in ["patched", "disabled"] {
        assert_eq!(log.value(&format!("{phase} si_meminfo-total")), total, "MemTotal {phase}");
    }
    assert_eq!(log.value("patched si_meminfo"), "1", "the patched si_meminfo() ran once for /proc/meminfo");
    // write_full's own exception-table entry exists only while patched.
    assert_eq!(log.value("before write_full-efault"), "No space left on device");
    assert_eq!(log.value("patched write_full-efault"), "Bad address");
    assert_eq!(log.value("disabled write_full-efault"), "No space left on device");
    // read_zero faults in clear_user() in every phase. Its inline entry covers
    // `rep stosb`; on QEMU's CPU (no FSRS) the alternative calls
    // rep_stos_alternative instead, whose own entry in vmlinux handles the
    // fault, so this shows the patched function's error path, not our entry.
    // write_full's entry above is ours alone: without it the kernel oopses
    // (tried by hand: "BUG: kernel NULL pointer dereference, address: 0x10").
    for phase in ["before", "patched", "disabled"] {
        assert_eq!(log.value(&format!("{phase} read_zero-efault")), "Bad address", "{phase}");
    }
    log.expect("rmmod ok livepatch_def_scenario");
    log.assert_kernel_log_clean();
    for l in log.dmesg.iter().filter(|l| l.contains("klp-def") || l.contains("livepatch")) {
        eprintln!("    {l}");
    }
    eprintln!("{test}: {:.1} s", t.elapsed().as_secs_f64());
}

/// Each cloned function starts with `endbr64` (an IBT kernel reaches it
/// through a pointer) and keeps its 16 bytes of padding, named `__pfx_` by
/// objtool in the module build.
fn assert_ibt_ready(ko: &Path, functions: &[String]) {
    use object::{Object, ObjectSection, ObjectSymbol};
    const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
    let data = std::fs::read(ko).unwrap();
    let file = object::File::parse(&*data).unwrap();
    for f in functions {
        let sym =
            file.symbols().find(|s| s.name() == Ok(f.as_str())).unwrap_or_else(|| panic!("{f} not in the module"));
        let sec = file.section_by_index(sym.section_index().unwrap()).unwrap();
        let bytes = sec.data().unwrap();
        let at = sym.address() as usize;
        assert_eq!(bytes.get(at..at + 4), Some(&ENDBR64[..]), "{f} does not start with endbr64");
        let pfx = format!("__pfx_{f}");
        let prefix = file.symbols().find(|s| s.name() == Ok(pfx.as_str())).unwrap_or_else(|| panic!("no {pfx}"));
        assert_eq!(
            (prefix.address() + prefix.size(), prefix.section_index()),
            (sym.address(), sym.section_index()),
            "{pfx}"
        );
    }
}

/// verify/kernel/efault.c, static, for the initramfs.
fn build_efault(dir: &Path) -> PathBuf {
    let out = dir.join("efault");
    let o = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-o"])
        .arg(&out)
        .arg(root().join("verify/kernel/efault.c"))
        .output()
        .expect("run gcc");
    assert!(o.status.success(), "efault.c: {}", String::from_utf8_lossy(&o.stderr));
    out
}
