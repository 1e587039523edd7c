//! Exactness: for synthesized pairs with known answers, `klp diff` reports
//! exactly the changed, new, removed, line-only and refused functions (and
//! the new data) that the mutations imply, in both forms; and no branch
//! of OUT.o leaves its function without a relocation (in the merged form
//! gas resolves calls between a unit's functions itself).

mod common;

use klp::pipeline::Verdict;
use klp::synth::Request;

fn check(req: &Request) -> Result<(), String> {
    let pair = common::pair(req);
    let got = common::diff(&pair.orig, &pair.patched)?;
    let mut wrong = common::truth_mismatches(&pair, &got);
    if let Verdict::Livepatch(out) = &got.verdict {
        let stale = common::stale_branches(out)?;
        if !stale.is_empty() {
            wrong.push(format!("OUT.o branches without a relocation out of their function: {stale:?}"));
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    Err(format!("mutations {:?}: {}", pair.applied, wrong.join("; ")))
}

#[test]
fn klp_diff_reports_exactly_the_truth() {
    common::run_cases_in_both_forms(512, check);
}

/// Found by the merged form: two function-local statics in one shared
/// `.bss`, one removed with its function; `addl $N, x(%rip)` has its field
/// 5 bytes before the end of the instruction, and correlation read every
/// PC-relative reference with a bias of 4, so it saw the user of the
/// variable before `x`, could not pair `state` and reported it as new data.
#[test]
fn regression_seed_2009_merged_statics_in_one_bss() {
    let req = common::request_in_either_form(2009 - common::first_seed() as usize);
    assert!(req.layout.merged && req.seed == 2009);
    check(&req).unwrap();
}

/// Builders of the hand-built regressions below: small models whose one
/// shape is what a fuzzer or a seed found.
mod hand {
    pub use klp::synth::model::{
        CallPadding, Callee, Ending, FuncId, Function, Op, Program, Reg, TextKind, Unit, VarId, VarKind, Variable,
    };

    /// A `.text` function; names with a `.` suffix are statics (clones).
    pub fn function(id: u32, name: &str, body: Vec<Op>) -> Function {
        Function {
            id: FuncId(id),
            name: name.into(),
            global: !name.contains('.'),
            text: TextKind::Text,
            body,
            ending: Ending::Return,
            cold: None,
            pad: 0,
        }
    }

    pub fn loads(vars: &[u32]) -> Vec<Op> {
        vars.iter().map(|&v| Op::Load { var: VarId(v), offset: 0 }).collect()
    }

    /// A function-local static of `size` zero bytes.
    pub fn static_var(id: u32, name: &str, kind: VarKind, size: usize) -> Variable {
        Variable { id: VarId(id), name: name.into(), global: false, kind, bytes: vec![0; size], pointers: Vec::new() }
    }

    pub fn unit(file: &str, functions: Vec<Function>, variables: Vec<Variable>) -> Unit {
        Unit {
            file: file.into(),
            source_path: format!("drivers/synth/{file}"),
            functions,
            variables,
            strings: Vec::new(),
            constants: Vec::new(),
        }
    }

    pub fn program(units: Vec<Unit>) -> Program {
        Program { units, padding: CallPadding::None, next_id: 1000, objtool_sites: false }
    }

    /// `klp diff` of the two models, in the translation-unit form.
    pub fn diff(orig: &Program, patched: &Program) -> super::common::Outcome {
        let write = |p: &Program| klp::synth::write::write(p, Default::default()).unwrap();
        super::common::diff(&write(orig), &write(patched)).unwrap()
    }
}

/// Regression (seed 52923 with `SYNTH_SEED=50000 PROPTEST_CASES=3000`):
/// `reset.isra.0` calls `open.part.1` and both are renamed with their code
/// unchanged. The caller's checksum names the new callee, so it matched its
/// twin only after the callee was paired: correlation paired `open` and
/// reported `reset` removed and new, and its callers changed.
#[test]
fn chained_clone_renames_pair_and_change_nothing() {
    use hand::*;
    let call = |id: u32| Op::Call { callee: Callee::Func(FuncId(id)) };
    let functions = vec![
        function(1, "open.part.1", vec![Op::SetImm { reg: Reg::Eax, value: 1 }]),
        function(2, "reset.isra.0", vec![call(1)]),
        function(3, "ioctl3_write", vec![call(2)]),
    ];
    let mut orig = program(vec![unit("ioctl3.c", functions, Vec::new())]);
    orig.padding = CallPadding::PrefixSymbols;
    let mut patched = orig.clone();
    patched.units[0].functions[0].name = "open.constprop.0.part.1".into();
    patched.units[0].functions[1].name = "reset.constprop.0.isra.0".into();
    let got = diff(&orig, &patched);
    let r = &got.report;
    assert!(r.changed.is_empty() && r.new_functions.is_empty() && r.removed.is_empty(), "{r:?}");
    assert!(matches!(got.verdict, Verdict::Unchanged));
}

/// Renumbered function-local statics of one file, paired by the functions
/// using them, where another file's namesake shares their output section
/// (`ld -r` merges `.data.count.1` of both files) and is reached by an
/// `addl $1, count.1(%rip)`: the field is 5 bytes before the instruction's
/// end, not 4, and assuming 4 made the neighbour the referent (found by the
/// structured `diff` fuzzer).
#[test]
fn renumbered_statics_pair_through_their_users_real_pc_bias() {
    use hand::*;
    let bump = |var: u32| function(100 + var, &format!("show{var}"), vec![Op::Bump { var: VarId(var), delta: 1 }]);
    let count = |id: u32, name: &str| static_var(id, name, VarKind::Data, 4);
    let orig = program(vec![
        unit(
            "a.c",
            vec![bump(1), bump(2), bump(4)],
            vec![count(1, "count.1"), count(2, "count.2"), count(4, "count.3")],
        ),
        unit("b.c", vec![bump(3)], vec![count(3, "count.1")]),
    ]);
    // show4 and its static are gone, and gcc numbered a.c's two other
    // statics the other way round (unequal counts: no pairing by position).
    let mut patched = orig.clone();
    patched.units[0].functions.pop();
    patched.units[0].variables.pop();
    patched.units[0].variables[0].name = "count.2".into();
    patched.units[0].variables[1].name = "count.1".into();
    let got = diff(&orig, &patched);
    let r = &got.report;
    assert!(r.changed.is_empty() && r.new_data.is_empty() && r.removed == ["show4"], "{r:?}");
    assert!(matches!(got.verdict, Verdict::Unchanged));
}

/// Two identical statics, each the only one of its user, numbered the
/// other way round by the patched build: the name says nothing (the
/// patched `count.2` is the original `count.1`); only whole user sets do.
/// Checksums name statics without their numbers, so a wrong pairing shows
/// only where the changed user's KLP relocation names the original: a rule
/// that took "as many users" for "the same users" named `count.2`.
#[test]
fn swapped_numbers_of_identical_statics_keep_their_users_own() {
    use hand::*;
    let functions = vec![function(11, "show1", loads(&[1])), function(12, "show2", loads(&[2]))];
    let variables = vec![static_var(1, "count.1", VarKind::Bss, 4), static_var(2, "count.2", VarKind::Bss, 4)];
    let orig = program(vec![unit("dev0.c", functions, variables)]);
    let mut patched = orig.clone();
    patched.units[0].variables[0].name = "count.2".into();
    patched.units[0].variables[1].name = "count.1".into();
    patched.units[0].functions[0].body.push(Op::SetImm { reg: Reg::Eax, value: 7 });
    let got = diff(&orig, &patched);
    let r = &got.report;
    assert!(r.changed == ["show1"] && r.new_data.is_empty() && r.removed.is_empty(), "{r:?}");
    let Verdict::Livepatch(out) = &got.verdict else { panic!("{:?}", got.verdict) };
    let obj = klp::elf::ElfObject::parse(std::path::Path::new("out.o"), out).unwrap();
    let klp_syms: Vec<&str> = obj.symbols.iter().map(|s| s.name).filter(|n| n.starts_with(".klp.sym.")).collect();
    assert!(klp_syms.iter().any(|n| n.starts_with(".klp.sym.vmlinux.count.1,")), "{klp_syms:?}");
    assert!(!klp_syms.iter().any(|n| n.contains("count.2")), "{klp_syms:?}");
}

/// Statics of one name that the funnel cannot tell apart (`flags.2` and
/// `flags.4`, both 16 zero bytes) used by functions that also use the
/// file's `flags`: each shares a user with `flags`, so "the twin of a user
/// uses it" holds for two candidates; the users as a whole pair them. With
/// the variables reordered, pairing by position would have made `flags.2`
/// the changed `flags` (found by the structured `diff` fuzzer).
#[test]
fn statics_sharing_users_pair_by_their_whole_user_sets() {
    use hand::*;
    let functions = vec![
        function(11, "work11", loads(&[1, 2])),
        function(12, "work12", loads(&[1, 3])),
        function(13, "work13", loads(&[1])),
    ];
    let variables = vec![
        static_var(1, "flags", VarKind::Data, 12),
        static_var(2, "flags.2", VarKind::Bss, 16),
        static_var(3, "flags.4", VarKind::Bss, 16),
    ];
    let orig = program(vec![unit("proc0.c", functions, variables)]);
    let mut patched = orig.clone();
    patched.units[0].variables[0].bytes[0] = 1;
    patched.units[0].variables.rotate_left(1);
    let got = diff(&orig, &patched);
    let refused: Vec<&str> = got.report.refusals.iter().map(|r| r.symbol.as_str()).collect();
    assert_eq!(refused, ["flags"], "{:?}", got.report);
}

/// A static whose only user is a renamed IPA clone, next to a namesake that
/// goes away with its function: the statics pair through the clone, so the
/// clone's rename must be known before the statics are paired by their
/// users (found by the structured `diff` fuzzer: `count.4` was new data).
#[test]
fn a_static_used_by_a_renamed_clone_pairs_through_it() {
    use hand::*;
    let functions = vec![function(11, "release_2.isra.1", loads(&[1])), function(12, "show.part.0", loads(&[2]))];
    let variables = vec![static_var(1, "count.4", VarKind::Data, 4), static_var(2, "count.10", VarKind::Data, 4)];
    let orig = program(vec![unit("dev1.c", functions, variables)]);
    let mut patched = orig.clone();
    patched.units[0].functions[0].name = "release_2.constprop.0.isra.1".into();
    patched.units[0].functions.pop();
    patched.units[0].variables.pop();
    let r = diff(&orig, &patched).report;
    assert!(r.changed.is_empty() && r.new_data.is_empty() && r.removed == ["show.part.0"], "{r:?}");
}

/// Two statics used by the same one function and nothing else tells apart
/// (`count` and `count.6`, same size and contents), next to a namesake that
/// goes away with its function: unequal counts rule out pairing by
/// position, so their unchanged names decide (found by the structured
/// `diff` fuzzer: both were new data).
#[test]
fn statics_with_the_same_users_pair_by_name() {
    use hand::*;
    let functions = vec![function(11, "show11", loads(&[1, 2])), function(16, "show16", loads(&[3]))];
    let count = |id: u32, name: &str| static_var(id, name, VarKind::Data, 4);
    let orig =
        program(vec![unit("ioctl0.c", functions, vec![count(1, "count"), count(2, "count.6"), count(3, "count.9")])]);
    let mut patched = orig.clone();
    patched.units[0].functions.pop();
    patched.units[0].variables.pop();
    let r = diff(&orig, &patched).report;
    assert!(r.changed.is_empty() && r.new_data.is_empty() && r.removed == ["show16"], "{r:?}");
}

/// A file-scope static `limit` whose contents changed, beside a
/// function-local `limit.0` that went away with its only user: two
/// originals and one patched symbol of the stem, none with equal contents,
/// so no rule paired them and `limit` was reported as new data instead of
/// refused as changed data. The plain name pairs it (found by the
/// structured `diff` fuzzer).
#[test]
fn a_file_scope_static_pairs_by_its_plain_name_when_a_namesake_goes() {
    use hand::*;
    let functions = vec![function(1, "sysfs0_poll0", loads(&[2])), function(3, "sysfs0_show", Vec::new())];
    let mut limit = static_var(1, "limit", VarKind::Data, 8);
    limit.global = false;
    let orig = program(vec![unit("sysfs0.c", functions, vec![limit, static_var(2, "limit.0", VarKind::Data, 16)])]);
    let mut patched = orig.clone();
    patched.units[0].functions.remove(0);
    patched.units[0].variables.pop();
    patched.units[0].variables[0].bytes[0] = 1;
    let got = diff(&orig, &patched);
    let refused: Vec<&str> = got.report.refusals.iter().map(|r| r.symbol.as_str()).collect();
    assert_eq!(refused, ["limit"], "{:?}", got.report);
    assert!(got.report.new_data.is_empty() && got.report.removed == ["sysfs0_poll0"], "{:?}", got.report);
}

/// Two IPA clones that call each other, both renamed with their code
/// unchanged: each one's checksum names the other by its new name until
/// the other is paired, so neither paired first and both were reported
/// removed and new, their callers changed. A loose round names references
/// to unpaired clones by their stems (found by the structured `diff`
/// fuzzer).
#[test]
fn renamed_clones_calling_each_other_pair_together() {
    use hand::*;
    let call = |id: u32| Op::Call { callee: Callee::Func(FuncId(id)) };
    let functions = vec![
        function(1, "open.part.0", vec![call(2), Op::SetImm { reg: Reg::Eax, value: 1 }]),
        function(2, "open_5.part.4", vec![Op::ExitIfZero, call(1)]),
        function(3, "util0_open", vec![call(1), call(2)]),
    ];
    let orig = program(vec![unit("util0.c", functions, Vec::new())]);
    let mut patched = orig.clone();
    patched.units[0].functions[0].name = "open.constprop.0.part.0".into();
    patched.units[0].functions[1].name = "open_5.constprop.0.part.4".into();
    let got = diff(&orig, &patched);
    let r = &got.report;
    assert!(r.changed.is_empty() && r.new_functions.is_empty() && r.removed.is_empty(), "{r:?}");
    assert!(matches!(got.verdict, Verdict::Unchanged));
}

/// Plain `stats` in two files (same size, all zeros, no users to tell them
/// apart), each beside a `stats.0`, and the first file's `stats.0` went
/// away with its only user: the plain-name rule
/// found the first file's `stats` for the patched one, then refused it
/// because the other file's `stats` matched by name too; the check the
/// other way round now stays within the file, as the first does (found by
/// the structured `diff` fuzzer).
#[test]
fn a_plain_static_pairs_in_its_file_when_another_file_has_one() {
    use hand::*;
    let bss = |id: u32, name: &str| static_var(id, name, VarKind::Bss, 16);
    let cache0 = unit(
        "cache0.c",
        vec![function(1, "cache0_show", Vec::new()), function(2, "open", loads(&[2]))],
        vec![bss(1, "stats"), bss(2, "stats.0")],
    );
    let cache1 =
        unit("cache1.c", vec![function(3, "cache1_show", loads(&[4]))], vec![bss(3, "stats"), bss(4, "stats.0")]);
    let orig = program(vec![cache0, cache1]);
    let mut patched = orig.clone();
    patched.units[0].functions.remove(1);
    patched.units[0].variables.remove(1);
    let r = diff(&orig, &patched).report;
    assert!(r.changed.is_empty() && r.new_data.is_empty() && r.removed == ["open"], "{r:?}");
}
