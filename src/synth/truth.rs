//! The ground truth of a pair: what a correct `klp diff` reports, with
//! names as it prints them. Mutations record effects on model identities;
//! names are resolved at the end, from the patched model (changed, new,
//! line-only, refused) or the original one (removed), so that renaming
//! mutations compose with the others.

use std::collections::BTreeSet;

use super::model::{FuncId, Program, VarId};

/// What one mutation did to one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    Changed(FuncId),
    New(FuncId),
    Removed(FuncId),
    LineOnly(FuncId),
    /// Changed `__init` code.
    RefusedCode(FuncId),
    /// Changed initialised data.
    RefusedData(VarId),
    /// A new variable (`klp diff` prints `new data`; not part of TRUTH.json).
    NewData(VarId),
}

/// `TRUTH.json`: exactly these five sorted lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Truth {
    pub changed: Vec<String>,
    pub new: Vec<String>,
    pub removed: Vec<String>,
    pub line_only: Vec<String>,
    pub refused: Vec<String>,
}

/// The truth and the `new data` names, which TRUTH.json leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub truth: Truth,
    pub new_data: Vec<String>,
}

impl Truth {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
            && self.new.is_empty()
            && self.removed.is_empty()
            && self.line_only.is_empty()
            && self.refused.is_empty()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

/// Combine effects: a function with a real change is changed even if a
/// line also moved; changed `__init` code is refused, not changed.
pub fn resolve(effects: &[Effect], orig: &Program, patched: &Program) -> Answer {
    let fname = |p: &Program, id: FuncId| p.function(id).map(|f| f.name.clone());
    let vname = |id: VarId| patched.variable(id).map(|v| v.name.clone());
    let refused_code: BTreeSet<FuncId> =
        effects.iter().filter_map(|e| if let Effect::RefusedCode(f) = e { Some(*f) } else { None }).collect();
    let changed: BTreeSet<FuncId> = effects
        .iter()
        .filter_map(|e| if let Effect::Changed(f) = e { Some(*f) } else { None })
        .filter(|f| !refused_code.contains(f))
        .collect();
    let mut effects = effects.to_vec();
    effects.sort();
    effects.dedup();
    let mut t = Answer::default();
    for e in &effects {
        match *e {
            Effect::Changed(f) if changed.contains(&f) => t.truth.changed.extend(fname(patched, f)),
            Effect::New(f) => t.truth.new.extend(fname(patched, f)),
            Effect::Removed(f) => t.truth.removed.extend(fname(orig, f)),
            Effect::LineOnly(f) if !changed.contains(&f) && !refused_code.contains(&f) => {
                t.truth.line_only.extend(fname(patched, f))
            }
            Effect::RefusedCode(f) => t.truth.refused.extend(fname(patched, f)),
            Effect::RefusedData(v) => t.truth.refused.extend(vname(v)),
            Effect::NewData(v) => t.new_data.extend(vname(v)),
            _ => {}
        }
    }
    for list in [
        &mut t.truth.changed,
        &mut t.truth.new,
        &mut t.truth.removed,
        &mut t.truth.line_only,
        &mut t.truth.refused,
        &mut t.new_data,
    ] {
        // Not deduplicated: two statics of one name are two lines of `klp diff`.
        list.sort();
    }
    t
}
