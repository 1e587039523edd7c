//! Step 3 of `klp build`: freeze the kernel release string. kbuild asks
//! `scripts/setlocalversion` for it on every build, and in a git tree a
//! patched source makes it append `+` (or a new hash): the patched build's
//! vermagic would no longer be the running kernel's. For the length of the
//! run the script just prints the release the original build has.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::stash::Stash;
use crate::error::{Error, Result};

const SCRIPT: &str = "scripts/setlocalversion";

/// Replace `scripts/setlocalversion` of `srctree` by one that prints
/// `release`; the original is saved in `stash` first.
pub fn freeze(srctree: &Path, release: &str, stash: &mut Stash) -> Result<()> {
    if release.is_empty() || !release.bytes().all(|b| b.is_ascii_graphic()) || release.contains('\'') {
        return Err(Error::malformed(format!("kernel release {release:?} is not a plain word")));
    }
    let path = srctree.join(SCRIPT);
    if !path.is_file() {
        return Err(Error::usage("not found: is this a kernel source tree?").in_file(&path));
    }
    stash.save(&path)?;
    let text = format!(
        "#!/bin/sh\n# klp build: the release of the original build, frozen for the patched one.\necho '{release}'\n"
    );
    let tmp = path.with_file_name(".setlocalversion.klp");
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, "cannot write", &e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io(&tmp, "cannot make executable", &e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, "cannot replace", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_prints_the_release_and_comes_back() {
        let dir = std::env::temp_dir().join(format!("klp-release-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tree/scripts")).unwrap();
        let script = dir.join("tree").join(SCRIPT);
        std::fs::write(&script, "#!/bin/sh\necho 6.12.117+\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (mut stash, _) = Stash::open(&dir.join("stash")).unwrap();
        freeze(&dir.join("tree"), "6.12.117", &mut stash).unwrap();
        let out = std::process::Command::new(&script).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "6.12.117\n");
        assert!(freeze(&dir.join("tree"), "6.12 117", &mut stash).is_err());
        stash.restore().unwrap();
        assert_eq!(std::fs::read_to_string(&script).unwrap(), "#!/bin/sh\necho 6.12.117+\n");
        assert_eq!(std::fs::metadata(&script).unwrap().permissions().mode() & 0o777, 0o755);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
