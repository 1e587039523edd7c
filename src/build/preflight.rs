//! The checks `klp build` makes before it builds anything (steps 1 and 2
//! of the flow): the kernel's configuration can carry a livepatch, the
//! patches touch only what a livepatch can replace, and the module's name.

use std::path::{Path, PathBuf};

use super::patch::Patch;
use crate::error::{Error, Result};
use crate::kernel::config::KernelConfig;

/// Options that must be set, and why.
const REQUIRED: &[(&str, &str)] =
    &[("CONFIG_MODULES", "the kernel cannot load modules"), ("CONFIG_LIVEPATCH", "the kernel has no live patching")];

/// Options that must not be set, and why.
const REFUSED: &[(&str, &str)] = &[
    (
        "CONFIG_GCC_PLUGIN_LATENT_ENTROPY",
        "the plugin instruments every function with a per-build random value, so every function differs",
    ),
    (
        "CONFIG_GCC_PLUGIN_RANDSTRUCT",
        "structure layouts are randomised per build, so a patched build's code does not match the running kernel's",
    ),
    (
        "CONFIG_LD_DEAD_CODE_DATA_ELIMINATION",
        "the final link drops sections that vmlinux.o has, so a patch may refer to code the running kernel does not have",
    ),
];

/// Refuse a configuration that cannot carry a livepatch, naming the option.
pub fn check_config(config: &KernelConfig, path: &Path) -> Result<()> {
    for (option, why) in REQUIRED {
        if !config.enabled(option) {
            return Err(Error::unsupported(format!("{option} is not set: {why}")).in_file(path));
        }
    }
    for (option, why) in REFUSED {
        if config.enabled(option) {
            return Err(Error::unsupported(format!("{option} is set: {why}")).in_file(path));
        }
    }
    Ok(())
}

/// Refuse a patch to code a livepatch cannot replace, naming the file:
/// assembly (objtool does not describe it function by function), `lib/`
/// (linked into every user, not one object), the vDSO (mapped into user
/// space) and real-mode code (runs before the kernel).
pub fn check_patch_paths(patch: &Patch, path: &Path) -> Result<()> {
    for file in &patch.files {
        let name = file.path();
        let why = if name.ends_with(".S") {
            Some("assembly")
        } else if name.starts_with("lib/") {
            Some("lib/ code")
        } else if name.contains("/vdso/") {
            Some("vDSO code")
        } else if name.contains("/realmode/rm/") {
            Some("real-mode code")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::unsupported(format!("{name}: {why} cannot be live patched; leave it out of the patch"))
                .in_file(path));
        }
    }
    Ok(())
}

/// Longest module name `klp build` gives (the kernel allows 55 characters).
const MAX_NAME: usize = 55;

/// The module's name: from `-o NAME.ko`, else `livepatch-<patch>` for one
/// patch (without its extension) or `livepatch-patch` for several; any
/// character but letters, digits, `_` and `-` becomes `-`.
pub fn module_name(output: Option<&Path>, patches: &[PathBuf]) -> Result<String> {
    let raw = match output {
        Some(out) => {
            let file = out.file_name().and_then(|f| f.to_str()).unwrap_or_default();
            let stem = file.strip_suffix(".ko").filter(|s| !s.is_empty()).ok_or_else(|| {
                Error::usage(format!("-o {}: the output must be a file name ending in .ko", out.display()))
            })?;
            stem.to_owned()
        }
        None => match patches {
            [one] => {
                let stem = one.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                format!("livepatch-{stem}")
            }
            _ => "livepatch-patch".to_owned(),
        },
    };
    let name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
        .take(MAX_NAME)
        .collect();
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::patch::parse;

    fn config(text: &str) -> KernelConfig {
        KernelConfig::parse(text).unwrap()
    }

    #[test]
    fn a_config_without_live_patching_or_with_a_refused_option_names_it() {
        let good = "CONFIG_MODULES=y\nCONFIG_LIVEPATCH=y\n";
        let path = Path::new("tree/.config");
        check_config(&config(good), path).unwrap();
        let e = check_config(&config("CONFIG_MODULES=y\n"), path).unwrap_err().to_string();
        assert!(e.contains("tree/.config") && e.contains("CONFIG_LIVEPATCH is not set"), "{e}");
        for refused in ["CONFIG_GCC_PLUGIN_RANDSTRUCT", "CONFIG_LD_DEAD_CODE_DATA_ELIMINATION"] {
            let e = check_config(&config(&format!("{good}{refused}=y\n")), path).unwrap_err().to_string();
            assert!(e.contains(&format!("{refused} is set")), "{e}");
        }
    }

    #[test]
    fn patches_to_assembly_lib_vdso_and_realmode_are_refused_by_name() {
        let patch = |file: &str| {
            let text = format!("--- a/{file}\n+++ b/{file}\n@@ -1 +1 @@\n-a\n+b\n");
            parse(Path::new("p.patch"), &text).unwrap()
        };
        check_patch_paths(&patch("fs/proc/cmdline.c"), Path::new("p.patch")).unwrap();
        for file in
            ["arch/x86/entry/entry_64.S", "lib/string.c", "arch/x86/entry/vdso/vma.c", "arch/x86/realmode/rm/wakeup.c"]
        {
            let e = check_patch_paths(&patch(file), Path::new("p.patch")).unwrap_err().to_string();
            assert!(e.contains("p.patch") && e.contains(file), "{e}");
        }
    }

    #[test]
    fn module_names_follow_the_output_or_the_patch() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            module_name(None, &[p("fixes/0001-proc: fix cmdline.patch")]).unwrap(),
            "livepatch-0001-proc--fix-cmdline"
        );
        assert_eq!(module_name(None, &[p("a.patch"), p("b.patch")]).unwrap(), "livepatch-patch");
        assert_eq!(module_name(Some(Path::new("out/my_fix.ko")), &[]).unwrap(), "my_fix");
        assert!(module_name(Some(Path::new("my_fix.o")), &[]).is_err());
        let long = module_name(None, &[p(&format!("{}.patch", "x".repeat(80)))]).unwrap();
        assert_eq!(long.len(), MAX_NAME);
    }
}
