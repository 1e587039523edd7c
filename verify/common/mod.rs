//! Helpers shared by the cross-stage suites.
#![allow(dead_code)]

pub mod boot;
pub mod kernel_tree;
pub mod layouts;
pub mod lto_pairs;
pub mod module;
pub mod out_check;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `../shared` beside the project, where the real kernel material lives.
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// True under CI: the `CI` environment variable is set to something non-empty
/// (`.ci/run` and CI services set it). A green CI run must mean every test ran.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// `suite::test` of the test running on this thread (libtest names each
/// test's thread after the test).
fn test_name() -> String {
    let thread = std::thread::current();
    format!("{}::{}", env!("CARGO_CRATE_NAME"), thread.name().unwrap_or("?"))
}

/// The one place where a test that lacks something from outside the
/// repository ends: under CI it fails naming what is missing; otherwise it
/// says `SKIPPED` on stderr and the caller returns. The line is written to
/// the stderr handle directly, not with `eprintln!`, because libtest captures
/// only the print macros and drops the output of passing tests.
pub fn skip_or_fail(missing: &str) {
    let test = test_name();
    if under_ci() {
        panic!("{test}: {missing} (CI is set, so a missing asset or tool is a failure, not a skip)");
    }
    // One write of the whole line, so that it does not interleave with
    // libtest's own `test ... ok` lines.
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(format!("SKIPPED: {test}: {missing}\n").as_bytes());
}

/// Debian packages of the tools the suites run (also the names in `.ci/run`).
const PACKAGES: &[(&str, &str)] = &[
    ("gcc", "gcc"),
    ("as", "binutils"),
    ("ld", "binutils"),
    ("readelf", "binutils"),
    ("objcopy", "binutils"),
    ("zstd", "zstd"),
    ("tar", "tar"),
    ("timeout", "coreutils"),
    ("patch", "patch"),
    ("diff", "diffutils"),
    ("dpkg-query", "dpkg"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("cpio", "cpio"),
    ("gzip", "gzip"),
    ("make", "make"),
    ("bc", "bc"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("/usr/include/libelf.h", "libelf-dev"),
    ("/usr/lib/x86_64-linux-gnu/libc.a", "libc6-dev"),
    (STATIC_BUSYBOX, "busybox-static"),
    ("clang", "clang"),
    ("ld.lld", "lld"),
    ("llvm-ar", "llvm"),
    ("llvm-nm", "llvm"),
    ("llvm-objcopy", "llvm"),
    ("llvm-readelf", "llvm"),
];

/// The tool name for "a statically linked /bin/busybox".
pub const STATIC_BUSYBOX: &str = "static /bin/busybox";

fn tool_present(tool: &str) -> bool {
    if tool == STATIC_BUSYBOX {
        // A statically linked ELF has no PT_INTERP; readelf says so.
        let busybox = Path::new("/bin/busybox");
        return busybox.exists()
            && Command::new("readelf")
                .arg("-lW")
                .arg(busybox)
                .output()
                .is_ok_and(|o| o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("INTERP"));
    }
    if tool.starts_with('/') {
        return Path::new(tool).exists();
    }
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// `path` without `.` and `..` components (`/x/klp/../shared` is `/x/shared`),
/// for messages: the directory may not exist, so it cannot be canonicalized.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if out.file_name().is_some() => drop(out.pop()),
            c => out.push(c),
        }
    }
    out
}

