//! Sizes and offsets of the kernel structures the tests decode, computed by
//! gcc from the kernel's own definitions (verify/common/kernel_layouts.c),
//! so that an expectation never comes from klp's constants.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// `kernel_layouts.c`'s output: `sizeof jump_entry` -> 16, `section __ex_table` -> 12, ...
fn layouts() -> &'static HashMap<String, u64> {
    static LAYOUTS: OnceLock<HashMap<String, u64>> = OnceLock::new();
    LAYOUTS.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("verify/common/kernel_layouts.c");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel-layouts");
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join(format!("kernel_layouts-{}", std::process::id()));
        let o = Command::new("gcc").args(["-Wall", "-Werror", "-o"]).arg(&exe).arg(&src).output().expect("run gcc");
        assert!(o.status.success(), "{}: {}", src.display(), String::from_utf8_lossy(&o.stderr));
        let o = Command::new(&exe).output().expect("run kernel_layouts");
        assert!(o.status.success(), "kernel_layouts failed");
        let _ = std::fs::remove_file(&exe);
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let (key, n) = l.rsplit_once(' ').expect("`what N` line");
                (key.to_owned(), n.parse().expect("a number"))
            })
            .collect()
    })
}

fn get(key: &str) -> u64 {
    *layouts().get(key).unwrap_or_else(|| panic!("kernel_layouts.c does not print `{key}`"))
}

/// `sizeof(struct NAME)`.
pub fn size_of(name: &str) -> u64 {
    get(&format!("sizeof {name}"))
}

/// `offsetof(struct NAME, FIELD)`, as `offset_of("klp_func_ext.sympos")`.
pub fn offset_of(field: &str) -> u64 {
    get(&format!("offsetof {field}"))
}

/// The entry size of the special section `section` (the size of the
/// structure the kernel makes an array of there).
pub fn entry_size(section: &str) -> u64 {
    get(&format!("section {section}"))
}
