//! A linked livepatch module: building it with kbuild ([`kbuild`]) and the
//! kernel's own compiler ([`toolchain`]),
//! converting its KLP relocations ([`postlink`]), checking it against the
//! kernel's rules ([`check`]) and relocating it as the loader would
//! ([`oracle`]).

pub mod check;
pub mod kbuild;
pub mod oracle;
pub mod postlink;
pub mod toolchain;
