//! The README's first command works on the objects that ship with the project.

mod common;

#[test]
fn readme_demo_reports_the_new_and_changed_function() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/objects");
    let o = common::klp(&[
        "diff",
        dir.join("pktdemo.orig.o").to_str().unwrap(),
        dir.join("pktdemo.patched.o").to_str().unwrap(),
        std::env::temp_dir().join("klp-readme-demo.o").to_str().unwrap(),
        "--objname",
        "vmlinux",
    ]);
    assert!(o.status.success());
    assert_eq!(common::reported(&o.stdout, "new function"), ["pkt_csum"]);
    assert_eq!(common::reported(&o.stdout, "changed function"), ["pkt_receive"]);
}
