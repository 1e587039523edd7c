//! Mutations with a known answer. Each picks its subjects among functions
//! no earlier mutation of the pair touched (so that answers compose), edits
//! the patched model, and records its effects for [`super::truth`].

use std::collections::{HashMap, HashSet};

use super::entropy::Entropy;
use super::generate::is_header_helper;
use super::model::{
    Callee, ConstId, Constant, Ending, FuncId, Function, Key, Op, Program, Reg, Replacement, StrId, TextKind, VarId,
    VarKind, Variable,
};
use super::truth::Effect;

/// The kinds of mutation, each with the answer it implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// An immediate of f: f changed.
    Immediate,
    /// A string literal f uses: f changed.
    String,
    /// The target of one of f's calls: f changed.
    CallTarget,
    /// Only f's `.cold` part: f changed.
    ColdOnly,
    /// A new function g called from f: g new, f changed.
    NewFunction,
    /// A new static variable used by f: f changed (and `new data`).
    NewVariable,
    /// A function nobody calls any more: it is removed, its callers changed.
    Remove,
    /// Only the line passed to `__might_sleep` moved: line-only.
    Line,
    /// An initialised variable's contents: refused.
    Data,
    /// An `__init` function: refused.
    InitCode,
    /// `.N` suffixes of a unit's statics renumbered: nothing.
    Renumber,
    /// Functions, variables and units reordered: nothing.
    Reorder,
    /// A string nobody uses added first in a unit's string section: nothing.
    UnusedString,
    /// Filler before functions in their sections: nothing.
    Padding,
    /// An IPA clone renamed with its code unchanged (`foo.isra.0` becomes
    /// `foo.constprop.0.isra.0` when gcc applies one more optimisation to
    /// the clone's callers): nothing.
    CloneRename,
    /// A constant-pool value f loads: f changed.
    ConstantValue,
    /// A constant nobody uses added first in a unit's pool: nothing.
    UnusedConstant,
    /// A new exception fixup (`__ex_table` entry) in f: f changed.
    NewFixup,
    /// A new jump label site (`__jump_table` entry) in f: f changed.
    NewJumpLabel,
    /// A header's `static inline` helper changed: every out-of-line copy
    /// of it changed (one line of `klp diff` each).
    HeaderHelper,
    /// A unit stops calling a header helper: its copy is removed, the
    /// caller changed, the other units' copies untouched.
    DropHelperCopy,
    /// g gets an alternative whose replacement calls the kernel, written
    /// before the other functions' replacements with calls in its unit's
    /// `.altinstr_replacement`: g changed, the functions whose replacement
    /// code moved not.
    ReplacementBefore,
    /// g gets a `static_cpu_has()` whose `.altinstr_aux` snippet lands
    /// before the other functions' snippets of its file: g changed, the
    /// functions whose snippets moved not.
    SnippetBefore,
}

pub const ALL: &[Mutation] = &[
    Mutation::Immediate,
    Mutation::String,
    Mutation::CallTarget,
    Mutation::ColdOnly,
    Mutation::NewFunction,
    Mutation::NewVariable,
    Mutation::Remove,
    Mutation::Line,
    Mutation::Data,
    Mutation::InitCode,
    Mutation::Renumber,
    Mutation::Reorder,
    Mutation::UnusedString,
    Mutation::Padding,
    Mutation::CloneRename,
    Mutation::ConstantValue,
    Mutation::UnusedConstant,
    Mutation::NewFixup,
    Mutation::NewJumpLabel,
    Mutation::SnippetBefore,
    Mutation::HeaderHelper,
    Mutation::DropHelperCopy,
    Mutation::ReplacementBefore,
];

/// The patched model under construction.
pub struct Mutator<'a, 'e> {
    pub e: &'a mut Entropy<'e>,
    pub p: Program,
    pub effects: Vec<Effect>,
    touched: HashSet<FuncId>,
    touched_vars: HashSet<VarId>,
}

