//! Symbol positions (sympos) as the kernel counts them: the symbol table of
//! the linked object a livepatch targets (vmlinux or a `.ko`), as kallsyms
//! sees it.

use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

use rustc_hash::FxBuildHasher;

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
    /// suffix changed between builds.
    by_demangled: NameHashes,
    /// Every listed name, back to back; `names[i]` is symbol `i`'s range.
    name_bytes: Vec<u8>,
    names: Vec<(u32, u32)>,
}

/// Symbol indexes sorted by the hash of a name: one array and no string
/// per symbol (vmlinux lists 200,000 of them, and a diff asks about a few).
#[derive(Debug, Default)]
struct NameHashes(Vec<(u64, u32)>);

fn name_hash(name: &[u8]) -> u64 {
    FxBuildHasher.hash_one(name)
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
        let mut out = ParentSymbols {
            path: path.to_owned(),
            is_module: linked.is_module,
            objname,
            symbols: Vec::with_capacity(linked.symbols.len()),
            files: Vec::new(),
            by_name: NameHashes::default(),
            by_demangled: NameHashes::default(),
            name_bytes: Vec::new(),
            names: Vec::with_capacity(linked.symbols.len()),
        };
        for sym in linked.symbols {
            match sym {
                LinkedSymbol::File(name) => out.files.push(String::from_utf8_lossy(name).into_owned()),
                LinkedSymbol::Listed { name, address, local } => {
                    let file = if local { out.files.len().checked_sub(1) } else { None };
                    out.add(name, address, local, file);
                }
            }
        }
        out.by_name.0.sort_unstable();
        out.by_demangled.0.sort_unstable();
        Ok(out)
    }

    fn add(&mut self, name: &[u8], address: u64, local: bool, file: Option<usize>) {
        let i = self.symbols.len() as u32;
        if local {
            let demangled = std::str::from_utf8(name).map_or(name, |n| crate::elf::demangle(n).as_bytes());
            self.by_demangled.0.push((name_hash(demangled), i));
        }
        self.by_name.0.push((name_hash(name), i));
        self.names.push((self.name_bytes.len() as u32, name.len() as u32));
        self.name_bytes.extend_from_slice(name);
        self.symbols.push(ParentSymbol { address, local, file });
    }

    fn name_of(&self, i: usize) -> &[u8] {
        let (start, len) = self.names[i];
        &self.name_bytes[start as usize..(start + len) as usize]
    }

    /// Symbols named `name` (or, with `demangled`, whose demangled name it
    /// is) in symbol-table order.
    fn lookup(&self, index: &NameHashes, name: &str, demangled: bool) -> Vec<usize> {
        let h = name_hash(name.as_bytes());
        let from = index.0.partition_point(|&(k, _)| k < h);
        let same = |i: usize| {
            let n = self.name_of(i);
            if demangled {
                std::str::from_utf8(n).is_ok_and(|n| crate::elf::demangle(n) == name)
            } else {
                n == name.as_bytes()
            }
        };
        index.0[from..].iter().take_while(|&&(k, _)| k == h).map(|&(_, i)| i as usize).filter(|&i| same(i)).collect()
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
                let similar = self.lookup(&self.by_demangled, crate::elf::demangle(q.name), true);
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
