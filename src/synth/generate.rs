//! A program model from a stream of choices: units with global and static
//! functions (static names repeating across units), IPA clones, `__init`
//! functions, `.cold` parts, globals, statics and function-local statics,
//! string literals, calls within and across units and to the kernel.

use super::entropy::Entropy;
use super::model::{
    CallPadding, Callee, ConstId, Constant, Ending, FuncId, Function, Key, Op, Program, Reg, Replacement, StrId,
    TextKind, Unit, VarId, VarKind, Variable,
};

/// Names every driver has a static of: they repeat across units.
const STATIC_NAMES: &[&str] = &[
    "show",
    "store",
    "probe",
    "release",
    "handle",
    "setup",
    "reset",
    "poll",
    "update",
    "validate",
    "get_state",
    "put_ref",
    "do_work",
    "cleanup",
    "open",
    "read",
    "write",
    "flush",
];
const STEMS: &[&str] = &["core", "dev", "sysfs", "proc", "irq", "ioctl", "queue", "cache", "util", "main", "pm"];
const NOUNS: &[&str] = &["count", "state", "lock", "table", "buf", "stats", "flags", "limit", "mask"];
const CLONE_KINDS: &[&str] = &["isra", "constprop", "part"];
/// Undefined kernel functions the code calls.
const EXTERNS: &[&str] =
    &["kfree", "kmalloc", "mutex_lock", "mutex_unlock", "schedule", "msleep", "memset", "strlen", "capable"];
const WORDS: &[&str] = &["failed", "ready", "timeout", "busy", "reset", "bad state", "retry", "done"];

/// Build a program of about `functions` functions.
pub fn program(e: &mut Entropy, functions: usize) -> Program {
    let functions = functions.max(1);
    let units = (functions / 24).max(1) + e.below(3) as usize;
    let padding = *e.pick(&[CallPadding::None, CallPadding::Entries, CallPadding::PrefixSymbols]);
    let mut p = Program { units: Vec::with_capacity(units), padding, next_id: 0, objtool_sites: false };
    for u in 0..units {
        let share = functions / units + usize::from(u < functions % units);
        let unit = unit_skeleton(e, &mut p, u, share.max(1));
        p.units.push(unit);
    }
    for u in 0..p.units.len() {
        for i in 0..p.units[u].functions.len() {
            fill_function(e, &mut p, u, i);
        }
    }
    // Drawn last, so that a seed keeps the rest of its program.
    p.objtool_sites = e.percent(50);
    for u in 0..p.units.len() {
        for i in 0..p.units[u].functions.len() {
            if e.percent(SPECIAL_PERCENT) {
                let op = special_op(e, &mut p, u);
                let body = &mut p.units[u].functions[i].body;
                let at = e.below(body.len() as u64 + 1) as usize;
                body.insert(at, op);
            }
        }
    }
    header_helpers(e, &mut p);
    p
}

/// `static inline` helpers of a header that gcc emitted out of line: the
/// same name and the same code in every unit that includes the header.
const HEADER_HELPERS: &[&str] = &["kref_read_helper", "list_empty_careful", "irqs_disabled_flags", "get_order_of"];

/// Copies of header helpers in two or more units, each used only inside its
/// unit: called by a function of the unit, or stored in the unit's own
/// `<helper>_ops` table (`static const struct ops x_ops = { .fn = x }`,
/// itself the same in every unit). Nothing but FILE symbols tells such
/// copies apart when no user's call does (kernel headers are full of them).
fn header_helpers(e: &mut Entropy, p: &mut Program) {
    if p.units.len() < 2 {
        return;
    }
    for name in &HEADER_HELPERS[..e.below(HEADER_HELPERS.len() as u64 + 1) as usize] {
        let body: Vec<Op> = (0..e.range(1, 3)).map(|_| helper_op(e)).collect();
        let ending = match e.percent(30) {
            true => Ending::TailCall(Callee::Extern((*e.pick(EXTERNS)).into())),
            false => Ending::Return,
        };
        let copies = e.range(2, p.units.len().min(6) as u64) as usize;
        let first = e.below(p.units.len() as u64) as usize;
        let by_table = e.percent(40);
        for k in 0..copies {
            let u = (first + k) % p.units.len();
            let id = FuncId(p.fresh_id());
            let helper = Function {
                id,
                name: (*name).into(),
                global: false,
                text: TextKind::Text,
                body: body.clone(),
                ending: ending.clone(),
                cold: None,
                pad: 0,
            };
            p.units[u].functions.push(helper);
            use_helper(e, p, u, id, name, by_table);
        }
    }
}

