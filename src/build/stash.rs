//! Every file `klp build` changes in the source tree is saved first and put
//! back on every way out: success, error, a signal. The copies and a
//! manifest are written to the work directory *before* the first change,
//! so that a run killed outright (SIGKILL, power loss) leaves a stash the
//! next run restores before it does anything else.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};

/// The manifest's name in the stash directory: one `<copy>\t<when>\t<path>`
/// line per saved file: `<copy>` is `-` for a file that did not exist and
/// must be removed; `<when>` is the modification time to put back in
/// nanoseconds, or `now` for a source the patched build compiled.
const MANIFEST: &str = "MANIFEST";

/// Saved originals of the files about to change.
#[derive(Debug)]
pub struct Stash {
    dir: PathBuf,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    /// `None`: the file did not exist (a patch adds it).
    saved: Option<(PathBuf, Stamp)>,
}

/// The modification time a restored file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    /// Its own: nothing was built from the changed file.
    Kept(SystemTime),
    /// The time of the restore: make must see that the objects built from
    /// the changed file are out of date, or the next build (and the next
    /// `klp build`) would keep the patched objects for the original source.
    Now,
}

impl Stash {
    /// A stash in `dir`. An unfinished one left by a run that was killed is
    /// restored first; its files are named in the returned list.
    pub fn open(dir: &Path) -> Result<(Self, Vec<PathBuf>)> {
        let leftover = match dir.join(MANIFEST).exists() {
            true => Self::read(dir)?.restore()?,
            false => Vec::new(),
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create the stash directory", &e))?;
        Ok((Stash { dir: dir.to_owned(), entries: Vec::new() }, leftover))
    }

    /// Save `path` (its bytes and modification time) before it changes;
    /// a path saved already keeps its first copy.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.save_as(path, false)
    }

    /// Save a source file the build will compile changed: restored with
    /// its bytes but a new modification time, so that make rebuilds what
    /// was built from the changed version.
    pub fn save_source(&mut self, path: &Path) -> Result<()> {
        self.save_as(path, true)
    }

    /// The saved copy of `path`: `Some(None)` if it did not exist, `None`
    /// if it was not saved.
    pub fn original(&self, path: &Path) -> Option<Option<&Path>> {
        let e = self.entries.iter().find(|e| e.path == path)?;
        Some(e.saved.as_ref().map(|(copy, _)| copy.as_path()))
    }

