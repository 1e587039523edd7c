//! `Module.symvers`: which symbols vmlinux and the modules export.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Context, Error, Result};
use crate::kernel::modinfo::module_name_from_path;

/// One exported symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// `vmlinux` or a module name.
    pub module: String,
    pub namespace: Option<String>,
}

/// What `Module.symvers` says is exported.
#[derive(Debug, Default)]
pub struct Exports {
    by_name: HashMap<String, Export>,
}

impl Exports {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read", &e))?;
        Self::parse(&text).in_file(path)
    }

    /// Lines: `crc <TAB> symbol <TAB> module <TAB> export-type [<TAB> namespace]`.
    pub fn parse(text: &str) -> Result<Self> {
        let mut by_name = HashMap::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 4 || f[1].is_empty() || f[2].is_empty() {
                return Err(Error::malformed(format!(
                    "line {}: malformed (expected crc, symbol, module, export type)",
                    i + 1
                )));
            }
            let namespace = f.get(4).filter(|ns| !ns.is_empty()).map(|ns| ns.to_string());
            by_name.insert(f[1].to_owned(), Export { module: module_name_from_path(f[2]), namespace });
        }
        Ok(Exports { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Export> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symvers_paths_become_module_names() {
        let e = Exports::parse(
            "0x0\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n0x1\tkvm_x\tarch/x86/kvm/kvm-intel\tEXPORT_SYMBOL_GPL\tKVM\n",
        )
        .unwrap();
        assert_eq!(e.get("printk").unwrap().module, "vmlinux");
        let k = e.get("kvm_x").unwrap();
        assert_eq!((k.module.as_str(), k.namespace.as_deref()), ("kvm_intel", Some("KVM")));
        assert!(Exports::parse("0x0\tonly-two\n").is_err());
    }
}
