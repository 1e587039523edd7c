//! `klp check`: every rule the kernel enforces when it loads a livepatch
//! module (spec §7.3), checked on the file. One violation per problem, each
//! naming its rule.

use std::collections::HashSet;

use crate::elf::{ElfObject, Placement, Section, SectionId, SymbolKind};
use crate::kernel::abi::{self as klp, SHF_RELA_LIVEPATCH, SHN_LIVEPATCH};
use crate::kernel::kallsyms::ParentSymbols;
use crate::kernel::modinfo;

/// The rules, named as they are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `.modinfo` has `livepatch=Y`.
    ModinfoLivepatch,
    /// `.modinfo` has a GPL-compatible license (the livepatch API is GPL-only).
    ModinfoLicense,
    /// `__klp_relocs` is present but was never converted by `klp post-link`.
    NotConverted,
    /// A klp rela section is `SHT_RELA`.
    RelaType,
    /// A klp rela section has `SHF_ALLOC` and `SHF_RELA_LIVEPATCH`.
    RelaFlags,
    /// `.klp.rela.<obj>.<section>`, `<section>` being the section it relocates.
    RelaName,
    /// `sh_info` an allocated section (`sh_link` other than `.symtab` is refused on reading).
    RelaLink,
    /// One klp rela section per (object, section).
    RelaDuplicate,
    /// Symbols of klp relocations (and every `.klp.sym` symbol) are `SHN_LIVEPATCH`.
    SymbolNotLivepatch,
    /// `.klp.sym.<obj>.<name>,<pos>`.
    SymbolName,
    /// Position 0 only for a unique name; a position that exists.
    Sympos,
    /// A module-specific klp rela section may not reference vmlinux.
    ModuleReferencesVmlinux,
    /// The bytes a KLP relocation writes are zero in the file.
    SiteNotZero,
    /// No ordinary relocation writes a KLP site too.
    SiteDoublyRelocated,
    /// The objects table exists and is well formed.
    ObjectsTable,
    /// Each `klp_func_ext` has an old name and a new function.
    FuncsTable,
    /// A new function has a size (kallsyms must know it).
    NewFunctionSize,
    /// No old function is patched twice (the kernel's sysfs entry
    /// `<object>/<function>,<sympos>` would exist twice and the patch fail).
    FuncDuplicate,
    /// At most one `__pfx_` symbol per function (a prefix copied from
    /// `vmlinux.o` next to the one objtool adds in the module build).
    PrefixDuplicate,
    /// A `__pfx_<f>` symbol ends where `f` starts and covers only the
    /// single-byte NOPs of the compiler's call padding, which the kernel
    /// rewrites at run time (call-depth tracking, FineIBT).
    PrefixPadding,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::ModinfoLivepatch => "modinfo-livepatch",
            Rule::ModinfoLicense => "modinfo-license",
            Rule::NotConverted => "not-converted",
            Rule::RelaType => "klp-rela-type",
            Rule::RelaFlags => "klp-rela-flags",
            Rule::RelaName => "klp-rela-name",
            Rule::RelaLink => "klp-rela-link",
            Rule::RelaDuplicate => "klp-rela-duplicate",
            Rule::SymbolNotLivepatch => "klp-sym-not-livepatch",
            Rule::SymbolName => "klp-sym-name",
            Rule::Sympos => "klp-sym-sympos",
            Rule::ModuleReferencesVmlinux => "module-references-vmlinux",
            Rule::SiteNotZero => "klp-site-nonzero",
            Rule::SiteDoublyRelocated => "klp-site-doubly-relocated",
            Rule::ObjectsTable => "objects-table",
            Rule::FuncsTable => "funcs-table",
            Rule::NewFunctionSize => "new-function-size",
            Rule::FuncDuplicate => "func-duplicate",
            Rule::PrefixDuplicate => "prefix-duplicate",
            Rule::PrefixPadding => "prefix-padding",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub rule: Rule,
    pub message: String,
}

/// One line: names in the message are the module's, escaped
/// (`crate::error::escaped`).
impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.rule.name(), crate::error::escaped(&self.message))
    }
}

/// What a passing check saw.
#[derive(Debug, Default)]
pub struct Summary {
    pub klp_relocations: usize,
    pub functions: usize,
}

/// objtool's name for the call padding before a function.
const PREFIX: &str = "__pfx_";
const NOP: u8 = 0x90;

const GPL_COMPATIBLE: &[&str] =
    &["GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL"];

