//! klp: build Linux kernel livepatch objects.
//!
//! The library is the pipeline, one stage per module:
//! [`elf`] (read) -> [`checksum`] -> [`correlate`] -> [`classify`],
//! with [`special`] describing the kernel's special sections and
//! [`diff`] running the stages in order.

pub mod checksum;
pub mod classify;
pub mod correlate;
pub mod diff;
pub mod elf;
pub mod extract;
pub mod klp;
pub mod special;
pub mod write;
