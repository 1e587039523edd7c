//! Which compiler a kernel was built with, read from its `.config`, and the
//! make variables that make kbuild build a module with that same compiler.
//!
//! A module for a clang kernel must be compiled by clang (its flags, and for
//! LTO its bitcode, mean nothing to gcc), and kbuild only picks clang when
//! told `LLVM=1`. Kbuild itself merely warns when the compiler differs from
//! the kernel's; a different compiler family or major version is refused
//! here, before kbuild fails with a confusing message, and a different
//! version text within the same major version is reported as kbuild does.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};
use crate::kernel::config::KernelConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompilerFamily {
    Gcc,
    Clang,
}

/// What a kernel's `.config` says about how it was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelToolchain {
    pub family: CompilerFamily,
    /// `CONFIG_GCC_VERSION` / `CONFIG_CLANG_VERSION`: 120200 is 12.2.0.
    pub version: u32,
    /// `CONFIG_CC_VERSION_TEXT`: the first line of `$(CC) --version`.
    pub version_text: String,
    /// `CONFIG_LD_IS_LLD`.
    pub lld: bool,
    /// `CONFIG_LTO_CLANG`.
    pub lto: bool,
}

/// The make variables for a module build, and what to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleToolchain {
    pub make_args: Vec<String>,
    /// The compiler kbuild will run, as a command name or path.
    pub compiler: String,
    pub summary: String,
    /// Set when the installed compiler's version text differs from the
    /// kernel's within the same major version.
    pub warning: Option<String>,
}

impl KernelToolchain {
    /// Read `KDIR/.config`.
    pub fn of_tree(kdir: &Path) -> Result<Self> {
        let path = kdir.join(".config");
        Self::of_config(&KernelConfig::read(&path)?).map_err(|e| e.in_file(&path))
    }

    pub fn parse(config: &str) -> Result<Self> {
        Self::of_config(&KernelConfig::parse(config)?)
    }

