//! The line-number rule: when two fingerprints that differ differ only in
//! source line numbers (`__LINE__`), which a patch shifts in every function
//! below the lines it adds, without changing what any of them does.
//!
//! A line number reaches code in two ways:
//!
//! - an argument: an immediate (`mov $line, %reg`, or `push $line` for an
//!   argument past the sixth) passed to the next call, where the argument
//!   just before it in the same call is a string that names the location: a
//!   `__FILE__`-like path (ending in `.c` or `.h`) or a function name
//!   (`__func__`, `__FUNCTION__`, `__PRETTY_FUNCTION__`). C code passes a
//!   line right after the file or function it belongs to
//!   (`__ext4_error(sb, __func__, __LINE__, ...)`, `__might_sleep(__FILE__,
//!   __LINE__)`, `printk("%s:%d", __FILE__, __LINE__)`), so the rule needs no
//!   list of helpers, and another integer argument of the same call
//!   (`ext4_error(sb, "bad %d", 5)`) stays a real change. A few helpers take
//!   a line with no location string beside it; those, and only those, are
//!   known by name ([`LINE_ARGUMENT_HELPERS`]);
//! - the `line` field of a `__bug_table` entry (`WARN()`, `BUG()`).
//!
//! Everything else in the two functions must be equal.

use iced_x86::Register;

use crate::diff::checksum::{Fingerprint, InsnDigest};

/// Where an instruction puts an argument of the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// An argument register (full width).
    Register(Register),
    /// A `push`: a stack argument, which one depends on the pushes after it.
    Stack,
    /// A store to stack slot N (`mov ..., 8*N(%rsp)`), as clang passes
    /// stack arguments: argument 7 + N, if %rsp does not move before the call.
    StackAt(u8),
}

/// Helpers that take `__LINE__` with no file or function name before it,
/// and the (1-based) argument that holds it. Found by diffing the defconfig
/// 6.12 kernel against itself with a line added at the top of every `.c` in
/// fs/ kernel/ mm/ init/ (verify/kernel/line-shift-pair.sh): every other
/// line argument there follows a `__func__` or `__FILE__`.
pub const LINE_ARGUMENT_HELPERS: &[(&str, usize)] = &[
    // ext4_journal_start*(): (inode, sb, line, type, blocks, rsv_blocks, revoke_creds)
    ("__ext4_journal_start_sb", 3),
    // ext4_journal_start_reserved(): (handle, line, type)
    ("__ext4_journal_start_reserved", 2),
    // ext4_new_inode*(): (idmap, handle, dir, mode, qstr, goal, owner, i_flags, handle_type, line_no, nblocks)
    ("__ext4_new_inode", 10),
    // check_block_validity(): (inode, __func__, __LINE__, map), but its
    // one caller makes gcc drop the constant `__func__` from the
    // `.constprop` clone, which takes (inode, line, map).
    ("__check_block_validity", 2),
];

/// Why two functions are line-only: the first line difference found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvidence {
    /// Instruction `index` (of the function or a `.cold` part) passes the
    /// line as argument `argument` (1-based) of the call to `callee`, whose
    /// argument before it names a file or function.
    Argument { index: usize, argument: usize, callee: String },
    /// The same, for a helper known to take a line in that argument.
    Helper { index: usize, argument: usize, callee: String },
    /// Only `__bug_table` line fields differ.
    BugTable,
}

impl std::fmt::Display for LineEvidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineEvidence::Argument { index, argument, callee } => write!(
                f,
                "line-only by the call-site rule: instruction #{index} passes the line as argument {argument} \
                 of the call to {}, right after a file or function name",
                crate::error::escaped(callee),
            ),
            LineEvidence::Helper { index, argument, callee } => write!(
                f,
                "line-only by the helper rule: instruction #{index} passes the line as argument {argument} \
                 of {}, which takes a line there",
                crate::error::escaped(callee),
            ),
            LineEvidence::BugTable => write!(f, "line-only: only __bug_table line fields differ"),
        }
    }
}

/// The x86-64 registers of the first six integer arguments, in order.
const ARGUMENT_REGISTERS: [Register; 6] =
    [Register::RDI, Register::RSI, Register::RDX, Register::RCX, Register::R8, Register::R9];