impl<'a, 'e> Mutator<'a, 'e> {
    pub fn new(e: &'a mut Entropy<'e>, p: Program) -> Self {
        Mutator { e, p, effects: Vec::new(), touched: HashSet::new(), touched_vars: HashSet::new() }
    }

    /// Apply `m`; false if no subject fits (nothing was changed).
    pub fn apply(&mut self, m: Mutation) -> bool {
        match m {
            Mutation::Immediate => self.immediate(),
            Mutation::String => self.string(),
            Mutation::CallTarget => self.call_target(),
            Mutation::ColdOnly => self.cold_only(),
            Mutation::NewFunction => self.new_function(),
            Mutation::NewVariable => self.new_variable(),
            Mutation::Remove => self.remove(|_| true),
            Mutation::HeaderHelper => self.header_helper(),
            Mutation::DropHelperCopy => self.remove(|f| is_header_helper(&f.name)),
            Mutation::ReplacementBefore => self.replacement_before(),
            Mutation::Line => self.line(),
            Mutation::Data => self.data(),
            Mutation::InitCode => self.init_code(),
            Mutation::Renumber => self.renumber(),
            Mutation::Reorder => self.reorder(),
            Mutation::UnusedString => self.unused_string(),
            Mutation::Padding => self.padding(),
            Mutation::CloneRename => self.clone_rename(),
            Mutation::ConstantValue => self.constant_value(),
            Mutation::UnusedConstant => self.unused_constant(),
            Mutation::NewFixup => self.add_site(Op::UserLoad { fixup_type: 3 }),
            Mutation::NewJumpLabel => {
                self.add_site(Op::JumpLabel { key: Key::Extern("synth_new_key".into()), likely: false })
            }
            Mutation::SnippetBefore => self.snippet_before(),
        }
        .is_some()
    }

    /// An untouched function that `want` accepts, now touched.
    fn subject(&mut self, want: impl Fn(&Function) -> bool) -> Option<FuncId> {
        let ids: Vec<FuncId> =
            self.p.functions().filter(|(_, f)| !self.touched.contains(&f.id) && want(f)).map(|(_, f)| f.id).collect();
        if ids.is_empty() {
            return None;
        }
        let id = *self.e.pick(&ids);
        self.touched.insert(id);
        Some(id)
    }

    fn unit_of(&self, f: FuncId) -> usize {
        self.p.find_function(f).map_or(0, |(u, _)| u)
    }

    fn f(&mut self, id: FuncId) -> &mut Function {
        self.p.function_mut(id).expect("subject exists")
    }

    fn immediate(&mut self) -> Option<()> {
        let f = self.subject(|f| f.text == TextKind::Text)?;
        self.bump_immediate(f);
        self.effects.push(Effect::Changed(f));
        Some(())
    }

    /// Change a `mov $imm` or `imul $imm` of f, or add one.
    fn bump_immediate(&mut self, f: FuncId) {
        let fresh = self.e.u32();
        let body = &mut self.f(f).body;
        for op in body.iter_mut() {
            match op {
                Op::SetImm { value, .. } => {
                    *value = value.wrapping_add(1 + fresh % 1000);
                    return;
                }
                Op::Scale { factor, .. } => {
                    *factor = if *factor == 7 { 9 } else { 7 };
                    return;
                }
                _ => {}
            }
        }
        body.insert(0, Op::SetImm { reg: Reg::Ecx, value: fresh });
    }

    fn string(&mut self) -> Option<()> {
        let f = self.subject(|f| f.text == TextKind::Text && f.body.iter().any(|o| matches!(o, Op::String { .. })))?;
        let u = self.unit_of(f);
        let s = self.new_string(u, &format!("patched f{}", f.0));
        let op = self.f(f).body.iter_mut().find(|o| matches!(o, Op::String { .. }))?;
        *op = Op::String { string: s };
        self.effects.push(Effect::Changed(f));
        Some(())
    }

    fn new_string(&mut self, u: usize, text: &str) -> StrId {
        let strings = &mut self.p.units[u].strings;
        strings.push(format!("{text}: {}\n", strings.len()));
        StrId(strings.len() as u32 - 1)
    }

