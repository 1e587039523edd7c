//! Step 3 of `klp build`: freeze the kernel release string. kbuild asks
//! `scripts/setlocalversion` for it on every build, and in a git tree a
//! patched source makes it append `+` (or a new hash): the patched build's
//! vermagic would no longer be the running kernel's. For the length of the
//! run the script just prints the release the original build has.
//!
//! The rest of the version banner in `vmlinux.o` is frozen too
//! ([`BuildStamp`]): its user and host (`root@vm`), and the number and
//! date that kbuild leaves empty there (`# SMP PREEMPT_DYNAMIC `: since 6.1
//! `init/version.o` is compiled with a temporary banner, the real one is
//! linked only into `vmlinux`) unless `KBUILD_BUILD_VERSION` or
//! `KBUILD_BUILD_TIMESTAMP` were set. `linux_banner` sits early in
//! `vmlinux.o`'s `.rodata`: when its length changes (another host name,
//! `#9` to `#10` on older kernels) every anonymous `.rodata` place after it,
//! the jump tables of hundreds of functions, moves, and the patched build
//! would differ from the original everywhere.

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

/// The parts of `vmlinux.o`'s version banner kbuild makes up per build, as
/// the original build had them; the patched build is given the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStamp {
    /// `KBUILD_BUILD_VERSION`: the link count after `#` (empty in a 6.1+
    /// `vmlinux.o` unless it was set).
    pub version: String,
    /// `KBUILD_BUILD_TIMESTAMP` (likewise).
    pub timestamp: String,
    /// `KBUILD_BUILD_USER` and `KBUILD_BUILD_HOST`.
    pub user: String,
    pub host: String,
}

/// kbuild's variables for the four parts, in [`BuildStamp`]'s order.
const VARIABLES: [&str; 4] =
    ["KBUILD_BUILD_VERSION", "KBUILD_BUILD_TIMESTAMP", "KBUILD_BUILD_USER", "KBUILD_BUILD_HOST"];

/// The banner `init/version.o` is compiled with (6.1+).
const UTS_VERSION_TMP_H: &str = "init/utsversion-tmp.h";
const COMPILE_H: &str = "include/generated/compile.h";
/// The words kbuild puts between the number and the date (`init/Makefile`).
const UTS_FLAGS: &[&str] = &["SMP", "PREEMPT", "PREEMPT_DYNAMIC", "PREEMPT_RT"];

impl BuildStamp {
    /// The stamp of the last build in `build_dir`.
    pub fn read(build_dir: &Path) -> Result<Self> {
        // Kernels before 6.1 compile `init/version.o` with compile.h's.
        let uts_path =
            Some(build_dir.join(UTS_VERSION_TMP_H)).filter(|p| p.is_file()).unwrap_or(build_dir.join(COMPILE_H));
        let uts = define(&uts_path, "UTS_VERSION")?;
        let rest = uts.strip_prefix('#').ok_or_else(|| bad(&uts_path, "UTS_VERSION does not start with #"))?;
        let (version, mut timestamp) = rest.split_once(' ').unwrap_or((rest, ""));
        while let Some((word, after)) = timestamp.split_once(' ')
            && UTS_FLAGS.contains(&word)
        {
            timestamp = after;
        }
        let compile_path = build_dir.join(COMPILE_H);
        let stamp = BuildStamp {
            version: version.to_owned(),
            timestamp: timestamp.to_owned(),
            user: define(&compile_path, "LINUX_COMPILE_BY")?,
            host: define(&compile_path, "LINUX_COMPILE_HOST")?,
        };
        // kbuild puts these in double quotes in a shell command.
        for (what, value) in stamp.fields() {
            if !value.bytes().all(|b| (b' '..=b'~').contains(&b) && !b"\"'$`\\".contains(&b)) {
                return Err(bad(build_dir, &format!("{what} {value:?} has characters kbuild cannot be given back")));
            }
        }
        Ok(stamp)
    }

    fn fields(&self) -> [(&'static str, &str); 4] {
        let [version, timestamp, user, host] = VARIABLES;
        [(version, &self.version), (timestamp, &self.timestamp), (user, &self.user), (host, &self.host)]
    }

    /// make's variables that give a build this stamp.
    pub fn make_variables(&self) -> Vec<String> {
        self.fields().iter().map(|(name, value)| format!("{name}={value}")).collect()
    }

    /// One `NAME=value` per line, as kept with the original build.
    pub fn to_text(&self) -> String {
        self.make_variables().iter().map(|v| format!("{v}\n")).collect()
    }

    pub fn from_text(path: &Path, text: &str) -> Result<Self> {
        let get = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(|| bad(path, &format!("no {name}")))
        };
        let [version, timestamp, user, host] = VARIABLES;
        Ok(BuildStamp { version: get(version)?, timestamp: get(timestamp)?, user: get(user)?, host: get(host)? })
    }
}

