//! `klp build`: from a source patch to a livepatch module. Each step of the
//! flow is a module with its own inputs and outputs; so far the checks
//! before any build ([`preflight`]) and the patch handling: [`patch`] reads
//! and writes unified diffs, [`line_directives`] keeps `__LINE__` of code
//! below a change as it was; and [`stash`], which puts back every file
//! the flow changes in the tree, also after a run that was killed;
//! [`changed_objects`] finds what the patched build changed.

pub mod changed_objects;
pub mod line_directives;
pub mod patch;
pub mod preflight;
pub mod stash;
