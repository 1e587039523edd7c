//! x86-64 code for the model's operations, encoded with iced-x86's block
//! encoder (which picks short or near branches as gas would), with the
//! relocation each reference needs. Relocated fields are left zero, as gas
//! leaves them for RELA relocations.

use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, ConstantOffsets, IcedError, Instruction, InstructionBlock, MemoryOperand,
    Register,
};

use super::model::{Callee, ConstId, Ending, FuncId, Function, Key, Op, Reg, Replacement, StrId, VarId};

/// What a relocated field refers to, in model terms; the writer turns it
/// into a symbol and an addend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Func(FuncId),
    Extern(String),
    /// `__fentry__`, undefined.
    Fentry,
    /// A variable, `offset` bytes in.
    Var(VarId, u32),
    Str(StrId),
    /// The unit's `__FILE__` string.
    SourcePath,
    /// The start of function `f`'s `.cold` part.
    Cold(FuncId),
    /// `offset` bytes into the code of function `f` (from its cold part).
    Resume(FuncId, u32),
    /// A constant-pool entry of the unit.
    Constant(ConstId),
    /// The `n`th `.altinstr_aux` snippet of function `f`.
    AuxSnippet(FuncId, u32),
    /// `offset` bytes into section `index` of the object being written
    /// (the writer's own references, from the entries it makes).
    Place(usize, u64),
}

/// What code asks of the writer besides relocations: special-section
/// entries and objtool's site lists, at offsets of the encoded code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Special {
    /// `__jump_table`: the NOP at `site`, jumping to `target` when enabled.
    JumpLabel { site: u32, target: u32, key: Key, likely: bool },
    /// `__ex_table`: a fault at `insn` resumes at `fixup`.
    ExTable { insn: u32, fixup: u32, fixup_type: u8 },
    /// `.altinstructions`: the NOP at `site` and its replacement.
    Alternative { site: u32, feature: u16, replacement: Replacement },
    /// The `jmp` at `site` to the `ordinal`th `.altinstr_aux` snippet of the
    /// function, which returns to `yes` or `no`.
    CpuHas { site: u32, yes: u32, no: u32, bit: u16, ordinal: u32 },
    /// `__bug_table`: the `ud2` at `site`.
    Bug { site: u32, line: u16 },
    /// `.static_call_sites`: the call at `site` of `__SCT__name`.
    StaticCall { site: u32, name: String },
    /// `.return_sites`: a `jmp __x86_return_thunk`.
    Return { site: u32 },
    /// `.call_sites`: a direct call.
    Call { site: u32 },
}

/// How a field refers to its target; the writer picks the relocation type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteKind {
    /// A call or jump: R_X86_64_PLT32 to globals and undefined symbols,
    /// R_X86_64_PC32 to local ones (by section symbol), as gas does.
    Branch,
    /// A RIP-relative data reference: R_X86_64_PC32.
    PcRelative,
    /// A 64-bit place-relative field of data: R_X86_64_PC64 (jump label keys).
    PcRelative64,
    /// A sign-extended 32-bit absolute address: R_X86_64_32S.
    Absolute32S,
}

/// A relocated field of encoded code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Offset of the 4-byte field in the encoded code.
    pub offset: u32,
    pub kind: SiteKind,
    pub target: Target,
    /// Added to the target's place: minus the distance from the field to
    /// the end of its instruction for PC-relative fields, else 0.
    pub bias: i64,
}

/// One function's code, or its cold part's.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub sites: Vec<Site>,
    /// Where the cold part jumps back to (the instruction after `jg .cold`).
    pub resume: Option<u32>,
    pub specials: Vec<Special>,
}

/// Labels are the instructions' original IPs for the block encoder: each
/// instruction gets a fresh one, the epilogue a known one, and relocated
/// branches a far target the encoder keeps in rel32 form.
const FIRST_LABEL: u64 = 0x1000_0000;
const EPILOGUE: u64 = 0x3000_0000;
const FAR: u64 = 0x4000_0000;

#[derive(Debug, Clone, Copy)]
enum Field {
    Displacement,
    Immediate,
}

struct Fixup {
    instr: usize,
    field: Field,
    kind: SiteKind,
    target: Target,
}

