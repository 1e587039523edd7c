//! The kernels of ../shared/kernel under QEMU: building livepatch modules
//! for them with `klp diff` and `klp module`, booting them with the modules
//! in a busybox initramfs (verify/kernel/init.sh is its /init), and reading
//! the serial log. Used by verify/kernel_boot.rs and verify/kernel_lto.rs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use super::*;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One of the kernels in ../shared/kernel, ready to build modules for.
pub struct Kernel {
    pub name: &'static str,
    pub dir: PathBuf,
    /// The module build tree, unpacked from kdev.tar.zst.
    pub kdev: PathBuf,
    /// The linked vmlinux, for exact symbol positions.
    pub vmlinux: PathBuf,
    pub cpus: u32,
}

/// What the boot test runs besides klp: QEMU, what the initramfs is made
/// of (a static busybox, cpio, gzip; gcc and libc.a for a static helper),
/// kbuild's tools and headers, and the unpackers of the assets.
pub const TOOLS: &[&str] = &[
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
pub const CLANG_TOOLS: &[&str] = &["clang", "ld.lld", "llvm-ar", "llvm-nm", "llvm-objcopy", "llvm-readelf"];

/// What every boot test uses of a kernel's assets.
pub const KERNEL_FILES: &[&str] = &["bzImage", "vmlinux.zst", "kdev.tar.zst", "Module.symvers"];

/// The kernel `name` (with `files` of its assets besides [`KERNEL_FILES`])
/// and every tool, or `None` after saying visibly what is missing (a failure
/// under CI). The assets are ../shared/kernel/NAME, or KLP_KERNEL_ASSETS/NAME
/// for kernels rebuilt by verify/kernel/rebuild-assets.sh.
pub fn kernel(name: &'static str, cpus: u32, files: &[&str]) -> Option<Kernel> {
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
pub fn unpack_kdev(dir: &Path) -> PathBuf {
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

pub fn work_dir(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel-boot").join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Kernel {
    /// `klp diff` as klp-build would run it for vmlinux; returns the report.
    pub fn diff(&self, orig: &Path, patched: &Path, out: &Path) -> String {
        self.diff_with(orig, patched, out, Exports::Symvers)
    }

    pub fn diff_with(&self, orig: &Path, patched: &Path, out: &Path, exports: Exports) -> String {
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
    pub fn module(&self, dir: &Path, name: &str, outputs: &[PathBuf], extra: &[&str]) -> PathBuf {
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
    pub fn boot(&self, dir: &Path, modules: &[PathBuf], scenario: Option<&Path>) -> BootLog {
        self.boot_with(dir, modules, scenario, &[])
    }

    /// Boot with `modules`, the `scenario` script and extra programs in /bin.
    pub fn boot_with(&self, dir: &Path, modules: &[PathBuf], scenario: Option<&Path>, bins: &[PathBuf]) -> BootLog {
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
pub enum Exports {
    /// `--symvers`: ordinary undefined references.
    Symvers,
    /// No `--symvers`: every reference to an existing symbol a KLP relocation.
    AllKlp,
}

/// What /init printed (`KLP-TEST: ` lines) and the kernel log it dumped.
pub struct BootLog {
    pub lines: Vec<String>,
    pub dmesg: Vec<String>,
}

impl BootLog {
    pub fn parse(serial: &str) -> Self {
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

    pub fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    pub fn value(&self, key: &str) -> &str {
        let prefix = format!("{key}: ");
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no `{key}` line in the serial log; /init said:\n{}", self.lines.join("\n")))
    }

    pub fn expect(&self, line: &str) {
        assert!(
            self.has(line),
            "no `{line}` in the serial log; /init said:\n{}\nkernel log:\n{}",
            self.lines.join("\n"),
            self.dmesg.join("\n")
        );
    }

    /// The kernel's own lines about livepatching and module loading, for the note.
    pub fn livepatch_lines(&self) -> Vec<&str> {
        self.dmesg.iter().map(String::as_str).filter(|l| l.contains("livepatch") || l.contains("klp")).collect()
    }

    /// No livepatch or module-loader error, and no WARNING, BUG or Oops.
    pub fn assert_kernel_log_clean(&self) {
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

pub const CMDLINE_MARK: &str = "kbuild_test_patched=1";
pub const VERSION_MARK: &str = "(patched: kbuild-test source patch)";

/// The demo patch took effect exactly while the module was enabled.
pub fn assert_demo_effect(log: &BootLog, module: &str) {
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

/// corpus/kernel/slim-scenario took effect exactly while `module` was
/// enabled (its scenario.sh ran in each phase).
pub fn assert_slim_scenario_effect(log: &BootLog, module: &str) {
    log.expect(&format!("insmod ok {module}.ko"));
    log.expect(&format!("LIVEPATCH {} enabled=1 transition=0", module.replace('-', "_")));
    // m_show of fs/namespace.c, not of kernel/module/procfs.c, calls the new function.
    assert_eq!(log.value("before mounts-marker"), "0");
    assert_ne!(log.value("patched mounts-marker"), "0", "the patched m_show did not run");
    assert_eq!(log.value("disabled mounts-marker"), "0");
    // The patched handler sees the running kernel's stfu (4, set before the patch).
    assert_eq!(log.value("before drop_caches-lines"), "0");
    assert_eq!(log.value("patched drop_caches-lines"), "1");
    assert_eq!(log.value("patched drop_caches-last"), "klp-scenario: drop_caches 1 stfu=4");
    assert_eq!(log.value("disabled drop_caches-lines"), "1", "the patched handler still ran after disabling");
    log.expect(&format!("rmmod ok {}", module.replace('-', "_")));
    log.assert_kernel_log_clean();
}
