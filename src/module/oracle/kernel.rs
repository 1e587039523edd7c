//! The oracle's own picture of the kernel a livepatch module is loaded into:
//! the parent's symbol table read here with `object`'s ELF reader, the
//! symbols kallsyms lists, and `.klp.sym.<obj>.<name>,<pos>` resolved the way
//! the livepatch core does. It is written from the kernel's sources, not
//! from what extraction uses (`kernel::kallsyms`), so that a wrong symbol
//! position in a module shows up as a difference instead of being computed
//! twice by the same code.
//!
//! How the kernel counts (Linux 6.12, `klp_find_object_symbol()` in
//! `kernel/livepatch/core.c`): it walks the symbols named `name` and stops at
//! the `pos`-th, or at the second when `pos` is 0; position 0 needs a unique
//! name, position N needs at least N symbols; an address of 0 counts as "not
//! found".
//! - vmlinux: `kallsyms_on_each_match_symbol()` walks the names as
//!   `scripts/kallsyms` sorted them (`compare_names`): by address, ties in
//!   the order `nm -n` printed them (we break ties by symbol-table index).
//!   Listed are the symbols `nm` prints and `scripts/mksysmap` and
//!   `scripts/kallsyms` keep: defined in an allocated section (`nm` types
//!   other than `a`, `N`, `n`, `U`, `u`, `w`), not section or file symbols,
//!   names not matching mksysmap's patterns.
//! - a module: `module_kallsyms_on_each_symbol()` walks the module's symbol
//!   table in order. Once the module has initialised that is the table of
//!   `is_core_symbol()` (with `CONFIG_KALLSYMS_ALL`, which livepatch needs):
//!   named, defined in a section (not `SHN_ABS` or another reserved index),
//!   allocated and not `.init*`, or the per-CPU section. While the module is
//!   still loading (a livepatch for it loaded first, `klp_module_coming()`)
//!   the whole table is walked instead; a position that resolves to another
//!   symbol then is reported.
//! - without the linked parent, the original object stands in for it: a
//!   unique name resolves to its one symbol, but the order of duplicates
//!   depends on how the object is linked, which the object does not say, so
//!   any position among duplicates is unverified (see [`Order::Unknown`]).

use std::collections::HashMap;
use std::path::Path;

use object::LittleEndian as LE;
use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, SectionHeader, Sym};

use super::{Problem, external_address};

/// Where the sections of a parent module or a stand-in object are placed.
const MODULE_PARENT_BASE: u64 = 0xffff_ffff_a000_0000;
const STAND_IN_BASE: u64 = 0xffff_ffff_8100_0000;

/// How the kernel orders same-named symbols when it counts positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// vmlinux: by address.
    Address,
    /// A module: symbol-table order.
    SymbolTable,
    /// A stand-in built from the original object: the order of duplicates
    /// in the linked kernel is not known.
    Unknown,
}

#[derive(Debug, Clone)]
struct KernelSymbol {
    name: String,
    address: u64,
    local: bool,
    /// Index into `Kernel::files` of the FILE block a local is in.
    file: Option<usize>,
    /// Listed by kallsyms, where `.klp.sym` symbols are looked up.
    listed: bool,
    /// Walked while a module is still loading (its whole symbol table).
    listed_while_coming: bool,
}

/// The running kernel (or the module it patches) as the oracle sees it.
#[derive(Debug)]
pub struct Kernel {
    /// What it was read from, for messages.
    source: String,
    /// The livepatch object name it stands for; `None` for a stand-in,
    /// which stands for whichever object the module patches.
    objname: Option<String>,
    order: Order,
    /// In symbol-table order; named symbols defined in a section only.
    symbols: Vec<KernelSymbol>,
    files: Vec<String>,
    by_name: HashMap<String, Vec<usize>>,
}

/// How a symbol of the patched object is found in the kernel: by name, and
/// for a local by its FILE symbol's name and which of the same-named locals
/// in FILE blocks of that name it is (0-based, in symbol-table order).
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub name: &'a str,
    pub local: bool,
    pub file: Option<(&'a str, usize)>,
}

