//! Step 7 of `klp build`: which objects the patched build changed. An
//! object counts when it was written after the patched build started and
//! its bytes differ from the original build's copy: timestamps alone
//! mislead (kbuild rewrites objects whose command line it re-checks), and
//! bytes alone would compare every object of the tree.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};

/// What became of one object the original build kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectChange {
    /// Rewritten with other bytes: diff it.
    Changed(PathBuf),
    /// Gone from the patched build (the patch removed its source).
    Removed(PathBuf),
}

/// Compare each of `objects` (paths relative to both trees) in
/// `patched_tree` against its copy in `orig_copies`, counting only files
/// written at or after `since`.
pub fn changed_objects(
    orig_copies: &Path,
    patched_tree: &Path,
    objects: &[PathBuf],
    since: SystemTime,
) -> Result<Vec<ObjectChange>> {
    let mut out = Vec::new();
    for rel in objects {
        let patched = patched_tree.join(rel);
        let meta = match std::fs::metadata(&patched) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.push(ObjectChange::Removed(rel.clone()));
                continue;
            }
            Err(e) => return Err(Error::io(&patched, "cannot read", &e)),
        };
        let written = meta.modified().map_err(|e| Error::io(&patched, "cannot read the modification time", &e))?;
        if written < since {
            continue;
        }
        let orig = orig_copies.join(rel);
        let same = same_bytes(&orig, &patched)?;
        if !same {
            out.push(ObjectChange::Changed(rel.clone()));
        }
    }
    Ok(out)
}

fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io(p, "cannot read", &e));
    let (ma, mb) = (
        std::fs::metadata(a).map_err(|e| Error::io(a, "cannot read", &e))?,
        std::fs::metadata(b).map_err(|e| Error::io(b, "cannot read", &e))?,
    );
    Ok(ma.len() == mb.len() && read(a)? == read(b)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_objects_rewritten_with_other_bytes_count() {
        let dir = std::env::temp_dir().join(format!("klp-changed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (orig, tree) = (dir.join("orig"), dir.join("tree"));
        for d in [&orig, &tree] {
            std::fs::create_dir_all(d.join("fs")).unwrap();
        }
        let write = |root: &Path, rel: &str, bytes: &str| std::fs::write(root.join(rel), bytes).unwrap();
        for (rel, o, p) in [("fs/same.o", "A", "A"), ("fs/changed.o", "A", "B"), ("fs/old.o", "A", "B")] {
            write(&orig, rel, o);
            write(&tree, rel, p);
        }
        write(&orig, "fs/gone.o", "A");
        // `old.o` differs but was not rewritten by the patched build.
        let since = SystemTime::now() - Duration::from_secs(60);
        let before = since - Duration::from_secs(60);
        std::fs::File::options().write(true).open(tree.join("fs/old.o")).unwrap().set_modified(before).unwrap();
        let objects: Vec<PathBuf> =
            ["fs/same.o", "fs/changed.o", "fs/old.o", "fs/gone.o"].iter().map(PathBuf::from).collect();
        let got = changed_objects(&orig, &tree, &objects, since).unwrap();
        assert_eq!(got, [ObjectChange::Changed("fs/changed.o".into()), ObjectChange::Removed("fs/gone.o".into())]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