    fn call_target(&mut self) -> Option<()> {
        let f = self.subject(|f| f.text == TextKind::Text && f.body.iter().any(|o| matches!(o, Op::Call { .. })))?;
        let u = self.unit_of(f);
        let old = self.p.function(f)?.body.iter().find_map(|o| match o {
            Op::Call { callee } => Some(callee.clone()),
            _ => None,
        })?;
        let old_name = self.callee_name(&old);
        let candidates: Vec<FuncId> = self.p.units[u]
            .functions
            .iter()
            .filter(|g| g.id != f && g.text == TextKind::Text && g.name != old_name)
            .map(|g| g.id)
            .collect();
        let new = match candidates.is_empty() {
            true => Callee::Extern(if old_name == "synth_other" { "synth_another" } else { "synth_other" }.into()),
            false => {
                let g = *self.e.pick(&candidates);
                self.touched.insert(g);
                Callee::Func(g)
            }
        };
        let op = self.f(f).body.iter_mut().find(|o| matches!(o, Op::Call { .. }))?;
        *op = Op::Call { callee: new };
        self.effects.push(Effect::Changed(f));
        Some(())
    }

    fn callee_name(&self, c: &Callee) -> String {
        match c {
            Callee::Func(id) => self.p.function(*id).map(|f| f.name.clone()).unwrap_or_default(),
            Callee::Extern(name) => name.clone(),
        }
    }

    fn cold_only(&mut self) -> Option<()> {
        let f = self.subject(|f| f.cold.is_some())?;
        let u = self.unit_of(f);
        let s = self.new_string(u, &format!("cold f{}", f.0));
        let cold = self.f(f).cold.as_mut()?;
        cold.insert(0, Op::String { string: s });
        self.effects.push(Effect::Changed(f));
        Some(())
    }

    fn new_function(&mut self) -> Option<()> {
        let f = self.subject(|f| f.text == TextKind::Text)?;
        let u = self.unit_of(f);
        let id = FuncId(self.p.fresh_id());
        let body = vec![
            Op::SetImm { reg: Reg::Eax, value: self.e.u32() },
            Op::Call { callee: Callee::Extern("kfree".into()) },
        ];
        let g = Function {
            id,
            // Unique by identity: never the name of anything in the original.
            name: format!("synth_new{}", id.0),
            global: self.e.percent(50),
            text: TextKind::Text,
            body,
            ending: Ending::Return,
            cold: None,
            pad: 0,
        };
        self.touched.insert(id);
        self.p.units[u].functions.push(g);
        self.f(f).body.push(Op::Call { callee: Callee::Func(id) });
        self.effects.extend([Effect::New(id), Effect::Changed(f)]);
        Some(())
    }

    fn new_variable(&mut self) -> Option<()> {
        let f = self.subject(|f| f.text == TextKind::Text)?;
        let u = self.unit_of(f);
        let id = VarId(self.p.fresh_id());
        let bytes = (0..8).map(|_| self.e.below(256) as u8).collect();
        let v = Variable {
            id,
            name: format!("synth_var{}", id.0),
            global: false,
            kind: VarKind::Data,
            bytes,
            pointers: Vec::new(),
        };
        self.p.units[u].variables.push(v);
        self.touched_vars.insert(id);
        self.f(f).body.push(Op::Load { var: id, offset: 4 });
        self.effects.extend([Effect::NewData(id), Effect::Changed(f)]);
        Some(())
    }