/// Whether `r` (any width) is an integer argument register.
pub fn is_argument_register(r: Register) -> bool {
    ARGUMENT_REGISTERS.contains(&r.full_register())
}

/// `Some` when `a` and `b` differ and only in line numbers.
pub fn line_only_evidence(a: &Fingerprint, b: &Fingerprint) -> Option<LineEvidence> {
    if a.checksum() == b.checksum() {
        return None;
    }
    let mut found = None;
    same_but_lines(a, b, &mut found).then(|| found.unwrap_or(LineEvidence::BugTable))
}

/// Every instruction and entry equal except line numbers; the first line
/// argument that differs goes to `found`.
fn same_but_lines(a: &Fingerprint, b: &Fingerprint, found: &mut Option<LineEvidence>) -> bool {
    if a.insns.len() != b.insns.len() || a.entries.len() != b.entries.len() || a.cold.len() != b.cold.len() {
        return false;
    }
    for i in 0..a.insns.len() {
        match explain_difference(a, b, i) {
            Explained::Equal => {}
            Explained::Line(e) => drop(found.get_or_insert(e)),
            Explained::No => return false,
        }
    }
    let entries_ok = a.entries.iter().zip(&b.entries).all(|(x, y)| x.without_line == y.without_line);
    entries_ok && a.cold.iter().zip(&b.cold).all(|(x, y)| same_but_lines(x, y, found))
}

enum Explained {
    Equal,
    Line(LineEvidence),
    No,
}

/// Instruction `i` of `a` against that of `b` (same-length functions).
fn explain_difference(a: &Fingerprint, b: &Fingerprint, i: usize) -> Explained {
    let (x, y) = (&a.insns[i], &b.insns[i]);
    if x.digest == y.digest {
        return Explained::Equal;
    }
    if x.line_immediate.is_none() || x.line_immediate != y.line_immediate {
        return Explained::No;
    }
    match (line_argument(&a.insns, i), line_argument(&b.insns, i)) {
        (Some(ea), Some(eb)) if ea == eb => Explained::Line(ea),
        _ => Explained::No,
    }
}

/// The first pair of instructions that differ in more than a line
/// argument, with its index in its part (the function or a `.cold` part),
/// when both functions have the same shape (else the first difference of
/// any kind says more).
pub fn first_non_line_difference<'a, 'd>(
    a: &'a Fingerprint<'d>,
    b: &'a Fingerprint<'d>,
) -> Option<(usize, &'a InsnDigest<'d>, &'a InsnDigest<'d>)> {
    if a.insns.len() != b.insns.len() || a.cold.len() != b.cold.len() {
        return None;
    }
    match (0..a.insns.len()).find(|&i| matches!(explain_difference(a, b, i), Explained::No)) {
        Some(i) => Some((i, &a.insns[i], &b.insns[i])),
        None => a.cold.iter().zip(&b.cold).find_map(|(x, y)| first_non_line_difference(x, y)),
    }
}

/// `insns[at]` passes an immediate to the next call, as an argument that
/// follows a file or function name in the same call, or that a known
/// helper takes as a line.
fn line_argument(insns: &[InsnDigest], at: usize) -> Option<LineEvidence> {
    insns[at].line_immediate?;
    // Argument registers are clobbered by a call: what the next call gets
    // was put there after the previous one.
    let since = insns[..at].iter().rposition(|i| i.callee.is_some()).map_or(0, |c| c + 1);
    let mut window: Vec<&InsnDigest> = insns[since..=at].iter().collect();
    let call = follow_to_call(insns, at + 1, &mut window)?;
    let argument = argument_number(&window, at - since)?;
    let callee = call.callee.unwrap_or_default().to_owned();
    // A helper's IPA clones (`.constprop.0`, `.isra.0`) are the helper.
    let stem = callee.split('.').next().unwrap_or_default();
    if LINE_ARGUMENT_HELPERS.contains(&(stem, argument)) {
        return Some(LineEvidence::Helper { index: at, argument, callee });
    }
    let named = argument > 1 && names_location(&window, argument - 1);
    named.then_some(LineEvidence::Argument { index: at, argument, callee })
}

