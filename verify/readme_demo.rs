//! The README's first command works on the objects that ship with the project.

mod common;

#[test]
fn readme_demo_reports_the_new_and_changed_function() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/objects");
    let out = std::env::temp_dir().join(format!("klp-readme-demo-{}.o", std::process::id()));
    let o = common::klp(&[
        "diff",
        dir.join("pktdemo.orig.o").to_str().unwrap(),
        dir.join("pktdemo.patched.o").to_str().unwrap(),
        out.to_str().unwrap(),
        "--objname",
        "vmlinux",
    ]);
    assert!(o.status.success());
    std::fs::remove_file(&out).unwrap();
    assert_eq!(common::reported(&o.stdout, "new function"), ["pkt_csum"]);
    assert_eq!(common::reported(&o.stdout, "changed function"), ["pkt_receive"]);
}

/// The README's third thing to try: `klp synth --seed 7 ...` and then `klp
/// diff` of the pair reports exactly TRUTH.json, in both object forms. Both
/// run as the user runs them, through the binary; the truth is read from the
/// file synth wrote and the findings from diff's text lines.
#[test]
fn readme_synth_pair_diffs_to_exactly_its_truth() {
    for merged in [false, true] {
        let dir = std::env::temp_dir().join(format!("klp-readme-synth-{}-{merged}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = |n: &str| dir.join(n).to_str().unwrap().to_owned();
        let mut args = vec!["synth", "--seed", "7", "--functions", "2000", "--mutations", "5"];
        if merged {
            args.push("--merged");
        }
        let (truth, a, b, out) = (path("t.json"), path("a.o"), path("b.o"), path("out.o"));
        args.extend(["--truth", &truth, &a, &b]);
        let o = common::klp(&args);
        assert!(o.status.success(), "klp synth: {}", String::from_utf8_lossy(&o.stderr));
        let truth: serde_json::Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
        let o = common::klp(&["diff", &a, &b, &out, "--objname", "vmlinux"]);
        let refused = !truth["refused"].as_array().unwrap().is_empty();
        assert_eq!(o.status.code(), Some(if refused { 2 } else { 0 }), "{}", String::from_utf8_lossy(&o.stderr));
        let mut checked = 0;
        for (key, kind) in [
            ("changed", "changed function"),
            ("new", "new function"),
            ("removed", "removed function"),
            ("line_only", "line-only change"),
        ] {
            let mut want: Vec<String> =
                truth[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
            let mut got = common::reported(&o.stdout, kind);
            want.sort();
            got.sort();
            assert_eq!(got, want, "{kind} (merged: {merged})");
            checked += want.len();
        }
        assert!(checked > 0, "seed 7 must mutate something");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
