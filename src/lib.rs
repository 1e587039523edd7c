//! klp: build Linux kernel livepatch objects.
//!
//! The library is the pipeline, one stage per module:
//! [`elf`] (read) -> [`checksum`] -> [`correlate`] -> [`classify`] ->
//! [`extract`] -> [`write`], with [`special`] describing the kernel's
//! special sections, [`klp`] the livepatch formats, and [`diff`] running
//! the analysis stages in order.

pub mod check;
pub mod checksum;
pub mod classify;
pub mod correlate;
pub mod diff;
pub mod elf;
pub mod extract;
pub mod klp;
pub mod kmod;
#[path = "../verify/oracle.rs"]
pub mod oracle;
pub mod postlink;
pub mod snippet;
pub mod special;
pub mod write;
