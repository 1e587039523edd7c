//! Special sections of the written object, as the defconfig 6.12
//! `vmlinux.o` has them: the entries each code site asks for
//! (`__jump_table`, `__ex_table`, `.altinstructions` with
//! `.altinstr_replacement`, `__bug_table`, `.static_call_sites`), the
//! symbol-less `.altinstr_aux` snippets of `static_cpu_has()`, objtool's
//! `.return_sites` and `.call_sites`, and the constant pools. Entries refer
//! to code by section symbol plus offset, as gas emits them for labels.

use object::elf;

use super::super::elf::SymIdx;
use super::super::elf::{DraftSection, SecIdx};
use super::super::encode::{Site, SiteKind, Special, Target};
use super::super::model::{Constant, FuncId, Key, Op, Replacement, Unit};
use super::Builder;

/// `X86_FEATURE_ALWAYS` (word 3, bit 21): the alternative every CPU takes.
const FEATURE_ALWAYS: u16 = 3 * 32 + 21;
/// `BUGFLAG_WARNING | BUGFLAG_TAINT(TAINT_WARN)`: a `WARN_ON()` entry.
const WARN_FLAGS: u16 = 0x0901;
/// Offset of `x86_capability` in `struct cpuinfo_x86` (any stable value).
const CAPABILITY_OFFSET: u16 = 0x38;

/// A field of an entry the writer relocates.
fn field(offset: u32, kind: SiteKind, target: Target, bias: i64) -> Site {
    Site { offset, kind, target, bias }
}

/// A data field that points at `target` (`.long target - .`).
fn pc32(offset: u32, target: Target) -> Site {
    field(offset, SiteKind::PcRelative, target, 0)
}

fn data_section(name: &str, flags: u64, align: u64, entsize: u64) -> DraftSection {
    let mut s = DraftSection::new(name, elf::SHT_PROGBITS.0, flags, align);
    s.entsize = entsize;
    s
}

const A: u64 = elf::SHF_ALLOC.0;

/// Where a constant-pool entry went, and its `.LC<n>` label if code loads it.
#[derive(Debug, Clone, Copy)]
pub(super) struct PoolEntry {
    pub section: SecIdx,
    pub offset: u64,
    pub label: Option<SymIdx>,
}

/// Indexes of the unit's constants some code (parent or cold part) loads.
fn loaded_constants(unit: &Unit) -> std::collections::HashSet<usize> {
    let ops = unit.functions.iter().flat_map(|f| f.body.iter().chain(f.cold.iter().flatten()));
    ops.filter_map(|op| match op {
        Op::LoadConstant { constant } => Some(constant.0 as usize),
        _ => None,
    })
    .collect()
}
const WA: u64 = elf::SHF_WRITE.0 | elf::SHF_ALLOC.0;

impl Builder {
    /// Place each constant of unit `u` in `.rodata.cst8`/`.rodata.cst16`;
    /// equal constants of the unit share an entry, as gcc merges them.
    /// A loaded entry gets its `.LC<n>` label as a local symbol: gas keeps
    /// the label of a PC-relative reference into a mergeable section (the
    /// section symbol with addend -4 would point before the entry, which
    /// `ld` cannot map through the merge: "access beyond end of merged
    /// section"). An entry nobody loads keeps no label.
    pub(super) fn constant_pools(&mut self, unit: &Unit) {
        let loaded = loaded_constants(unit);
        let mut placed: Vec<(Constant, PoolEntry)> = Vec::new();
        let mut table = Vec::with_capacity(unit.constants.len());
        // Numbered per unit, as gcc numbers them: `ld -r` keeps every unit's `.LC0`.
        let mut labels = 0;
        for (i, &c) in unit.constants.iter().enumerate() {
            let k = match placed.iter().position(|(x, _)| *x == c) {
                Some(k) => k,
                None => {
                    let size = u64::from(c.size);
                    let flags = elf::SHF_ALLOC.0 | elf::SHF_MERGE.0;
                    let mut sec = DraftSection::new(&format!(".rodata.cst{size}"), elf::SHT_PROGBITS.0, flags, size);
                    sec.entsize = size;
                    let (section, offset) = self.place(sec, &c.value.to_le_bytes()[..size as usize], size);
                    placed.push((c, PoolEntry { section, offset, label: None }));
                    placed.len() - 1
                }
            };
            let entry = &mut placed[k].1;
            if loaded.contains(&i) && entry.label.is_none() {
                let name = format!(".LC{labels}");
                labels += 1;
                entry.label = Some(self.local(&name, elf::STT_NOTYPE.0, Some(entry.section), entry.offset, 0));
            }
            table.push(k);
        }
        self.constants.push(table.into_iter().map(|k| placed[k].1).collect());
    }

    /// Append an entry of `bytes` to special section `template`, with its
    /// relocated fields.
    fn entry(&mut self, u: usize, template: DraftSection, bytes: &[u8], fields: Vec<Site>) -> (SecIdx, u64) {
        let align = template.align;
        let (section, at) = self.place(template, bytes, align);
        self.pending.push((section, at, u, fields));
        (section, at)
    }

    /// Code to `.altinstr_replacement` (or `.altinstr_aux`), with its relocated fields.
    fn code_chunk(&mut self, u: usize, name: &str, bytes: &[u8], fields: Vec<Site>) -> (SecIdx, u64) {
        self.entry(u, DraftSection::code(name, 1), bytes, fields)
    }