/// An instruction list under construction.
#[derive(Default)]
struct Asm {
    instrs: Vec<Instruction>,
    fixups: Vec<Fixup>,
    next_label: u64,
    /// Index of the `jg .cold` instruction.
    unlikely_at: Option<usize>,
    /// Index of the epilogue's first instruction.
    epilogue_at: Option<usize>,
    /// Specials by instruction index, resolved to offsets by `finish`.
    specials: Vec<(usize, Pending)>,
    /// objtool's return and call sites are wanted.
    objtool_sites: bool,
    /// `CpuHas` ops so far (numbering the function's snippets).
    cpu_has: u32,
}

/// A special before encoding: what follows its instruction is known by index.
enum Pending {
    JumpLabel { key: Key, likely: bool },
    ExTable { fixup_type: u8 },
    Alternative { feature: u16, replacement: Replacement },
    CpuHas { bit: u16, ordinal: u32 },
    Bug { line: u16 },
    StaticCall { name: String },
    Return,
    Call,
}

/// gas's 3- and 5-byte NOPs, which alternatives and jump labels patch.
const NOP3: [u8; 3] = [0x0f, 0x1f, 0x00];
const NOP5: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];

type R<T> = Result<T, IcedError>;

fn reg32(r: Reg) -> Register {
    match r {
        Reg::Eax => Register::EAX,
        Reg::Ebx => Register::EBX,
        Reg::Ecx => Register::ECX,
        Reg::Edi => Register::EDI,
        Reg::R8d => Register::R8D,
    }
}

fn rip(target: u64) -> MemoryOperand {
    MemoryOperand::with_base_displ(Register::RIP, target as i64)
}

impl Asm {
    fn push(&mut self, mut i: Instruction) -> usize {
        i.set_ip(FIRST_LABEL + self.next_label * 16);
        self.next_label += 1;
        self.instrs.push(i);
        self.instrs.len() - 1
    }

    fn fixup(&mut self, i: Instruction, field: Field, kind: SiteKind, target: Target) -> usize {
        let at = self.push(i);
        self.fixups.push(Fixup { instr: at, field, kind, target });
        at
    }

    fn branch(&mut self, code: Code, target: Target) -> R<usize> {
        let is_call = code == Code::Call_rel32_64 && target != Target::Fentry;
        let at = self.fixup(Instruction::with_branch(code, FAR)?, Field::Immediate, SiteKind::Branch, target);
        if is_call && self.objtool_sites {
            self.specials.push((at, Pending::Call));
        }
        Ok(at)
    }

    fn special(&mut self, i: Instruction, what: Pending) -> R<usize> {
        let at = self.push(i);
        self.specials.push((at, what));
        Ok(at)
    }

    /// The special-site operations.
    fn special_op(&mut self, op: &Op, owner: FuncId) -> R<()> {
        match op {
            Op::LoadConstant { constant } => {
                let i = Instruction::with2(Code::Mov_r64_rm64, Register::RAX, rip(FAR))?;
                self.fixup(i, Field::Displacement, SiteKind::PcRelative, Target::Constant(*constant));
            }
            Op::JumpLabel { key, likely } => {
                let what = Pending::JumpLabel { key: key.clone(), likely: *likely };
                self.special(Instruction::with_declare_byte(&NOP5)?, what)?;
            }
            Op::UserLoad { fixup_type } => {
                let load =
                    Instruction::with2(Code::Mov_r32_rm32, Register::EAX, MemoryOperand::with_base(Register::RSI))?;
                self.special(load, Pending::ExTable { fixup_type: *fixup_type })?;
            }
            Op::Alternative { feature, replacement } => {
                let nop = match replacement {
                    Replacement::Lfence => &NOP3[..],
                    Replacement::CallExtern(_) => &NOP5[..],
                };
                let what = Pending::Alternative { feature: *feature, replacement: *replacement };
                self.special(Instruction::with_declare_byte(nop)?, what)?;
            }
            Op::CpuHas { bit } => {
                let ordinal = self.cpu_has;
                self.cpu_has += 1;
                let jmp = Instruction::with_branch(Code::Jmp_rel32_64, FAR)?;
                let at = self.fixup(jmp, Field::Immediate, SiteKind::PcRelative, Target::AuxSnippet(owner, ordinal));
                self.specials.push((at, Pending::CpuHas { bit: *bit, ordinal }));
                // The `yes` path, then `no`: the instruction after it.
                self.push(Instruction::with2(Code::Mov_r32_imm32, Register::ECX, 1u32)?);
            }
            Op::Warn { line } => {
                self.special(Instruction::with(Code::Ud2), Pending::Bug { line: *line })?;
            }
            Op::StaticCall { name } => {
                let call = Instruction::with_branch(Code::Call_rel32_64, FAR)?;
                let target = Target::Extern(format!("__SCT__{name}"));
                let at = self.fixup(call, Field::Immediate, SiteKind::Branch, target);
                self.specials.push((at, Pending::StaticCall { name: name.clone() }));
            }
            _ => unreachable!("not a special op: {op:?}"),
        }
        Ok(())
    }

