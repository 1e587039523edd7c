//! The livepatch ABI: section and symbol naming of the two format
//! generations and the layouts of the metadata structures.

use crate::elf::Binding;

pub use crate::elf::{SHF_RELA_LIVEPATCH, SHN_LIVEPATCH};
/// `MODULE_NAME_LEN - 1`.
pub const MAX_OBJNAME_LEN: usize = 55;
/// `KSYM_NAME_LEN - 1`.
pub const MAX_SYMBOL_NAME_LEN: usize = 511;

/// `struct klp_func_ext`: old_name, new_func, sympos.
pub const KLP_FUNC_SIZE: u64 = 24;
/// `struct klp_object_ext`: name, funcs, callbacks (5 x 8), nr_funcs.
pub const KLP_OBJECT_SIZE: u64 = 64;
pub const KLP_OBJECT_FUNCS: u64 = 8;
pub const KLP_OBJECT_CALLBACKS: u64 = 16;
pub const KLP_OBJECT_NR_FUNCS: u64 = 56;
/// `struct klp_reloc`: offset (relocated), sym (relocated), type.
pub const KLP_RELOC_SIZE: u64 = 24;

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
    fn from_str(s: &str) -> Result<Self, String> {
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
