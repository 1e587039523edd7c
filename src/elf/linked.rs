//! Read the symbol table of a linked object (vmlinux, or a `.ko` module),
//! zero-copy over its bytes: what kallsyms will list. Only the symbol
//! table is read; the rest of the file is never touched.

use object::LittleEndian as LE;
use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, SectionHeader, Sym};

use crate::error::{Error, Result};

/// One entry of a linked object's symbol table.
#[derive(Debug, Clone, Copy)]
pub enum LinkedSymbol<'d> {
    /// A FILE symbol: the locals after it are of that translation unit.
    File(&'d [u8]),
    /// A symbol kallsyms lists: named, defined in an allocated section,
    /// not a section symbol.
    Listed { name: &'d [u8], address: u64, local: bool },
}

/// A linked object's symbols in symbol-table order.
pub struct LinkedSymbols<'d> {
    /// A relocatable `.ko` (`ET_REL`) rather than vmlinux.
    pub is_module: bool,
    pub symbols: Vec<LinkedSymbol<'d>>,
}

pub fn linked_symbols(data: &[u8]) -> Result<LinkedSymbols<'_>> {
    let header =
        FileHeader64::<LE>::parse(data).map_err(|e| Error::malformed(format!("not a 64-bit ELF file: {e}")))?;
    let is_module = header.e_type(LE) == elf::ET_REL;
    let sections = header.sections(LE, data).map_err(|e| Error::malformed(format!("bad section table: {e}")))?;
    let symtab = sections
        .symbols(LE, data, elf::SHT_SYMTAB)
        .map_err(|e| Error::malformed(format!("bad symbol table: {e}")).in_section(".symtab"))?;
    if symtab.is_empty() {
        return Err(Error::malformed("has no symbol table (stripped?)"));
    }
    let mut symbols = Vec::with_capacity(symtab.len());
    for (i, sym) in symtab.iter().enumerate() {
        let name = symtab
            .symbol_name(LE, sym)
            .map_err(|_| Error::malformed("name outside the string table").at_symbol(&format!("#{i}")))?;
        if sym.st_type() == elf::STT_FILE {
            symbols.push(LinkedSymbol::File(name));
            continue;
        }
        let Ok(Some(section)) = symtab.symbol_section(LE, sym, object::SymbolIndex(i)) else { continue };
        let Ok(sh) = sections.section(section) else { continue };
        if sym.st_type() == elf::STT_SECTION || sh.sh_flags(LE).0 & elf::SHF_ALLOC.0 == 0 || name.is_empty() {
            continue;
        }
        symbols.push(LinkedSymbol::Listed { name, address: sym.st_value(LE), local: sym.st_bind() == elf::STB_LOCAL });
    }
    Ok(LinkedSymbols { is_module, symbols })
}