/// Whether `name` is one of the `static inline` header helpers (copies in several units).
pub fn is_header_helper(name: &str) -> bool {
    HEADER_HELPERS.contains(&name)
}

/// What a helper does: nothing that names its unit.
fn helper_op(e: &mut Entropy) -> Op {
    match e.below(4) {
        0 => Op::SetImm { reg: Reg::Eax, value: e.u32() },
        1 => Op::Scale { dst: Reg::Eax, src: Reg::Edi, factor: e.range(2, 100) as i8 },
        2 => Op::ExitIfZero,
        _ => Op::Call { callee: Callee::Extern((*e.pick(EXTERNS)).into()) },
    }
}

/// A user for helper `id` in unit `u`: a call from one of the unit's other
/// `.text` functions, or (`by_table`, or when there is none) its ops table.
fn use_helper(e: &mut Entropy, p: &mut Program, u: usize, id: FuncId, name: &str, by_table: bool) {
    let callers: Vec<usize> = (0..p.units[u].functions.len())
        .filter(|&i| p.units[u].functions[i].id != id && p.units[u].functions[i].text == TextKind::Text)
        .filter(|&i| !is_header_helper(&p.units[u].functions[i].name))
        .collect();
    if by_table || callers.is_empty() {
        let table = Variable {
            id: VarId(p.fresh_id()),
            name: format!("{name}_ops"),
            global: false,
            kind: VarKind::ReadOnly,
            bytes: vec![0; 16],
            pointers: vec![(8, id)],
        };
        p.units[u].variables.push(table);
        return;
    }
    let body = &mut p.units[u].functions[*e.pick(&callers)].body;
    let at = e.below(body.len() as u64 + 1) as usize;
    body.insert(at, Op::Call { callee: Callee::Func(id) });
}

/// Functions with a special site (jump label, fixup, alternative...).
const SPECIAL_PERCENT: u64 = 25;
/// Static keys and static calls the kernel defines elsewhere.
const EXTERN_KEYS: &[&str] = &["sched_smt_present", "init_on_alloc", "__tracepoint_sched_switch"];
const STATIC_CALLS: &[&str] = &["x86_pmu_read", "pv_sched_clock", "apic_call_write"];
const REPLACED_CALLS: &[&str] = &["entry_ibpb", "clear_bhb_loop"];

/// One operation with a special-section entry, for a function of unit `u`.
pub fn special_op(e: &mut Entropy, p: &mut Program, u: usize) -> Op {
    match e.below(7) {
        0 => Op::LoadConstant { constant: constant(e, p, u) },
        1 => Op::JumpLabel { key: key(e, p, u), likely: e.percent(50) },
        2 => Op::UserLoad { fixup_type: e.range(1, 3) as u8 },
        3 => {
            let replacement = match e.percent(50) {
                true => Replacement::Lfence,
                false => Replacement::CallExtern(e.pick::<&str>(REPLACED_CALLS)),
            };
            Op::Alternative { feature: e.range(0, 20 * 32) as u16, replacement }
        }
        4 => Op::CpuHas { bit: e.range(0, 20 * 32) as u16 },
        5 => Op::Warn { line: e.range(20, 3000) as u16 },
        _ => Op::StaticCall { name: (*e.pick(STATIC_CALLS)).into() },
    }
}