pub fn check(m: &ElfObject, parent: Option<&ParentSymbols>) -> (Vec<Violation>, Summary) {
    let mut c = Checker { m, parent, out: Vec::new(), summary: Summary::default(), patched: HashSet::new() };
    c.modinfo();
    c.klp_relas();
    c.klp_symbols();
    c.tables();
    c.prefixes();
    (c.out, c.summary)
}

struct Checker<'a, 'd> {
    m: &'a ElfObject<'d>,
    parent: Option<&'a ParentSymbols>,
    out: Vec<Violation>,
    summary: Summary,
    /// (object, old name, sympos with 0 as 1) of every function entry seen.
    patched: HashSet<(String, String, u64)>,
}

impl<'d> Checker<'_, 'd> {
    fn report(&mut self, rule: Rule, message: String) {
        self.out.push(Violation { rule, message });
    }

    fn modinfo(&mut self) {
        let data = self.m.section_by_name(".modinfo").map_or(&[][..], |s| s.data);
        if !modinfo::values(data, "livepatch").any(|v| v == b"Y") {
            self.report(
                Rule::ModinfoLivepatch,
                ".modinfo lacks livepatch=Y: the kernel will not treat this as a livepatch module".into(),
            );
        }
        match modinfo::value(data, "license") {
            Some(l) if GPL_COMPATIBLE.iter().any(|g| g.as_bytes() == l) => {}
            Some(l) => self.report(
                Rule::ModinfoLicense,
                format!(
                    "license '{}' is not GPL-compatible; the livepatch API is GPL-only",
                    String::from_utf8_lossy(l)
                ),
            ),
            None => self.report(Rule::ModinfoLicense, ".modinfo has no license".into()),
        }
    }

    fn is_klp_rela(s: &Section) -> bool {
        s.name.starts_with(".klp.rela.") || s.flags & SHF_RELA_LIVEPATCH != 0
    }

    fn klp_relas(&mut self) {
        let m = self.m;
        let symtab = m.sections.iter().find(|s| s.sh_type == object::elf::SHT_SYMTAB.0).map(|s| s.id);
        let klp_relas: Vec<&Section> = m.sections.iter().filter(|s| Self::is_klp_rela(s)).collect();
        let unconverted = m.sections.iter().any(|s| s.name.starts_with("__klp_relocs") && s.size > 0);
        if unconverted && klp_relas.is_empty() {
            self.report(
                Rule::NotConverted,
                "__klp_relocs is present but there is no .klp.rela section: run klp post-link on the linked module"
                    .into(),
            );
        }
        let mut seen = HashSet::new();
        for s in klp_relas {
            self.rela_section(s, symtab, &mut seen);
        }
    }

    fn rela_section(&mut self, s: &Section, symtab: Option<SectionId>, seen: &mut HashSet<(String, u32)>) {
        let m = self.m;
        if s.sh_type != object::elf::SHT_RELA.0 {
            self.report(Rule::RelaType, format!("{}: type {} is not SHT_RELA", s.name, s.sh_type));
        }
        let need = object::elf::SHF_ALLOC.0 | SHF_RELA_LIVEPATCH;
        if s.flags & need != need {
            self.report(
                Rule::RelaFlags,
                format!("{}: flags {:#x} lack SHF_ALLOC|SHF_RELA_LIVEPATCH ({need:#x})", s.name, s.flags),
            );
        }
        let target = m.sections.get(s.info as usize).filter(|t| t.id.0 != 0);
        if Some(SectionId(s.link)) != symtab || target.is_none_or(|t| !t.is_alloc()) {
            self.report(
                Rule::RelaLink,
                format!(
                    "{}: sh_link {} / sh_info {} do not name .symtab and an allocated section",
                    s.name, s.link, s.info
                ),
            );
        }
        let parsed = s.name.strip_prefix(".klp.rela.").and_then(|r| r.split_once('.'));
        let obj = match parsed {
            Some((obj, sec)) if !obj.is_empty() && obj.len() <= klp::MAX_OBJNAME_LEN => {
                let sec_name = sec.to_owned();
                if target.is_some_and(|t| t.name != sec_name) {
                    self.report(
                        Rule::RelaName,
                        format!("{}: names section {sec_name} but relocates {}", s.name, target.unwrap().name),
                    );
                }
                obj.to_owned()
            }
            _ => {
                self.report(Rule::RelaName, format!("{}: not of the form .klp.rela.<object>.<section>", s.name));
                String::new()
            }
        };
        if !seen.insert((obj.clone(), s.info)) {
            self.report(
                Rule::RelaDuplicate,
                format!("{}: a second klp rela section for object {obj} and section #{}", s.name, s.info),
            );
        }
        for r in m.own_relocs(s.id).iter() {
            self.summary.klp_relocations += 1;
            self.klp_reloc(s, &obj, target, r);
        }
    }

    fn klp_reloc(&mut self, s: &Section, obj: &str, target: Option<&Section>, r: &crate::elf::Reloc) {
        let m = self.m;
        let sym = m.symbol(r.symbol());
        let site = format!("{}+{:#x}", target.map_or("?", |t| t.name), r.offset());
        if sym.placement != Placement::Reserved(SHN_LIVEPATCH) {
            self.report(Rule::SymbolNotLivepatch, format!("{site}: symbol {} is not SHN_LIVEPATCH", sym.name));
        }
        match klp::parse_klp_symbol(sym.name) {
            None => self.report(
                Rule::SymbolName,
                format!("{site}: symbol '{}' is not .klp.sym.<object>.<name>,<position>", sym.name),
            ),
            Some((sym_obj, name, pos)) => {
                if obj != "vmlinux" && sym_obj == "vmlinux" {
                    self.report(
                        Rule::ModuleReferencesVmlinux,
                        format!("{}: module-specific section references vmlinux symbol {}", s.name, sym.name),
                    );
                }
                self.sympos(&site, sym_obj, name, pos);
            }
        }
        let Some(t) = target else { return };
        let width = crate::elf::reloc::width(r.r_type());
        if !t.is_nobits()
            && t.data.get(r.offset() as usize..r.offset() as usize + width).is_some_and(|b| b.iter().any(|&x| x != 0))
        {
            self.report(Rule::SiteNotZero, format!("{site}: the {width} bytes a KLP relocation writes are not zero"));
        }
        let ordinary = t.relocs_in(r.offset(), r.offset() + 1).iter().find(|o| o.r_type() != crate::elf::reloc::NONE);
        if let Some(o) = ordinary {
            self.report(
                Rule::SiteDoublyRelocated,
                format!(
                    "{site}: also written by an ordinary relocation (type {}) to {}",
                    o.r_type(),
                    m.symbol(o.symbol()).name
                ),
            );
        }
    }

    fn sympos(&mut self, site: &str, sym_obj: &str, name: &str, pos: u64) {
        let Some(parent) = self.parent else { return };
        if parent.objname() != sym_obj {
            return;
        }
        let count = parent.count(name);
        if count == 0 {
            self.report(Rule::Sympos, format!("{site}: {name} is not in {}", parent.path.display()));
        } else if pos == 0 && count > 1 {
            self.report(
                Rule::Sympos,
                format!(
                    "{site}: {name} has position 0 but {count} symbols of that name exist (unresolvable ambiguity)"
                ),
            );
        } else if pos > count as u64 {
            self.report(
                Rule::Sympos,
                format!("{site}: position {pos} of {name} does not exist ({count} symbols of that name)"),
            );
        }
    }

    fn klp_symbols(&mut self) {
        for s in &self.m.symbols {
            if s.name.starts_with(".klp.sym.") && s.placement != Placement::Reserved(SHN_LIVEPATCH) {
                self.report(Rule::SymbolNotLivepatch, format!("symbol {} is not SHN_LIVEPATCH", s.name));
            }
        }
    }

    fn tables(&mut self) {
        let m = self.m;
        let Some(objects) = m.section_by_name(".init.klp_objects").or_else(|| m.section_by_name("__klp_objects"))
        else {
            self.report(Rule::ObjectsTable, "no .init.klp_objects (or __klp_objects) section: nothing to patch".into());
            return;
        };
        let entries = match klp::object_entries(objects) {
            Ok(e) if !e.is_empty() => e,
            Ok(_) => return self.report(Rule::ObjectsTable, format!("{}: no entries", objects.name)),
            Err(e) => return self.report(Rule::ObjectsTable, e.to_string()),
        };
        for entry in entries {
            self.object_entry(objects, &entry);
        }
    }

    fn object_entry(&mut self, objects: &Section, entry: &klp::ObjectEntry) {
        let m = self.m;
        let at = entry.at;
        let Some(funcs_ptr) = entry.funcs else {
            self.report(Rule::ObjectsTable, format!("{}+{at:#x}: object without a funcs array", objects.name));
            return;
        };
        let Some((funcs, start)) = funcs_ptr.target(m).map(|(s, o)| (m.section(s), o)) else {
            self.report(Rule::ObjectsTable, format!("{}+{at:#x}: funcs array is not in this module", objects.name));
            return;
        };
        let table = klp::func_entries(funcs);
        let wanted = start..start.saturating_add(u64::from(entry.nr_funcs) * klp::KLP_FUNC_SIZE);
        let in_range: Vec<klp::FuncEntry> = match &table {
            Ok(all) => all.iter().filter(|f| wanted.contains(&f.at)).copied().collect(),
            Err(e) => return self.report(Rule::ObjectsTable, e.to_string()),
        };
        if in_range.len() != entry.nr_funcs as usize || wanted.end > funcs.size {
            self.report(
                Rule::ObjectsTable,
                format!(
                    "{}+{at:#x}: {} functions from {}+{start:#x} do not fit its size {}",
                    objects.name, entry.nr_funcs, funcs.name, funcs.size
                ),
            );
            return;
        }
        // A NULL name is vmlinux.
        let object = entry
            .name
            .and_then(|p| p.string(m))
            .map_or("vmlinux".to_owned(), |n| String::from_utf8_lossy(n).into_owned());
        for f in in_range {
            self.func_entry(&object, funcs, &f);
        }
    }

    fn func_entry(&mut self, object: &str, funcs: &Section, f: &klp::FuncEntry) {
        let m = self.m;
        let at = f.at;
        self.summary.functions += 1;
        match f.old_name.and_then(|p| p.string(m)) {
            Some(n) if !n.is_empty() && n.len() <= klp::MAX_SYMBOL_NAME_LEN => {
                let name = String::from_utf8_lossy(n).into_owned();
                let sympos = f.sympos.max(1);
                if !self.patched.insert((object.to_owned(), name.clone(), sympos)) {
                    self.report(
                        Rule::FuncDuplicate,
                        format!(
                            "{object}: {name},{sympos} is patched twice (two outputs of one function in one module?)"
                        ),
                    );
                }
            }
            _ => self.report(Rule::FuncsTable, format!("{}+{at:#x}: klp_func_ext has no (valid) old_name", funcs.name)),
        }
        match f.new_func.map(|p| m.symbol(p.symbol)) {
            None => self.report(Rule::FuncsTable, format!("{}+{at:#x}: klp_func_ext has a NULL new_func", funcs.name)),
            Some(f) if !f.is_defined() || f.kind != SymbolKind::Func => self.report(
                Rule::FuncsTable,
                format!("{}+{at:#x}: new_func {} is not a function of this module", funcs.name, f.name),
            ),
            Some(f) if f.size == 0 => self
                .report(Rule::NewFunctionSize, format!("new function {} has no size: kallsyms cannot size it", f.name)),
            Some(_) => {}
        }
    }

    fn prefixes(&mut self) {
        let m = self.m;
        // Keyed by name too: objtool prefixes each alias of a function
        // (`init_module` and the module's init function) at the same place.
        let mut seen: HashSet<(SectionId, u64, &str)> = HashSet::new();
        for p in m.symbols.iter().filter(|s| s.kind == SymbolKind::Func) {
            let Some(function) = p.name.strip_prefix(PREFIX) else { continue };
            let Some(sec) = m.symbol_section(p) else {
                self.report(Rule::PrefixPadding, format!("{} is not defined in a section", p.name));
                continue;
            };
            let follows = m.symbols_in(sec.id).map(|id| m.symbol(id)).any(|f| {
                f.name == function && f.kind == SymbolKind::Func && f.value == p.end() && f.section() == p.section()
            });
            if !follows {
                self.report(
                    Rule::PrefixPadding,
                    format!("{}: {} does not end where {function} starts", sec.name, p.name),
                );
                continue;
            }
            let bytes =
                usize::try_from(p.value).ok().zip(usize::try_from(p.end()).ok()).and_then(|(a, b)| sec.data.get(a..b));
            if !bytes.is_some_and(|b| !b.is_empty() && b.iter().all(|&x| x == NOP)) {
                self.report(
                    Rule::PrefixPadding,
                    format!("{}+{:#x}: {} does not cover the NOPs of call padding", sec.name, p.value, p.name),
                );
            }
            if !seen.insert((sec.id, p.end(), function)) {
                self.report(
                    Rule::PrefixDuplicate,
                    format!("{}+{:#x}: {function} has two prefix symbols {}", sec.name, p.end(), p.name),
                );
            }
        }
    }
}
