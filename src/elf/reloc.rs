//! x86-64 relocations: the kinds the kernel uses, how many bytes each
//! writes, and which are relative to the place they patch. Raw values, as
//! the `object` crate wraps them in a newtype that cannot be matched on.

use object::elf;

pub const NONE: u32 = elf::R_X86_64_NONE.0;
pub const R64: u32 = elf::R_X86_64_64.0;
pub const PC32: u32 = elf::R_X86_64_PC32.0;
pub const GOTPCREL: u32 = elf::R_X86_64_GOTPCREL.0;
pub const PLT32: u32 = elf::R_X86_64_PLT32.0;
pub const R32: u32 = elf::R_X86_64_32.0;
pub const R32S: u32 = elf::R_X86_64_32S.0;
pub const R16: u32 = elf::R_X86_64_16.0;
pub const PC16: u32 = elf::R_X86_64_PC16.0;
pub const R8: u32 = elf::R_X86_64_8.0;
pub const PC8: u32 = elf::R_X86_64_PC8.0;
pub const PC64: u32 = elf::R_X86_64_PC64.0;
pub const GOTOFF64: u32 = elf::R_X86_64_GOTOFF64.0;
pub const GOTPC64: u32 = elf::R_X86_64_GOTPC64.0;
pub const SIZE64: u32 = elf::R_X86_64_SIZE64.0;
pub const GOTPCRELX: u32 = elf::R_X86_64_GOTPCRELX.0;
pub const REX_GOTPCRELX: u32 = elf::R_X86_64_REX_GOTPCRELX.0;

/// Relocations whose value is relative to the place they patch.
pub fn is_pc_relative(r_type: u32) -> bool {
    matches!(r_type, PC32 | PLT32 | GOTPCREL | GOTPCRELX | REX_GOTPCRELX | PC64)
}

/// Bytes a relocation of this type writes.
pub fn width(r_type: u32) -> usize {
    match r_type {
        NONE => 0,
        R64 | PC64 | GOTOFF64 | GOTPC64 | SIZE64 => 8,
        R16 | PC16 => 2,
        R8 | PC8 => 1,
        _ => 4,
    }
}

/// Relocation types that mean the same reference: a `PLT32` call and a
/// `PC32` one reach the same function in the kernel (GCC picks one or the
/// other depending on the callee's binding).
pub fn class(r_type: u32) -> u32 {
    if r_type == PLT32 { PC32 } else { r_type }
}

/// The name readelf prints for a type.
pub fn name(r_type: u32) -> String {
    match r_type {
        NONE => "R_X86_64_NONE".into(),
        R64 => "R_X86_64_64".into(),
        PC32 => "R_X86_64_PC32".into(),
        PLT32 => "R_X86_64_PLT32".into(),
        R32 => "R_X86_64_32".into(),
        R32S => "R_X86_64_32S".into(),
        PC64 => "R_X86_64_PC64".into(),
        GOTPCRELX => "R_X86_64_GOTPCRELX".into(),
        REX_GOTPCRELX => "R_X86_64_REX_GOTPCRELX".into(),
        t => format!("R_X86_64_{t}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_the_psabi() {
        assert_eq!((width(R64), width(PC32), width(PLT32), width(R32S), width(NONE)), (8, 4, 4, 4, 0));
        assert!(is_pc_relative(PLT32) && is_pc_relative(PC32) && !is_pc_relative(R32S) && !is_pc_relative(R64));
        assert_eq!(class(PLT32), PC32);
    }
}
