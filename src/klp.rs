//! The livepatch formats in one place: section and symbol naming of the two
//! format generations, the layouts of the metadata structures, exports from
//! `Module.symvers`, and symbol positions (sympos) as the kernel counts them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use object::LittleEndian as LE;

use crate::elf::Binding;
use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, SectionHeader, Sym};

/// `SHN_LIVEPATCH`: the section index of symbols the livepatch core resolves.
pub const SHN_LIVEPATCH: u16 = 0xff20;
/// `SHF_RELA_LIVEPATCH`: flag of relocation sections applied by the livepatch core.
pub const SHF_RELA_LIVEPATCH: u64 = 0x0010_0000;
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

/// Module names as the kernel knows them: `fs/xfs/xfs` -> `xfs`,
/// `arch/x86/kvm/kvm-intel` -> `kvm_intel`, `vmlinux` stays.
pub fn normalise_module_name(path: &str) -> String {
    crate::elf::module_name_from_path(path)
}

/// One exported symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// `vmlinux` or a module name.
    pub module: String,
    pub namespace: Option<String>,
}

/// What `Module.symvers` says is exported.
#[derive(Debug, Default)]
pub struct Exports {
    by_name: HashMap<String, Export>,
}

impl Exports {
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Lines: `crc <TAB> symbol <TAB> module <TAB> export-type [<TAB> namespace]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_name = HashMap::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 4 || f[1].is_empty() || f[2].is_empty() {
                return Err(format!("line {}: malformed (expected crc, symbol, module, export type)", i + 1));
            }
            let namespace = f.get(4).filter(|ns| !ns.is_empty()).map(|ns| ns.to_string());
            by_name.insert(f[1].to_owned(), Export { module: normalise_module_name(f[2]), namespace });
        }
        Ok(Exports { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Export> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// A symbol of the linked parent (vmlinux or a `.ko`), as kallsyms sees it.
#[derive(Debug, Clone)]
struct ParentSymbol {
    address: u64,
    local: bool,
    /// Index into `ParentSymbols::files` of the FILE block it is in.
    file: Option<usize>,
}

/// The symbol table of the linked object a livepatch targets, used to
/// compute symbol positions exactly as the kernel will look them up.
#[derive(Debug)]
pub struct ParentSymbols {
    pub path: PathBuf,
    /// vmlinux counts duplicates in address order; a module in symbol-table order.
    is_module: bool,
    /// `vmlinux`, or the module's name.
    objname: String,
    symbols: Vec<ParentSymbol>,
    files: Vec<String>,
    by_name: HashMap<String, Vec<usize>>,
    /// Local symbols by demangled name, to find a static whose numeric
    /// suffix changed between builds.
    by_demangled: HashMap<String, Vec<usize>>,
}

/// How to find one of our symbols in the parent.
#[derive(Debug, Clone, Copy)]
pub struct SymbolQuery<'a> {
    pub name: &'a str,
    pub local: bool,
    /// The FILE symbol name of a local, and which occurrence of that file
    /// name (0-based) among the object's FILE blocks defining this name.
    pub file: Option<(&'a str, usize)>,
}

impl ParentSymbols {
    pub fn read(path: &Path) -> Result<Self, String> {
        let data = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Self::parse(path, &data).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn parse(path: &Path, data: &[u8]) -> Result<Self, String> {
        let header = FileHeader64::<LE>::parse(data).map_err(|e| format!("not a 64-bit ELF file: {e}"))?;
        let is_module = header.e_type(LE) == elf::ET_REL;
        let sections = header.sections(LE, data).map_err(|e| format!("bad section table: {e}"))?;
        let symtab = sections.symbols(LE, data, elf::SHT_SYMTAB).map_err(|e| format!("bad symbol table: {e}"))?;
        if symtab.is_empty() {
            return Err("has no symbol table (stripped?)".into());
        }
        let objname = if is_module { normalise_module_name(&path.to_string_lossy()) } else { "vmlinux".to_owned() };
        let mut out = ParentSymbols {
            path: path.to_owned(),
            is_module,
            objname,
            symbols: Vec::new(),
            files: Vec::new(),
            by_name: HashMap::new(),
            by_demangled: HashMap::new(),
        };
        for (i, sym) in symtab.iter().enumerate() {
            let name = symtab.symbol_name(LE, sym).map_err(|_| format!("symbol #{i}: bad name"))?;
            let name = String::from_utf8_lossy(name).into_owned();
            if sym.st_type() == elf::STT_FILE {
                out.files.push(name);
                continue;
            }
            // kallsyms: defined symbols in allocated sections, not sections.
            let Ok(Some(section)) = symtab.symbol_section(LE, sym, object::SymbolIndex(i)) else { continue };
            let Ok(sh) = sections.section(section) else { continue };
            if sym.st_type() == elf::STT_SECTION || sh.sh_flags(LE).0 & elf::SHF_ALLOC.0 == 0 || name.is_empty() {
                continue;
            }
            let local = sym.st_bind() == elf::STB_LOCAL;
            let file = if local { out.files.len().checked_sub(1) } else { None };
            out.add(name, sym.st_value(LE), local, file);
        }
        Ok(out)
    }

    fn add(&mut self, name: String, address: u64, local: bool, file: Option<usize>) {
        if local {
            self.by_demangled.entry(crate::elf::demangle(&name).to_owned()).or_default().push(self.symbols.len());
        }
        self.by_name.entry(name).or_default().push(self.symbols.len());
        self.symbols.push(ParentSymbol { address, local, file });
    }

    pub fn objname(&self) -> &str {
        &self.objname
    }

    /// How many kallsyms-visible symbols have this name.
    pub fn count(&self, name: &str) -> usize {
        self.by_name.get(name).map_or(0, Vec::len)
    }

    /// A stand-in for the linked kernel when only the original object is at
    /// hand: every defined symbol gets an address, functions in
    /// `.text.unlikely` first and otherwise in symbol-table order (so that
    /// duplicates are counted in the order `klp diff` assumes without
    /// `--parent`), undefined ones after all of them.
    pub fn synthetic(obj: &crate::elf::ElfObject) -> Self {
        const BASE: u64 = 0xffff_ffff_8100_0000;
        let mut out = ParentSymbols {
            path: obj.path.clone(),
            is_module: false,
            objname: "vmlinux".into(),
            symbols: Vec::new(),
            files: Vec::new(),
            by_name: HashMap::new(),
            by_demangled: HashMap::new(),
        };
        let mut undefined: Vec<&str> = Vec::new();
        for s in &obj.symbols {
            use crate::elf::SymbolKind;
            if s.kind == SymbolKind::File {
                out.files.push(s.name.to_owned());
                continue;
            }
            if s.name.is_empty() || s.kind == SymbolKind::Section {
                continue;
            }
            let Some(sec) = obj.symbol_section(s) else {
                if s.placement == crate::elf::Placement::Undefined {
                    undefined.push(s.name);
                }
                continue;
            };
            let unlikely = s.kind == SymbolKind::Func && sec.name.starts_with(".text.unlikely");
            let address = BASE + if unlikely { 0 } else { 1 << 28 } + u64::from(s.id) * 64;
            let file = if s.is_local() { out.files.len().checked_sub(1) } else { None };
            out.add(s.name.to_owned(), address, s.is_local(), file);
        }
        undefined.sort_unstable();
        undefined.dedup();
        for (i, name) in undefined.into_iter().enumerate() {
            if out.by_name.contains_key(name) {
                continue;
            }
            out.add(name.to_owned(), BASE + (1 << 29) + i as u64 * 64, false, None);
        }
        out
    }

    /// What the kernel resolves `.klp.sym.<obj>.<name>,<pos>` to: with
    /// position 0 the name must be unique, else the pos-th by address (by
    /// symbol-table order in a module).
    pub fn klp_address(&self, name: &str, pos: u64) -> Result<u64, String> {
        let all = self.by_name.get(name).map_or(&[][..], Vec::as_slice);
        let mut ordered: Vec<usize> = all.to_vec();
        if !self.is_module {
            ordered.sort_by_key(|&i| (self.symbols[i].address, i));
        }
        match (pos, ordered.len()) {
            (_, 0) => Err(format!("{name} not found")),
            (0, 1) => Ok(self.symbols[ordered[0]].address),
            (0, n) => Err(format!("unresolvable ambiguity: {n} symbols named {name} and position 0")),
            (p, n) => ordered
                .get(p as usize - 1)
                .map(|&i| self.symbols[i].address)
                .ok_or_else(|| format!("position {p} of {name} not found ({n} symbols)")),
        }
    }

    /// The address of the symbol `q` describes. A local not found by its
    /// exact name is looked for by demangled name in the same FILE (a
    /// static renumbered by the compiler).
    pub fn address(&self, q: SymbolQuery) -> Result<u64, String> {
        let all = self.by_name.get(q.name).map_or(&[][..], Vec::as_slice);
        match all {
            [] if q.local => {
                let similar = self.by_demangled.get(crate::elf::demangle(q.name)).map_or(&[][..], Vec::as_slice);
                let (file, _) = q.file.ok_or_else(|| format!("{} not found", q.name))?;
                let in_file: Vec<usize> = similar
                    .iter()
                    .copied()
                    .filter(|&i| self.symbols[i].file.is_some_and(|f| self.files[f] == file))
                    .collect();
                match in_file.as_slice() {
                    [one] => Ok(self.symbols[*one].address),
                    _ => Err(format!("{} not found", q.name)),
                }
            }
            [] => Err(format!("{} not found", q.name)),
            [one] => Ok(self.symbols[*one].address),
            _ => self.find(all, q).map(|i| self.symbols[i].address),
        }
    }

    /// The position the kernel will use for `q`: 0 if the name is unique,
    /// else 1 + the number of same-named symbols before ours.
    pub fn sympos(&self, q: SymbolQuery) -> Result<u64, String> {
        let all = self.by_name.get(q.name).map_or(&[][..], Vec::as_slice);
        if all.is_empty() {
            return Err(format!("symbol {} not found in {}", q.name, self.path.display()));
        }
        if all.len() == 1 {
            return Ok(0);
        }
        let ours = self.find(all, q)?;
        let key = |i: usize| if self.is_module { i as u64 } else { self.symbols[i].address };
        let before = all.iter().filter(|&&i| (key(i), i) < (key(ours), ours)).count();
        Ok(before as u64 + 1)
    }

    fn find(&self, all: &[usize], q: SymbolQuery) -> Result<usize, String> {
        let ambiguous = || {
            format!("cannot tell which of {} symbols named {} in {} is ours", all.len(), q.name, self.path.display())
        };
        if !q.local {
            let globals: Vec<usize> = all.iter().copied().filter(|&i| !self.symbols[i].local).collect();
            return match globals.as_slice() {
                [one] => Ok(*one),
                _ => Err(ambiguous()),
            };
        }
        let Some((file, occurrence)) = q.file else { return Err(ambiguous()) };
        let in_file: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| self.symbols[i].local && self.symbols[i].file.is_some_and(|f| self.files[f] == file))
            .collect();
        match in_file.as_slice() {
            [] => Err(format!("no local {} in a FILE block {} of {}", q.name, file, self.path.display())),
            [one] => Ok(*one),
            many => many.get(occurrence).copied().ok_or_else(ambiguous),
        }
    }
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

    #[test]
    fn symvers_paths_become_module_names() {
        let e = Exports::parse(
            "0x0\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n0x1\tkvm_x\tarch/x86/kvm/kvm-intel\tEXPORT_SYMBOL_GPL\tKVM\n",
        )
        .unwrap();
        assert_eq!(e.get("printk").unwrap().module, "vmlinux");
        let k = e.get("kvm_x").unwrap();
        assert_eq!((k.module.as_str(), k.namespace.as_deref()), ("kvm_intel", Some("KVM")));
        assert!(Exports::parse("0x0\tonly-two\n").is_err());
    }
}
