//! x86-64 instructions, as far as the stages that do not hash them need
//! them: where instructions start and end, and how far a PC-relative field
//! is from the end of its instruction (what turns an addend into the offset
//! of the target). The checksum stage decodes fully with the same decoder.

use iced_x86::{Decoder, DecoderOptions, Instruction, OpKind};

use crate::elf::{Reloc, Section, reloc};

/// Instruction `(start, end)` offsets of `[start, end)` of a code section,
/// decoded linearly from `start`.
#[derive(Debug, Clone, Default)]
pub struct Boundaries(Vec<(u64, u64)>);

impl Boundaries {
    pub fn decode(sec: &Section, start: u64, end: u64) -> Self {
        let end = end.min(sec.data.len() as u64);
        let Some(code) =
            usize::try_from(start).ok().zip(usize::try_from(end).ok()).and_then(|(s, e)| sec.data.get(s..e))
        else {
            return Boundaries::default();
        };
        let mut decoder = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
        let mut out = Vec::with_capacity(code.len() / 4);
        while decoder.can_decode() {
            let insn = decoder.decode();
            out.push((insn.ip(), insn.next_ip()));
        }
        Boundaries(out)
    }

    /// The instruction containing `offset`.
    pub fn containing(&self, offset: u64) -> Option<(u64, u64)> {
        let i = self.0.partition_point(|&(s, _)| s <= offset);
        i.checked_sub(1).map(|i| self.0[i]).filter(|&(_, end)| end > offset)
    }

    /// For relocation `r` of code: the distance from its field to the end
    /// of its instruction if it is PC-relative (the CPU adds the address of
    /// the next instruction), else 0. A field the decoder does not place in
    /// an instruction is taken as the usual trailing 4-byte displacement.
    pub fn pc_bias(&self, r: &Reloc) -> i64 {
        if !reloc::is_pc_relative(r.r_type) {
            return 0;
        }
        match self.containing(r.offset) {
            Some((_, end)) => end as i64 - r.offset as i64,
            None => 4,
        }
    }
}

pub fn is_near_branch(insn: &Instruction) -> bool {
    matches!(insn.op0_kind(), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64)
}