    /// Remove a function `want` accepts that nobody but untouched functions calls.
    fn remove(&mut self, want: impl Fn(&Function) -> bool) -> Option<()> {
        let users = Users::of(&self.p);
        let candidates: Vec<FuncId> = self
            .p
            .functions()
            .filter(|(_, h)| h.text == TextKind::Text && !self.touched.contains(&h.id) && want(h))
            .filter(|(_, h)| self.removable(h.id, &users))
            .map(|(_, h)| h.id)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let h = *self.e.pick(&candidates);
        let callers = self.p.callers_of(h);
        for &c in &callers {
            let caller = self.f(c);
            caller.body.retain(|o| *o != Op::Call { callee: Callee::Func(h) });
            if let Some(cold) = &mut caller.cold {
                cold.retain(|o| *o != Op::Call { callee: Callee::Func(h) });
            }
            if caller.ending == Ending::TailCall(Callee::Func(h)) {
                caller.ending = Ending::Return;
            }
            self.touched.insert(c);
            self.effects.push(Effect::Changed(c));
        }
        let (u, i) = self.p.find_function(h)?;
        let gone = self.p.units[u].functions.remove(i);
        // Its function-local statics go with it.
        let own: Vec<VarId> =
            gone.variables().filter(|v| self.is_local_static(u, *v) && !self.used_elsewhere(*v)).collect();
        self.p.units[u].variables.retain(|v| !own.contains(&v.id));
        self.touched.insert(h);
        self.effects.push(Effect::Removed(h));
        Some(())
    }

    /// Every user of `h` is an untouched non-init function, and no data points at it.
    fn removable(&self, h: FuncId, users: &Users) -> bool {
        let callers = users.callers.get(&h).map_or(&[][..], Vec::as_slice);
        !users.pointed.contains(&h)
            && callers.iter().all(|c| !self.touched.contains(c) && users.text.contains(c) && *c != h)
    }

    fn is_local_static(&self, u: usize, v: VarId) -> bool {
        self.p.units[u].variables.iter().any(|x| x.id == v && x.name.contains('.'))
    }

    fn used_elsewhere(&self, v: VarId) -> bool {
        self.p.functions().any(|(_, f)| f.variables().any(|x| x == v))
    }

    /// Every copy of one header helper gets the same new code.
    fn header_helper(&mut self) -> Option<()> {
        let copies = |name: &str| -> Vec<FuncId> {
            self.p.functions().filter(|(_, f)| f.name == name).map(|(_, f)| f.id).collect()
        };
        let names: Vec<String> = (self.p.functions())
            .filter(|(_, f)| is_header_helper(&f.name))
            .map(|(_, f)| f.name.clone())
            .filter(|name| copies(name).iter().all(|id| !self.touched.contains(id)))
            .collect();
        if names.is_empty() {
            return None;
        }
        let ids = copies(&self.e.pick(&names).clone());
        self.bump_immediate(ids[0]);
        let body = self.f(ids[0]).body.clone();
        for &id in &ids {
            self.f(id).body = body.clone();
            self.touched.insert(id);
            self.effects.push(Effect::Changed(id));
        }
        Some(())
    }

    fn line(&mut self) -> Option<()> {
        let f = self.subject(|f| f.body.iter().any(|o| matches!(o, Op::MightSleep { .. } | Op::Warn { .. })))?;
        let delta = self.e.range(1, 40) as u32;
        for op in &mut self.f(f).body {
            match op {
                Op::MightSleep { line } => *line += delta,
                Op::Warn { line } => *line += delta as u16,
                _ => {}
            }
        }
        self.effects.push(Effect::LineOnly(f));
        Some(())
    }

    fn data(&mut self) -> Option<()> {
        let ids: Vec<VarId> = (self.p.units.iter().flat_map(|u| &u.variables))
            .filter(|v| {
                v.kind != VarKind::Bss && v.bytes.len() > 8 * v.pointers.len() && !self.touched_vars.contains(&v.id)
            })
            .map(|v| v.id)
            .collect();
        if ids.is_empty() {
            return None;
        }
        let id = *self.e.pick(&ids);
        self.touched_vars.insert(id);
        // Not a byte under a pointer: RELA keeps the value in the relocation.
        let v = self.p.variable(id)?;
        let free: Vec<usize> = (0..v.bytes.len())
            .filter(|&b| !v.pointers.iter().any(|&(at, _)| (at as usize..at as usize + 8).contains(&b)))
            .collect();
        let at = *self.e.pick(&free);
        let v = self.p.variable_mut(id)?;
        v.bytes[at] ^= 0x5a;
        self.effects.push(Effect::RefusedData(id));
        Some(())
    }

