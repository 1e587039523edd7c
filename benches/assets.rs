//! The objects the benches run on: ../shared's kernels (decompressed once
//! into target/bench-assets) and the kpatch corpus. Missing ones are
//! skipped with a line on stderr, never silently.

use std::path::{Path, PathBuf};
use std::process::Command;

use klp::diff::Input;

pub struct Pair {
    pub name: String,
    orig: (PathBuf, memmap2::Mmap),
    patched: (PathBuf, memmap2::Mmap),
    pub symvers: Option<PathBuf>,
    pub parent: Option<PathBuf>,
}

impl Pair {
    pub fn orig_input(&self) -> Input<'_> {
        Input::new(&self.orig.0, &self.orig.1)
    }
    pub fn patched_input(&self) -> Input<'_> {
        Input::new(&self.patched.0, &self.patched.1)
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shared() -> PathBuf {
    root().join("../shared")
}

fn skip(what: &str) -> Option<Pair> {
    eprintln!("SKIPPED: {what} (../shared is {})", shared().display());
    None
}

fn map(path: &Path) -> (PathBuf, memmap2::Mmap) {
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: read-only inputs nobody changes while the bench runs.
    (path.to_owned(), unsafe { memmap2::Mmap::map(&file) }.unwrap())
}

/// `dir/file.zst` decompressed into target/bench-assets, once.
fn unzstd(dir: &Path, file: &str) -> Option<PathBuf> {
    let src = dir.join(format!("{file}.zst"));
    if !src.exists() {
        return None;
    }
    let cache = root().join("target/bench-assets").join(dir.file_name()?);
    std::fs::create_dir_all(&cache).ok()?;
    let out = cache.join(file);
    if !out.exists() {
        let tmp = cache.join(format!("{file}.tmp"));
        let ok = Command::new("zstd").args(["-dqf"]).arg(&src).arg("-o").arg(&tmp).status().ok()?.success();
        if !ok {
            return None;
        }
        std::fs::rename(&tmp, &out).ok()?;
    }
    Some(out)
}

pub fn kernel_pair(name: &str) -> Option<Pair> {
    let dir = shared().join("kernel").join(name);
    let (Some(orig), Some(patched)) = (unzstd(&dir, "vmlinux.o.orig"), unzstd(&dir, "vmlinux.o.patched")) else {
        return skip(&format!("kernel-{name}: no {}/vmlinux.o.{{orig,patched}}.zst", dir.display()));
    };
    Some(Pair {
        name: name.to_owned(),
        orig: map(&orig),
        patched: map(&patched),
        symvers: Some(dir.join("Module.symvers")).filter(|p| p.exists()),
        parent: unzstd(&dir, "vmlinux"),
    })
}

/// The kpatch pair with the largest objects.
pub fn largest_kpatch_pair() -> Option<Pair> {
    let dir = shared().join("corpus/kpatch-x86_64");
    let Ok(entries) = std::fs::read_dir(&dir) else { return skip("kpatch-largest: no kpatch corpus") };
    let largest = entries
        .filter_map(|e| e.ok()?.path().to_str()?.strip_suffix(".ORIG.o").map(str::to_owned))
        .max_by_key(|stem| std::fs::metadata(format!("{stem}.ORIG.o")).map_or(0, |m| m.len()))?;
    let name = Path::new(&largest).file_name()?.to_string_lossy().into_owned();
    Some(Pair {
        name,
        orig: map(Path::new(&format!("{largest}.ORIG.o"))),
        patched: map(Path::new(&format!("{largest}.PATCHED.o"))),
        symvers: None,
        parent: None,
    })
}
