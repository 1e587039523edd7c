//! Step 4 of `klp build`: the original build, kept between runs. What the
//! later steps need of it is copied into the work directory: `vmlinux.o`,
//! the linked `vmlinux` (symbol positions), `Module.symvers`, and each
//! module's prelink object and `.ko`. A second `klp build` of the same tree,
//! configuration and compiler reuses the copies, unless a source file
//! changed since (other than the ones `klp build` itself restored, which
//! are checked by their bytes): users iterate on one patch many times.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use xxhash_rust::xxh3::xxh3_64;

use super::make::Make;
use super::release::BuildStamp;
use crate::error::{Error, Result};
use crate::kernel::config::KernelConfig;

/// The cached original build in `<work>/orig`.
#[derive(Debug, Clone)]
pub struct OriginalBuild {
    pub dir: PathBuf,
    /// The objects to compare, relative to the build directory: `vmlinux.o`
    /// and each module's prelink object.
    pub objects: Vec<PathBuf>,
    /// When the build finished: sources newer than this are not in it.
    /// (Not when it started: the build itself writes generated sources,
    /// `vdso-image-64.c`, `elfconfig.h`, in an in-tree build.)
    finished: SystemTime,
    /// The version banner's number, date, user and host.
    pub stamp: BuildStamp,
}

/// What makes one original build another's equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildKey(String);

impl BuildKey {
    pub fn new(make: &Make, config: &KernelConfig, config_bytes: &[u8], release: &str) -> Self {
        let compiler = config.string("CONFIG_CC_VERSION_TEXT").unwrap_or("unknown");
        BuildKey(format!(
            "format 2\nsrctree {}\nbuild {}\nrelease {release}\ncompiler {compiler}\nconfig {:016x}\n",
            make.srctree.display(),
            make.build_dir.display(),
            xxh3_64(config_bytes)
        ))
    }
}

const KEY: &str = "KEY";
const STATE: &str = "STATE";
const OBJECTS: &str = "OBJECTS";
const RESTORED: &str = "RESTORED";
const COMMAND: &str = "COMMAND";
const STAMP: &str = "STAMP";

