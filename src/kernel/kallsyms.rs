//! Symbol positions (sympos) as the kernel counts them: the symbol table of
//! the linked object a livepatch targets (vmlinux or a `.ko`), as kallsyms
//! sees it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use xxhash_rust::xxh3::xxh3_64;

use crate::elf::MappedFile;
use crate::elf::linked::{LinkedSymbol, linked_symbols};
use crate::error::{Context, Result};
use crate::kernel::modinfo::module_name_from_path;

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
    by_name: NameHashes,
    /// Local symbols by demangled name, to find a static whose numeric
    /// suffix changed between builds: made on the first such search, as
    /// most diffs never need it and demangling every local is not free.
    by_demangled: OnceLock<NameHashes>,
    /// Every listed name, back to back; `names[i]` is symbol `i`'s range.
    name_bytes: Vec<u8>,
    names: Vec<(u32, u32)>,
}

/// Symbol indexes sorted by the hash of a name, with the directory of
/// where each bucket of hashes starts: no string per symbol (vmlinux lists
/// 200,000 of them, and a diff asks about a few), and no comparison sort
/// of them all.
#[derive(Debug)]
struct NameHashes {
    entries: Vec<(u64, u32)>,
    directory: Vec<u32>,
}

impl NameHashes {
    fn new(unsorted: &[(u64, u32)]) -> Self {
        let (entries, directory) = crate::elf::names::sort_by_bucket(unsorted);
        NameHashes { entries, directory }
    }

    /// The symbols whose name has hash `h`, in symbol-table order.
    fn hashed(&self, h: u64) -> impl Iterator<Item = usize> + '_ {
        let near = &self.entries[crate::elf::names::bucket_range(&self.directory, h)];
        let from = near.partition_point(|&(k, _)| k < h);
        near[from..].iter().take_while(move |&&(k, _)| k == h).map(|&(_, i)| i as usize)
    }
}

fn name_hash(name: &[u8]) -> u64 {
    xxh3_64(name)
}

