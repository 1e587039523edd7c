//! The ELF layer, in the spirit of the `object` crate's split: `read`
//! (relocatable objects, zero-copy over a mapping or a slice), [`write`](mod@write)
//! (an object builder and its serialiser) and x86-64 relocations
//! ([`reloc`]).

pub(crate) mod edit;
pub(crate) mod linked;
pub(crate) mod names;
mod read;
pub mod reloc;
mod spans;
pub mod write;

pub use read::*;
pub use spans::SymbolCursor;

/// `SHN_LIVEPATCH`: the section index of symbols the livepatch core resolves.
pub const SHN_LIVEPATCH: u16 = 0xff20;
/// `SHF_RELA_LIVEPATCH`: flag of relocation sections applied by the livepatch core.
pub const SHF_RELA_LIVEPATCH: u64 = 0x0010_0000;

/// Ask the CPU to start loading `value`'s cache line: a hint, which
/// changes no result.
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only loads a cache line, of memory that `value`
    // makes valid; x86-64 always has SSE.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((value as *const T).cast());
    }
}
