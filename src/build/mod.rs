//! `klp build`: from a source patch to a livepatch module. [`flow`] runs
//! the steps in order; each is a module with its own inputs and outputs:
//! the checks before any build ([`preflight`]); [`patch`] reads and writes
//! unified diffs, [`apply`] applies them and takes the clean diff of what
//! they did, [`line_directives`] keeps `__LINE__` of code below a change
//! as it was; [`release`] freezes the kernel release; [`make`] runs kbuild
//! with a progress bar and stops it on a signal; [`original`] keeps the
//! original build for the next run; [`changed_objects`] finds what the
//! patched build changed; and [`stash`] puts back every file the flow
//! changes in the tree, also after a run that was killed.

pub mod apply;
pub mod changed_objects;
pub mod flow;
pub mod line_directives;
pub mod make;
pub mod original;
pub mod patch;
pub mod preflight;
pub mod release;
pub mod stash;
