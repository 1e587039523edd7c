//! The livepatch ABI: section and symbol naming of the two format
//! generations, and the one codec of the metadata structures
//! (`klp_object_ext`, `klp_func_ext`, `klp_reloc`): encoded by extraction,
//! decoded by post-link and `klp check`. In a relocatable object a pointer
//! field is zero and carries a relocation; decoding follows it.

use crate::elf::Binding;

use crate::elf::{ElfObject, Section, SymbolId, reloc};
pub use crate::elf::{SHF_RELA_LIVEPATCH, SHN_LIVEPATCH};
use crate::error::{Error, Result};
/// `MODULE_NAME_LEN - 1`.
pub const MAX_OBJNAME_LEN: usize = 55;
/// `KSYM_NAME_LEN - 1`.
pub const MAX_SYMBOL_NAME_LEN: usize = 511;

/// `struct klp_func_ext`: old_name, new_func, sympos.
pub const KLP_FUNC_SIZE: u64 = 24;
const FUNC_OLD_NAME: u64 = 0;
const FUNC_NEW_FUNC: u64 = 8;
const FUNC_SYMPOS: u64 = 16;
/// `struct klp_object_ext`: name, funcs, callbacks (5 x 8), nr_funcs.
pub const KLP_OBJECT_SIZE: u64 = 64;
const OBJECT_NAME: u64 = 0;
const OBJECT_FUNCS: u64 = 8;
const OBJECT_CALLBACKS: u64 = 16;
const OBJECT_NR_FUNCS: u64 = 56;
/// `struct klp_reloc`: offset (relocated), sym (relocated), type.
pub const KLP_RELOC_SIZE: u64 = 24;
const RELOC_SITE: u64 = 0;
const RELOC_SYMBOL: u64 = 8;
const RELOC_TYPE: u64 = 16;

/// The callback pointer variables `KLP_*_CALLBACK()` define, in the order of
/// `struct klp_callbacks`.
pub const CALLBACK_PREFIXES: [&str; 4] = [
    "__klp_pre_patch_callback_",
    "__klp_post_patch_callback_",
    "__klp_pre_unpatch_callback_",
    "__klp_post_unpatch_callback_",
];

/// Which kernel's names the output uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Linux 6.19: `__klp_objects`, `__klp_funcs`, one `__klp_relocs`,
    /// placeholders named like their target.
    V6_19,
    /// Later kernels: `.init.klp_objects`, `.init.klp_funcs`,
    /// `__klp_relocs.<obj>`, `.klp.tombstone.<name>` placeholders.
    #[default]
    Current,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "v6.19" => Ok(Format::V6_19),
            "current" => Ok(Format::Current),
            _ => Err(format!("unknown format '{s}' (expected v6.19 or current)")),
        }
    }
}

impl Format {
    pub fn objects_section(self) -> &'static str {
        match self {
            Format::V6_19 => "__klp_objects",
            Format::Current => ".init.klp_objects",
        }
    }
    pub fn funcs_section(self) -> &'static str {
        match self {
            Format::V6_19 => "__klp_funcs",
            Format::Current => ".init.klp_funcs",
        }
    }
    pub fn relocs_section(self, objname: &str) -> String {
        match self {
            Format::V6_19 => "__klp_relocs".to_owned(),
            Format::Current => format!("__klp_relocs.{objname}"),
        }
    }
    /// How the placeholder is bound. Upstream makes it weak, so a module
    /// whose KLP relocations were never converted loads and runs with null
    /// pointers at every KLP site. Ours are global: until post-link marks them
    /// SHN_LIVEPATCH the module loader refuses the module ("Unknown symbol
    /// .klp.tombstone.X"), and after it the loader skips them. v6.19's
    /// placeholders carry the target's own name, which a global binding could
    /// resolve against an export, so they stay weak.
    pub fn placeholder_binding(self) -> Binding {
        match self {
            Format::V6_19 => Binding::Weak,
            Format::Current => Binding::Global,
        }
    }
    /// The undefined symbol an ordinary relocation at a KLP site refers to.
    pub fn placeholder(self, target: &str) -> String {
        match self {
            Format::V6_19 => target.to_owned(),
            Format::Current => format!(".klp.tombstone.{target}"),
        }
    }
}

pub const STRINGS_SECTION: &str = ".rodata.klp.str1.1";