impl OriginalBuild {
    pub fn vmlinux_o(&self) -> PathBuf {
        self.dir.join("vmlinux.o")
    }
    pub fn vmlinux(&self) -> PathBuf {
        self.dir.join("vmlinux")
    }
    pub fn symvers(&self) -> PathBuf {
        self.dir.join("Module.symvers")
    }
    /// The compile command of `init/main.o` in the original build (see
    /// [`super::make::compile_command`]).
    pub fn compile_command(&self) -> Result<Option<String>> {
        let path = self.dir.join(COMMAND);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim_end().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, "cannot read", &e)),
        }
    }

    /// The original of object `rel`; for a module's object, its `.ko`.
    pub fn copy_of(&self, rel: &Path) -> PathBuf {
        self.dir.join(rel)
    }

    /// The cache in `work`, if it was built with `key`; otherwise why not.
    pub fn load(work: &Path, key: &BuildKey) -> Result<std::result::Result<Self, String>> {
        let dir = work.join("orig");
        let key_path = dir.join(KEY);
        let text = match std::fs::read_to_string(&key_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err("no original build yet".into())),
            Err(e) => return Err(Error::io(&key_path, "cannot read", &e)),
        };
        if text != key.0 {
            return Ok(Err("the tree, configuration, release, compiler or klp's cache format changed".into()));
        }
        // A damaged cache is built again, not an error.
        let read = || -> Result<OriginalBuild> {
            let finished = read_state(&dir.join(STATE))?;
            let objects = read_lines(&dir.join(OBJECTS))?.into_iter().map(PathBuf::from).collect::<Vec<_>>();
            for rel in &objects {
                check_relative(rel, &dir.join(OBJECTS))?;
            }
            let stamp_path = dir.join(STAMP);
            let text = std::fs::read_to_string(&stamp_path).map_err(|e| Error::io(&stamp_path, "cannot read", &e))?;
            let stamp = BuildStamp::from_text(&stamp_path, &text)?;
            let build = OriginalBuild { dir: dir.clone(), objects, finished, stamp };
            build.restored()?;
            Ok(build)
        };
        Ok(read().map_err(|e| format!("the cached original build is damaged ({e})")))
    }

    /// Keep what the original build made in `make.build_dir`: copied into
    /// `<work>/orig.partial`, renamed to `<work>/orig` when complete, so
    /// that an interrupted copy is never taken for a cache.
    pub fn store(work: &Path, key: &BuildKey, make: &Make, finished: SystemTime) -> Result<Self> {
        let dir = work.join("orig");
        let partial = work.join("orig.partial");
        for d in [&dir, &partial] {
            if d.exists() {
                std::fs::remove_dir_all(d).map_err(|e| Error::io(d, "cannot remove", &e))?;
            }
        }
        std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, "cannot create", &e))?;
        let build = &make.build_dir;
        for name in ["vmlinux.o", "vmlinux", "Module.symvers"] {
            copy(&build.join(name), &partial.join(name))?;
        }
        let mut objects = vec![PathBuf::from("vmlinux.o")];
        for ko in module_files(build, work)? {
            let obj = ko.with_extension("o");
            copy(&build.join(&obj), &partial.join(&obj))?;
            copy(&build.join(&ko), &partial.join(&ko))?;
            objects.push(obj);
        }
        if let Some(command) = super::make::compile_command(build)? {
            write(&partial.join(COMMAND), &format!("{command}\n"))?;
        }
        let stamp = BuildStamp::read(build)?;
        write(&partial.join(STAMP), &stamp.to_text())?;
        let list: String = objects.iter().map(|o| format!("{}\n", o.display())).collect();
        write(&partial.join(OBJECTS), &list)?;
        let nanos = finished.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        write(&partial.join(STATE), &format!("finished {nanos}\n"))?;
        write(&partial.join(KEY), &key.0)?;
        std::fs::rename(&partial, &dir).map_err(|e| Error::io(&dir, "cannot keep the original build", &e))?;
        Ok(OriginalBuild { dir, objects, finished, stamp })
    }

    /// A source file of `srctree` changed since the original build, if
    /// any; files `klp build` restored count only if their bytes differ
    /// from what they were. Generated files (`generated/`, hidden files,
    /// `*.mod.c`, `*tmp*`) and `skip` (the work directory) are left out.
    pub fn changed_source(&self, srctree: &Path, skip: &Path) -> Result<Option<PathBuf>> {
        let restored = self.restored()?;
        let mut stack = vec![srctree.to_owned()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, "cannot list", &e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&dir, "cannot list", &e))?;
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') || path == skip || name == "generated" {
                    continue;
                }
                let kind = entry.file_type().map_err(|e| Error::io(&path, "cannot read", &e))?;
                if kind.is_dir() {
                    if !path.ends_with("include/config") {
                        stack.push(path);
                    }
                    continue;
                }
                if !kind.is_file() || !is_source_name(&name) {
                    continue;
                }
                let meta = entry.metadata().map_err(|e| Error::io(&path, "cannot read", &e))?;
                let mtime = meta.modified().map_err(|e| Error::io(&path, "cannot read its time", &e))?;
                if mtime <= self.finished {
                    continue;
                }
                let rel = path.strip_prefix(srctree).unwrap_or(&path).to_owned();
                let same = match restored.iter().find(|(p, _)| *p == rel) {
                    Some((_, hash)) => {
                        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, "cannot read", &e))?;
                        xxh3_64(&bytes) == *hash
                    }
                    None => false,
                };
                if !same {
                    return Ok(Some(rel));
                }
            }
        }
        Ok(None)
    }

    /// Note files `klp build` put back (paths relative to the source
    /// tree, with their original bytes' hash): newer than the build, but
    /// the same source.
    pub fn record_restored(&self, files: &[(PathBuf, u64)]) -> Result<()> {
        let mut all = self.restored()?;
        for (rel, hash) in files {
            all.retain(|(p, _)| p != rel);
            all.push((rel.clone(), *hash));
        }
        let text: String = all.iter().map(|(p, h)| format!("{h:016x}\t{}\n", p.display())).collect();
        write(&self.dir.join(RESTORED), &text)
    }

    fn restored(&self) -> Result<Vec<(PathBuf, u64)>> {
        let path = self.dir.join(RESTORED);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (n, line) in read_lines(&path)?.iter().enumerate() {
            let bad = || Error::malformed(format!("line {}: not `hash<TAB>path`", n + 1)).in_file(&path);
            let (hash, rel) = line.split_once('\t').ok_or_else(bad)?;
            let hash = u64::from_str_radix(hash, 16).map_err(|_| bad())?;
            check_relative(Path::new(rel), &path)?;
            out.push((PathBuf::from(rel), hash));
        }
        Ok(out)
    }
}