    pub fn of_config(config: &KernelConfig) -> Result<Self> {
        let enabled = |key: &str| config.enabled(key);
        let family = match (enabled("CONFIG_CC_IS_GCC"), enabled("CONFIG_CC_IS_CLANG")) {
            (true, false) => CompilerFamily::Gcc,
            (false, true) => CompilerFamily::Clang,
            _ => {
                return Err(Error::malformed("neither CONFIG_CC_IS_GCC nor CONFIG_CC_IS_CLANG (exactly one) is set"));
            }
        };
        let version_key = match family {
            CompilerFamily::Gcc => "CONFIG_GCC_VERSION",
            CompilerFamily::Clang => "CONFIG_CLANG_VERSION",
        };
        let version = config
            .value(version_key)
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&v| v > 0)
            .ok_or_else(|| Error::malformed(format!("{version_key} is missing or not a version number")))?;
        let version_text = config
            .string("CONFIG_CC_VERSION_TEXT")
            .ok_or_else(|| Error::malformed("CONFIG_CC_VERSION_TEXT is missing or not a quoted string"))?
            .to_owned();
        Ok(KernelToolchain {
            family,
            version,
            version_text,
            lld: enabled("CONFIG_LD_IS_LLD"),
            lto: enabled("CONFIG_LTO_CLANG"),
        })
    }

    pub fn major(&self) -> u32 {
        self.version / 10_000
    }

    /// How to build a module for this kernel. `llvm_env` is the user's own
    /// `LLVM` variable, kept when it names a clang (`1`, a `-14` suffix or an
    /// `/usr/lib/llvm-14/bin/` prefix, as kbuild reads it); `installed` runs
    /// `COMPILER --version` and returns its first line, or `None` when the
    /// compiler cannot be run.
    pub fn module_toolchain(
        &self,
        llvm_env: Option<&str>,
        installed: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ModuleToolchain> {
        let llvm_env = llvm_env.filter(|v| !v.is_empty());
        let (make_args, compiler) = match self.family {
            CompilerFamily::Gcc => {
                if let Some(v) = llvm_env {
                    return Err(Error::usage(format!(
                        "LLVM={v} is set, but the kernel was built with gcc ({}); unset LLVM",
                        self.version_text
                    )));
                }
                (Vec::new(), "gcc".to_owned())
            }
            CompilerFamily::Clang => {
                let llvm = llvm_env.unwrap_or("1");
                let compiler = clang_of_llvm_variable(llvm);
                let mut args = vec![format!("LLVM={llvm}")];
                if !self.lld {
                    // LLVM=1 also picks ld.lld; a clang kernel linked by GNU ld keeps it.
                    args.push("LD=ld".to_owned());
                }
                (args, compiler)
            }
        };
        let found = installed(&compiler).ok_or_else(|| {
            Error::tool(format!(
                "the kernel was built with {} but `{compiler}` cannot be run; install it{}",
                self.version_text,
                if self.family == CompilerFamily::Clang { " (Debian: clang lld llvm)" } else { "" }
            ))
        })?;
        let warning = self.compare_installed(&compiler, &found)?;
        let summary = format!(
            "kernel built with {}{}{}: building with {}",
            self.version_text,
            if self.lld { ", ld.lld" } else { "" },
            if self.lto { ", clang LTO" } else { "" },
            if make_args.is_empty() { format!("`{compiler}`") } else { make_args.join(" ") }
        );
        Ok(ModuleToolchain { make_args, compiler, summary, warning })
    }

    /// The installed compiler against the kernel's: another family or major
    /// version is an error, another version text a warning.
    fn compare_installed(&self, compiler: &str, found: &str) -> Result<Option<String>> {
        if found == self.version_text {
            return Ok(None);
        }
        let family_ok = match self.family {
            CompilerFamily::Gcc => !found.contains("clang"),
            CompilerFamily::Clang => found.contains("clang"),
        };
        let major_ok = version_in(found).is_some_and(|v| v / 10_000 == self.major());
        if family_ok && major_ok {
            return Ok(Some(format!(
                "`{compiler}` is \"{found}\", the kernel was built with \"{}\" (kbuild warns about this too)",
                self.version_text
            )));
        }
        Err(Error::tool(format!(
            "`{compiler}` is \"{found}\" but the kernel was built with \"{}\"; a module must be built with the kernel's compiler",
            self.version_text
        )))
    }
}

/// The clang kbuild runs for `LLVM=VALUE`: `clang`, `clang-14` or `PREFIX/clang`.
fn clang_of_llvm_variable(llvm: &str) -> String {
    if llvm == "1" {
        "clang".to_owned()
    } else if let Some(suffix) = llvm.strip_prefix('-') {
        format!("clang-{suffix}")
    } else if llvm.ends_with('/') {
        format!("{llvm}clang")
    } else {
        "clang".to_owned()
    }
}

/// The first `X.Y.Z` in a `--version` line, as kbuild numbers it (XXYYZZ).
fn version_in(text: &str) -> Option<u32> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.')).rev().find_map(|w| {
        let mut parts = w.split('.');
        let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let n = |s: &str| s.parse::<u32>().ok().filter(|&v| v < 100);
        Some(n(a)? * 10_000 + n(b)? * 100 + n(c)?)
    })
}