/// The longest path followed from a line argument to its call: error paths
/// that gcc merges jump to a shared call site a few instructions long.
const MAX_PATH: usize = 64;

/// Walk from `insns[from]` to the next call, through jumps within the
/// function (gcc merges the tails of error paths into one call site, so
/// the arguments are set partly before the jump and partly after),
/// appending the instructions passed to `window`. The call, if reached.
fn follow_to_call<'a, 'd>(
    insns: &'a [InsnDigest<'d>],
    from: usize,
    window: &mut Vec<&'a InsnDigest<'d>>,
) -> Option<&'a InsnDigest<'d>> {
    let mut k = from;
    for _ in 0..MAX_PATH {
        let insn = insns.get(k)?;
        if insn.callee.is_some() {
            return Some(insn);
        }
        window.push(insn);
        k = match insn.jumps_to {
            Some(dest) => insns.binary_search_by_key(&dest, |i| i.offset).ok()?,
            None => k + 1,
        };
    }
    None
}

/// The 1-based argument that `window[at]` puts a value in, for the call
/// right after `window`: registers in order, then stack slots, the last
/// push being the seventh argument.
fn argument_number(window: &[&InsnDigest], at: usize) -> Option<usize> {
    match window[at].line_immediate.map(|(_, slot)| slot).or(window[at].location_argument)? {
        Slot::Register(r) => ARGUMENT_REGISTERS.iter().position(|&a| a == r).map(|i| i + 1),
        Slot::Stack => Some(7 + window[at + 1..].iter().filter(|i| i.pushes).count()),
        Slot::StackAt(n) => (!window[at + 1..].iter().any(|i| i.moves_stack)).then_some(7 + usize::from(n)),
    }
}

