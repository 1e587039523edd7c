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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::boot::*;
use common::*;

/// The demo patch's object pairs, per translation unit and as vmlinux.o.
const DEMO_UNITS: &[&str] = &["cmdline.orig.o", "cmdline.patched.o", "version.orig.o", "version.patched.o"];
const DEMO_VMLINUX_O: &[&str] = &["vmlinux.o.orig.zst", "vmlinux.o.patched.zst"];

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
    assert_slim_scenario_effect(&log, "livepatch-scenario");
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
