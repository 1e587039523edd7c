//! Link an OUT.o with the module skeleton the way `verify/common/module.rs`
//! does (gcc -DKLP_STANDALONE, `ld -r -T verify/common/module.lds`), and
//! the outside checks of the relinking suites: `readelf -a -W` silent,
//! relocations in bounds read with the `object` crate (not klp's reader).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Missing tools (gcc, ld, readelf): fail under CI, else skip with a note.
/// True when the suite may run.
pub fn tools_present(suite: &str) -> bool {
    let missing: Vec<&str> = ["gcc", "ld", "readelf"]
        .into_iter()
        .filter(|t| !Command::new(t).arg("--version").output().is_ok_and(|o| o.status.success()))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let what = format!("missing tools: {}", missing.join(", "));
    if super::under_ci() {
        panic!("{what} (CI is set, so a missing tool is a failure)");
    }
    eprintln!("SKIPPED: {suite}: {what}");
    false
}

/// The skeleton compiled once per run, standalone (no kernel tree).
pub fn skeleton(dir: &Path) -> &'static Path {
    static SKELETON: OnceLock<PathBuf> = OnceLock::new();
    SKELETON.get_or_init(|| {
        std::fs::create_dir_all(dir).unwrap();
        let out = dir.join("livepatch_skeleton.o");
        let status = Command::new("gcc")
            .args([
                "-c",
                "-O2",
                "-DKLP_STANDALONE",
                "-ffunction-sections",
                "-fdata-sections",
                "-mcmodel=kernel",
                "-fno-pic",
                "-mno-red-zone",
                "-w",
                "-o",
            ])
            .arg(&out)
            .arg(root().join("src/module/skeleton/livepatch_skeleton.c"))
            .status()
            .expect("run gcc");
        assert!(status.success(), "skeleton does not compile");
        out
    })
}

/// `ld -r -T module.lds -o module skeleton out`: must succeed silently.
pub fn link(skeleton: &Path, out: &Path, module: &Path) -> Result<(), String> {
    let o = Command::new("ld")
        .arg("-r")
        .arg("-T")
        .arg(root().join("verify/common/module.lds"))
        .arg("-o")
        .arg(module)
        .arg(skeleton)
        .arg(out)
        .output()
        .map_err(|e| format!("ld: {e}"))?;
    if !o.status.success() || !o.stderr.is_empty() {
        return Err(format!("ld -r: {}", String::from_utf8_lossy(&o.stderr).trim()));
    }
    Ok(())
}

/// ORIG.o linked by `ld` into the kernel a module patches (`vmlinux` in
/// `scratch`): same-named statics get their addresses, and so the order the
/// kernel counts positions in, from the linker, not from klp. The kernel
/// functions the model only calls (`_printk`, `__fentry__`, ...) come from
/// an assembled file of stubs, as vmlinux defines them. Must link silently:
/// `ld` warns about references it cannot map (into merged sections).
pub fn link_parent(orig: &Path, scratch: &Path) -> Result<PathBuf, String> {
    let data = std::fs::read(orig).map_err(|e| format!("{}: {e}", orig.display()))?;
    let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", orig.display()))?;
    let mut undefined: Vec<&str> =
        (file.symbols()).filter(|s| s.is_undefined()).filter_map(|s| s.name().ok()).filter(|n| !n.is_empty()).collect();
    undefined.sort_unstable();
    undefined.dedup();
    let mut stubs = String::from(".section .note.GNU-stack,\"\",@progbits\n.text\n");
    for name in undefined {
        stubs.push_str(&format!(".globl {name}\n.type {name},@function\n{name}:\n\tret\n"));
    }
    let (source, stub_object, parent) = (scratch.join("stubs.s"), scratch.join("stubs.o"), scratch.join("vmlinux"));
    std::fs::write(&source, stubs).map_err(|e| format!("{}: {e}", source.display()))?;
    let run = |tool: &str, args: &[&std::ffi::OsStr]| -> Result<(), String> {
        let o = Command::new(tool).args(args).output().map_err(|e| format!("{tool}: {e}"))?;
        if !o.status.success() || !o.stderr.is_empty() {
            return Err(format!("{tool}: {}", String::from_utf8_lossy(&o.stderr).trim()));
        }
        Ok(())
    };
    run("as", &["-o".as_ref(), stub_object.as_os_str(), source.as_os_str()])?;
    let flags = ["-e", "0", "--no-warn-rwx-segments", "-o"].map(std::ffi::OsStr::new);
    let mut args: Vec<&std::ffi::OsStr> = flags.to_vec();
    args.extend([parent.as_os_str(), orig.as_os_str(), stub_object.as_os_str()]);
    run("ld", &args)?;
    Ok(parent)
}

