//! Module stage: build a loadable livepatch module from `klp diff` outputs
//! with the kernel's own kbuild, then post-link and check it.
//!
//! The work directory gets a Kbuild file, our skeleton (the init code, built
//! into the binary) and each diff output as a prebuilt (`_shipped`) object;
//! `make -C KDIR M=DIR` links them with the kernel's module linker script
//! and modpost. Kbuild's messages go to a log that is shown, in part, only
//! when something fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::kernel::abi::Format;
use crate::kernel::modinfo;
use crate::module::toolchain::{KernelToolchain, ModuleToolchain, installed_version};

/// The skeleton's source, shipped inside the binary.
pub const SKELETON_C: &str = include_str!("skeleton/livepatch_skeleton.c");

#[derive(Debug, Clone)]
pub struct ModuleOptions {
    /// Module name (`livepatch-foo`); characters outside `[A-Za-z0-9_-]` become `-`.
    pub name: String,
    pub kdir: PathBuf,
    pub symvers: Option<PathBuf>,
    pub objects: Vec<PathBuf>,
    pub output: PathBuf,
    /// Build a cumulative patch that does not replace earlier ones.
    pub no_replace: bool,
    /// Leave the module unconverted (for tests that show the kernel refuses it).
    pub skip_post_link: bool,
}

/// `./NAME.ko`, the module name sanitised as kbuild needs it.
pub fn default_output(name: &str) -> PathBuf {
    PathBuf::from(format!("{}.ko", modinfo::sanitised_module_name(name)))
}

/// Build the module; `step` is told what is happening.
pub fn build(opts: &ModuleOptions, step: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    if opts.objects.is_empty() {
        return Err(Error::usage("no diff outputs given"));
    }
    if !opts.kdir.join("Makefile").exists() {
        return Err(Error::usage(
            "not a kernel build tree (no Makefile); pass the tree the target kernel was built in",
        )
        .in_file(&opts.kdir));
    }
    let llvm_env = std::env::var("LLVM").ok();
    let config = opts.kdir.join(".config");
    let toolchain = KernelToolchain::of_tree(&opts.kdir)?
        .module_toolchain(llvm_env.as_deref(), &installed_version)
        .map_err(|e| e.in_file(&config))?;
    step(&toolchain.summary);
    if let Some(warning) = &toolchain.warning {
        step(&format!("warning: {warning}"));
    }
    for obj in &opts.objects {
        check_diff_output(obj)?;
    }
    let name = modinfo::sanitised_module_name(&opts.name);
    let dir = work_dir(&opts.output)?;
    step(&format!("preparing {} in {}", name, dir.display()));
    write_sources(&dir, &name, opts)?;
    let log = dir.join("build.log");
    step(&format!("building with kbuild in {} (log: {})", opts.kdir.display(), log.display()));
    run_kbuild(&dir, opts, &toolchain, &log)?;
    let ko = dir.join(format!("{name}.ko"));
    drop_btf(&ko)?;
    if !opts.skip_post_link {
        step("post-link");
        crate::module::postlink::post_link(&ko)?;
        step("check");
        check(&ko)?;
    }
    let bytes = std::fs::read(&ko).map_err(|e| Error::io(&ko, "cannot read", &e))?;
    crate::elf::write::write_atomically(&opts.output, &bytes)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(opts.output.clone())
}

/// Refuse early what kbuild would link without complaint but the skeleton
/// would find nothing in: an object that is not a `klp diff` output.
fn check_diff_output(obj: &Path) -> Result<()> {
    let file = crate::elf::MappedFile::open(obj)?;
    let elf = file.parse()?;
    let tables = [Format::Current.objects_section(), Format::V6_19.objects_section()];
    if tables.iter().any(|t| elf.section_by_name(t).is_some()) {
        Ok(())
    } else {
        Err(Error::usage(format!("not a klp diff output (no {} section)", tables[0])).in_file(obj))
    }
}

