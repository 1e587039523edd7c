//! A kernel's `.config`: `CONFIG_X=value` lines, `# CONFIG_X is not set`
//! comments. Read once, asked by name.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    values: BTreeMap<String, String>,
}

impl KernelConfig {
    /// Read `path` (a tree's `.config`); errors name the file and line.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::io(path, "cannot read the kernel configuration (is this a configured kernel tree?)", &e)
        })?;
        Self::parse(&text).map_err(|e| e.in_file(path))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let mut values = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=').filter(|(k, _)| k.starts_with("CONFIG_")) else {
                return Err(Error::malformed(format!("line {}: not a CONFIG_ option: {line:?}", n + 1)));
            };
            values.insert(key.to_owned(), value.to_owned());
        }
        Ok(KernelConfig { values })
    }

    /// The raw value (`y`, `m`, `120200`, `"text"`), if the option is set.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// `CONFIG_X=y`.
    pub fn enabled(&self, key: &str) -> bool {
        self.value(key) == Some("y")
    }

    /// A string option without its quotes.
    pub fn string(&self, key: &str) -> Option<&str> {
        self.value(key)?.strip_prefix('"')?.strip_suffix('"')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_strings_and_unset_comments() {
        let c = KernelConfig::parse(
            "#\n# Automatically generated file; DO NOT EDIT.\nCONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14) 12.2.0\"\nCONFIG_GCC_VERSION=120200\nCONFIG_LIVEPATCH=y\nCONFIG_EXT4_FS=m\n# CONFIG_KASAN is not set\n\n",
        )
        .unwrap();
        assert!(c.enabled("CONFIG_LIVEPATCH") && !c.enabled("CONFIG_EXT4_FS") && !c.enabled("CONFIG_KASAN"));
        assert_eq!(c.value("CONFIG_EXT4_FS"), Some("m"));
        assert_eq!(c.value("CONFIG_GCC_VERSION"), Some("120200"));
        assert_eq!(c.string("CONFIG_CC_VERSION_TEXT"), Some("gcc (Debian 12.2.0-14) 12.2.0"));
        assert_eq!(c.string("CONFIG_GCC_VERSION"), None);
        assert_eq!(c.value("CONFIG_KASAN"), None);
    }

    #[test]
    fn a_line_that_is_no_option_is_an_error_naming_it() {
        let e = KernelConfig::parse("CONFIG_A=y\nhello\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("hello"), "{e}");
    }
}