    fn callee_target(c: &Callee) -> Target {
        match c {
            Callee::Func(f) => Target::Func(*f),
            Callee::Extern(name) => Target::Extern(name.clone()),
        }
    }

    fn op(&mut self, op: &Op, owner: FuncId) -> R<()> {
        match op {
            Op::SetImm { reg, value } => {
                self.push(Instruction::with2(Code::Mov_r32_imm32, reg32(*reg), *value)?);
            }
            Op::Scale { dst, src, factor } => {
                self.push(Instruction::with3(Code::Imul_r32_rm32_imm8, reg32(*dst), reg32(*src), *factor as i32)?);
            }
            Op::Load { var, offset } => {
                let i = Instruction::with2(Code::Mov_r32_rm32, Register::EAX, rip(FAR))?;
                self.fixup(i, Field::Displacement, SiteKind::PcRelative, Target::Var(*var, *offset));
            }
            Op::Store { var, offset } => {
                let i = Instruction::with2(Code::Mov_rm32_r32, rip(FAR), Register::EAX)?;
                self.fixup(i, Field::Displacement, SiteKind::PcRelative, Target::Var(*var, *offset));
            }
            Op::Bump { var, delta } => {
                let i = Instruction::with2(Code::Add_rm32_imm8, rip(FAR), *delta as i32)?;
                self.fixup(i, Field::Displacement, SiteKind::PcRelative, Target::Var(*var, 0));
            }
            Op::AddressOf { var } => {
                let i = Instruction::with2(Code::Mov_rm64_imm32, Register::RSI, 0i32)?;
                self.fixup(i, Field::Immediate, SiteKind::Absolute32S, Target::Var(*var, 0));
            }
            Op::String { string } => self.string(Target::Str(*string))?,
            Op::Call { callee } => {
                self.branch(Code::Call_rel32_64, Self::callee_target(callee))?;
            }
            Op::MightSleep { line } => {
                self.string(Target::SourcePath)?;
                self.push(Instruction::with2(Code::Mov_r32_imm32, Register::ESI, *line)?);
                self.branch(Code::Call_rel32_64, Target::Extern("__might_sleep".into()))?;
            }
            Op::ExitIfZero => {
                self.push(Instruction::with2(Code::Test_rm32_r32, Register::EBX, Register::EBX)?);
                self.push(Instruction::with_branch(Code::Je_rel32_64, EPILOGUE)?);
            }
            Op::Unlikely { limit } => {
                self.push(Instruction::with2(Code::Cmp_rm32_imm8, Register::EBX, *limit as i32)?);
                let at = self.fixup(
                    Instruction::with_branch(Code::Jg_rel32_64, FAR)?,
                    Field::Immediate,
                    SiteKind::PcRelative,
                    Target::Cold(owner),
                );
                self.unlikely_at = Some(at);
            }
            _ => self.special_op(op, owner)?,
        }
        Ok(())
    }

    fn string(&mut self, target: Target) -> R<()> {
        let i = Instruction::with2(Code::Mov_rm64_imm32, Register::RDI, 0i32)?;
        self.fixup(i, Field::Immediate, SiteKind::Absolute32S, target);
        Ok(())
    }

    fn prologue(&mut self) -> R<()> {
        self.branch(Code::Call_rel32_64, Target::Fentry)?;
        self.push(Instruction::with1(Code::Push_r64, Register::RBP)?);
        self.push(Instruction::with2(Code::Mov_rm64_r64, Register::RBP, Register::RSP)?);
        self.push(Instruction::with1(Code::Push_r64, Register::RBX)?);
        self.push(Instruction::with2(Code::Mov_rm32_r32, Register::EBX, Register::EDI)?);
        Ok(())
    }