    fn save_as(&mut self, path: &Path, touch: bool) -> Result<()> {
        if self.entries.iter().any(|e| e.path == path) {
            return Ok(());
        }
        let saved = match std::fs::metadata(path) {
            Ok(meta) => {
                let copy = self.dir.join(self.entries.len().to_string());
                std::fs::copy(path, &copy).map_err(|e| Error::io(path, "cannot save a copy before changing it", &e))?;
                let mtime = meta.modified().map_err(|e| Error::io(path, "cannot read the modification time", &e))?;
                Some((copy, if touch { Stamp::Now } else { Stamp::Kept(mtime) }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(path, "cannot read", &e)),
        };
        self.entries.push(Entry { path: path.to_owned(), saved });
        self.write_manifest()
    }

    fn write_manifest(&self) -> Result<()> {
        let mut text = String::new();
        for e in &self.entries {
            let saved = match &e.saved {
                Some((copy, stamp)) => {
                    let when = match stamp {
                        Stamp::Kept(t) => {
                            t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos()).to_string()
                        }
                        Stamp::Now => "now".to_owned(),
                    };
                    format!("{}\t{when}", copy.file_name().unwrap_or_default().to_string_lossy())
                }
                None => "-\t0".to_owned(),
            };
            text.push_str(&format!("{saved}\t{}\n", e.path.display()));
        }
        // Written whole and renamed: a half-written manifest would lose files.
        let tmp = self.dir.join(format!("{MANIFEST}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, "cannot write the stash manifest", &e))?;
        let path = self.dir.join(MANIFEST);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, "cannot write the stash manifest", &e))
    }

    fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, "cannot read", &e))?;
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let bad = || Error::malformed(format!("line {}: not `copy<TAB>mtime<TAB>path`", n + 1)).in_file(&path);
            let mut fields = line.splitn(3, '\t');
            let (Some(copy), Some(nanos), Some(file)) = (fields.next(), fields.next(), fields.next()) else {
                return Err(bad());
            };
            let stamp = match nanos {
                "now" => Stamp::Now,
                n => {
                    Stamp::Kept(SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(n.parse().map_err(|_| bad())?))
                }
            };
            // A copy is a file of the stash itself: a bare number.
            if copy != "-" && !copy.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let saved = (copy != "-").then(|| (dir.join(copy), stamp));
            entries.push(Entry { path: PathBuf::from(file), saved });
        }
        Ok(Stash { dir: dir.to_owned(), entries })
    }

    /// Put every saved file back as it was (bytes and modification time),
    /// remove the files that did not exist, and the stash with them.
    /// Returns the paths restored.
    pub fn restore(self) -> Result<Vec<PathBuf>> {
        let mut restored = Vec::new();
        for e in self.entries.iter().rev() {
            match &e.saved {
                Some((copy, stamp)) => {
                    // Copy to a temporary file beside the target and rename: a
                    // signal in the middle leaves the old or the new file whole.
                    let tmp = e.path.with_file_name(format!(
                        ".{}.klp-restore",
                        e.path.file_name().unwrap_or_default().to_string_lossy()
                    ));
                    std::fs::copy(copy, &tmp).map_err(|err| Error::io(&e.path, "cannot restore", &err))?;
                    let file = std::fs::File::options()
                        .write(true)
                        .open(&tmp)
                        .map_err(|err| Error::io(&tmp, "cannot restore", &err))?;
                    // A copy's time is the time of the copy: now.
                    if let Stamp::Kept(mtime) = stamp {
                        file.set_modified(*mtime).map_err(|err| Error::io(&tmp, "cannot restore its time", &err))?;
                    }
                    std::fs::rename(&tmp, &e.path).map_err(|err| Error::io(&e.path, "cannot restore", &err))?;
                }
                None => match std::fs::remove_file(&e.path) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(&e.path, "cannot remove a file the patch added", &err));
                    }
                    _ => {}
                },
            }
            restored.push(e.path.clone());
        }
        std::fs::remove_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, "cannot remove the stash", &e))?;
        restored.reverse();
        Ok(restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("klp-stash-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tree")).unwrap();
        dir
    }

    #[test]
    fn changed_and_added_files_come_back_as_they_were() {
        let dir = scratch("restore");
        let (kept, added) = (dir.join("tree/kept.c"), dir.join("tree/added.c"));
        std::fs::write(&kept, "int a;\n").unwrap();
        let old_time = std::fs::metadata(&kept).unwrap().modified().unwrap() - std::time::Duration::from_secs(3600);
        std::fs::File::options().write(true).open(&kept).unwrap().set_modified(old_time).unwrap();

        let (mut stash, leftover) = Stash::open(&dir.join("stash")).unwrap();
        assert!(leftover.is_empty());
        stash.save(&kept).unwrap();
        stash.save(&added).unwrap();
        std::fs::write(&kept, "int b;\n").unwrap();
        std::fs::write(&added, "new\n").unwrap();
        // Saving again keeps the first copy.
        stash.save(&kept).unwrap();

        assert_eq!(stash.restore().unwrap(), [kept.clone(), added.clone()]);
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "int a;\n");
        assert_eq!(std::fs::metadata(&kept).unwrap().modified().unwrap(), old_time);
        assert!(!added.exists() && !dir.join("stash").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stash_left_by_a_killed_run_is_restored_by_the_next() {
        let dir = scratch("leftover");
        let file = dir.join("tree/x.c");
        std::fs::write(&file, "before\n").unwrap();
        let (mut stash, _) = Stash::open(&dir.join("stash")).unwrap();
        stash.save(&file).unwrap();
        std::fs::write(&file, "after\n").unwrap();
        std::mem::forget(stash); // killed: nothing ran

        let (stash, leftover) = Stash::open(&dir.join("stash")).unwrap();
        assert_eq!(leftover, std::slice::from_ref(&file));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "before\n");
        assert!(stash.restore().unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A source the patched build compiled comes back with its bytes and a
    /// new time, also from a killed run's manifest: make must rebuild it.
    #[test]
    fn a_compiled_source_comes_back_newer_than_its_objects() {
        let dir = scratch("touch");
        let src = dir.join("tree/x.c");
        std::fs::write(&src, "int a;\n").unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options().write(true).open(&src).unwrap().set_modified(old).unwrap();
        let (mut stash, _) = Stash::open(&dir.join("stash")).unwrap();
        stash.save_source(&src).unwrap();
        assert!(stash.original(&src).unwrap().is_some());
        std::fs::write(&src, "int b;\n").unwrap();
        let object_written = SystemTime::now();
        std::mem::forget(stash); // killed
        let (_, leftover) = Stash::open(&dir.join("stash")).unwrap();
        assert_eq!(leftover, std::slice::from_ref(&src));
        assert_eq!(std::fs::read_to_string(&src).unwrap(), "int a;\n");
        assert!(std::fs::metadata(&src).unwrap().modified().unwrap() >= object_written);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_manifest_is_an_error_naming_it() {
        let dir = scratch("damaged");
        std::fs::create_dir_all(dir.join("stash")).unwrap();
        std::fs::write(dir.join("stash").join(MANIFEST), "garbage\n").unwrap();
        let e = Stash::open(&dir.join("stash")).unwrap_err().to_string();
        assert!(e.contains("MANIFEST") && e.contains("line 1"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