/// Whether argument `argument` of the call after `window` is a file or
/// function name: loaded into its register (directly or through register
/// copies), or pushed into its stack slot.
fn names_location(window: &[&InsnDigest], argument: usize) -> bool {
    if argument > ARGUMENT_REGISTERS.len() {
        return (0..window.len()).any(|k| {
            matches!(window[k].location_argument, Some(Slot::Stack | Slot::StackAt(_)))
                && argument_number(window, k) == Some(argument)
        });
    }
    // Which registers hold a location string at each point of the window.
    let mut holding: Vec<Register> = Vec::new();
    for i in window {
        if let Some((dst, src)) = i.register_copy {
            holding.retain(|&r| r != dst);
            if holding.contains(&src) {
                holding.push(dst);
            }
        }
        if let Some(Slot::Register(r)) = i.location_argument {
            holding.push(r);
        }
    }
    holding.contains(&ARGUMENT_REGISTERS[argument - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::checksum::EntryDigest;
    use crate::elf::{SectionId, SymbolId};
    use crate::kernel::special::SpecialEntry;

    /// An instruction that is none of the kinds below; `digest` tells it apart.
    fn other(digest: u64) -> InsnDigest<'static> {
        InsnDigest {
            offset: 0,
            digest,
            line_immediate: None,
            location_argument: None,
            register_copy: None,
            pushes: false,
            moves_stack: false,
            jumps_to: None,
            callee: None,
        }
    }

    fn reg(r: Register) -> Slot {
        Slot::Register(r)
    }

    /// `mov $line, %reg` (the digest stands for the whole instruction).
    fn load_line(slot: Slot, line: u64) -> InsnDigest<'static> {
        InsnDigest {
            line_immediate: Some((7, slot)),
            digest: 1000 + line,
            pushes: slot == Slot::Stack,
            moves_stack: slot == Slot::Stack,
            ..other(0)
        }
    }

    /// `mov $__func__.N, %reg` or `push $__func__.N`.
    fn load_location(slot: Slot) -> InsnDigest<'static> {
        InsnDigest {
            location_argument: Some(slot),
            pushes: slot == Slot::Stack,
            moves_stack: slot == Slot::Stack,
            ..other(50)
        }
    }

    fn push_other() -> InsnDigest<'static> {
        InsnDigest { pushes: true, moves_stack: true, ..other(51) }
    }

    fn copy(dst: Register, src: Register) -> InsnDigest<'static> {
        InsnDigest { register_copy: Some((dst, src)), ..other(52) }
    }

    fn call(callee: &'static str) -> InsnDigest<'static> {
        InsnDigest { callee: Some(callee), ..other(60) }
    }

    /// Instructions at offsets 0, 1, 2, ... (for jumps).
    fn function(mut insns: Vec<InsnDigest<'static>>) -> Fingerprint<'static> {
        for (k, i) in insns.iter_mut().enumerate() {
            i.offset = k as u64;
        }
        Fingerprint { function: SymbolId(1), insns, entries: Vec::new(), cold: Vec::new() }
    }

    /// `report(x, location, line)` with the location in `location`.
    fn reporting(location: Slot, line_slot: Slot, line: u64) -> Fingerprint<'static> {
        function(vec![other(1), load_location(location), load_line(line_slot, line), other(2), call("report")])
    }

    fn evidence(f: impl Fn(u64) -> Fingerprint<'static>) -> Option<LineEvidence> {
        line_only_evidence(&f(10), &f(11))
    }

    #[test]
    fn a_line_right_after_a_location_argument_is_line_only() {
        for (k, pair) in ARGUMENT_REGISTERS.windows(2).enumerate() {
            let got = evidence(|line| reporting(reg(pair[0]), reg(pair[1]), line));
            let argument = k + 2;
            assert_eq!(got, Some(LineEvidence::Argument { index: 2, argument, callee: "report".into() }), "{pair:?}");
        }
    }

    #[test]
    fn an_integer_not_right_after_the_location_is_a_change() {
        // `__ext4_error(sb, __func__, __LINE__, false, -5, ...)`: the errno
        // in %r8d is two registers after the name in %rsi.
        assert_eq!(evidence(|line| reporting(reg(Register::RSI), reg(Register::R8), line)), None);
        // The first argument has no argument before it.
        assert_eq!(evidence(|line| reporting(reg(Register::RSI), reg(Register::RDI), line)), None);
    }

    #[test]
    fn a_line_without_a_location_is_a_change() {
        assert_eq!(evidence(|line| function(vec![load_line(reg(Register::RSI), line), call("set_level")])), None);
    }

    #[test]
    fn a_location_loaded_for_an_earlier_call_does_not_count() {
        let f = |line| {
            function(vec![
                load_location(reg(Register::RSI)),
                call("first"),
                load_line(reg(Register::RDX), line),
                call("second"),
            ])
        };
        assert_eq!(evidence(f), None);
    }

    #[test]
    fn the_location_may_be_loaded_after_the_line() {
        let f = |line| {
            function(vec![load_line(reg(Register::RDX), line), load_location(reg(Register::RSI)), call("report")])
        };
        assert!(evidence(f).is_some());
    }

    #[test]
    fn the_location_may_reach_its_register_through_a_copy() {
        // gcc: `mov $__func__.33, %r8; ...; mov %r8, %rsi; call __ext4_warning`.
        let f = |last: InsnDigest<'static>| {
            move |line| {
                function(vec![
                    load_location(reg(Register::R8)),
                    load_line(reg(Register::RDX), line),
                    copy(Register::RSI, Register::R8),
                    last.clone(),
                    call("report"),
                ])
            }
        };
        assert!(evidence(f(other(3))).is_some());
        // Overwritten after the copy: the call does not get the name.
        assert_eq!(evidence(f(copy(Register::RSI, Register::RBX))), None);
    }

    #[test]
    fn a_pushed_line_after_the_sixth_argument_counts_by_its_stack_slot() {
        // `check_xattrs(inode, bh, buffer, end, offset, __func__, __LINE__)`:
        // the name in %r9, the line the last push before the call.
        let f = |extra_push: bool| {
            move |line| {
                let mut insns = vec![load_location(reg(Register::R9)), load_line(Slot::Stack, line)];
                if extra_push {
                    insns.push(push_other());
                }
                insns.push(call("check_xattrs"));
                function(insns)
            }
        };
        assert_eq!(
            evidence(f(false)),
            Some(LineEvidence::Argument { index: 1, argument: 7, callee: "check_xattrs".into() })
        );
        // With another push after it, the line is the eighth argument, after the seventh, which names nothing.
        assert_eq!(evidence(f(true)), None);
        // The eighth, after a pushed name in the seventh.
        let g = |line| function(vec![load_line(Slot::Stack, line), load_location(Slot::Stack), call("report")]);
        assert_eq!(evidence(g), Some(LineEvidence::Argument { index: 0, argument: 8, callee: "report".into() }));
    }

    #[test]
    fn clang_stores_stack_arguments_into_reserved_slots() {
        // clang: `mov %r9 <- __func__`, `movl $line, (%rsp)`, call: argument 7.
        let f =
            |line| function(vec![load_location(reg(Register::R9)), load_line(Slot::StackAt(0), line), call("check")]);
        assert_eq!(evidence(f), Some(LineEvidence::Argument { index: 1, argument: 7, callee: "check".into() }));
        // The name stored at 8(%rsp), the line at 16(%rsp): arguments 8 and 9.
        let g = |line| {
            function(vec![load_line(Slot::StackAt(2), line), load_location(Slot::StackAt(1)), other(3), call("check")])
        };
        assert_eq!(evidence(g), Some(LineEvidence::Argument { index: 0, argument: 9, callee: "check".into() }));
        // A line at 8(%rsp) is argument 8; the name in %r9 is argument 6: a change.
        let h =
            |line| function(vec![load_location(reg(Register::R9)), load_line(Slot::StackAt(1), line), call("check")]);
        assert_eq!(evidence(h), None);
        // %rsp moves between the store and the call: the slot is not argument 7 any more.
        let moved = |line| {
            function(vec![
                load_location(reg(Register::R9)),
                load_line(Slot::StackAt(0), line),
                push_other(),
                call("check"),
            ])
        };
        assert_eq!(evidence(moved), None);
    }

    #[test]
    fn a_pushed_line_after_a_pushed_integer_is_a_change() {
        // The line is the eighth argument; the seventh is another immediate,
        // not a name: the location in %r9 is two arguments away.
        let f = |line| {
            function(vec![
                load_location(reg(Register::R9)),
                load_line(Slot::Stack, line),
                InsnDigest { line_immediate: Some((8, Slot::Stack)), pushes: true, moves_stack: true, ..other(53) },
                call("report"),
            ])
        };
        assert_eq!(evidence(f), None);
    }

    #[test]
    fn extra_entries_or_cold_parts_are_a_change() {
        let entry = |digest| EntryDigest {
            entry: SpecialEntry { section: SectionId(3), offset: 0, size: 12, first_reloc: 0, relocs: 0 },
            digest,
            without_line: 77,
        };
        let a = reporting(reg(Register::RSI), reg(Register::RDX), 10);
        let mut b = reporting(reg(Register::RSI), reg(Register::RDX), 11);
        b.entries.push(entry(1));
        assert_eq!(line_only_evidence(&a, &b), None, "a new special-section entry");
        let mut b = reporting(reg(Register::RSI), reg(Register::RDX), 11);
        b.cold.push(function(vec![other(9)]));
        assert_eq!(line_only_evidence(&a, &b), None, "a new .cold part");
        assert_eq!(first_non_line_difference(&a, &b).map(|(i, _, _)| i), None, "not the same shape");
        let mut b = reporting(reg(Register::RSI), reg(Register::RDX), 11);
        b.insns.pop();
        assert_eq!(first_non_line_difference(&a, &b).map(|(i, _, _)| i), None, "not the same length");
        assert_eq!(first_non_line_difference(&b, &a).map(|(i, _, _)| i), None, "not the same length");
    }

    #[test]
    fn the_evidence_says_which_rule_and_argument() {
        let call_site = LineEvidence::Argument { index: 2, argument: 3, callee: "__ext4_error".into() };
        let text = call_site.to_string();
        assert!(
            text.contains("call-site rule") && text.contains("argument 3") && text.contains("__ext4_error"),
            "{text}"
        );
        let helper = LineEvidence::Helper { index: 0, argument: 10, callee: "__ext4_new_inode".into() };
        let text = helper.to_string();
        assert!(
            text.contains("helper rule") && text.contains("argument 10") && text.contains("__ext4_new_inode"),
            "{text}"
        );
        assert!(LineEvidence::BugTable.to_string().contains("__bug_table"));
    }

    #[test]
    fn the_call_is_found_through_jumps_to_a_shared_tail() {
        // Error paths merged by gcc: each sets its line and jumps to the
        // one place that loads `__func__` and calls the helper.
        let f = |line| {
            function(vec![
                load_line(reg(Register::RDX), line),
                InsnDigest { jumps_to: Some(3), ..other(4) },
                other(5),
                load_location(reg(Register::RSI)),
                call("__ext4_error"),
            ])
        };
        assert!(evidence(f).is_some());
        // A jump to a place that is not an instruction start is not followed.
        let g = |line| {
            function(vec![
                load_line(reg(Register::RDX), line),
                InsnDigest { jumps_to: Some(99), ..other(4) },
                load_location(reg(Register::RSI)),
                call("__ext4_error"),
            ])
        };
        assert_eq!(evidence(g), None);
        // A loop of jumps ends.
        let h =
            |line| function(vec![load_line(reg(Register::RDX), line), InsnDigest { jumps_to: Some(1), ..other(4) }]);
        assert_eq!(evidence(h), None);
    }

    #[test]
    fn known_helpers_take_a_line_without_a_location_in_their_argument_only() {
        // `__ext4_journal_start_sb(NULL, sb, __LINE__, type, blocks, 0, 0)`.
        let f =
            |callee: &'static str, slot: Register| move |line| function(vec![load_line(reg(slot), line), call(callee)]);
        assert_eq!(
            evidence(f("__ext4_journal_start_sb", Register::RDX)),
            Some(LineEvidence::Helper { index: 0, argument: 3, callee: "__ext4_journal_start_sb".into() })
        );
        assert!(evidence(f("__check_block_validity.constprop", Register::RSI)).is_some(), "a clone is the helper");
        assert_eq!(evidence(f("__ext4_journal_start_sb", Register::RCX)), None, "another argument");
        assert_eq!(evidence(f("ext4_journal_start_sb", Register::RDX)), None, "another function");
    }

    #[test]
    fn any_other_difference_is_a_change() {
        let a = reporting(reg(Register::RSI), reg(Register::RDX), 10);
        let mut b = reporting(reg(Register::RSI), reg(Register::RDX), 11);
        b.insns[3] = other(3);
        assert_eq!(line_only_evidence(&a, &b), None);
        assert_eq!(first_non_line_difference(&a, &b).map(|(i, _, _)| i), Some(3));
        let mut b = reporting(reg(Register::RSI), reg(Register::RDX), 11);
        b.insns.push(other(4));
        assert_eq!(line_only_evidence(&a, &b), None);
    }

    #[test]
    fn equal_functions_are_not_line_only() {
        let a = reporting(reg(Register::RSI), reg(Register::RDX), 10);
        assert_eq!(line_only_evidence(&a, &a.clone()), None);
        assert_eq!(first_non_line_difference(&a, &a.clone()).map(|(i, _, _)| i), None);
    }

    #[test]
    fn a_bug_table_line_field_alone_is_line_only() {
        let entry = |digest| EntryDigest {
            entry: SpecialEntry { section: SectionId(3), offset: 0, size: 12, first_reloc: 0, relocs: 0 },
            digest,
            without_line: 77,
        };
        let (mut a, mut b) = (function(vec![other(1)]), function(vec![other(1)]));
        a.entries.push(entry(1));
        b.entries.push(entry(2));
        assert_eq!(line_only_evidence(&a, &b), Some(LineEvidence::BugTable));
        b.entries[0].without_line = 78;
        assert_eq!(line_only_evidence(&a, &b), None);
    }

    #[test]
    fn a_line_in_a_cold_part_counts() {
        let with_cold = |line| Fingerprint {
            cold: vec![reporting(reg(Register::RDI), reg(Register::RSI), line)],
            ..function(vec![other(1)])
        };
        assert!(matches!(evidence(with_cold), Some(LineEvidence::Argument { .. })));
    }
}
