//! The analysis stages one at a time, for benchmarks (`benches/`) that
//! time each alone; [`super::analyze`] runs them in order. The results are
//! opaque: only the stages themselves read them.

use super::checksum;
use super::classify;
use super::correlate::{self, Twins};
use super::{Analyzed, DiffOptions, index_side};
use crate::elf::ElfObject;
use crate::error::Result;
use crate::kernel::special::SpecialIndex;

/// One object with its special-section index and checksums.
pub struct Indexed<'d>(Analyzed<'d>);

/// The special-section entries of one object, by function.
pub struct SpecialEntries(SpecialIndex);

/// The twins of two objects.
pub struct Pairs(Twins);

pub fn special_index(obj: &ElfObject, opts: &DiffOptions) -> Result<SpecialEntries> {
    SpecialIndex::build(obj, &opts.entry_sizes).map(SpecialEntries)
}

/// Checksum every function and data object; returns how many have one.
pub fn checksums(obj: &ElfObject, specials: &SpecialEntries) -> usize {
    let cold = checksum::cold_children(obj);
    let sums = checksum::compute(obj, &specials.0, &cold);
    sums.count()
}

/// Special index and checksums of one object.
pub fn index<'d>(obj: ElfObject<'d>, opts: &DiffOptions) -> Result<Indexed<'d>> {
    index_side(obj, opts).map(Indexed)
}

pub fn correlate(orig: &Indexed, patched: &Indexed) -> Pairs {
    Pairs(correlate::correlate(&orig.0.side(), &patched.0.side()))
}

/// Classify the pairs; returns how many functions changed or are new.
pub fn classify(orig: &Indexed, patched: &Indexed, pairs: &Pairs) -> usize {
    let changes = classify::classify(&orig.0.side(), &patched.0.side(), &pairs.0, super::LineRule::On);
    changes.changed.len() + changes.new_functions.len()
}
