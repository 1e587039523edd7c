//! Module names and `.modinfo` records.

use crate::kernel::abi::MAX_OBJNAME_LEN;

/// Module names as the kernel knows them: `vmlinux.o` -> `vmlinux`,
/// `fs/xfs/xfs.o` -> `xfs`, `arch/x86/kvm/kvm-intel` -> `kvm_intel`.
pub fn module_name_from_path(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split('.').next().unwrap_or(base);
    stem.replace('-', "_")
}

/// A module name given on the command line, sanitised the way klp-build
/// does: anything but letters, digits, `_` and `-` becomes `-`, at most
/// `MODULE_NAME_LEN - 1` bytes.
pub fn sanitised_module_name(name: &str) -> String {
    let mut n: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' }).collect();
    n.truncate(MAX_OBJNAME_LEN);
    n
}

/// The NUL-separated `key=value` records of a `.modinfo` section.
pub fn records(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == 0).filter(|r| !r.is_empty())
}

/// The value of the first `key=` record.
pub fn value<'d>(data: &'d [u8], key: &str) -> Option<&'d [u8]> {
    records(data).find_map(|r| r.strip_prefix(key.as_bytes())?.strip_prefix(b"="))
}

/// Every value of `key=` records.
pub fn values<'d>(data: &'d [u8], key: &'d str) -> impl Iterator<Item = &'d [u8]> {
    records(data).filter_map(move |r| r.strip_prefix(key.as_bytes())?.strip_prefix(b"="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names() {
        assert_eq!(module_name_from_path("fs/xfs/xfs.o"), "xfs");
        assert_eq!(module_name_from_path("arch/x86/kvm/kvm-intel"), "kvm_intel");
        assert_eq!(module_name_from_path("vmlinux.o"), "vmlinux");
        assert_eq!(sanitised_module_name("livepatch-fix cmdline/v2"), "livepatch-fix-cmdline-v2");
        assert_eq!(sanitised_module_name(&"x".repeat(80)).len(), MAX_OBJNAME_LEN);
    }

    #[test]
    fn records_and_values() {
        let data = b"license=GPL\0name=xfs\0\0import_ns=A\0import_ns=B\0";
        assert_eq!(value(data, "name"), Some(&b"xfs"[..]));
        assert_eq!(value(data, "nam"), None);
        assert_eq!(values(data, "import_ns").collect::<Vec<_>>(), [&b"A"[..], &b"B"[..]]);
    }
}
