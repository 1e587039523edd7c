//! Anonymous code: instructions no symbol covers, reached from a function by
//! section symbol plus offset. Older kernels put `static_cpu_has()` slow
//! paths in `.altinstr_aux` and exception fixups in `.fixup` this way: one
//! section shared by every function of a file, one snippet per use, each
//! jumping back into its function. A snippet's offset says nothing: a patch
//! that adds a function whose snippet lands first moves all the others. So a
//! reference to such code is known by the snippet's content (checksum stage)
//! and the snippet alone is cloned with the function (extract stage).

use std::collections::BTreeMap;

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction};

use crate::elf::{ElfObject, Section};

/// More than any snippet the kernel has (a few instructions each); a bound
/// on the walk, whatever the input.
const MAX_INSTRUCTIONS: usize = 256;

/// The instructions reachable from a snippet's entry without leaving the
/// symbol-less range around it, in address order.
pub struct Snippet {
    pub entry: u64,
    pub insns: BTreeMap<u64, Instruction>,
}

impl Snippet {
    /// `[start, end)`: the bytes that hold every reachable instruction.
    pub fn extent(&self) -> (u64, u64) {
        let start = self.insns.keys().next().copied().unwrap_or(self.entry);
        let end = self.insns.values().map(|i| i.next_ip()).max().unwrap_or(self.entry);
        (start, end)
    }
}

/// Walk the code reachable from `entry` of executable section `sec`: fall
/// through and follow branches that carry no relocation (those that do
/// leave the snippet: back into a function, or to a symbol), stopping at
/// returns, unconditional jumps, traps and the nearest symbols around it.
pub fn walk(obj: &ElfObject, sec: &Section, entry: u64) -> Snippet {
    let (lo, hi) = unnamed_range(obj, sec, entry);
    let hi = hi.min(sec.data.len() as u64);
    let mut insns = BTreeMap::new();
    let mut todo = vec![entry];
    while let Some(mut ip) = todo.pop() {
        while (lo..hi).contains(&ip) && !insns.contains_key(&ip) && insns.len() < MAX_INSTRUCTIONS {
            let code = &sec.data[ip as usize..hi as usize];
            let insn = Decoder::with_ip(64, code, ip, DecoderOptions::NONE).decode();
            if insn.is_invalid() {
                break;
            }
            insns.insert(ip, insn);
            let plain_branch = sec.relocs_in(ip, insn.next_ip()).is_empty() && crate::x86::is_near_branch(&insn);
            match insn.flow_control() {
                FlowControl::ConditionalBranch if plain_branch => todo.push(insn.near_branch_target()),
                FlowControl::UnconditionalBranch => {
                    if plain_branch {
                        todo.push(insn.near_branch_target());
                    }
                    break;
                }
                FlowControl::Return | FlowControl::IndirectBranch | FlowControl::Exception => break,
                _ => {}
            }
            ip = insn.next_ip();
        }
    }
    Snippet { entry, insns }
}

/// The range around `at` of `sec` between the nearest symbol boundaries
/// (the whole section if no symbol is in it).
pub fn unnamed_range(obj: &ElfObject, sec: &Section, at: u64) -> (u64, u64) {
    let mut start = 0;
    let mut end = sec.size;
    for id in obj.symbols_in(sec.id) {
        let s = obj.symbol(id);
        if s.end() <= at && s.end() > start {
            start = s.end();
        }
        if s.value > at && s.value < end {
            end = s.value;
        }
    }
    (start, end.max(start))
}