fn bad(path: &Path, what: &str) -> Error {
    Error::malformed(what.to_owned()).in_file(path)
}

/// The string of `#define NAME "..."` in generated header `path`.
fn define(path: &Path, name: &str) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read", &e))?;
    text.lines()
        .filter_map(|l| l.strip_prefix("#define")?.trim_start().strip_prefix(name))
        .find_map(|rest| rest.trim().strip_prefix('"')?.strip_suffix('"').map(str::to_owned))
        .ok_or_else(|| bad(path, &format!("no {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_is_read_back_from_what_kbuild_generated() {
        let dir = std::env::temp_dir().join(format!("klp-stamp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("include/generated")).unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        std::fs::create_dir_all(dir.join("init")).unwrap();
        // What a 6.12 build leaves: no number, no date.
        write(UTS_VERSION_TMP_H, "#define UTS_VERSION \"# SMP PREEMPT_DYNAMIC \"\n");
        write(
            COMPILE_H,
            "#define UTS_MACHINE\t\t\"x86_64\"\n#define LINUX_COMPILE_BY\t\"root\"\n#define LINUX_COMPILE_HOST\t\"vm\"\n",
        );
        let stamp = BuildStamp::read(&dir).unwrap();
        assert_eq!(
            stamp.make_variables(),
            ["KBUILD_BUILD_VERSION=", "KBUILD_BUILD_TIMESTAMP=", "KBUILD_BUILD_USER=root", "KBUILD_BUILD_HOST=vm"]
        );
        // With both set for the original build.
        write(UTS_VERSION_TMP_H, "#define UTS_VERSION \"#28 SMP PREEMPT_DYNAMIC Thu Dec  3 04:10:53 UTC 2026\"\n");
        let stamp = BuildStamp::read(&dir).unwrap();
        assert_eq!(
            stamp.make_variables(),
            [
                "KBUILD_BUILD_VERSION=28",
                "KBUILD_BUILD_TIMESTAMP=Thu Dec  3 04:10:53 UTC 2026",
                "KBUILD_BUILD_USER=root",
                "KBUILD_BUILD_HOST=vm"
            ]
        );
        assert_eq!(BuildStamp::from_text(&dir, &stamp.to_text()).unwrap(), stamp);
        // Without SMP or preemption words, as a UP kernel has it.
        write(UTS_VERSION_TMP_H, "#define UTS_VERSION \"#3 Tue Jan  6 10:00:00 UTC 2026\"\n");
        assert_eq!(BuildStamp::read(&dir).unwrap().timestamp, "Tue Jan  6 10:00:00 UTC 2026");
        write(UTS_VERSION_TMP_H, "#define UTS_VERSION \"# \"\n");
        assert_eq!(
            BuildStamp::read(&dir).unwrap().make_variables()[..2],
            ["KBUILD_BUILD_VERSION=", "KBUILD_BUILD_TIMESTAMP="]
        );
        // A quote would end kbuild's shell string early.
        write(COMPILE_H, "#define LINUX_COMPILE_BY \"a\"b\"\n#define LINUX_COMPILE_HOST \"vm\"\n");
        let err = BuildStamp::read(&dir).unwrap_err().to_string();
        assert!(err.contains("KBUILD_BUILD_USER"), "{err}");
        // Before 6.1: compile.h has the banner.
        std::fs::remove_file(dir.join(UTS_VERSION_TMP_H)).unwrap();
        write(
            COMPILE_H,
            "#define UTS_VERSION \"#5 SMP Mon Jan  5 10:00:00 UTC 2026\"\n#define LINUX_COMPILE_BY \"b\"\n#define LINUX_COMPILE_HOST \"h\"\n",
        );
        assert_eq!(BuildStamp::read(&dir).unwrap().version, "5");
        std::fs::remove_file(dir.join(COMPILE_H)).unwrap();
        let err = BuildStamp::read(&dir).unwrap_err().to_string();
        assert!(err.contains("compile.h"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
