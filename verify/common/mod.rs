//! Helpers shared by the cross-stage suites.
#![allow(dead_code)]

pub mod module;
pub mod out_check;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `../shared` beside the project, where the real kernel material lives.
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// The shared asset at `rel`, or `None` after saying visibly that the test is skipped.
pub fn shared_asset(rel: &str) -> Option<PathBuf> {
    let p = shared_dir().join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {} is absent (it comes with the project's shared/ directory; see README)", p.display());
        None
    }
}

pub fn klp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_klp")).args(args).output().expect("run klp")
}

/// Names reported on stdout lines `<obj>: <kind>: <name>`.
pub fn reported(stdout: &[u8], kind: &str) -> Vec<String> {
    let marker = format!(": {kind}: ");
    String::from_utf8_lossy(stdout).lines().filter_map(|l| l.split_once(&marker).map(|(_, n)| n.to_owned())).collect()
}

/// Strip trailing numeric `.N` suffixes: `foo.isra.16` -> `foo.isra`.
pub fn strip_numbers(name: &str) -> String {
    let mut s = name;
    while let Some((head, tail)) = s.rsplit_once('.') {
        if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
            s = head;
        } else {
            break;
        }
    }
    s.to_owned()
}

pub fn sorted_stripped<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> Vec<String> {
    let mut v: Vec<String> = names.into_iter().map(|n| strip_numbers(n.as_ref())).collect();
    v.sort();
    v
}

/// Decompress `NAME.zst` from shared into the target directory once.
pub fn unzstd_cached(src: &Path) -> PathBuf {
    let name = src.file_name().unwrap().to_string_lossy().trim_end_matches(".zst").to_owned();
    let kernel = src.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    // Kernels of the same name from different places (../shared, a rebuild)
    // must not share a cache entry.
    let place = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        src.parent().unwrap().hash(&mut h);
        h.finish()
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel").join(format!("{kernel}-{place:016x}"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    // Tests of one binary run in parallel threads and may want the same file.
    static DECOMPRESSING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = DECOMPRESSING.lock().unwrap_or_else(|e| e.into_inner());
    let fresh = out
        .metadata()
        .ok()
        .zip(src.metadata().ok())
        .is_some_and(|(o, s)| o.modified().unwrap() >= s.modified().unwrap());
    if !fresh {
        let tmp = out.with_extension(format!("partial.{}", std::process::id()));
        let status = Command::new("zstd").args(["-d", "-q", "-f", "-o"]).arg(&tmp).arg(src).status().expect("run zstd");
        assert!(status.success(), "zstd -d {}", src.display());
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}