/// Absent assets named for the message: each missing file, except that a
/// missing directory is named once instead of every file in it.
fn describe_absent(label: &str, root: &Path, absent: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for rel in absent {
        let rel = Path::new(rel);
        let parent = rel.parent().filter(|p| !p.as_os_str().is_empty());
        let name = match parent {
            Some(dir) if !root.join(dir).is_dir() => format!("{label}/{}/ (the whole directory)", dir.display()),
            _ => format!("{label}/{}", rel.display()),
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Everything a test needs from outside the repository: files under `root`
/// (called `label` in messages) and tools (commands on PATH, absolute
/// paths, or [`STATIC_BUSYBOX`]). Returns the files' paths, in order, or
/// `None` after [`skip_or_fail`] has named everything that is missing.
pub fn require_from(root: &Path, label: &str, assets: &[&str], tools: &[&str]) -> Option<Vec<PathBuf>> {
    let absent: Vec<&str> = assets.iter().copied().filter(|rel| !root.join(rel).exists()).collect();
    let missing_tools: Vec<&str> = tools.iter().copied().filter(|t| !tool_present(t)).collect();
    if absent.is_empty() && missing_tools.is_empty() {
        return Some(assets.iter().map(|rel| root.join(rel)).collect());
    }
    let mut why = Vec::new();
    if !absent.is_empty() {
        why.push(format!(
            "missing assets: {} ({label} is {}; see README, Tests)",
            describe_absent(label, root, &absent).join(", "),
            lexically_normal(root).display()
        ));
    }
    if !missing_tools.is_empty() {
        let mut packages: Vec<&str> = missing_tools
            .iter()
            .map(|t| PACKAGES.iter().find(|(tool, _)| tool == t).map_or(*t, |(_, pkg)| *pkg))
            .collect();
        packages.sort();
        packages.dedup();
        why.push(format!(
            "missing tools: {} (apt-get install {}; .ci/run installs them)",
            missing_tools.join(", "),
            packages.join(" ")
        ));
    }
    skip_or_fail(&why.join("; "));
    None
}

/// Debian's linux-source-6.12 at the version ../shared's kernels were
/// built from (`verify/kernel/source-version`, which `.ci/run` installs):
/// trees built from another point release differ from them in their
/// version strings and whatever the update changed. Returns the source
/// tarball and the version, or `None` after [`skip_or_fail`].
pub fn kernel_source() -> Option<(PathBuf, String)> {
    const SOURCE: &str = "/usr/src/linux-source-6.12.tar.xz";
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let wanted = std::fs::read_to_string(root.join("verify/kernel/source-version")).unwrap().trim().to_owned();
    require_from(Path::new("/"), "/", &[SOURCE.trim_start_matches('/')], &["dpkg-query"])?;
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "linux-source-6.12"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if installed != wanted {
        skip_or_fail(&format!(
            "linux-source-6.12 is {installed:?}, but ../shared's kernels were built from {wanted} \
             (apt-get install --allow-downgrades linux-source-6.12={wanted}; .ci/run installs it)"
        ));
        return None;
    }
    Some((PathBuf::from(SOURCE), wanted))
}

/// [`require_from`] for assets in `../shared`.
pub fn require(assets: &[&str], tools: &[&str]) -> Option<Vec<PathBuf>> {
    require_from(&shared_dir(), "../shared", assets, tools)
}

/// One asset of `../shared`, or `None` after [`skip_or_fail`].
pub fn require_asset(rel: &str, tools: &[&str]) -> Option<PathBuf> {
    require(&[rel], tools).map(|mut v| v.remove(0))
}

/// What the demo-patch suites use of each kernel in `../shared/kernel/<name>/`.
pub const DEMO_KERNEL_FILES: &[&str] = &[
    "Module.symvers",
    "vmlinux.zst",
    "vmlinux.o.orig.zst",
    "vmlinux.o.patched.zst",
    "cmdline.orig.o",
    "cmdline.patched.o",
    "version.orig.o",
    "version.patched.o",
];

/// The files of the kernel pairs in `../shared/kernel/<name>/`, relative to `../shared`.
pub fn kernel_assets(kernels: &[&str], files: &[&str]) -> Vec<String> {
    kernels.iter().flat_map(|k| files.iter().map(move |f| format!("kernel/{k}/{f}"))).collect()
}

/// `Vec<String>` as the `&[&str]` that [`require`] takes.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
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

/// The flags the kernel builds with that matter for the differ.
pub const KERNEL_CFLAGS: &[&str] = &[
    "-O2",
    "-ffunction-sections",
    "-fdata-sections",
    "-mcmodel=kernel",
    "-fno-pic",
    "-mno-red-zone",
    "-pg",
    "-mfentry",
    "-fno-asynchronous-unwind-tables",
    "-fno-stack-protector",
    "-w",
];

/// Copy `src` into `dir` as `file` and compile it there with `compiler`,
/// [`KERNEL_CFLAGS`] and `extra`, into `out`: the way kbuild runs the
/// compiler in the tree with a relative name, which ends up in the FILE
/// symbol and in every `__FILE__`.
pub fn compile_unit(compiler: &str, src: &Path, dir: &Path, file: &str, extra: &[&str], out: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(src, dir.join(file)).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let out = std::path::absolute(out).unwrap();
    let o = Command::new(compiler)
        .current_dir(dir)
        .arg("-c")
        .args(KERNEL_CFLAGS)
        .args(extra)
        .arg("-o")
        .arg(&out)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("run {compiler}: {e}"));
    assert!(o.status.success(), "{compiler} failed on {}: {}", src.display(), String::from_utf8_lossy(&o.stderr));
}