/// A constant of unit `u`: an existing one or a new one.
pub fn constant(e: &mut Entropy, p: &mut Program, u: usize) -> ConstId {
    let pool = &mut p.units[u].constants;
    if !pool.is_empty() && e.percent(30) {
        return ConstId(e.below(pool.len() as u64) as u32);
    }
    let size = *e.pick(&[8u8, 16]);
    let value = u128::from(e.u32()) << 32 | u128::from(e.u32()) | u128::from(size == 16) << 100;
    pool.push(Constant { size, value });
    ConstId(pool.len() as u32 - 1)
}

/// A jump label's key: a `struct static_key` of the unit (made on first
/// use) or one the kernel has elsewhere.
fn key(e: &mut Entropy, p: &mut Program, u: usize) -> Key {
    if e.percent(50) {
        return Key::Extern((*e.pick(EXTERN_KEYS)).into());
    }
    let prefix = p.units[u].file.trim_end_matches(".c").to_owned();
    let name = format!("{prefix}_key");
    if let Some(v) = p.units[u].variables.iter().find(|v| v.name == name) {
        return Key::Var(v.id);
    }
    let id = VarId(p.fresh_id());
    let global = e.percent(50);
    let v = Variable { id, name, global, kind: VarKind::Data, bytes: vec![0; 16], pointers: Vec::new() };
    p.units[u].variables.push(v);
    Key::Var(id)
}

/// A unit's file name, variables and function names, bodies still empty.
fn unit_skeleton(e: &mut Entropy, p: &mut Program, u: usize, functions: usize) -> Unit {
    let stem = e.pick(STEMS);
    let file = format!("{stem}{u}.c");
    let mut unit = Unit {
        source_path: format!("drivers/synth/{file}"),
        file,
        functions: Vec::with_capacity(functions),
        variables: Vec::new(),
        strings: Vec::new(),
        constants: Vec::new(),
    };
    let prefix = format!("{stem}{u}");
    for i in 0..e.range(1, 4) {
        let global = e.percent(50);
        let name =
            if global { format!("{prefix}_{}{i}", *e.pick(NOUNS)) } else { free_name(&unit, e.pick::<&str>(NOUNS)) };
        let v = variable(e, p, name, global);
        unit.variables.push(v);
    }
    let mut clones = 0;
    for i in 0..functions {
        let f = function_skeleton(e, p, &unit, &prefix, i, &mut clones);
        unit.functions.push(f);
    }
    unit
}

fn variable(e: &mut Entropy, p: &mut Program, name: String, global: bool) -> Variable {
    let kind = *e.pick(&[VarKind::Data, VarKind::ReadOnly, VarKind::Bss]);
    let len = 4 * e.range(1, 4) as usize;
    let bytes = match kind {
        VarKind::Bss => vec![0; len],
        _ => (0..len).map(|_| e.below(256) as u8).collect(),
    };
    Variable { id: VarId(p.fresh_id()), name, global, kind, bytes, pointers: Vec::new() }
}

/// `base`, or `base_2`, `base_3`...: a name no function or variable of the unit has.
fn free_name(unit: &Unit, base: &str) -> String {
    // An IPA clone `show.isra.0` takes `show` too: gcc clones one function per name.
    let stem = |n: &str| n.split('.').next().unwrap_or_default().to_owned();
    let taken = |n: &str| {
        unit.functions.iter().any(|f| stem(&f.name) == n) || unit.variables.iter().any(|v| stem(&v.name) == n)
    };
    let mut name = base.to_owned();
    let mut k = 1;
    while taken(&name) {
        k += 1;
        name = format!("{base}_{k}");
    }
    name
}

fn function_skeleton(
    e: &mut Entropy,
    p: &mut Program,
    unit: &Unit,
    prefix: &str,
    i: usize,
    clones: &mut u32,
) -> Function {
    let roll = e.below(100);
    let (name, global, text) = match roll {
        0..40 => (format!("{prefix}_{}{i}", *e.pick(STATIC_NAMES)), true, TextKind::Text),
        40..85 => (free_name(unit, e.pick::<&str>(STATIC_NAMES)), false, TextKind::Text),
        85..94 => {
            *clones += 1;
            let base = free_name(unit, e.pick::<&str>(STATIC_NAMES));
            (format!("{base}.{}.{}", e.pick(CLONE_KINDS), *clones - 1), false, TextKind::Text)
        }
        _ => (format!("{prefix}_init{i}"), e.percent(30), TextKind::Init),
    };
    Function {
        id: FuncId(p.fresh_id()),
        name,
        global,
        text,
        body: Vec::new(),
        ending: Ending::Return,
        cold: None,
        pad: 0,
    }
}