/// Where the work directory keeps how many objects a whole original build
/// compiled: outside `orig/`, so that it outlives a stale cache.
const BUILD_SIZE: &str = "objects-per-build";

/// How many objects a whole build of this tree compiles, if an earlier
/// original build compiled more than a few (an incremental one says nothing).
pub fn whole_build_size(work: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(work.join(BUILD_SIZE)).ok()?;
    text.trim().parse().ok().filter(|&n| n > 0)
}

/// Keep `compiled` as the whole build's size if it is the largest seen.
pub fn note_build_size(work: &Path, compiled: usize) -> Result<()> {
    if whole_build_size(work).is_some_and(|n| n >= compiled) || compiled < 100 {
        return Ok(());
    }
    write(&work.join(BUILD_SIZE), &format!("{compiled}\n"))
}

/// Source files whose change makes the cached build stale.
fn is_source_name(name: &str) -> bool {
    let source = name.ends_with(".c")
        || name.ends_with(".h")
        || name.ends_with(".S")
        || name == "Makefile"
        || name == "Kbuild"
        || name.starts_with("Kconfig");
    source && !name.ends_with(".mod.c") && !name.contains("tmp")
}

/// Every `*.ko` under `build` (relative paths, sorted), outside hidden
/// directories and `work`.
pub fn module_files(build: &Path, work: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![build.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, "cannot list", &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, "cannot list", &e))?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') || path == work {
                continue;
            }
            let kind = entry.file_type().map_err(|e| Error::io(&path, "cannot read", &e))?;
            if kind.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "ko") && dir != build {
                out.push(path.strip_prefix(build).unwrap_or(&path).to_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn check_relative(rel: &Path, file: &Path) -> Result<()> {
    let plain = rel.components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if plain && !rel.as_os_str().is_empty() {
        Ok(())
    } else {
        Err(Error::malformed(format!("{}: not a path inside the tree", rel.display())).in_file(file))
    }
}

fn read_state(path: &Path) -> Result<SystemTime> {
    let mut finished = None;
    for line in read_lines(path)? {
        let bad = || Error::malformed(format!("bad line {line:?}")).in_file(path);
        match line.split_once(' ') {
            Some(("finished", n)) => finished = Some(n.parse::<u64>().map_err(|_| bad())?),
            _ => return Err(bad()),
        }
    }
    let finished = finished.ok_or_else(|| Error::malformed("no `finished` line").in_file(path))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_nanos(finished))
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read", &e))?;
    Ok(text.lines().map(str::to_owned).collect())
}

fn write(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, "cannot write", &e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, "cannot write", &e))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, "cannot create", &e))?;
    }
    std::fs::copy(from, to).map(|_| ()).map_err(|e| Error::io(from, "cannot keep a copy of the original build", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_c_headers_assembly_and_build_files_not_generated_ones() {
        for yes in ["cmdline.c", "sched.h", "entry_64.S", "Makefile", "Kbuild", "Kconfig.debug"] {
            assert!(is_source_name(yes), "{yes}");
        }
        for no in ["cmdline.o", "livepatch-x.mod.c", "utsversion-tmp.h", "README", "vmlinux.lds"] {
            assert!(!is_source_name(no), "{no}");
        }
    }

    #[test]
    fn cached_paths_stay_inside_the_tree() {
        let f = Path::new("OBJECTS");
        check_relative(Path::new("drivers/x/y.o"), f).unwrap();
        for bad in ["/etc/passwd", "../x.o", "a/../../b.o", ""] {
            assert!(check_relative(Path::new(bad), f).is_err(), "{bad}");
        }
    }
}
