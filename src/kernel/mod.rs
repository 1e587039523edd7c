//! The kernel's formats: the livepatch ABI ([`abi`]), `.config`
//! ([`config`]), special sections
//! (`special`), `Module.symvers` ([`symvers`]), symbol positions as
//! kallsyms counts them ([`kallsyms`]), module names and `.modinfo`
//! (`modinfo`).

pub mod abi;
pub mod config;
pub mod kallsyms;
pub(crate) mod modinfo;
pub(crate) mod special;
pub mod symvers;

pub use special::EntrySizes;