    fn epilogue(&mut self, ending: &Ending) -> R<()> {
        let first = self.push(Instruction::with1(Code::Pop_r64, Register::RBX)?);
        self.instrs[first].set_ip(EPILOGUE);
        self.epilogue_at = Some(first);
        self.push(Instruction::with1(Code::Pop_r64, Register::RBP)?);
        match ending {
            Ending::Return if self.objtool_sites => {
                let thunk = Target::Extern("__x86_return_thunk".into());
                let at = self.fixup(
                    Instruction::with_branch(Code::Jmp_rel32_64, FAR)?,
                    Field::Immediate,
                    SiteKind::Branch,
                    thunk,
                );
                self.specials.push((at, Pending::Return));
            }
            Ending::Return => {
                self.push(Instruction::with(Code::Retnq));
            }
            Ending::TailCall(c) => {
                self.branch(Code::Jmp_rel32_64, Self::callee_target(c))?;
            }
        }
        Ok(())
    }

    /// Encode at offset 0; relocated fields zeroed.
    fn finish(self) -> R<Encoded> {
        let options =
            BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS | BlockEncoderOptions::RETURN_CONSTANT_OFFSETS;
        let out = BlockEncoder::encode(64, InstructionBlock::new(&self.instrs, 0), options)?;
        let mut bytes = out.code_buffer;
        let mut sites = Vec::with_capacity(self.fixups.len());
        for f in self.fixups {
            let start = out.new_instruction_offsets[f.instr];
            let end = next_offset(&out.new_instruction_offsets, f.instr, bytes.len());
            let field = start + field_offset(&out.constant_offsets[f.instr], f.field);
            bytes[field as usize..field as usize + 4].fill(0);
            let bias = match f.kind {
                SiteKind::Absolute32S => 0,
                SiteKind::Branch | SiteKind::PcRelative | SiteKind::PcRelative64 => {
                    -(i64::from(end) - i64::from(field))
                }
            };
            sites.push(Site { offset: field, kind: f.kind, target: f.target, bias });
        }
        let offsets = &out.new_instruction_offsets;
        let resume = self.unlikely_at.map(|i| next_offset(offsets, i, bytes.len()));
        let epilogue = self.epilogue_at.map_or(bytes.len() as u32, |i| offsets[i]);
        let specials =
            self.specials.into_iter().map(|(at, p)| resolve_special(offsets, bytes.len(), epilogue, at, p)).collect();
        Ok(Encoded { bytes, sites, resume, specials })
    }
}

/// A pending special at instruction `at`, with offsets of the encoded code.
fn resolve_special(offsets: &[u32], len: usize, epilogue: u32, at: usize, p: Pending) -> Special {
    let site = offsets[at];
    let next = |i: usize| next_offset(offsets, i, len);
    match p {
        Pending::JumpLabel { key, likely } => Special::JumpLabel { site, target: epilogue, key, likely },
        Pending::ExTable { fixup_type } => Special::ExTable { insn: site, fixup: next(at), fixup_type },
        Pending::Alternative { feature, replacement } => Special::Alternative { site, feature, replacement },
        Pending::CpuHas { bit, ordinal } => Special::CpuHas { site, yes: next(at), no: next(at + 1), bit, ordinal },
        Pending::Bug { line } => Special::Bug { site, line },
        Pending::StaticCall { name } => Special::StaticCall { site, name },
        Pending::Return => Special::Return { site },
        Pending::Call => Special::Call { site },
    }
}

fn next_offset(offsets: &[u32], i: usize, len: usize) -> u32 {
    offsets.get(i + 1).copied().unwrap_or(len as u32)
}

fn field_offset(c: &ConstantOffsets, field: Field) -> u32 {
    match field {
        Field::Displacement => c.displacement_offset() as u32,
        Field::Immediate => c.immediate_offset() as u32,
    }
}

/// The function's own code: `__fentry__` call, prologue, body, epilogue.
pub fn function(f: &Function) -> Result<Encoded, IcedError> {
    function_with(f, false)
}

/// [`function`], with objtool's return thunk and site lists if `objtool_sites`.
pub fn function_with(f: &Function, objtool_sites: bool) -> Result<Encoded, IcedError> {
    let mut asm = Asm { objtool_sites, ..Asm::default() };
    asm.prologue()?;
    for op in &f.body {
        asm.op(op, f.id)?;
    }
    asm.epilogue(&f.ending)?;
    asm.finish()
}

/// The cold part of `f`: its ops, then a jump back to `resume` in `f`.
pub fn cold_part(f: &Function, ops: &[Op], resume: u32) -> Result<Encoded, IcedError> {
    cold_part_with(f, ops, resume, false)
}

