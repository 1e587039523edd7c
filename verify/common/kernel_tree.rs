//! Configured Linux 6.12 source trees for the `klp build` suite, made once
//! from Debian's linux-source-6.12 and kept between runs in `$KLP_CACHE`
//! (default `~/.cache/klp`), with `klp build`'s own cache of the original
//! build inside them:
//!
//! - [`slim_tree`]: ../shared/kernel/6.12-slim's `lds-fix.patch` and
//!   `config`, built in the tree as that kernel was: modules built in it
//!   load into its bzImage;
//! - [`bug_tree`]: a clean source tree and an `O=` build directory with
//!   the slim config plus `CONFIG_BUG` and `CONFIG_DEBUG_BUGVERBOSE`, so
//!   that `WARN_ON` compiles its `__LINE__` into the kernel.
//!
//! Each tree's name hashes its inputs, so a changed config or fix makes a
//! new tree. A tree is unpacked into `NAME.partial` and renamed when
//! configured, so an interrupted unpack is never taken for a tree. Tests
//! that use a tree hold one lock for both: one kernel build at a time (two
//! in parallel on 2 cores made kbuild's compiler probes answer differently
//! once; `klp build` now catches that, but need not be provoked).

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::*;

/// What building a kernel needs.
pub const BUILD_TOOLS: &[&str] = &[
    "make",
    "gcc",
    "bc",
    "flex",
    "bison",
    "patch",
    "diff",
    "xz",
    "/usr/include/libelf.h",
    "/usr/include/openssl/ssl.h",
];

/// A configured tree: the sources, and where kbuild writes.
pub struct Tree {
    pub src: PathBuf,
    pub build: PathBuf,
}

impl Tree {
    /// `klp build` in this tree with `args`, the shared kernel's build
    /// environment, and `--build-dir` when it is not the source tree.
    pub fn klp_build(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_klp"));
        cmd.arg("build").arg("--srctree").arg(&self.src);
        if self.build != self.src {
            cmd.arg("--build-dir").arg(&self.build);
        }
        cmd.args(args);
        // As ../shared/kernel/README.md says the kernels were built.
        cmd.env("KBUILD_BUILD_TIMESTAMP", "2026-01-01 00:00:00")
            .env("KBUILD_BUILD_USER", "klp")
            .env("KBUILD_BUILD_HOST", "klp")
            .env_remove("LLVM");
        cmd
    }
}

/// A tree while its test has the kernel-build lock.
pub struct LockedTree {
    _lock: MutexGuard<'static, ()>,
    tree: &'static Tree,
}

impl std::ops::Deref for LockedTree {
    type Target = Tree;
    fn deref(&self) -> &Tree {
        self.tree
    }
}

fn lock(tree: &'static OnceLock<Option<Tree>>, make: impl FnOnce() -> Option<Tree>) -> Option<LockedTree> {
    static BUILDING: Mutex<()> = Mutex::new(());
    let guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let tree = tree.get_or_init(make).as_ref()?;
    Some(LockedTree { _lock: guard, tree })
}

/// The slim tree (built in the tree), locked; `None` after saying what is missing.
pub fn slim_tree() -> Option<LockedTree> {
    static TREE: OnceLock<Option<Tree>> = OnceLock::new();
    lock(&TREE, || prepare("6.12-slim-klp-build", "", false))
}

/// The slim + CONFIG_BUG tree (an `O=` build), locked.
pub fn bug_tree() -> Option<LockedTree> {
    static TREE: OnceLock<Option<Tree>> = OnceLock::new();
    let extra = "CONFIG_BUG=y\nCONFIG_DEBUG_BUGVERBOSE=y\n";
    lock(&TREE, || prepare("6.12-slim-bug-klp-build", extra, true))
}

fn prepare(name: &str, extra_config: &str, out_of_tree: bool) -> Option<Tree> {
    let assets = ["kernel/6.12-slim/lds-fix.patch", "kernel/6.12-slim/config"];
    let files = require(&assets, BUILD_TOOLS)?;
    let (source, version) = kernel_source()?;
    let (fix, config) = (&files[0], &files[1]);
    let mut config_text = std::fs::read_to_string(config).unwrap();
    config_text.push_str(extra_config);
    let key = fnv(&[&std::fs::read(fix).unwrap(), config_text.as_bytes(), version.as_bytes()]);
    let cache = cache_dir();
    let dir = cache.join(format!("{name}-{key:016x}"));
    let tree = Tree { src: dir.join("src"), build: if out_of_tree { dir.join("build") } else { dir.join("src") } };
    if dir.is_dir() {
        eprintln!("{name}: cached in {}", dir.display());
        return Some(tree);
    }
    let partial = cache.join(format!("{name}-{key:016x}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    let src = partial.join("src");
    std::fs::create_dir_all(&src).unwrap();
    eprintln!("{name}: unpacking {} into {}", source.display(), partial.display());
    run(Command::new("tar").arg("-xf").arg(&source).arg("-C").arg(&src).arg("--strip-components=1"));
    run(Command::new("patch").args(["-p1", "-s", "-d"]).arg(&src).arg("-i").arg(fix));
    let build = if out_of_tree { partial.join("build") } else { src.clone() };
    std::fs::create_dir_all(&build).unwrap();
    std::fs::write(build.join(".config"), &config_text).unwrap();
    let mut olddefconfig = Command::new("make");
    olddefconfig.arg("-s").arg("-C").arg(&src);
    if out_of_tree {
        olddefconfig.arg(format!("O={}", build.display()));
    }
    run(olddefconfig.arg("olddefconfig"));
    let written = std::fs::read_to_string(build.join(".config")).unwrap();
    for line in config_text.lines().filter(|l| l.starts_with("CONFIG_") && !l.starts_with("CONFIG_PAHOLE_VERSION")) {
        assert!(written.lines().any(|w| w == line), "{name}: olddefconfig dropped {line}");
    }
    std::fs::rename(&partial, &dir).unwrap();
    Some(tree)
}

fn run(cmd: &mut Command) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// `$KLP_CACHE`, or `~/.cache/klp`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KLP_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/klp")))
        .expect("KLP_CACHE or HOME must be set for the kernel tree cache")
}

/// FNV-1a: stable across Rust versions, unlike std's hasher.
pub fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}