/// Symbols the compiler emits calls and jumps to on its own (ftrace's entry
/// hook, retpoline and return thunks, the stack protector). vmlinux exports
/// every one on the kernels that have them, and objtool, run on the patch
/// module, finds the call sites it must register (`.return_sites`,
/// `.retpoline_sites`, `__mcount_loc`) by these names. A reference to one
/// is therefore always an ordinary undefined reference, `Module.symvers` or
/// not: as a KLP relocation the site would be invisible to objtool and the
/// module would run the kernel's unpatched default thunk.
pub fn is_codegen_symbol(name: &str) -> bool {
    const EXACT: &[&str] =
        &["__fentry__", "__x86_return_thunk", "its_return_thunk", "srso_return_thunk", "__stack_chk_fail"];
    const PREFIXES: &[&str] = &[
        "__x86_indirect_thunk_",
        "__x86_indirect_call_thunk_",
        "__x86_indirect_jump_thunk_",
        "__x86_indirect_its_thunk_",
    ];
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// `.klp.sym.<obj>.<name>,<pos>`
pub fn klp_symbol_name(obj: &str, name: &str, sympos: u64) -> String {
    format!(".klp.sym.{obj}.{name},{sympos}")
}

/// `.klp.rela.<obj>.<section>`
pub fn klp_rela_section_name(obj: &str, section: &str) -> String {
    format!(".klp.rela.{obj}.{section}")
}

/// Parse `.klp.sym.<obj>.<name>,<pos>` the way the kernel does.
pub fn parse_klp_symbol(name: &str) -> Option<(&str, &str, u64)> {
    let rest = name.strip_prefix(".klp.sym.")?;
    let (obj, rest) = rest.split_once('.')?;
    let (sym, pos) = rest.rsplit_once(',')?;
    let pos = pos.parse().ok()?;
    (obj.len() <= MAX_OBJNAME_LEN && sym.len() <= MAX_SYMBOL_NAME_LEN && !sym.contains(',')).then_some((obj, sym, pos))
}

/// A pointer field of a table: what its `R_X86_64_64` relocation points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pointer {
    pub symbol: SymbolId,
    pub addend: i64,
}

impl Pointer {
    /// The section and offset it points to, if the symbol is defined.
    pub fn target(self, obj: &ElfObject) -> Option<(crate::elf::SectionId, u64)> {
        let sym = obj.symbol(self.symbol);
        let at = (sym.value as i64).checked_add(self.addend)?;
        Some((sym.section()?, u64::try_from(at).ok()?))
    }

    /// The NUL-terminated string it points to.
    pub fn string<'d>(self, obj: &ElfObject<'d>) -> Option<&'d [u8]> {
        let (sec, at) = self.target(obj)?;
        obj.section(sec).c_str_at(at)
    }
}

/// One `struct klp_func_ext`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuncEntry {
    /// Offset of the entry in its section.
    pub at: u64,
    pub old_name: Option<Pointer>,
    pub new_func: Option<Pointer>,
    pub sympos: u64,
}

/// One `struct klp_object_ext`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectEntry {
    pub at: u64,
    /// NULL for vmlinux.
    pub name: Option<Pointer>,
    pub funcs: Option<Pointer>,
    pub callbacks: [Option<Pointer>; 4],
    pub nr_funcs: u32,
}

/// One `struct klp_reloc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelocEntry {
    pub at: u64,
    /// The place the KLP relocation patches.
    pub site: Option<Pointer>,
    /// The `.klp.sym` symbol, with the relocation's addend.
    pub symbol: Option<Pointer>,
    pub r_type: u32,
}