    fn init_code(&mut self) -> Option<()> {
        let f = self.subject(|f| f.text == TextKind::Init)?;
        self.bump_immediate(f);
        self.effects.push(Effect::RefusedCode(f));
        Some(())
    }

    /// Permute the `.N` numbers of a unit's function-local statics and
    /// shift those of its IPA clones: gcc numbers them in the order it
    /// meets them, which any unrelated edit can change.
    fn renumber(&mut self) -> Option<()> {
        let u = self.e.below(self.p.units.len() as u64) as usize;
        let unit = &self.p.units[u];
        let numbered: Vec<usize> =
            (0..unit.variables.len()).filter(|&i| split_number(&unit.variables[i].name).is_some()).collect();
        let clones = unit.functions.iter().filter(|f| split_number(&f.name).is_some()).count();
        if numbered.len() < 2 && clones == 0 {
            return None;
        }
        let mut numbers: Vec<u32> =
            numbered.iter().filter_map(|&i| split_number(&unit.variables[i].name).map(|x| x.1)).collect();
        shuffle(self.e, &mut numbers);
        let shift = self.e.range(1, 5) as u32;
        let unit = &mut self.p.units[u];
        for (&i, n) in numbered.iter().zip(numbers) {
            let v = &mut unit.variables[i];
            v.name = format!("{}.{n}", split_number(&v.name)?.0);
        }
        for f in &mut unit.functions {
            if let Some((base, n)) = split_number(&f.name) {
                f.name = format!("{base}.{}", n + shift);
            }
        }
        Some(())
    }

    fn reorder(&mut self) -> Option<()> {
        for unit in &mut self.p.units {
            shuffle(self.e, &mut unit.functions);
            shuffle(self.e, &mut unit.variables);
        }
        shuffle(self.e, &mut self.p.units);
        Some(())
    }

    fn unused_string(&mut self) -> Option<()> {
        let u = self.e.below(self.p.units.len() as u64) as usize;
        let unit = &mut self.p.units[u];
        unit.strings.insert(0, format!("unrelated {}\n", unit.strings.len()));
        for f in &mut unit.functions {
            for op in f.body.iter_mut().chain(f.cold.iter_mut().flatten()) {
                if let Op::String { string } = op {
                    string.0 += 1;
                }
            }
        }
        Some(())
    }

    fn clone_rename(&mut self) -> Option<()> {
        let f = self.subject(|f| f.name.contains(".isra.") || f.name.contains(".part."))?;
        let name = &mut self.f(f).name;
        let (stem, rest) = name.split_once('.')?;
        *name = format!("{stem}.constprop.0.{rest}");
        Some(())
    }

    fn padding(&mut self) -> Option<()> {
        for unit in &mut self.p.units {
            for f in unit.functions.iter_mut().filter(|f| f.text == TextKind::Text) {
                if self.e.percent(30) {
                    f.pad += self.e.range(1, 32) as u32;
                }
            }
        }
        Some(())
    }
}

impl Mutator<'_, '_> {
    fn constant_value(&mut self) -> Option<()> {
        let loads = |f: &Function| f.body.iter().any(|o| matches!(o, Op::LoadConstant { .. }));
        let f = self.subject(|f| f.text == TextKind::Text && loads(f))?;
        let u = self.unit_of(f);
        let old = self.p.function(f)?.body.iter().find_map(|o| match o {
            Op::LoadConstant { constant } => Some(*constant),
            _ => None,
        })?;
        let old = self.p.units[u].constants[old.0 as usize];
        let pool = &mut self.p.units[u].constants;
        pool.push(Constant { value: old.value ^ 0x5a5a_0000_a5a5, ..old });
        let id = ConstId(pool.len() as u32 - 1);
        let op = self.f(f).body.iter_mut().find(|o| matches!(o, Op::LoadConstant { .. }))?;
        *op = Op::LoadConstant { constant: id };
        self.effects.push(Effect::Changed(f));
        Some(())
    }