/// Give function `i` of unit `u` a body: a handful of operations, maybe a
/// local static, an early exit, a `.cold` part and a tail call.
fn fill_function(e: &mut Entropy, p: &mut Program, u: usize, i: usize) {
    let me = p.units[u].functions[i].id;
    let is_init = p.units[u].functions[i].text == TextKind::Init;
    let mut body = Vec::new();
    if e.percent(20) {
        let noun = *e.pick(NOUNS);
        let v = local_static(e, p, u, noun);
        body.push(Op::Bump { var: v, delta: e.range(1, 9) as i8 });
    }
    for _ in 0..e.range(2, 7) {
        body.push(random_op(e, p, u, me, is_init));
    }
    if e.percent(30) {
        let at = e.below(body.len() as u64 + 1) as usize;
        body.insert(at, Op::ExitIfZero);
    }
    if e.percent(15) {
        body.push(Op::MightSleep { line: e.range(20, 3000) as u32 });
    }
    let cold = (!is_init && e.percent(15)).then(|| {
        body.push(Op::Unlikely { limit: e.range(8, 120) as i8 });
        let s = string(e, p, u, me);
        vec![Op::String { string: s }, Op::Call { callee: Callee::Extern("_printk".into()) }]
    });
    let ending = match callee(e, p, u, me, is_init) {
        Some(c) if e.percent(20) => Ending::TailCall(c),
        _ => Ending::Return,
    };
    let f = &mut p.units[u].functions[i];
    f.body = body;
    f.cold = cold;
    f.ending = ending;
}

/// A function-local static `<noun>.<N>`, numbered per unit as gcc does.
pub fn local_static(e: &mut Entropy, p: &mut Program, u: usize, noun: &str) -> VarId {
    let n = p.units[u].variables.iter().filter(|v| v.name.contains('.')).count();
    let mut v = variable(e, p, format!("{noun}.{n}"), false);
    if v.kind == VarKind::ReadOnly {
        // The function writes it.
        v.kind = VarKind::Data;
    }
    let id = v.id;
    p.units[u].variables.push(v);
    id
}

fn random_op(e: &mut Entropy, p: &mut Program, u: usize, me: FuncId, is_init: bool) -> Op {
    let regs = [Reg::Eax, Reg::Ecx, Reg::Edi, Reg::R8d];
    match e.below(10) {
        0 => Op::SetImm { reg: *e.pick(&regs), value: e.u32() },
        1 => Op::Scale { dst: Reg::Eax, src: *e.pick(&[Reg::Ebx, Reg::Eax]), factor: e.range(2, 100) as i8 },
        2..=4 => {
            let (var, kind) = visible_variable(e, p, u);
            let writable = kind != VarKind::ReadOnly;
            match e.below(4) {
                1 if writable => Op::Store { var, offset: 0 },
                2 if writable => Op::Bump { var, delta: e.range(1, 9) as i8 },
                3 => Op::AddressOf { var },
                _ => Op::Load { var, offset: 0 },
            }
        }
        5..=6 => Op::String { string: string(e, p, u, me) },
        _ => match callee(e, p, u, me, is_init) {
            Some(callee) => Op::Call { callee },
            None => Op::SetImm { reg: Reg::Eax, value: e.u32() },
        },
    }
}