/// A name without the suffixes a compiler adds ([`crate::elf::demangle`]);
/// a name that is not UTF-8 is its own.
fn demangled(name: &[u8]) -> &[u8] {
    std::str::from_utf8(name).map_or(name, |n| crate::elf::demangle(n).as_bytes())
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
    pub fn read(path: &Path) -> Result<Self> {
        let file = MappedFile::open(path)?;
        Self::parse(path, file.bytes()).in_file(path)
    }

    pub fn parse(path: &Path, data: &[u8]) -> Result<Self> {
        let linked = linked_symbols(data).in_file(path)?;
        let objname =
            if linked.is_module { module_name_from_path(&path.to_string_lossy()) } else { "vmlinux".to_owned() };
        let n = linked.symbols.len();
        let (mut symbols, mut names, mut hashes) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut files, mut name_bytes) = (Vec::new(), Vec::new());
        for sym in linked.symbols {
            match sym {
                LinkedSymbol::File(name) => files.push(String::from_utf8_lossy(name).into_owned()),
                LinkedSymbol::Listed { name, address, local } => {
                    let file = if local { files.len().checked_sub(1) } else { None };
                    hashes.push((name_hash(name), symbols.len() as u32));
                    names.push((name_bytes.len() as u32, name.len() as u32));
                    name_bytes.extend_from_slice(name);
                    symbols.push(ParentSymbol { address, local, file });
                }
            }
        }
        Ok(ParentSymbols {
            path: path.to_owned(),
            is_module: linked.is_module,
            objname,
            symbols,
            files,
            by_name: NameHashes::new(&hashes),
            by_demangled: OnceLock::new(),
            name_bytes,
            names,
        })
    }

    fn by_demangled(&self) -> &NameHashes {
        self.by_demangled.get_or_init(|| {
            let locals = (0..self.symbols.len()).filter(|&i| self.symbols[i].local);
            let hashes: Vec<(u64, u32)> = locals.map(|i| (name_hash(demangled(self.name_of(i))), i as u32)).collect();
            NameHashes::new(&hashes)
        })
    }

    fn name_of(&self, i: usize) -> &[u8] {
        let (start, len) = self.names[i];
        &self.name_bytes[start as usize..(start + len) as usize]
    }

    /// Symbols named `name` (or, with `demangled`, whose demangled name it
    /// is) in symbol-table order.
    fn lookup(&self, index: &NameHashes, name: &str, demangled: bool) -> Vec<usize> {
        let same = |i: usize| {
            let n = self.name_of(i);
            if demangled { self::demangled(n) == name.as_bytes() } else { n == name.as_bytes() }
        };
        index.hashed(name_hash(name.as_bytes())).filter(|&i| same(i)).collect()
    }

    fn named(&self, name: &str) -> Vec<usize> {
        self.lookup(&self.by_name, name, false)
    }

    pub fn objname(&self) -> &str {
        &self.objname
    }

    /// How many kallsyms-visible symbols have this name.
    pub fn count(&self, name: &str) -> usize {
        self.named(name).len()
    }

    /// What the kernel resolves `.klp.sym.<obj>.<name>,<pos>` to: with
    /// position 0 the name must be unique, else the pos-th by address (by
    /// symbol-table order in a module).
    pub fn klp_address(&self, name: &str, pos: u64) -> std::result::Result<u64, String> {
        let mut ordered = self.named(name);
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
    pub fn address(&self, q: SymbolQuery) -> std::result::Result<u64, String> {
        let all = self.named(q.name);
        match all[..] {
            [] if q.local => {
                let similar = self.lookup(self.by_demangled(), crate::elf::demangle(q.name), true);
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
            [one] => Ok(self.symbols[one].address),
            _ => self.find(&all, q).map(|i| self.symbols[i].address),
        }
    }

    /// The position the kernel will use for `q`: 0 if the name is unique,
    /// else 1 + the number of same-named symbols before ours.
    pub fn sympos(&self, q: SymbolQuery) -> std::result::Result<u64, String> {
        let all = self.named(q.name);
        if all.is_empty() {
            return Err(format!("symbol {} not found in {}", q.name, self.path.display()));
        }
        if all.len() == 1 {
            return Ok(0);
        }
        let ours = self.find(&all, q)?;
        let key = |i: usize| if self.is_module { i as u64 } else { self.symbols[i].address };
        let before = all.iter().filter(|&&i| (key(i), i) < (key(ours), ours)).count();
        Ok(before as u64 + 1)
    }

    fn find(&self, all: &[usize], q: SymbolQuery) -> std::result::Result<usize, String> {
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
    use object::write::{Object, Symbol, SymbolSection};
    use object::{Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind, SymbolScope};

    use super::*;

    /// A module (`ET_REL`) whose symbol table is `symbols` in order: a
    /// name with `file` set starts a FILE block, `local` marks a static.
    fn module(symbols: &[(&str, bool)]) -> Vec<u8> {
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let data = obj.add_section(Vec::new(), b".data".to_vec(), SectionKind::Data);
        obj.append_section_data(data, &[0; 64], 8);
        for (i, &(name, local)) in symbols.iter().enumerate() {
            let file = name.ends_with(".c");
            obj.add_symbol(Symbol {
                name: name.as_bytes().to_vec(),
                value: if file { 0 } else { i as u64 },
                size: 0,
                kind: if file { SymbolKind::File } else { SymbolKind::Data },
                scope: if local || file { SymbolScope::Compilation } else { SymbolScope::Linkage },
                weak: false,
                section: if file { SymbolSection::None } else { SymbolSection::Section(data) },
                flags: SymbolFlags::None,
            });
        }
        obj.write().unwrap()
    }

    const TABLE: &[(&str, bool)] = &[
        ("a.c", true),
        ("lock", true),
        ("count.3", true),
        ("b.c", true),
        ("lock", true),
        ("count.7", true),
        ("unique", false),
    ];

    fn parent() -> ParentSymbols {
        ParentSymbols::parse(Path::new("m.ko"), &module(TABLE)).unwrap()
    }

    fn local<'a>(name: &'a str, file: &'a str) -> SymbolQuery<'a> {
        SymbolQuery { name, local: true, file: Some((file, 0)) }
    }

    #[test]
    fn positions_count_same_named_symbols_in_table_order() {
        let p = parent();
        assert_eq!(p.count("lock"), 2);
        assert_eq!(p.sympos(local("lock", "a.c")), Ok(1));
        assert_eq!(p.sympos(local("lock", "b.c")), Ok(2));
        assert_eq!(p.sympos(SymbolQuery { name: "unique", local: false, file: None }), Ok(0));
        assert!(p.sympos(local("absent", "a.c")).is_err());
        assert_eq!(p.klp_address("lock", 2), p.address(local("lock", "b.c")));
    }

    #[test]
    fn a_renumbered_static_is_found_by_demangled_name_in_its_file() {
        let p = parent();
        // `count.3` of a.c is `count.5` in the patched build.
        let a = p.address(local("count.5", "a.c")).unwrap();
        assert_eq!(Ok(a), p.address(local("count.3", "a.c")));
        assert_ne!(Ok(a), p.address(local("count.7", "b.c")));
        assert!(p.address(local("count.5", "c.c")).is_err(), "no such file");
        assert!(p.address(local("other.5", "a.c")).is_err(), "no such static");
    }
}