    /// What the code of function `owner`, placed at `base` of `section`, asks for.
    pub(super) fn specials(&mut self, u: usize, owner: FuncId, section: SecIdx, base: u64, specials: &[Special]) {
        let init = self.draft.sections[section].name == ".init.text";
        let at = |offset: u32| Target::Place(section, base + u64::from(offset));
        for s in specials {
            match s {
                Special::JumpLabel { site, target, key, likely } => {
                    let key = match key {
                        Key::Var(v) => Target::Var(*v, 0),
                        Key::Extern(name) => Target::Extern(name.clone()),
                    };
                    let fields = vec![
                        pc32(0, at(*site)),
                        pc32(4, at(*target)),
                        field(8, SiteKind::PcRelative64, key, 2 + i64::from(*likely)),
                    ];
                    self.entry(u, data_section("__jump_table", WA, 8, 0), &[0; 16], fields);
                }
                Special::ExTable { insn, fixup, fixup_type } => {
                    let mut bytes = [0; 12];
                    bytes[8..].copy_from_slice(&u32::from(*fixup_type).to_le_bytes());
                    self.entry(
                        u,
                        data_section("__ex_table", A, 4, 0),
                        &bytes,
                        vec![pc32(0, at(*insn)), pc32(4, at(*fixup))],
                    );
                }
                Special::Alternative { site, feature, replacement } => {
                    let (bytes, fields) = match replacement {
                        Replacement::Lfence => (vec![0x0f, 0xae, 0xe8], vec![]),
                        Replacement::CallExtern(name) => (
                            vec![0xe8, 0, 0, 0, 0],
                            vec![field(1, SiteKind::Branch, Target::Extern((*name).into()), -4)],
                        ),
                    };
                    let repl = self.code_chunk(u, ".altinstr_replacement", &bytes, fields);
                    self.alternative(u, at(*site), repl, *feature, bytes.len() as u8, bytes.len() as u8);
                }
                Special::CpuHas { site, yes, no, bit, ordinal } => {
                    self.cpu_has(u, owner, (at(*site), at(*yes), at(*no)), *bit, *ordinal);
                }
                Special::Bug { site, line } => {
                    let mut bytes = [0; 12];
                    bytes[8..10].copy_from_slice(&line.to_le_bytes());
                    bytes[10..].copy_from_slice(&WARN_FLAGS.to_le_bytes());
                    let fields = vec![pc32(0, at(*site)), pc32(4, Target::SourcePath)];
                    self.entry(u, data_section("__bug_table", WA, 1, 0), &bytes, fields);
                }
                Special::StaticCall { site, name } => {
                    let fields = vec![pc32(0, at(*site)), pc32(4, Target::Extern(format!("__SCK__{name}")))];
                    self.entry(u, data_section(".static_call_sites", WA, 1, 8), &[0; 8], fields);
                }
                Special::Return { site } => {
                    self.entry(u, data_section(".return_sites", A, 1, 4), &[0; 4], vec![pc32(0, at(*site))]);
                }
                // objtool leaves `__init` code out of the call-depth sites.
                Special::Call { site } if !init => {
                    self.entry(u, data_section(".call_sites", A, 1, 4), &[0; 4], vec![pc32(0, at(*site))]);
                }
                Special::Call { .. } => {}
            }
        }
    }

    /// A 14-byte `struct alt_instr`: instruction, replacement, feature and flags, lengths.
    fn alternative(&mut self, u: usize, site: Target, repl: (SecIdx, u64), feature: u16, len: u8, repl_len: u8) {
        let mut bytes = [0; 14];
        bytes[8..10].copy_from_slice(&feature.to_le_bytes());
        bytes[12] = len;
        bytes[13] = repl_len;
        let fields = vec![pc32(0, site), pc32(4, Target::Place(repl.0, repl.1))];
        self.entry(u, data_section(".altinstructions", A, 1, 0), &bytes, fields);
    }

    /// `static_cpu_has(bit)`: the `.altinstr_aux` snippet the `jmp` at
    /// `site` reaches (`testb $mask, boot_cpu_data+cap(%rip); jnz yes; jmp
    /// no`) and `ALTERNATIVE_TERNARY("jmp 6f", bit, "", "jmp no")`: two
    /// entries for the site, `jmp no` on every CPU, nothing with `bit`.
    fn cpu_has(&mut self, u: usize, owner: FuncId, (site, yes, no): (Target, Target, Target), bit: u16, ordinal: u32) {
        let snippet = vec![0xf6, 0x05, 0, 0, 0, 0, 1 << (bit % 8), 0x0f, 0x85, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0];
        let cap = i64::from(CAPABILITY_OFFSET + bit / 8);
        let fields = vec![
            field(2, SiteKind::PcRelative, Target::Extern("boot_cpu_data".into()), cap - 5),
            field(9, SiteKind::PcRelative, yes, -4),
            field(14, SiteKind::PcRelative, no.clone(), -4),
        ];
        let (_, at) = self.code_chunk(u, ".altinstr_aux", &snippet, fields);
        self.aux_snippets.insert((owner, ordinal), at);
        let jmp_no = self.code_chunk(
            u,
            ".altinstr_replacement",
            &[0xe9, 0, 0, 0, 0],
            vec![field(1, SiteKind::PcRelative, no, -4)],
        );
        self.alternative(u, site.clone(), jmp_no, FEATURE_ALWAYS, 5, 5);
        // The empty replacement: a label just past the others.
        let empty = (jmp_no.0, jmp_no.1 + 5);
        self.alternative(u, site, empty, bit, 5, 0);
    }
}