/// The entries of a table section, each `size` bytes; refused when the
/// section has no bytes of its own or is not a whole number of entries.
fn entries<'s, 'd>(sec: &'s Section<'d>, size: u64) -> Result<impl Iterator<Item = (u64, &'d [u8])> + 's> {
    if sec.is_nobits() && sec.size > 0 {
        return Err(Error::malformed("a livepatch table with no bytes in the file (SHT_NOBITS)").in_section(sec.name));
    }
    if !sec.size.is_multiple_of(size) || sec.data.len() as u64 != sec.size {
        return Err(Error::malformed(format!("size {:#x} is not a whole number of {size}-byte entries", sec.size))
            .in_section(sec.name));
    }
    Ok(sec.data.chunks_exact(size as usize).enumerate().map(move |(i, e)| (i as u64 * size, e)))
}

fn pointer(sec: &Section, at: u64) -> Option<Pointer> {
    let r = sec.relocs_in(at, at + 1).iter().find(|r| r.offset() == at && r.r_type() != reloc::NONE)?;
    Some(Pointer { symbol: r.symbol(), addend: r.addend() })
}

fn u32_at(entry: &[u8], at: u64) -> u32 {
    u32::from_le_bytes(entry[at as usize..at as usize + 4].try_into().expect("4 bytes inside the entry"))
}

fn u64_at(entry: &[u8], at: u64) -> u64 {
    u64::from_le_bytes(entry[at as usize..at as usize + 8].try_into().expect("8 bytes inside the entry"))
}

pub fn object_entries(sec: &Section) -> Result<Vec<ObjectEntry>> {
    Ok(entries(sec, KLP_OBJECT_SIZE)?
        .map(|(at, e)| ObjectEntry {
            at,
            name: pointer(sec, at + OBJECT_NAME),
            funcs: pointer(sec, at + OBJECT_FUNCS),
            callbacks: std::array::from_fn(|i| pointer(sec, at + OBJECT_CALLBACKS + 8 * i as u64)),
            nr_funcs: u32_at(e, OBJECT_NR_FUNCS),
        })
        .collect())
}

pub fn func_entries(sec: &Section) -> Result<Vec<FuncEntry>> {
    Ok(entries(sec, KLP_FUNC_SIZE)?
        .map(|(at, e)| FuncEntry {
            at,
            old_name: pointer(sec, at + FUNC_OLD_NAME),
            new_func: pointer(sec, at + FUNC_NEW_FUNC),
            sympos: u64_at(e, FUNC_SYMPOS),
        })
        .collect())
}

pub fn reloc_entries(sec: &Section) -> Result<Vec<RelocEntry>> {
    Ok(entries(sec, KLP_RELOC_SIZE)?
        .map(|(at, e)| RelocEntry {
            at,
            site: pointer(sec, at + RELOC_SITE),
            symbol: pointer(sec, at + RELOC_SYMBOL),
            r_type: u32_at(e, RELOC_TYPE),
        })
        .collect())
}

/// The bytes of a `klp_func_ext` (pointers zero) and where its two
/// pointer fields are: (old_name, new_func).
pub fn encode_func(sympos: u64) -> ([u8; KLP_FUNC_SIZE as usize], [u64; 2]) {
    let mut e = [0u8; KLP_FUNC_SIZE as usize];
    e[FUNC_SYMPOS as usize..][..8].copy_from_slice(&sympos.to_le_bytes());
    (e, [FUNC_OLD_NAME, FUNC_NEW_FUNC])
}

/// The bytes of a `klp_object_ext` and where its pointer fields are:
/// name, funcs, then the four callbacks.
pub fn encode_object(nr_funcs: u32) -> ([u8; KLP_OBJECT_SIZE as usize], ObjectFields) {
    let mut e = [0u8; KLP_OBJECT_SIZE as usize];
    e[OBJECT_NR_FUNCS as usize..][..4].copy_from_slice(&nr_funcs.to_le_bytes());
    let callbacks = std::array::from_fn(|i| OBJECT_CALLBACKS + 8 * i as u64);
    (e, ObjectFields { name: OBJECT_NAME, funcs: OBJECT_FUNCS, callbacks })
}

/// Offsets of the pointer fields of a `klp_object_ext`.
pub struct ObjectFields {
    pub name: u64,
    pub funcs: u64,
    pub callbacks: [u64; 4],
}

/// The bytes of a `klp_reloc` and where its two pointer fields are:
/// (site, symbol).
pub fn encode_reloc(r_type: u32) -> ([u8; KLP_RELOC_SIZE as usize], [u64; 2]) {
    let mut e = [0u8; KLP_RELOC_SIZE as usize];
    e[RELOC_TYPE as usize..][..4].copy_from_slice(&r_type.to_le_bytes());
    (e, [RELOC_SITE, RELOC_SYMBOL])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn klp_symbol_names_round_trip() {
        let n = klp_symbol_name("vmlinux", "saved_command_line", 0);
        assert_eq!(n, ".klp.sym.vmlinux.saved_command_line,0");
        assert_eq!(parse_klp_symbol(&n), Some(("vmlinux", "saved_command_line", 0)));
        assert_eq!(parse_klp_symbol(".klp.sym.xfs.foo.isra.0,2"), Some(("xfs", "foo.isra.0", 2)));
        assert_eq!(parse_klp_symbol(".klp.sym.vmlinux.foo"), None);
    }

    #[test]
    fn entries_encode_where_the_kernel_reads_them() {
        // include/linux/livepatch_external.h: sympos after two pointers,
        // nr_funcs after name, funcs and five callback pointers.
        let (f, fields) = encode_func(7);
        assert_eq!((u64_at(&f, 16), fields), (7, [0, 8]));
        let (o, fields) = encode_object(3);
        assert_eq!((u32_at(&o, 56), fields.funcs, fields.callbacks), (3, 8, [16, 24, 32, 40]));
        let (r, fields) = encode_reloc(2);
        assert_eq!((u32_at(&r, 16), fields), (2, [0, 8]));
    }

    #[test]
    fn compiler_thunks_are_codegen_symbols() {
        for name in ["__fentry__", "__x86_return_thunk", "__x86_indirect_thunk_rax", "__x86_indirect_call_thunk_r11"] {
            assert!(is_codegen_symbol(name), "{name}");
        }
        for name in ["saved_command_line", "__SCT__cond_resched", "__x86_return_thunk_x", "fentry"] {
            assert!(!is_codegen_symbol(name), "{name}");
        }
    }

    #[test]
    fn placeholders_of_the_current_format_refuse_unconverted_modules() {
        assert_eq!(Format::Current.placeholder("x"), ".klp.tombstone.x");
        assert_eq!(Format::Current.placeholder_binding(), Binding::Global);
        assert_eq!(
            (Format::V6_19.placeholder("x").as_str(), Format::V6_19.placeholder_binding()),
            ("x", Binding::Weak)
        );
    }
}