    fn unused_constant(&mut self) -> Option<()> {
        let u = self.e.below(self.p.units.len() as u64) as usize;
        let value = u128::from(self.e.u32()) | 1 << 90;
        let unit = &mut self.p.units[u];
        unit.constants.insert(0, Constant { size: 8, value });
        for f in &mut unit.functions {
            for op in f.body.iter_mut() {
                if let Op::LoadConstant { constant } = op {
                    constant.0 += 1;
                }
            }
        }
        Some(())
    }

    /// A new special site in an untouched function: it changed.
    fn add_site(&mut self, op: Op) -> Option<()> {
        let f = self.subject(|f| f.text == TextKind::Text)?;
        let len = self.p.function(f)?.body.len();
        let at = self.e.below(len as u64 + 1) as usize;
        self.f(f).body.insert(at, op);
        self.effects.push(Effect::Changed(f));
        Some(())
    }

    fn snippet_before(&mut self) -> Option<()> {
        let has_snippet = |f: &Function| f.body.iter().any(|o| matches!(o, Op::CpuHas { .. }));
        self.first_in_unit_with(Op::CpuHas { bit: 77 }, has_snippet)
    }

    fn replacement_before(&mut self) -> Option<()> {
        let call = Replacement::CallExtern("entry_ibpb");
        let has_call = |f: &Function| {
            f.body.iter().any(|o| matches!(o, Op::Alternative { replacement: Replacement::CallExtern(_), .. }))
        };
        self.first_in_unit_with(Op::Alternative { feature: 300, replacement: call }, has_call)
    }

    /// In a unit where some function `has` what `op` adds to a shared
    /// section, give `op` to another function g and put g first, so that
    /// its part of the section comes before the others': g changed, the
    /// functions whose parts moved not.
    fn first_in_unit_with(&mut self, op: Op, has: impl Fn(&Function) -> bool) -> Option<()> {
        let units: Vec<usize> =
            (0..self.p.units.len()).filter(|&u| self.p.units[u].functions.iter().any(&has)).collect();
        if units.is_empty() {
            return None;
        }
        let u = *self.e.pick(&units);
        let ids: Vec<FuncId> = self.p.units[u].functions.iter().map(|f| f.id).collect();
        let g = self.subject(|f| f.text == TextKind::Text && !has(f) && ids.contains(&f.id))?;
        self.f(g).body.insert(0, op);
        let functions = &mut self.p.units[u].functions;
        let i = functions.iter().position(|f| f.id == g)?;
        let moved = functions.remove(i);
        functions.insert(0, moved);
        self.effects.push(Effect::Changed(g));
        Some(())
    }
}

/// Who uses each function, gathered in one pass: asking the model per
/// candidate would be quadratic in the functions.
struct Users {
    /// The functions calling each function, each once.
    callers: HashMap<FuncId, Vec<FuncId>>,
    /// Functions some data points at.
    pointed: HashSet<FuncId>,
    /// Functions in `.text` (not `__init`).
    text: HashSet<FuncId>,
}

impl Users {
    fn of(p: &Program) -> Self {
        let mut callers: HashMap<FuncId, Vec<FuncId>> = HashMap::new();
        for (_, f) in p.functions() {
            let tail = match &f.ending {
                Ending::TailCall(c) => Some(c),
                Ending::Return => None,
            };
            let callees = f.all_ops().filter_map(|op| if let Op::Call { callee } = op { Some(callee) } else { None });
            let mut seen = HashSet::new();
            for callee in callees.chain(tail) {
                if let Callee::Func(t) = callee
                    && seen.insert(*t)
                {
                    callers.entry(*t).or_default().push(f.id);
                }
            }
        }
        let pointed = p.units.iter().flat_map(|u| &u.variables).flat_map(|v| v.pointers.iter().map(|p| p.1)).collect();
        let text = p.functions().filter(|(_, f)| f.text == TextKind::Text).map(|(_, f)| f.id).collect();
        Users { callers, pointed, text }
    }
}

