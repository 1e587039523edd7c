//! Build a livepatch module the way the tests need it: diff, compile the
//! skeleton standalone, `ld -r -T` with the module-like script, post-link.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::klp;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The skeleton compiled with gcc (no kernel tree needed).
pub fn skeleton_object(dir: &Path) -> PathBuf {
    let out = dir.join("livepatch_skeleton.o");
    let status = Command::new("gcc")
        .args([
            "-c",
            "-O2",
            "-DKLP_STANDALONE",
            "-ffunction-sections",
            "-fdata-sections",
            "-mcmodel=kernel",
            "-fno-pic",
            "-mno-red-zone",
            "-w",
            "-o",
        ])
        .arg(&out)
        .arg(root().join("src/module/skeleton/livepatch_skeleton.c"))
        .status()
        .expect("run gcc");
    assert!(status.success(), "skeleton does not compile");
    out
}

/// Link diff outputs with the skeleton into `module` (not yet post-linked).
pub fn link_module(dir: &Path, outputs: &[&Path], module: &Path) {
    let skeleton = skeleton_object(dir);
    let o = Command::new("ld")
        .arg("-r")
        .arg("-T")
        .arg(root().join("verify/common/module.lds"))
        .arg("-o")
        .arg(module)
        .arg(&skeleton)
        .args(outputs)
        .output()
        .expect("run ld");
    assert!(o.status.success() && o.stderr.is_empty(), "ld: {}", String::from_utf8_lossy(&o.stderr));
}

/// `klp diff` into `dir/out.o`; returns its path.
pub fn diff_output(dir: &Path, orig: &Path, patched: &Path, diff_args: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("out.o");
    let _ = std::fs::remove_file(&out);
    let mut args = vec!["diff", orig.to_str().unwrap(), patched.to_str().unwrap(), out.to_str().unwrap()];
    args.extend_from_slice(diff_args);
    let o = klp(&args);
    assert!(o.status.success(), "diff: {}", String::from_utf8_lossy(&o.stderr));
    out
}

/// `klp post-link` in place.
pub fn post_link(module: &Path) {
    let o = klp(&["post-link", module.to_str().unwrap()]);
    assert!(o.status.success(), "post-link: {}", String::from_utf8_lossy(&o.stderr));
}

/// diff + link + post-link; returns the module path.
pub fn build_module(dir: &Path, orig: &Path, patched: &Path, diff_args: &[&str]) -> PathBuf {
    let out = diff_output(dir, orig, patched, diff_args);
    let module = dir.join("livepatch-test.ko");
    link_module(dir, &[&out], &module);
    post_link(&module);
    module
}