/// A variable unit `u` can name: its own file-scope ones or another unit's
/// globals; with its kind, which a lookup by id would find only by a scan
/// of every unit (quadratic at hundreds of thousands of functions).
fn visible_variable(e: &mut Entropy, p: &Program, u: usize) -> (VarId, VarKind) {
    let other = &p.units[e.below(p.units.len() as u64) as usize];
    let globals: Vec<_> = other.variables.iter().filter(|v| v.global).map(|v| (v.id, v.kind)).collect();
    let own: Vec<_> = p.units[u].variables.iter().filter(|v| !v.name.contains('.')).map(|v| (v.id, v.kind)).collect();
    if !globals.is_empty() && (own.is_empty() || e.percent(30)) {
        return *e.pick(&globals);
    }
    *e.pick(&own)
}

/// Someone to call: a function of the unit, another unit's global, or the
/// kernel. Nothing calls `__init` code but `__init` code; nothing calls itself.
fn callee(e: &mut Entropy, p: &Program, u: usize, me: FuncId, is_init: bool) -> Option<Callee> {
    if e.percent(35) {
        return Some(Callee::Extern((*e.pick(EXTERNS)).into()));
    }
    let unit = if e.percent(60) { u } else { e.below(p.units.len() as u64) as usize };
    let ok = |f: &&Function| f.id != me && (f.text == TextKind::Text || is_init);
    let local = unit == u;
    let candidates: Vec<FuncId> =
        p.units[unit].functions.iter().filter(ok).filter(|f| local || f.global).map(|f| f.id).collect();
    (!candidates.is_empty()).then(|| Callee::Func(*e.pick(&candidates)))
}

/// A string literal for function `me`: an existing one of the unit, or a new one.
fn string(e: &mut Entropy, p: &mut Program, u: usize, me: FuncId) -> StrId {
    let strings = &mut p.units[u].strings;
    if !strings.is_empty() && e.percent(25) {
        return StrId(e.below(strings.len() as u64) as u32);
    }
    let text = format!("f{}: {} %d\n", me.0, e.pick(WORDS));
    match strings.iter().position(|s| *s == text) {
        Some(i) => StrId(i as u32),
        None => {
            strings.push(text);
            StrId(strings.len() as u32 - 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_program_and_names_are_unique_where_c_needs_them() {
        let a = program(&mut Entropy::from_seed(3), 200);
        let b = program(&mut Entropy::from_seed(3), 200);
        assert_eq!(format!("{:?}", a.units), format!("{:?}", b.units));
        let mut globals = std::collections::HashSet::new();
        for unit in &a.units {
            let mut locals = std::collections::HashSet::new();
            for f in &unit.functions {
                let set = if f.global { &mut globals } else { &mut locals };
                assert!(set.insert(f.name.clone()), "{} twice", f.name);
            }
        }
        assert!(a.functions().count() >= 200);
    }

    #[test]
    fn header_helpers_are_identical_copies_each_used_in_its_unit() {
        let mut seen = 0;
        for seed in 0..20 {
            let p = program(&mut Entropy::from_seed(seed), 120);
            for name in HEADER_HELPERS {
                let copies: Vec<(usize, &Function)> = p.functions().filter(|(_, f)| f.name == *name).collect();
                if copies.is_empty() {
                    continue;
                }
                seen += 1;
                assert!(copies.len() >= 2, "seed {seed}: one copy of {name}");
                for &(u, f) in &copies {
                    assert_eq!((&f.body, &f.ending), (&copies[0].1.body, &copies[0].1.ending), "seed {seed}");
                    let called = p.units[u].functions.iter().any(|g| g.calls(f.id));
                    let tabled = p.units[u].variables.iter().any(|v| v.pointers.iter().any(|x| x.1 == f.id));
                    assert!(called || tabled, "seed {seed}: the copy of {name} in unit {u} has no user");
                }
            }
        }
        assert!(seen >= 10, "only {seen} helpers in 20 programs");
    }

    #[test]
    fn no_text_function_calls_init_code() {
        let p = program(&mut Entropy::from_seed(11), 400);
        for (_, f) in p.functions().filter(|(_, f)| f.text == TextKind::Text) {
            for (_, g) in p.functions().filter(|(_, g)| g.text == TextKind::Init) {
                assert!(!f.calls(g.id), "{} calls __init {}", f.name, g.name);
            }
        }
    }
}
