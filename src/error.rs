//! One error type for the whole library: what kind of failure it is, and
//! where in which file. A fuzzer can then tell a rejected input
//! ([`ErrorKind::Malformed`]) from a bug, and every message names its place.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input breaks the ELF format or the kernel's conventions.
    Malformed,
    /// Valid input klp does not handle (another architecture, a 32-bit
    /// object, an LLVM bitcode file).
    Unsupported,
    /// A change that cannot be live patched (changed `__init` code,
    /// changed initialised data, ...): `klp diff` exits 2.
    Unpatchable,
    /// Reading or writing a file failed.
    Io,
    /// An external tool (kbuild, gcc, ld) failed.
    Tool,
    /// The arguments do not fit together.
    Usage,
    /// SIGINT or SIGTERM stopped the work (`klp build` exits 130).
    Interrupted,
}

/// Where an error is: file, section, symbol and offset, as far as known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub file: Option<PathBuf>,
    pub section: Option<String>,
    pub symbol: Option<String>,
    pub offset: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub location: Location,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, location: Location::default(), message: message.into() }
    }
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Malformed, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    pub fn unpatchable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unpatchable, message)
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }
    pub fn tool(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Tool, message)
    }
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Interrupted, message)
    }
    pub fn io(path: &Path, what: &str, e: &std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{what}: {e}")).in_file(path)
    }

    /// The file, unless a more precise one is already known.
    pub fn in_file(mut self, path: &Path) -> Self {
        self.location.file.get_or_insert_with(|| path.to_owned());
        self
    }
    pub fn in_section(mut self, name: &str) -> Self {
        self.location.section.get_or_insert_with(|| name.to_owned());
        self
    }
    pub fn at_symbol(mut self, name: &str) -> Self {
        self.location.symbol.get_or_insert_with(|| name.to_owned());
        self
    }
    pub fn at_offset(mut self, offset: u64) -> Self {
        self.location.offset.get_or_insert(offset);
        self
    }
}

/// Names come from the input: a newline or escape in one must not split or
/// garble the one-line message.
pub fn escaped(name: &str) -> String {
    if name.chars().all(|c| !c.is_control()) {
        return name.to_owned();
    }
    name.chars().flat_map(char::escape_debug).collect()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.location;
        if let Some(file) = &l.file {
            write!(f, "{}: ", escaped(&file.display().to_string()))?;
        }
        match (&l.section, l.offset) {
            (Some(s), Some(o)) => write!(f, "{}+{o:#x}: ", escaped(s))?,
            (Some(s), None) => write!(f, "{}: ", escaped(s))?,
            (None, Some(o)) => write!(f, "offset {o:#x}: ")?,
            (None, None) => {}
        }
        if let Some(s) = &l.symbol {
            write!(f, "symbol {}: ", escaped(s))?;
        }
        f.write_str(&escaped(&self.message))
    }
}

impl std::error::Error for Error {}

/// Attach context to results of lower layers.
pub trait Context<T> {
    fn in_file(self, path: &Path) -> Result<T>;
    fn in_section(self, name: &str) -> Result<T>;
}

impl<T> Context<T> for Result<T> {
    fn in_file(self, path: &Path) -> Result<T> {
        self.map_err(|e| e.in_file(path))
    }
    fn in_section(self, name: &str) -> Result<T> {
        self.map_err(|e| e.in_section(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_its_place() {
        let e = Error::malformed("relocation past the end")
            .in_section(".text.f\nx")
            .at_offset(0x10)
            .in_file(Path::new("a.o"));
        assert_eq!(e.to_string(), "a.o: .text.f\\nx+0x10: relocation past the end");
        assert_eq!(Error::usage("x").at_symbol("f").to_string(), "symbol f: x");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn the_first_file_named_stays() {
        let e = Error::malformed("m").in_file(Path::new("inner.o")).in_file(Path::new("outer.o"));
        assert_eq!(e.location.file.as_deref(), Some(Path::new("inner.o")));
    }
}
