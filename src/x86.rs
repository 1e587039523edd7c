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
        if !reloc::is_pc_relative(r.r_type()) {
            return 0;
        }
        match self.containing(r.offset()) {
            Some((_, end)) => end as i64 - r.offset() as i64,
            None => 4,
        }
    }
}

pub fn is_near_branch(insn: &Instruction) -> bool {
    matches!(insn.op0_kind(), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64)
}

/// A direct call or jump whose destination is outside the code decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeavingBranch {
    pub insn_start: u64,
    pub insn_end: u64,
    /// Where it lands, as a section offset.
    pub target: u64,
    /// The offset of its 4-byte displacement; `None` for an 8-bit one.
    pub rel32_field: Option<u64>,
}

/// The direct branches of `[start, end)` of a code section's bytes `data`
/// that land outside it, decoded linearly from `start`.
pub fn branches_leaving(data: &[u8], start: u64, end: u64) -> Vec<LeavingBranch> {
    let end = end.min(data.len() as u64);
    let Some(code) = usize::try_from(start).ok().zip(usize::try_from(end).ok()).and_then(|(s, e)| data.get(s..e))
    else {
        return Vec::new();
    };
    let mut decoder = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        if !is_near_branch(&insn) || (start..end).contains(&insn.near_branch_target()) {
            continue;
        }
        let offsets = decoder.get_constant_offsets(&insn);
        let rel32_field = (offsets.has_immediate() && offsets.immediate_size() == 4)
            .then(|| insn.ip() + offsets.immediate_offset() as u64);
        let (insn_start, insn_end, target) = (insn.ip(), insn.next_ip(), insn.near_branch_target());
        out.push(LeavingBranch { insn_start, insn_end, target, rel32_field });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_branches_that_leave_the_range_are_reported() {
        // 0: call +0x10 (lands at 0x15, outside [0, 0xc))
        // 5: jmp -7 (short, lands at 0, inside)
        // 7: jmp rel32 -0x20 (lands at -0x14)
        // c: ret (outside the range decoded)
        let bytes = [0xe8, 0x10, 0, 0, 0, 0xeb, 0xf9, 0xe9, 0xe0, 0xff, 0xff, 0xff, 0xc3];
        let got = branches_leaving(&bytes, 0, 12);
        assert_eq!(
            got,
            vec![
                LeavingBranch { insn_start: 0, insn_end: 5, target: 0x15, rel32_field: Some(1) },
                LeavingBranch { insn_start: 7, insn_end: 12, target: 12u64.wrapping_sub(0x20), rel32_field: Some(8) },
            ]
        );
    }

    #[test]
    fn a_short_branch_out_has_no_rel32_field() {
        let bytes = [0x90, 0xeb, 0x10];
        let got = branches_leaving(&bytes, 1, 3);
        assert_eq!(got, vec![LeavingBranch { insn_start: 1, insn_end: 3, target: 0x13, rel32_field: None }]);
    }
}