/// `count.3` -> (`count`, 3); `show.isra.0` -> (`show.isra`, 0).
fn split_number(name: &str) -> Option<(&str, u32)> {
    let (base, n) = name.rsplit_once('.')?;
    Some((base, n.parse().ok()?))
}

/// Fisher-Yates with the given entropy.
fn shuffle<T>(e: &mut Entropy, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = e.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// Apply `count` mutations chosen from `allowed`; returns those applied.
pub fn mutate(m: &mut Mutator, count: usize, allowed: &[Mutation]) -> Vec<Mutation> {
    let mut applied = Vec::with_capacity(count);
    let mut tries = 0;
    while applied.len() < count && tries < count * 20 && !allowed.is_empty() {
        tries += 1;
        let kind = *m.e.pick(allowed);
        if m.apply(kind) {
            applied.push(kind);
        }
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::generate;

    /// A program with copies of a header helper, and the mutator after one `m`.
    fn mutated(m: Mutation) -> (Program, Mutator<'static, 'static>) {
        for seed in 0..50 {
            let e = Box::leak(Box::new(Entropy::from_seed(seed)));
            let orig = generate::program(e, 80);
            let mut mutator = Mutator::new(e, orig.clone());
            if mutator.apply(m) {
                return (orig, mutator);
            }
        }
        panic!("{m:?} applied to none of 50 programs");
    }

    #[test]
    fn a_header_helper_changes_in_every_copy_alike() {
        let (orig, m) = mutated(Mutation::HeaderHelper);
        let changed: Vec<FuncId> =
            m.effects.iter().map(|e| if let Effect::Changed(f) = e { *f } else { panic!("{e:?}") }).collect();
        assert!(changed.len() >= 2, "{changed:?}");
        let name = &orig.function(changed[0]).unwrap().name;
        let copies = orig.functions().filter(|(_, f)| f.name == *name).count();
        assert_eq!(copies, changed.len(), "every copy of {name}");
        for &id in &changed {
            let (before, after) = (orig.function(id).unwrap(), m.p.function(id).unwrap());
            assert_ne!(before.body, after.body);
            assert_eq!(after.body, m.p.function(changed[0]).unwrap().body);
        }
    }

    #[test]
    fn a_replacement_put_before_the_others_changes_only_its_function() {
        let (_, m) = mutated(Mutation::ReplacementBefore);
        let [Effect::Changed(g)] = m.effects[..] else { panic!("{:?}", m.effects) };
        let unit = m.p.units.iter().find(|u| u.functions.iter().any(|f| f.id == g)).unwrap();
        assert_eq!(unit.functions[0].id, g, "first in its unit");
        let calls = |f: &Function| {
            f.body.iter().any(|o| matches!(o, Op::Alternative { replacement: Replacement::CallExtern(_), .. }))
        };
        assert!(calls(&unit.functions[0]) && unit.functions[1..].iter().any(calls));
    }

    #[test]
    fn dropping_a_helper_copy_removes_it_alone_and_changes_its_caller() {
        let (orig, m) = mutated(Mutation::DropHelperCopy);
        let removed: Vec<FuncId> =
            m.effects.iter().filter_map(|e| if let Effect::Removed(f) = e { Some(*f) } else { None }).collect();
        let [gone] = removed[..] else { panic!("{:?}", m.effects) };
        let name = &orig.function(gone).unwrap().name;
        assert!(generate::is_header_helper(name));
        assert!(m.p.function(gone).is_none());
        let left = m.p.functions().filter(|(_, f)| f.name == *name).count();
        assert_eq!(left + 1, orig.functions().filter(|(_, f)| f.name == *name).count());
        assert!(m.effects.iter().any(|e| matches!(e, Effect::Changed(c) if orig.function(*c).unwrap().calls(gone))));
    }
}