/// First line of `COMPILER --version`, or `None` when it cannot be run.
pub fn installed_version(compiler: &str) -> Option<String> {
    let out = Command::new(compiler).arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLANG_LTO: &str = "\
CONFIG_CC_VERSION_TEXT=\"Debian clang version 14.0.6\"
CONFIG_CC_IS_CLANG=y
CONFIG_CLANG_VERSION=140006
CONFIG_LD_IS_LLD=y
CONFIG_LTO_CLANG=y
";
    const GCC: &str = "\
CONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14+deb12u1) 12.2.0\"
CONFIG_CC_IS_GCC=y
CONFIG_GCC_VERSION=120200
CONFIG_CLANG_VERSION=0
# CONFIG_LTO_CLANG is not set
";

    fn have(text: &'static str) -> impl Fn(&str) -> Option<String> {
        move |_| Some(text.to_owned())
    }

    #[test]
    fn a_clang_lto_kernel_builds_with_llvm_1() {
        let k = KernelToolchain::parse(CLANG_LTO).unwrap();
        assert_eq!((k.family.clone(), k.major(), k.lld, k.lto), (CompilerFamily::Clang, 14, true, true));
        let t = k.module_toolchain(None, &have("Debian clang version 14.0.6")).unwrap();
        assert_eq!(t.make_args, ["LLVM=1"]);
        assert_eq!(t.compiler, "clang");
        assert_eq!(t.warning, None);
        assert!(t.summary.contains("clang LTO"), "{}", t.summary);
    }

    #[test]
    fn the_users_llvm_suffix_is_kept_and_names_the_compiler() {
        let k = KernelToolchain::parse(CLANG_LTO).unwrap();
        let seen = std::cell::RefCell::new(String::new());
        let probe = |c: &str| {
            *seen.borrow_mut() = c.to_owned();
            Some("Debian clang version 14.0.6".to_owned())
        };
        let t = k.module_toolchain(Some("-14"), &probe).unwrap();
        assert_eq!((t.make_args, seen.into_inner()), (vec!["LLVM=-14".to_owned()], "clang-14".to_owned()));
        assert_eq!(clang_of_llvm_variable("/usr/lib/llvm-14/bin/"), "/usr/lib/llvm-14/bin/clang");
    }

    #[test]
    fn a_gcc_kernel_builds_with_plain_make() {
        let k = KernelToolchain::parse(GCC).unwrap();
        let t = k.module_toolchain(None, &have("gcc (Debian 12.2.0-14+deb12u1) 12.2.0")).unwrap();
        assert!(t.make_args.is_empty());
        assert_eq!(t.compiler, "gcc");
    }

    #[test]
    fn mismatches_are_refused_or_reported() {
        let clang = KernelToolchain::parse(CLANG_LTO).unwrap();
        let gcc = KernelToolchain::parse(GCC).unwrap();
        // LLVM set for a gcc kernel.
        let e = gcc.module_toolchain(Some("1"), &have("x")).unwrap_err();
        assert!(e.message.contains("built with gcc"), "{}", e.message);
        // No clang installed.
        let e = clang.module_toolchain(None, &|_| None).unwrap_err();
        assert!(e.message.contains("cannot be run"), "{}", e.message);
        // Another major version, another family.
        let e = clang.module_toolchain(None, &have("Debian clang version 16.0.6")).unwrap_err();
        assert!(e.message.contains("the kernel's compiler"), "{}", e.message);
        let e = gcc.module_toolchain(None, &have("Debian clang version 12.2.0")).unwrap_err();
        assert!(e.message.contains("the kernel's compiler"), "{}", e.message);
        // Same major, another point release: a warning.
        let t = gcc.module_toolchain(None, &have("gcc (Debian 12.3.0-1) 12.3.0")).unwrap();
        assert!(t.warning.is_some_and(|w| w.contains("12.3.0")));
    }

    #[test]
    fn a_config_without_a_compiler_is_malformed() {
        for bad in ["", "CONFIG_CC_IS_GCC=y\nCONFIG_CC_IS_CLANG=y\n", "CONFIG_CC_IS_GCC=y\nCONFIG_GCC_VERSION=x\n"] {
            assert!(KernelToolchain::parse(bad).is_err(), "{bad:?}");
        }
        let no_text = "CONFIG_CC_IS_GCC=y\nCONFIG_GCC_VERSION=120200\n";
        assert!(KernelToolchain::parse(no_text).unwrap_err().message.contains("VERSION_TEXT"));
    }

    #[test]
    fn versions_are_read_as_kbuild_numbers_them() {
        assert_eq!(version_in("gcc (Debian 12.2.0-14+deb12u1) 12.2.0"), Some(120200));
        assert_eq!(version_in("Debian clang version 14.0.6"), Some(140006));
        assert_eq!(version_in("no version"), None);
    }
}
