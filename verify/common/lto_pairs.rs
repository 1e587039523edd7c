//! Object pairs of the clang ThinLTO 6.12 kernel that ../shared does not
//! have, built once from Debian's linux-source-6.12 by
//! verify/kernel/line-shift-pair.sh and cached between runs:
//!
//! - `vmlinux.o.orig`: the kernel as ../shared/kernel/6.12-lto has it (same
//!   source, config and compiler; built in another directory, which gives
//!   many promoted statics another `.llvm.<hash>` than the shared object's,
//!   panic.c's among them);
//! - `vmlinux.o.scenario`: with corpus/kernel/lto-scenario/scenario.patch;
//! - `vmlinux.o.shifted`: with a line added at the top of every `.c` in fs/
//!   kernel/ mm/ init/ (no function's code changes).
//!
//! The cache is `$KLP_CACHE` (default `~/.cache/klp`): the kernel tree in
//! `6.12-lto-tree`, the pairs in `6.12-lto-pairs-<key>`, where the key
//! hashes every input of the build, so a changed script, config or patch
//! builds again. About 11 minutes on 2 cores the first time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use super::*;

pub struct LtoPairs {
    pub orig: PathBuf,
    pub scenario: PathBuf,
    pub shifted: PathBuf,
}

/// What the build reads; all of it goes into the cache key.
const INPUTS: &[&str] = &[
    "verify/kernel/line-shift-pair.sh",
    "verify/kernel/prepare-tree.sh",
    "verify/kernel/6.12-lto.config",
    "corpus/kernel/lto-scenario/scenario.patch",
    // The source's version: another point release is another kernel.
    "verify/kernel/source-version",
];

/// What building the kernel needs besides the clang toolchain.
const BUILD_TOOLS: &[&str] =
    &["make", "bc", "flex", "bison", "patch", "clang", "ld.lld", "llvm-ar", "llvm-nm", "/usr/include/libelf.h"];

/// The pairs, built on first use; `None` after saying what is missing.
pub fn lto_pairs() -> Option<&'static LtoPairs> {
    static PAIRS: OnceLock<Option<LtoPairs>> = OnceLock::new();
    PAIRS.get_or_init(build_or_reuse).as_ref()
}

fn build_or_reuse() -> Option<LtoPairs> {
    require_from(Path::new("/"), "/", &[], BUILD_TOOLS)?;
    let (_, version) = kernel_source()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = std::env::var_os("KLP_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/klp")))
        .expect("KLP_CACHE or HOME must be set for the LTO pair cache");
    let name = format!("6.12-lto-pairs-{:016x}", inputs_key(root));
    let out = cache.join(&name);
    let pairs = LtoPairs {
        orig: out.join("vmlinux.o.orig"),
        scenario: out.join("vmlinux.o.scenario"),
        shifted: out.join("vmlinux.o.shifted"),
    };
    if out.is_dir() {
        eprintln!("lto pairs: cached in {}", out.display());
        return Some(pairs);
    }
    // Built into a scratch directory and renamed when complete, so that an
    // interrupted build is never taken for a cached one.
    let partial = cache.join(format!("{name}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).unwrap();
    let log = cache.join(format!("{name}.log"));
    let log_file = std::fs::File::create(&log).unwrap();
    let started = Instant::now();
    eprintln!("lto pairs: building the clang ThinLTO kernel three times (log: {})", log.display());
    let status = Command::new("bash")
        .arg(root.join("verify/kernel/line-shift-pair.sh"))
        .arg(&partial)
        .env("KLP_TREE", cache.join(format!("6.12-lto-tree-{version}")))
        .env("KLP_CONFIG", root.join("verify/kernel/6.12-lto.config"))
        .env("KLP_MAKE_FLAGS", "LLVM=1")
        .env("KLP_PATCHES", format!("scenario={}", root.join("corpus/kernel/lto-scenario/scenario.patch").display()))
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .status()
        .expect("run verify/kernel/line-shift-pair.sh");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(status.success(), "building the LTO pairs failed; end of {}:\n{}", log.display(), tail.join("\n"));
    std::fs::rename(&partial, &out).unwrap();
    eprintln!("lto pairs: built in {:.0} s; {}", started.elapsed().as_secs_f64(), tail.join(" | "));
    Some(pairs)
}

/// FNV-1a over the inputs' bytes: stable across Rust versions, unlike std's hasher.
fn inputs_key(root: &Path) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for rel in INPUTS {
        let bytes = std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        for b in rel.as_bytes().iter().chain(&bytes) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}