/// `readelf -a -W path` succeeds and prints no warning or error.
pub fn readelf_silent(path: &Path) -> Result<(), String> {
    let o = Command::new("readelf").args(["-a", "-W"]).arg(path).output().map_err(|e| format!("readelf: {e}"))?;
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let noisy = |s: &str| {
        s.lines()
            .find(|l| {
                let l = l.to_lowercase();
                l.contains("warning") || l.contains("error")
            })
            .map(str::to_owned)
    };
    if let Some(line) = noisy(&err).or_else(|| noisy(&out)) {
        return Err(format!("readelf -a -W {}: {line}", path.display()));
    }
    if !o.status.success() {
        return Err(format!("readelf -a -W {}: exit {}", path.display(), o.status));
    }
    Ok(())
}

/// Bytes an x86-64 relocation writes, from the psABI's table (word8 ..
/// word64 fields), not from klp; any other type is unexpected here.
fn psabi_width(r_type: object::elf::RelocationType) -> Option<u64> {
    use object::elf::*;
    let word = |types: &[RelocationType]| types.contains(&r_type);
    if word(&[R_X86_64_NONE]) {
        Some(0)
    } else if word(&[R_X86_64_8, R_X86_64_PC8]) {
        Some(1)
    } else if word(&[R_X86_64_16, R_X86_64_PC16]) {
        Some(2)
    } else if word(&[
        R_X86_64_PC32,
        R_X86_64_PLT32,
        R_X86_64_32,
        R_X86_64_32S,
        R_X86_64_GOTPCREL,
        R_X86_64_GOTPCRELX,
        R_X86_64_REX_GOTPCRELX,
        R_X86_64_SIZE32,
    ]) {
        Some(4)
    } else if word(&[R_X86_64_64, R_X86_64_PC64, R_X86_64_SIZE64]) {
        Some(8)
    } else {
        None
    }
}

/// Every relocation of the object lies within its section; returns how many
/// there are.
pub fn relocations_in_bounds(bytes: &[u8]) -> Result<usize, String> {
    let o = object::File::parse(bytes).map_err(|e| format!("object cannot read OUT.o: {e}"))?;
    let mut seen = 0;
    for s in o.sections() {
        let name = s.name().unwrap_or("?");
        for (offset, r) in s.relocations() {
            let t = match r.flags() {
                RelocationFlags::Elf { r_type } => r_type,
                other => return Err(format!("{name}+{offset:#x}: not an ELF relocation: {other:?}")),
            };
            let width = psabi_width(t).ok_or_else(|| format!("{name}+{offset:#x}: relocation type {}", t.0))?;
            if offset.checked_add(width).is_none_or(|end| end > s.size()) {
                return Err(format!(
                    "{name}: relocation type {} at {offset:#x} ({width} bytes) runs past the section end {:#x}",
                    t.0,
                    s.size()
                ));
            }
            seen += 1;
        }
    }
    if seen == 0 { Err("OUT.o has no relocation at all".into()) } else { Ok(seen) }
}

/// A case whose diff made a livepatch, linked: the pair, OUT.o's bytes and
/// the files in the case's scratch directory.
pub struct Linked {
    pub pair: klp::synth::Pair,
    pub out_bytes: Vec<u8>,
    pub out: PathBuf,
    pub module: PathBuf,
    pub scratch: PathBuf,
}

impl Linked {
    /// Remove the scratch directory (kept when the case fails).
    pub fn clean(&self) -> Result<(), String> {
        std::fs::remove_dir_all(&self.scratch).map_err(|e| format!("{}: {e}", self.scratch.display()))
    }
}

/// Synthesize the pair of `req`, diff it in-process; for a livepatch write
/// OUT.o and link it with the skeleton (`None` for another verdict).
pub fn diff_and_link(req: &klp::synth::Request, dir: &Path) -> Result<Option<Linked>, String> {
    let pair = super::pair(req);
    let scratch = dir.join(format!("seed{}", req.seed));
    let outcome = super::diff(&pair.orig, &pair.patched)?;
    finish(pair, outcome, dir, scratch)
}

/// [`diff_and_link`] with the original linked into a parent first and
/// passed as `--parent`: positions among same-named symbols are exact.
/// The parent is `Linked::scratch/vmlinux`.
pub fn diff_and_link_with_parent(req: &klp::synth::Request, dir: &Path) -> Result<Option<Linked>, String> {
    let pair = super::pair(req);
    let scratch = dir.join(format!("seed{}", req.seed));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let orig = scratch.join("a.o");
    std::fs::write(&orig, &pair.orig).map_err(|e| format!("{}: {e}", orig.display()))?;
    let parent = link_parent(&orig, &scratch)?;
    let outcome = super::diff_with_parent(&pair.orig, &pair.patched, &parent)?;
    finish(pair, outcome, dir, scratch)
}

fn finish(
    pair: klp::synth::Pair,
    outcome: super::Outcome,
    dir: &Path,
    scratch: PathBuf,
) -> Result<Option<Linked>, String> {
    let klp::pipeline::Verdict::Livepatch(out_bytes) = outcome.verdict else {
        return Ok(None);
    };
    let skeleton = skeleton(dir);
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let out = scratch.join("out.o");
    std::fs::write(&out, &out_bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    let module = scratch.join("livepatch-test.ko");
    link(skeleton, &out, &module)?;
    Ok(Some(Linked { pair, out_bytes, out, module, scratch }))
}