/// [`cold_part`], listing its calls in `.call_sites` if `objtool_sites`.
pub fn cold_part_with(f: &Function, ops: &[Op], resume: u32, objtool_sites: bool) -> Result<Encoded, IcedError> {
    let mut asm = Asm { objtool_sites, ..Asm::default() };
    for op in ops {
        asm.op(op, f.id)?;
    }
    let back = Instruction::with_branch(Code::Jmp_rel32_64, FAR)?;
    asm.fixup(back, Field::Immediate, SiteKind::PcRelative, Target::Resume(f.id, resume));
    asm.finish()
}

/// `len` bytes of gas's code alignment filler: the longest recommended
/// multi-byte NOPs first.
pub fn nop_fill(len: usize) -> Vec<u8> {
    const NOPS: [&[u8]; 8] = [
        &[0x90],
        &[0x66, 0x90],
        &[0x0f, 0x1f, 0x00],
        &[0x0f, 0x1f, 0x40, 0x00],
        &[0x0f, 0x1f, 0x44, 0x00, 0x00],
        &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
        &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
        &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
    ];
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let n = (len - out.len()).min(NOPS.len());
        out.extend_from_slice(NOPS[n - 1]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, FlowControl};

    fn sample() -> Function {
        Function {
            id: FuncId(1),
            name: "f".into(),
            global: true,
            text: super::super::model::TextKind::Text,
            body: vec![
                Op::SetImm { reg: Reg::Eax, value: 7 },
                Op::ExitIfZero,
                Op::Load { var: VarId(2), offset: 4 },
                Op::Bump { var: VarId(2), delta: 3 },
                Op::Unlikely { limit: 100 },
                Op::MightSleep { line: 42 },
                Op::Call { callee: Callee::Extern("printk".into()) },
            ],
            ending: Ending::TailCall(Callee::Func(FuncId(3))),
            cold: Some(vec![Op::String { string: StrId(0) }]),
            pad: 0,
        }
    }

    fn decode(bytes: &[u8]) -> Vec<Instruction> {
        let mut d = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE);
        let all: Vec<Instruction> = d.iter().collect();
        assert!(all.iter().all(|i| !i.is_invalid()), "undecodable bytes: {bytes:02x?}");
        all
    }

    #[test]
    fn every_site_is_a_zeroed_field_inside_one_instruction() {
        let e = function(&sample()).unwrap();
        let insns = decode(&e.bytes);
        for s in &e.sites {
            let i = insns.iter().find(|i| i.ip() <= s.offset as u64 && (s.offset as u64) < i.next_ip()).unwrap();
            assert!(s.offset as u64 + 4 <= i.next_ip(), "{s:?} crosses {i}");
            assert_eq!(&e.bytes[s.offset as usize..s.offset as usize + 4], &[0; 4]);
            if s.kind != SiteKind::Absolute32S {
                assert_eq!(s.bias, s.offset as i64 - i.next_ip() as i64, "{s:?}");
            }
        }
        // fentry, __might_sleep, printk, the tail call, the Load, Bump, jg and the __FILE__ string.
        assert_eq!(e.sites.len(), 8);
        assert_eq!(e.sites[0], Site { offset: 1, kind: SiteKind::Branch, target: Target::Fentry, bias: -4 });
        let bump = e.sites.iter().find(|s| s.target == Target::Var(VarId(2), 0)).unwrap();
        assert_eq!(bump.bias, -5, "addl $imm8 has its immediate after the displacement");
    }

    #[test]
    fn the_early_exit_branch_lands_on_the_epilogue_and_resume_follows_the_cold_branch() {
        let e = function(&sample()).unwrap();
        let insns = decode(&e.bytes);
        let je = insns.iter().find(|i| i.flow_control() == FlowControl::ConditionalBranch).unwrap();
        let target = insns.iter().find(|i| i.ip() == je.near_branch_target()).unwrap();
        assert_eq!(target.code(), Code::Pop_r64, "je goes to pop %rbx");
        assert_eq!(je.len(), 2, "a short jump, as gas would pick");
        let jg = insns.iter().find(|i| i.code() == Code::Jg_rel32_64).unwrap();
        assert_eq!(e.resume, Some(jg.next_ip() as u32));
        let cold = cold_part(&sample(), &[Op::String { string: StrId(0) }], 9).unwrap();
        assert_eq!(cold.sites.last().unwrap().target, Target::Resume(FuncId(1), 9));
    }

    #[test]
    fn nop_fill_decodes_as_nops_of_the_asked_length() {
        for len in 0..40 {
            let bytes = nop_fill(len);
            assert_eq!(bytes.len(), len);
            assert!(decode(&bytes).iter().all(|i| i.mnemonic() == iced_x86::Mnemonic::Nop));
        }
    }
}
