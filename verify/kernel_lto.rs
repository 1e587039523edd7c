//! The clang ThinLTO kernel (../shared/kernel/6.12-lto) with pairs built
//! from source by the test (verify/common/lto_pairs.rs, cached): no change
//! reported for a pure line shift, and a live patch whose changed function
//! calls a promoted static of another unit and reads a promoted static
//! variable, loaded into the booted kernel.
//!
//! Its own test binary, so that the kernel builds of the first run do not
//! share the machine with the boot tests of verify/kernel_boot.rs.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::boot::*;
use common::lto_pairs::lto_pairs;
use common::*;

/// A line added at the top of 2,118 files rebuilds about 300 units and
/// renames their promoted statics; nothing changed, so nothing is reported
/// but line-only functions. Diffed against the original of the same build,
/// and against ../shared's original, built in another directory, where
/// many more promoted statics have another unit hash (486 of the shifted
/// object's 1,046 against 311 in the same build, when this was written).
#[test]
fn lto_line_shift_reports_no_changed_function() {
    let Some(k) = kernel("6.12-lto", 1, &["vmlinux.o.orig.zst"]) else { return };
    let Some(pairs) = lto_pairs() else { return };
    let shared_orig = unzstd_cached(&k.dir.join("vmlinux.o.orig.zst"));
    let dir = work_dir("lto-line-shift");
    let mut diffed = 0;
    for (label, orig) in [("same build", &pairs.orig), ("../shared original", &shared_orig)] {
        let out = dir.join("out.o");
        let t = Instant::now();
        let o = klp(&[
            "diff",
            orig.to_str().unwrap(),
            pairs.shifted.to_str().unwrap(),
            out.to_str().unwrap(),
            "--objname",
            "vmlinux",
        ]);
        let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.status.code(), Some(0), "{label}: {stderr}");
        let not_line_only: Vec<&str> = stdout.lines().filter(|l| !l.contains(": line-only change: ")).collect();
        assert!(not_line_only.is_empty(), "{label}: reported as changed:\n{}", not_line_only.join("\n"));
        assert!(stderr.trim().is_empty(), "{label}: warnings:\n{stderr}");
        assert!(!out.exists(), "{label}: an output was written for a no-change pair");
        eprintln!(
            "lto line shift ({label}): {} line-only functions, nothing else, in {:.2} s",
            stdout.lines().count(),
            t.elapsed().as_secs_f64()
        );
        diffed += 1;
    }
    assert_eq!(diffed, 2);
}

/// corpus/kernel/lto-scenario: proc_taint() of kernel/sysctl.c logs
/// print_tainted(), which ThinLTO inlines from kernel/panic.c, so the
/// patched function calls panic.c's promoted `_print_tainted.llvm.<hash>`
/// and reads its promoted `tainted_mask.llvm.<hash>`, and still calls its
/// own unit's promoted `do_proc_doulongvec_minmax.llvm.<hash>`. The patched
/// object comes from another build directory, so each of those has another
/// hash there: the module must name them as the running kernel does.
#[test]
fn lto_scenario_promoted_statics_of_another_unit() {
    let Some(k) = kernel("6.12-lto", 1, &["vmlinux.o.orig.zst"]) else { return };
    let Some(pairs) = lto_pairs() else { return };
    let t = Instant::now();
    let dir = work_dir("lto-scenario");
    let orig = unzstd_cached(&k.dir.join("vmlinux.o.orig.zst"));
    let out = dir.join("vmlinux.out.o");
    let report = k.diff(&orig, &pairs.scenario, &out);
    assert_eq!(reported(report.as_bytes(), "changed function"), ["proc_taint"], "{report}");
    assert_eq!(report.lines().count(), 1, "{report}");
    let promoted = promoted_klp_symbols(&out);
    let kallsyms = symbol_names(&k.vmlinux);
    for stem in ["_print_tainted", "tainted_mask", "do_proc_doulongvec_minmax"] {
        let name = promoted
            .iter()
            .find(|n| n.starts_with(&format!("{stem}.llvm.")))
            .unwrap_or_else(|| panic!("no KLP symbol for {stem}.llvm.*: {promoted:?}"));
        // The oracle: the linked vmlinux's own symbol table (readelf).
        assert!(kallsyms.contains(name), "{name} is not a symbol of the running kernel");
        eprintln!("    KLP symbol {name}");
    }
    let ko = k.module(&dir, "livepatch-lto-scenario", &[out], &[]);
    let log = k.boot(
        &dir,
        &[ko],
        Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/kernel/lto-scenario/scenario.sh")),
    );
    log.expect("insmod ok livepatch-lto-scenario.ko");
    log.expect("LIVEPATCH livepatch_lto_scenario enabled=1 transition=0");
    assert_eq!(log.value("before taint-lines"), "0");
    assert_eq!(log.value("patched taint-lines"), "1", "one read of /proc/sys/kernel/tainted while patched");
    assert_eq!(log.value("disabled taint-lines"), "1", "proc_taint still patched after disabling");
    // The patched code read the running kernel's tainted_mask and printed it
    // with the running kernel's _print_tainted(): the value /proc shows.
    let taint = log.value("patched taint");
    let last = log.value("patched taint-last");
    let logged = last.strip_prefix("klp-lto: taint ").unwrap_or_else(|| panic!("{last}"));
    let (value, text) = logged.split_once(' ').unwrap_or((logged, ""));
    assert_eq!(value, taint, "logged taint {value} but /proc/sys/kernel/tainted says {taint}");
    assert_ne!(taint, "0", "loading a livepatch taints the kernel");
    assert!(text.starts_with("Tainted:"), "print_tainted() gave {text:?}");
    log.expect("rmmod ok livepatch_lto_scenario");
    log.assert_kernel_log_clean();
    for l in log.dmesg.iter().filter(|l| l.contains("klp-lto") || l.contains("livepatch")) {
        eprintln!("    {l}");
    }
    eprintln!("lto-scenario: {:.1} s", t.elapsed().as_secs_f64());
}

/// Names of `.klp.sym.vmlinux.NAME,POS` symbols with `.llvm.` in NAME, read
/// with readelf (not klp's reader).
fn promoted_klp_symbols(obj: &Path) -> Vec<String> {
    symbol_names(obj)
        .into_iter()
        .filter_map(|n| n.strip_prefix(".klp.sym.vmlinux.").and_then(|r| r.rsplit_once(',')).map(|(n, _)| n.to_owned()))
        .filter(|n| n.contains(".llvm."))
        .collect()
}

fn symbol_names(obj: &Path) -> Vec<String> {
    let o = Command::new("readelf").args(["-sW", "--wide"]).arg(obj).output().expect("run readelf");
    assert!(o.status.success(), "readelf -s {}", obj.display());
    String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.split_whitespace().nth(7)).map(str::to_owned).collect()
}
