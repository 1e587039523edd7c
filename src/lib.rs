//! klp: build Linux kernel livepatch objects.
//!
//! The library is the pipeline, one stage per module:
//! [`elf`] (read, write) -> [`diff`] (checksum, correlate, classify) ->
//! [`extract`] -> [`elf::write`], with [`kernel`] describing the kernel's
//! formats (livepatch ABI, special sections, `Module.symvers`, kallsyms,
//! `.modinfo`) and [`module`] what happens to a linked livepatch module
//! (post-link, check, the loader oracle, the kbuild step).

pub mod build;
pub mod diff;
pub mod elf;
pub mod error;
pub mod extract;
pub mod kernel;
pub mod module;
pub mod pipeline;
pub mod synth;
pub(crate) mod x86;