/// What a `.klp.sym` symbol or an undefined name resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A symbol of the kernel (index into its symbols).
    Symbol(usize),
    /// Outside the model (another object, another translation unit): one
    /// address per name, the same on the module's and the patched side.
    External(u64),
}

impl Kernel {
    /// The linked parent: vmlinux, or a module (`.ko`).
    pub fn read(path: &Path) -> Result<Self, String> {
        let file = crate::elf::MappedFile::open(path).map_err(|e| e.to_string())?;
        Self::parse_parent(path, file.bytes())
    }

    /// [`Kernel::read`] on bytes in memory; `path` names them in messages.
    pub fn parse_parent(path: &Path, data: &[u8]) -> Result<Self, String> {
        let source = path.display().to_string();
        Self::parse(data, source, false).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The original object standing in for the parent (`klp check --orig`).
    pub fn stand_in(path: &Path) -> Result<Self, String> {
        let file = crate::elf::MappedFile::open(path).map_err(|e| e.to_string())?;
        Self::parse_stand_in(path, file.bytes())
    }

    /// [`Kernel::stand_in`] on bytes in memory; `path` names them in messages.
    pub fn parse_stand_in(path: &Path, data: &[u8]) -> Result<Self, String> {
        let source = format!("{} (standing in for the kernel)", path.display());
        Self::parse(data, source, true).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn parse(data: &[u8], source: String, stand_in: bool) -> Result<Self, String> {
        let header = FileHeader64::<LE>::parse(data).map_err(|e| format!("not a 64-bit ELF file: {e}"))?;
        let relocatable = header.e_type(LE) == elf::ET_REL;
        if stand_in && !relocatable {
            return Err("a stand-in for the kernel must be a relocatable object (the original object)".into());
        }
        let sections = header.sections(LE, data).map_err(|e| format!("bad section table: {e}"))?;
        let symtab = sections.symbols(LE, data, elf::SHT_SYMTAB).map_err(|e| format!("bad symbol table: {e}"))?;
        if symtab.is_empty() {
            return Err("has no symbol table (stripped?)".into());
        }
        let section_names: Vec<&[u8]> =
            sections.iter().map(|s| sections.section_name(LE, s).unwrap_or_default()).collect();
        // A relocatable object's symbols are section offsets: place its
        // sections one after the other, allocated ones first, as a loader
        // would lay them out (the exact places do not matter, only that they
        // are distinct and not 0).
        let mut base = vec![0u64; sections.len()];
        if relocatable {
            let mut next = if stand_in { STAND_IN_BASE } else { MODULE_PARENT_BASE };
            for alloc in [true, false] {
                for (i, s) in sections.iter().enumerate().skip(1) {
                    if (s.sh_flags(LE).0 & elf::SHF_ALLOC.0 != 0) == alloc {
                        // Unvalidated sizes and alignments: addresses wrap, as the machine's.
                        base[i] = align_up(next, s.sh_addralign(LE));
                        next = base[i].wrapping_add(s.sh_size(LE)).wrapping_add(64);
                    }
                }
            }
        }
        let order = match (stand_in, relocatable) {
            (true, _) => Order::Unknown,
            (false, true) => Order::SymbolTable,
            (false, false) => Order::Address,
        };
        let objname = match (stand_in, relocatable) {
            (true, _) => None,
            (false, true) => Some(module_name(data, &sections, &source)),
            (false, false) => Some("vmlinux".to_owned()),
        };
        let mut k = Kernel { source, objname, order, symbols: Vec::new(), files: Vec::new(), by_name: HashMap::new() };
        for (i, sym) in symtab.iter().enumerate() {
            let name = symtab.symbol_name(LE, sym).map_err(|_| format!("symbol #{i}: bad name"))?;
            let name = String::from_utf8_lossy(name).into_owned();
            if sym.st_type() == elf::STT_FILE {
                k.files.push(name);
                continue;
            }
            let shndx = sym.st_shndx(LE);
            let Ok(Some(section)) = symtab.symbol_section(LE, sym, object::SymbolIndex(i)) else { continue };
            if sym.st_type() == elf::STT_SECTION || name.is_empty() || section.0 >= sections.len() {
                continue;
            }
            let sh = sections.section(section).map_err(|e| format!("symbol #{i}: {e}"))?;
            let alloc = sh.sh_flags(LE).0 & elf::SHF_ALLOC.0 != 0;
            let section_name = section_names[section.0];
            let listed = match k.order {
                Order::Address => alloc && sym.st_bind() != elf::STB_GNU_UNIQUE && listed_in_vmlinux(&name),
                // is_core_symbol(): the raw index below e_shnum (not SHN_XINDEX).
                Order::SymbolTable => {
                    usize::from(shndx.0) < sections.len()
                        && ((alloc && !section_name.starts_with(b".init")) || section_name == b".data..percpu")
                }
                Order::Unknown => alloc,
            };
            let local = sym.st_bind() == elf::STB_LOCAL;
            let symbol = KernelSymbol {
                address: base[section.0].wrapping_add(sym.st_value(LE)),
                local,
                file: if local { k.files.len().checked_sub(1) } else { None },
                listed,
                listed_while_coming: true,
                name,
            };
            k.by_name.entry(symbol.name.clone()).or_default().push(k.symbols.len());
            k.symbols.push(symbol);
        }
        Ok(k)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn address(&self, p: Place) -> u64 {
        match p {
            Place::Symbol(i) => self.symbols[i].address,
            Place::External(a) => a,
        }
    }

    /// "name (FILE file.c) at 0x..." for messages.
    pub fn describe(&self, p: Place) -> String {
        match p {
            Place::Symbol(i) => {
                let s = &self.symbols[i];
                let file = s.file.map_or(String::new(), |f| format!(" of {}", self.files[f]));
                format!("{}{file} at {:#x}", s.name, s.address)
            }
            Place::External(a) => format!("outside {} at {a:#x}", self.source),
        }
    }

    /// `.klp.sym.<obj>.<name>,<pos>` as the livepatch core resolves it.
    pub fn resolve_klp(&self, obj: &str, name: &str, pos: u64) -> Result<Place, Problem> {
        if self.objname.as_deref().is_some_and(|o| o != obj) {
            // A symbol of another object: outside what was read.
            return match pos {
                0 => Ok(Place::External(external_address(name))),
                _ => Err(Problem::Unverified(format!("position {pos} in {obj}, which is not {}", self.source))),
            };
        }
        let same: Vec<usize> = self.by_name.get(name).map_or(Vec::new(), |v| v.to_vec());
        let listed: Vec<usize> = same.iter().copied().filter(|&i| self.symbols[i].listed).collect();
        match self.order {
            Order::Address => {
                let mut ordered = listed;
                ordered.sort_by_key(|&i| (self.symbols[i].address, i));
                self.walk(&ordered, pos).map(Place::Symbol).map_err(Problem::Wrong)
            }
            Order::SymbolTable => {
                let found = self.walk(&listed, pos).map_err(Problem::Wrong)?;
                let coming: Vec<usize> = same.into_iter().filter(|&i| self.symbols[i].listed_while_coming).collect();
                match self.walk(&coming, pos) {
                    Ok(i) if i == found => Ok(Place::Symbol(found)),
                    other => Err(Problem::Unverified(format!(
                        "resolves to {} once {obj} has initialised, but to {} if {obj} is loaded after the patch \
                         (its .init symbols and non-allocated ones are still listed then)",
                        self.describe(Place::Symbol(found)),
                        other.map_or_else(|e| e, |i| self.describe(Place::Symbol(i)))
                    ))),
                }
            }
            Order::Unknown => match (listed.as_slice(), pos) {
                // Not defined here: another translation unit's, where the
                // patched object's undefined reference goes too.
                ([], 0) => Ok(Place::External(external_address(name))),
                ([one], 0 | 1) => Ok(Place::Symbol(*one)),
                ([], _) | ([_], _) => Err(Problem::Unverified(format!(
                    "position {pos}, but {} defines {} symbol(s) of that name: whether the linked kernel has {pos} \
                     needs --parent",
                    self.source,
                    listed.len()
                ))),
                (many, _) => Err(Problem::Unverified(format!(
                    "position {pos} among {} symbols of that name in {}: their order in the linked kernel is not \
                     known without --parent",
                    many.len(),
                    self.source
                ))),
            },
        }
    }

    /// `klp_match_callback()` over the same-named symbols in the kernel's
    /// order, then the checks of `klp_find_object_symbol()`.
    fn walk(&self, ordered: &[usize], pos: u64) -> Result<usize, String> {
        let (mut found, mut count) = (None, 0u64);
        for &i in ordered {
            found = Some(i);
            count += 1;
            if (pos != 0 && count == pos) || (pos == 0 && count > 1) {
                break;
            }
        }
        match found {
            None => Err(format!("not found in {}", self.source)),
            Some(i) if self.symbols[i].address == 0 => {
                Err("found at address 0, which the kernel takes for not found".to_owned())
            }
            Some(_) if pos == 0 && count > 1 => {
                Err(format!("position 0 but the name is not unique in {}", self.source))
            }
            Some(_) if pos != 0 && pos != count => {
                Err(format!("position {pos} does not exist ({count} symbols of that name in {})", self.source))
            }
            Some(i) => Ok(i),
        }
    }

    /// The kernel's symbol that patched-object symbol `q` is (the original
    /// the running kernel has). A local whose exact name is not there is
    /// looked for among the locals of its FILE that differ only in the
    /// numeric suffix the compiler appends (`lock.65414` for `lock.65417`).
    pub fn locate(&self, q: Identity) -> Result<Place, String> {
        let all = self.by_name.get(q.name).map_or(&[][..], Vec::as_slice);
        let in_file = |i: usize, file: &str| self.symbols[i].file.is_some_and(|f| self.files[f] == file);
        let not_found = || format!("{} is not in {}", q.name, self.source);
        let pick = |ids: Vec<usize>| -> Result<Place, String> {
            match ids.as_slice() {
                [one] => Ok(Place::Symbol(*one)),
                [] => Err(not_found()),
                many => Err(format!("{} symbols named {} in {}", many.len(), q.name, self.source)),
            }
        };
        let globals: Vec<usize> = all.iter().copied().filter(|&i| !self.symbols[i].local).collect();
        if !q.local {
            // A binding the patch changed (a static made global) leaves the
            // kernel's one local.
            return match (globals.len(), all) {
                (0, [one]) => Ok(Place::Symbol(*one)),
                _ => pick(globals),
            };
        }
        let Some((file, occurrence)) = q.file else {
            return pick(all.iter().copied().filter(|&i| self.symbols[i].local).collect());
        };
        let here: Vec<usize> = all.iter().copied().filter(|&i| self.symbols[i].local && in_file(i, file)).collect();
        match here.as_slice() {
            [] if globals.len() == 1 && all.len() == 1 => Ok(Place::Symbol(globals[0])),
            [] => {
                let stem = without_numeric_suffix(q.name);
                let similar: Vec<usize> = (0..self.symbols.len())
                    .filter(|&i| {
                        let s = &self.symbols[i];
                        s.local && without_numeric_suffix(&s.name) == stem && s.name != q.name && in_file(i, file)
                    })
                    .collect();
                pick(similar).map_err(|e| format!("{e} (nor a {stem}.N in a FILE block {file})"))
            }
            [one] => Ok(Place::Symbol(*one)),
            many => many
                .get(occurrence)
                .map(|&i| Place::Symbol(i))
                .ok_or_else(|| format!("no local {} #{occurrence} of FILE {file} in {}", q.name, self.source)),
        }
    }

    /// An undefined name (ordinary relocation of the module, undefined
    /// reference of the patched object): the kernel's one global of that
    /// name, else outside the model.
    pub fn undefined(&self, name: &str) -> Place {
        let all = self.by_name.get(name).map_or(&[][..], Vec::as_slice);
        match all.iter().copied().filter(|&i| !self.symbols[i].local).collect::<Vec<_>>().as_slice() {
            [one] => Place::Symbol(*one),
            _ => Place::External(external_address(name)),
        }
    }
}

/// `scripts/mksysmap` (6.12) deletes these names before `scripts/kallsyms`
/// sees them; `scripts/kallsyms` skips names of `KSYM_NAME_LEN` or more.
fn listed_in_vmlinux(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "$",
        ".L",
        "__efistub_",
        "__pi_$",
        "__pi_.L",
        "__kvm_nvhe_$",
        "__kvm_nvhe_.L",
        "__kcfi_typeid_",
        "__kvm_nvhe___kcfi_typeid_",
        "__pi___kcfi_typeid_",
        "__crc_",
        "__kstrtab_",
        "__kstrtabns_",
    ];
    // `/ __[[:alnum:]]*Thunk_/d`: an ARM linker's veneers.
    let thunk = name.strip_prefix("__").is_some_and(|rest| {
        let alnum = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
        rest[..alnum].ends_with("Thunk") && rest[alnum..].starts_with('_')
    });
    name.len() < 512
        && !PREFIXES.iter().any(|p| name.starts_with(p))
        && !thunk
        && name != "L0"
        && !["_from_arm", "_from_thumb", "_veneer"].iter().any(|s| name.ends_with(s))
        && !name.contains(".long_branch.")
        && !name.contains(".plt_branch.")
}

/// `lock.65417` -> `lock`, `foo.isra.3` -> `foo.isra`: without the numeric
/// components the compiler appends to a static's name.
pub(super) fn without_numeric_suffix(name: &str) -> &str {
    let mut s = name;
    while let Some((head, tail)) = s.rsplit_once('.') {
        if head.is_empty() || tail.is_empty() || !tail.bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        s = head;
    }
    s
}

/// A module's name as the kernel knows it: `.modinfo`'s `name=`, else the
/// file name without `.ko`, dashes made underscores (as kbuild does).
/// `at` rounded up to `align` (any value; 0 is 1), wrapping past the top.
pub(super) fn align_up(at: u64, align: u64) -> u64 {
    at.checked_next_multiple_of(align.max(1)).unwrap_or(0)
}

fn module_name(data: &[u8], sections: &object::read::elf::SectionTable<FileHeader64<LE>>, source: &str) -> String {
    let modinfo = sections
        .iter()
        .find(|s| sections.section_name(LE, s).is_ok_and(|n| n == b".modinfo"))
        .and_then(|s| s.data(LE, data).ok());
    if let Some(name) = modinfo.into_iter().flat_map(|d| d.split(|&b| b == 0)).find_map(|r| r.strip_prefix(b"name=")) {
        return String::from_utf8_lossy(name).into_owned();
    }
    let file = Path::new(source).file_name().map_or(source.to_owned(), |f| f.to_string_lossy().into_owned());
    file.trim_end_matches(".ko").replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(order: Order, symbols: &[(&str, u64, bool)]) -> Kernel {
        let mut k = Kernel {
            source: "test".into(),
            objname: Some("vmlinux".into()),
            order,
            symbols: Vec::new(),
            files: vec!["a.c".into(), "b.c".into()],
            by_name: HashMap::new(),
        };
        for (i, &(name, address, listed)) in symbols.iter().enumerate() {
            k.by_name.entry(name.to_owned()).or_default().push(i);
            k.symbols.push(KernelSymbol {
                name: name.into(),
                address,
                local: true,
                file: Some(i % 2),
                listed,
                listed_while_coming: true,
            });
        }
        k
    }

    fn at(k: &Kernel, obj: &str, name: &str, pos: u64) -> Result<u64, Problem> {
        k.resolve_klp(obj, name, pos).map(|p| k.address(p))
    }

    #[test]
    fn vmlinux_counts_duplicates_by_address_not_symbol_table_order() {
        let k = kernel(Order::Address, &[("f", 0x300, true), ("f", 0x100, true), ("g", 0x200, true)]);
        assert_eq!(at(&k, "vmlinux", "f", 1), Ok(0x100));
        assert_eq!(at(&k, "vmlinux", "f", 2), Ok(0x300));
        assert_eq!(at(&k, "vmlinux", "g", 0), Ok(0x200));
        assert_eq!(at(&k, "vmlinux", "g", 1), Ok(0x200));
        assert!(matches!(at(&k, "vmlinux", "f", 0), Err(Problem::Wrong(e)) if e.contains("not unique")));
        assert!(matches!(at(&k, "vmlinux", "f", 3), Err(Problem::Wrong(e)) if e.contains("2 symbols")));
        assert!(matches!(at(&k, "vmlinux", "h", 0), Err(Problem::Wrong(e)) if e.contains("not found")));
    }

    #[test]
    fn symbols_kallsyms_does_not_list_do_not_count() {
        let k = kernel(Order::Address, &[("f", 0x100, false), ("f", 0x300, true)]);
        assert_eq!(at(&k, "vmlinux", "f", 0), Ok(0x300));
        let zero = kernel(Order::Address, &[("per_cpu_thing", 0, true)]);
        assert!(matches!(at(&zero, "vmlinux", "per_cpu_thing", 0), Err(Problem::Wrong(_))));
    }

    #[test]
    fn a_module_counts_in_symbol_table_order() {
        let mut k = kernel(Order::SymbolTable, &[("f", 0x300, true), ("f", 0x100, true)]);
        k.objname = Some("mod".into());
        assert_eq!(at(&k, "mod", "f", 1), Ok(0x300));
        assert_eq!(at(&k, "mod", "f", 2), Ok(0x100));
        // Another object's symbol is outside the model, position 0 only.
        assert_eq!(at(&k, "vmlinux", "f", 0), Ok(external_address("f")));
        assert!(matches!(at(&k, "vmlinux", "f", 1), Err(Problem::Unverified(_))));
    }

    #[test]
    fn a_module_position_that_changes_while_it_loads_is_unverified() {
        // An .init symbol first: not listed once the module has initialised.
        let mut k = kernel(Order::SymbolTable, &[("f", 0x300, false), ("f", 0x100, true)]);
        k.objname = Some("mod".into());
        assert!(matches!(at(&k, "mod", "f", 1), Err(Problem::Unverified(e)) if e.contains("loaded after")));
    }

    #[test]
    fn a_stand_in_verifies_unique_names_only() {
        let mut k = kernel(Order::Unknown, &[("f", 0x300, true), ("f", 0x100, true), ("g", 0x200, true)]);
        k.objname = None;
        assert_eq!(at(&k, "anything", "g", 0), Ok(0x200));
        assert_eq!(at(&k, "vmlinux", "printk", 0), Ok(external_address("printk")));
        for pos in 0..3 {
            assert!(matches!(at(&k, "vmlinux", "f", pos), Err(Problem::Unverified(_))), "{pos}");
        }
        assert!(matches!(at(&k, "vmlinux", "g", 2), Err(Problem::Unverified(_))));
    }

    #[test]
    fn locals_are_located_by_file_and_occurrence() {
        // f: a.c, b.c, a.c (files alternate); lock.7 in b.c.
        let k = kernel(
            Order::Address,
            &[("f", 0x100, true), ("f", 0x200, true), ("f", 0x300, true), ("lock.7", 0x400, true)],
        );
        let q = |name, file, occurrence| k.locate(Identity { name, local: true, file: Some((file, occurrence)) });
        assert_eq!(q("f", "b.c", 0), Ok(Place::Symbol(1)));
        assert_eq!(q("f", "a.c", 1), Ok(Place::Symbol(2)));
        assert!(q("f", "a.c", 2).is_err());
        assert_eq!(q("lock.9", "b.c", 0), Ok(Place::Symbol(3)));
        assert!(q("lock.9", "a.c", 0).is_err());
    }

    #[test]
    fn mksysmap_patterns() {
        for name in
            ["__crc_printk", "__kstrtab_printk", ".L123", "$x", "__kcfi_typeid_f", "L0", "__ARMv7ABSLongThunk_x"]
        {
            assert!(!listed_in_vmlinux(name), "{name}");
        }
        for name in ["printk", "lock.65414", "__pfx_printk", "__UNIQUE_ID_x1"] {
            assert!(listed_in_vmlinux(name), "{name}");
        }
        assert_eq!(without_numeric_suffix("lock.65417"), "lock");
        assert_eq!(without_numeric_suffix("foo.isra.3"), "foo.isra");
        assert_eq!(without_numeric_suffix("foo"), "foo");
    }
}