fn work_dir(output: &Path) -> Result<PathBuf> {
    let parent = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let parent = std::fs::canonicalize(parent).map_err(|e| Error::io(parent, "cannot resolve", &e))?;
    let stem = output.file_stem().map_or("module".into(), |s| s.to_string_lossy().into_owned());
    let dir = parent.join(format!(".{stem}.klp-build.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "cannot create", &e))?;
    Ok(dir)
}

/// Kbuild file, skeleton, and the diff outputs as prebuilt objects.
fn write_sources(dir: &Path, name: &str, opts: &ModuleOptions) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| Error::io(p, "cannot write", &e);
    let mut parts = vec!["livepatch_skeleton.o".to_owned()];
    for (i, obj) in opts.objects.iter().enumerate() {
        let base = format!("klp_diff_{i}.o");
        let shipped = dir.join(format!("{base}_shipped"));
        std::fs::copy(obj, &shipped).map_err(|e| io(obj, e))?;
        // An empty .cmd file keeps kbuild from rebuilding or questioning it.
        std::fs::write(dir.join(format!(".{base}.cmd")), "").map_err(|e| io(dir, e))?;
        parts.push(base);
    }
    let mut kbuild = format!("obj-m := {name}.o\n{name}-y := {}\n", parts.join(" "));
    if opts.no_replace {
        kbuild.push_str("ccflags-y += -DKLP_NO_REPLACE\n");
    }
    std::fs::write(dir.join("Kbuild"), kbuild).map_err(|e| io(dir, e))?;
    std::fs::write(dir.join("livepatch_skeleton.c"), SKELETON_C).map_err(|e| io(dir, e))?;
    Ok(())
}

fn run_kbuild(dir: &Path, opts: &ModuleOptions, toolchain: &ModuleToolchain, log: &Path) -> Result<()> {
    let log_file = std::fs::File::create(log).map_err(|e| Error::io(log, "cannot create", &e))?;
    let mut cmd = Command::new("make");
    cmd.arg("-C").arg(&opts.kdir).arg(format!("M={}", dir.display()));
    cmd.args(&toolchain.make_args);
    cmd.arg("KCFLAGS=-ffunction-sections -fdata-sections");
    // The KLP placeholders are undefined until post-link marks them; modpost
    // must only warn, and `unresolved_symbols` then checks that nothing else is.
    cmd.arg("KBUILD_MODPOST_WARN=1");
    if let Some(symvers) = extra_symvers(dir, opts)? {
        cmd.arg(format!("KBUILD_EXTRA_SYMBOLS={}", symvers.display()));
    }
    cmd.arg("modules");
    cmd.stdout(log_file.try_clone().map_err(|e| Error::io(log, "cannot open", &e))?).stderr(log_file);
    let status = cmd.status().map_err(|e| Error::tool(format!("cannot run make: {e}")))?;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if status.success() {
        let missing = unresolved_symbols(&text);
        if missing.is_empty() {
            return Ok(());
        }
        return Err(Error::tool(format!(
            "the module refers to symbols neither the kernel exports nor the livepatch resolves: {}\n\
             Diff with --symvers of the target kernel, or without it to make every reference a KLP relocation.",
            missing.join(", ")
        )));
    }
    let tail: Vec<&str> = text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
    Err(Error::tool(format!(
        "kbuild failed ({status}); last lines of {}:\n{}\nCheck that {} is the build tree of the target kernel (same config and compiler) and that make, the kernel's compiler, bc, flex, bison and libelf-dev are installed.",
        log.display(),
        tail.join("\n"),
        opts.kdir.display()
    )))
}

/// Symbols modpost found undefined, other than the KLP placeholders.
fn unresolved_symbols(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("modpost: ") && l.ends_with("undefined!"))
        .filter_map(|l| l.split('"').nth(1))
        .filter(|name| !name.starts_with(".klp.tombstone."))
        .map(str::to_owned)
        .collect()
}

/// What `--symvers` adds to the tree's own `Module.symvers`, written into the
/// work directory for modpost. Handing modpost an export it already has from
/// the tree makes it fail ("exported twice"), so only the new lines go.
fn extra_symvers(dir: &Path, opts: &ModuleOptions) -> Result<Option<PathBuf>> {
    let Some(symvers) = &opts.symvers else { return Ok(None) };
    let given = std::fs::read_to_string(symvers).map_err(|e| Error::io(symvers, "cannot read", &e))?;
    let own = std::fs::read_to_string(opts.kdir.join("Module.symvers")).unwrap_or_default();
    let known: std::collections::HashSet<&str> = own.lines().filter_map(symvers_name).collect();
    let extra: Vec<&str> = given.lines().filter(|l| symvers_name(l).is_some_and(|n| !known.contains(n))).collect();
    if extra.is_empty() {
        return Ok(None);
    }
    let path = dir.join("extra.symvers");
    std::fs::write(&path, extra.join("\n") + "\n").map_err(|e| Error::io(&path, "cannot write", &e))?;
    Ok(Some(path))
}

/// The symbol of a `Module.symvers` line (`crc symbol module export [ns]`).
fn symvers_name(line: &str) -> Option<&str> {
    line.split('\t').nth(1).filter(|n| !n.is_empty())
}

/// BTF generated for the patch module against a different configuration can
/// be corrupt; livepatch modules do without it (as klp-build does).
fn drop_btf(ko: &Path) -> Result<()> {
    let file = crate::elf::MappedFile::open(ko)?;
    let has_btf = file.parse()?.section_by_name(".BTF").is_some();
    if !has_btf {
        return Ok(());
    }
    drop(file);
    let ok = Command::new("objcopy")
        .arg("--remove-section=.BTF")
        .arg(ko)
        .status()
        .map_err(|e| Error::tool(format!("cannot run objcopy: {e}")))?;
    if ok.success() { Ok(()) } else { Err(Error::tool("objcopy --remove-section=.BTF failed").in_file(ko)) }
}

fn check(ko: &Path) -> Result<()> {
    let file = crate::elf::MappedFile::open(ko)?;
    let m = file.parse()?;
    let (violations, _) = crate::module::check::check(&m, None);
    if violations.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = violations.iter().map(|v| format!("  {v}")).collect();
    Err(Error::tool(format!("the built module breaks livepatch rules:\n{}", lines.join("\n"))).in_file(ko))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_foreign_undefined_symbols_are_reported() {
        let log = "\
WARNING: modpost: \".klp.tombstone.saved_command_line\" [/w/livepatch-demo.ko] undefined!
WARNING: modpost: \"not_exported_anywhere\" [/w/livepatch-demo.ko] undefined!
  LD [M]  /w/livepatch-demo.ko
";
        assert_eq!(unresolved_symbols(log), ["not_exported_anywhere"]);
    }

    #[test]
    fn symvers_lines_name_their_symbol() {
        assert_eq!(symvers_name("0x00000000\tprintk\tvmlinux\tEXPORT_SYMBOL\t"), Some("printk"));
        assert_eq!(symvers_name(""), None);
    }
}
