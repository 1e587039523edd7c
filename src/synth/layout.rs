//! The two shapes an object can be written in, and where each thing goes.
//!
//! - The translation-unit form (the default): every unit built with
//!   `-ffunction-sections -fdata-sections`, one section per function and
//!   per variable, units' sections of one name combined as `ld -r` does.
//! - The merged form (`--merged`): the `ld -r` merged form of `vmlinux.o`
//!   as the defconfig 6.12 kernel has it (164,837 sections, 2,853 FILE
//!   symbols, 63k functions). There, 91% of the functions have a section
//!   of their own, but the rest share one: `.init.text` (2,281 functions),
//!   `.exit.text`, `.sched.text`, and `.text` itself, which `ld -r`
//!   concatenates across the units built without function sections
//!   (`init/main.c`, assembly), with symbol-less NOP alignment holes
//!   between the functions; such units put their data in `.data`,
//!   `.rodata`, `.bss`. gas resolves a call from one function to a static
//!   one of the same unit in the same section itself, leaving no
//!   relocation (`do_one_initcall` calls `initcall_blacklisted` so in the
//!   real `.text`). Here one unit in four (chosen by a hash of its file
//!   name, so the choice follows a unit when mutations reorder units) is
//!   built that way, more than the real 9% so that the shared sections are
//!   exercised hard; the others keep their sections, and `.init.text` is
//!   shared in both forms. The FILE symbols come with the units, one per
//!   24 functions: 12,500 at 300k functions.
//!
//! Independently, `--sections-over-64k` asks for more than 65,280
//! sections (`SHN_LORESERVE`), as the real `vmlinux.o` has (164,837): the
//! program is given enough functions with sections of their own, and the
//! ELF writer switches to extended numbering (`SHN_XINDEX`, `.symtab_shndx`,
//! `e_shnum` and `e_shstrndx` in section 0), as `ld` does.

use super::model::{Function, TextKind, Unit, VarKind};

/// How the objects of a pair are laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    /// The `ld -r` merged form of `vmlinux.o`.
    pub merged: bool,
    /// More than 65,280 sections.
    pub sections_over_64k: bool,
}

/// The first section index ELF cannot put in `e_shnum`/`st_shndx` (0xff00).
pub const SHN_LORESERVE: usize = 0xff00;

/// Functions that put more than [`SHN_LORESERVE`] sections before the
/// last one with a function or variable in it, so that symbols need
/// `SHN_XINDEX`. A global function has its `.text.<name>` and
/// `.rela.text.<name>`, but a static `show` shares `.text.show` with the
/// other units' (sections of one name are one after `ld -r`): about one
/// section per function in all, measured; the merged form has a quarter
/// fewer. The writer checks and refuses to write fewer.
pub fn functions_over_64k(layout: Layout) -> usize {
    if layout.merged { 100_000 } else { 75_000 }
}

impl Layout {
    /// Whether `unit` was built without function and data sections.
    pub fn shares_sections(&self, unit: &Unit) -> bool {
        self.merged && fnv1a(unit.file.as_bytes()).is_multiple_of(4)
    }

    /// The section function `f` of `unit` lives in.
    pub fn text_section(&self, unit: &Unit, f: &Function) -> String {
        match f.text {
            TextKind::Init => ".init.text".into(),
            TextKind::Text if self.shares_sections(unit) => ".text".into(),
            TextKind::Text => format!(".text.{}", f.name),
        }
    }

    /// The section of `f`'s `.cold` part: gcc puts cold partitions in
    /// `.text.unlikely` with or without function sections.
    pub fn cold_section(&self, unit: &Unit, f: &Function) -> String {
        if self.shares_sections(unit) { ".text.unlikely".into() } else { format!(".text.unlikely.{}", f.name) }
    }

    /// The section of a variable named `name` of kind `kind` in `unit`.
    pub fn data_section(&self, unit: &Unit, kind: VarKind, name: &str) -> String {
        let prefix = match kind {
            VarKind::Data => ".data",
            VarKind::ReadOnly => ".rodata",
            VarKind::Bss => ".bss",
        };
        if self.shares_sections(unit) { prefix.into() } else { format!("{prefix}.{name}") }
    }

    /// Whether gas resolves a branch inside one section to a local target
    /// of the same unit itself (true in the merged form; the
    /// translation-unit form keeps its historical relocations so that its
    /// objects stay byte-identical per seed).
    pub fn resolves_local_branches(&self) -> bool {
        self.merged
    }
}

/// FNV-1a: a fixed hash, the same on every platform and version.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::model::{Ending, FuncId};

    fn unit(file: &str) -> Unit {
        Unit {
            file: file.into(),
            source_path: file.into(),
            functions: vec![],
            variables: vec![],
            strings: vec![],
            constants: vec![],
        }
    }

    fn function(text: TextKind) -> Function {
        let (body, cold, pad) = (vec![], None, 0);
        Function { id: FuncId(1), name: "show".into(), global: false, text, body, ending: Ending::Return, cold, pad }
    }

    #[test]
    fn the_translation_unit_form_gives_everything_its_own_section() {
        let (l, u) = (Layout::default(), unit("core1.c"));
        assert_eq!(l.text_section(&u, &function(TextKind::Text)), ".text.show");
        assert_eq!(l.cold_section(&u, &function(TextKind::Text)), ".text.unlikely.show");
        assert_eq!(l.data_section(&u, VarKind::Bss, "count.1"), ".bss.count.1");
        assert_eq!(l.text_section(&u, &function(TextKind::Init)), ".init.text");
        assert!(!l.resolves_local_branches());
    }

    #[test]
    fn the_merged_form_shares_sections_in_most_units_but_not_all() {
        let l = Layout { merged: true, sections_over_64k: false };
        let units: Vec<Unit> = (0..400).map(|i| unit(&format!("dev{i}.c"))).collect();
        let shared = units.iter().filter(|u| l.shares_sections(u)).count();
        assert!((60..140).contains(&shared), "{shared} of 400 units share sections");
        let u = units.iter().find(|u| l.shares_sections(u)).unwrap();
        assert_eq!(l.text_section(u, &function(TextKind::Text)), ".text");
        assert_eq!(l.cold_section(u, &function(TextKind::Text)), ".text.unlikely");
        assert_eq!(l.data_section(u, VarKind::ReadOnly, "table"), ".rodata");
        let kept = units.iter().find(|u| !l.shares_sections(u)).unwrap();
        assert_eq!(l.text_section(kept, &function(TextKind::Text)), ".text.show");
    }

    #[test]
    fn the_hash_is_fixed() {
        // FNV-1a's published test vector.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
