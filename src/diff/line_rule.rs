//! The line-number rule: when two fingerprints that differ differ only in
//! source line numbers (`__LINE__`), which a patch shifts in every function
//! below the lines it adds, without changing what any of them does.
//!
//! A line number reaches code in two ways, and both are recognised by what
//! the object shows, not by the callee's name (every subsystem has its own
//! line-taking helpers: `__ext4_error`, `__btrfs_abort_transaction`,
//! `__might_sleep`, `printk("%s:%d", __FILE__, __LINE__)`, ...):
//!
//! - an argument: `mov $line, %reg` into an argument register of the next
//!   call, where the argument just before it in the same call is a string
//!   that names the location: a `__FILE__`-like path (ending in `.c` or `.h`)
//!   or a function name (`__func__`, `__FUNCTION__`, `__PRETTY_FUNCTION__`).
//!   C code passes a line right after the file or function it belongs to;
//!   asking for that pairing keeps an ordinary integer argument of the same
//!   call (`ext4_error(sb, "bad %d", 5)`) a real change;
//! - the `line` field of a `__bug_table` entry (`WARN()`, `BUG()`).
//!
//! Everything else in the two functions must be equal.

use iced_x86::Register;

use crate::diff::checksum::{Fingerprint, InsnDigest};

/// Why two functions are line-only: the first line difference found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvidence {
    /// Instruction `index` (of the function or a `.cold` part) loads the line
    /// into `line` for the call to `callee`, whose previous argument register
    /// `location` holds a file or function name.
    Argument { index: usize, line: Register, location: Register, callee: String },
    /// Only `__bug_table` line fields differ.
    BugTable,
}

impl std::fmt::Display for LineEvidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineEvidence::Argument { index, line, location, callee } => write!(
                f,
                "line-only by the call-site rule: instruction #{index} loads the line into {} for the call to {}, \
                 right after a file or function name in {}",
                register_name(*line),
                crate::error::escaped(callee),
                register_name(*location),
            ),
            LineEvidence::BugTable => write!(f, "line-only: only __bug_table line fields differ"),
        }
    }
}

fn register_name(r: Register) -> String {
    format!("%{r:?}").to_lowercase()
}

/// The x86-64 registers of the first six integer arguments, in order.
const ARGUMENT_REGISTERS: [Register; 6] =
    [Register::RDI, Register::RSI, Register::RDX, Register::RCX, Register::R8, Register::R9];

/// Whether `r` (any width) is an integer argument register.
pub fn is_argument_register(r: Register) -> bool {
    ARGUMENT_REGISTERS.contains(&r.full_register())
}

/// The argument register before `r`: where the location string goes.
fn previous_argument(r: Register) -> Option<Register> {
    let at = ARGUMENT_REGISTERS.iter().position(|&a| a == r.full_register())?;
    at.checked_sub(1).map(|i| ARGUMENT_REGISTERS[i])
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
    for (i, (x, y)) in a.insns.iter().zip(&b.insns).enumerate() {
        if x.digest == y.digest {
            continue;
        }
        if x.line_immediate.is_none() || x.line_immediate != y.line_immediate {
            return false;
        }
        let (Some(ea), Some(eb)) = (line_argument(&a.insns, i), line_argument(&b.insns, i)) else {
            return false;
        };
        if ea != eb {
            return false;
        }
        found.get_or_insert(ea);
    }
    let entries_ok = a.entries.iter().zip(&b.entries).all(|(x, y)| x.without_line == y.without_line);
    entries_ok && a.cold.iter().zip(&b.cold).all(|(x, y)| same_but_lines(x, y, found))
}

/// `insns[at]` loads an immediate into an argument register of the next
/// call, and the same call (since the previous one) gets a file or function
/// name in the argument register before it.
fn line_argument(insns: &[InsnDigest], at: usize) -> Option<LineEvidence> {
    let (_, line) = insns[at].line_immediate?;
    let location = previous_argument(line)?;
    let call = at + insns[at..].iter().position(|i| i.callee.is_some())?;
    // Argument registers are clobbered by a call: what the next call gets
    // was loaded after the previous one.
    let since = insns[..at].iter().rposition(|i| i.callee.is_some()).map_or(0, |c| c + 1);
    let named = insns[since..call].iter().any(|i| i.location_argument == Some(location));
    named.then(|| LineEvidence::Argument {
        index: at,
        line,
        location,
        callee: insns[call].callee.unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::checksum::EntryDigest;
    use crate::elf::{SectionId, SymbolId};
    use crate::kernel::special::SpecialEntry;

    /// An instruction that is neither a call nor a constant load.
    fn other(digest: u64) -> InsnDigest<'static> {
        InsnDigest { offset: 0, digest, line_immediate: None, location_argument: None, callee: None }
    }

    /// `mov $line, %reg` (the digest stands for the whole instruction).
    fn load_line(reg: Register, line: u64) -> InsnDigest<'static> {
        InsnDigest { line_immediate: Some((7, reg)), digest: 1000 + line, ..other(0) }
    }

    /// `mov $__func__.N, %reg`.
    fn load_location(reg: Register) -> InsnDigest<'static> {
        InsnDigest { location_argument: Some(reg), ..other(50) }
    }

    fn call(callee: &'static str) -> InsnDigest<'static> {
        InsnDigest { callee: Some(callee), ..other(60) }
    }

    fn function(insns: Vec<InsnDigest<'static>>) -> Fingerprint<'static> {
        Fingerprint { function: SymbolId(1), insns, entries: Vec::new(), cold: Vec::new() }
    }

    /// `report(x, location, line)` with the location in `location_reg`.
    fn reporting(location_reg: Register, line_reg: Register, line: u64) -> Fingerprint<'static> {
        function(vec![other(1), load_location(location_reg), load_line(line_reg, line), other(2), call("report")])
    }

    #[test]
    fn a_line_right_after_a_location_argument_is_line_only() {
        for (location, line) in [
            (Register::RDI, Register::ESI),
            (Register::RSI, Register::EDX),
            (Register::RDX, Register::ECX),
            (Register::RCX, Register::R8D),
            (Register::R8, Register::R9D),
        ] {
            let evidence = line_only_evidence(&reporting(location, line, 10), &reporting(location, line, 11));
            assert_eq!(
                evidence,
                Some(LineEvidence::Argument { index: 2, line, location, callee: "report".into() }),
                "{location:?} then {line:?}"
            );
        }
    }

    #[test]
    fn an_integer_not_right_after_the_location_is_a_change() {
        // `__ext4_error(sb, __func__, __LINE__, false, -5, ...)`: the errno
        // in %r8d is two registers after the name in %rsi.
        assert_eq!(
            line_only_evidence(
                &reporting(Register::RSI, Register::R8D, 5),
                &reporting(Register::RSI, Register::R8D, 22)
            ),
            None
        );
        // The first argument has no argument before it.
        assert_eq!(
            line_only_evidence(
                &reporting(Register::RSI, Register::EDI, 5),
                &reporting(Register::RSI, Register::EDI, 6)
            ),
            None
        );
    }

    #[test]
    fn a_line_without_a_location_is_a_change() {
        let f = |line| function(vec![load_line(Register::ESI, line), call("set_level")]);
        assert_eq!(line_only_evidence(&f(5), &f(6)), None);
    }

    #[test]
    fn a_location_loaded_for_an_earlier_call_does_not_count() {
        let f = |line| {
            function(vec![load_location(Register::RSI), call("first"), load_line(Register::EDX, line), call("second")])
        };
        assert_eq!(line_only_evidence(&f(5), &f(6)), None);
    }

    #[test]
    fn the_location_may_be_loaded_after_the_line() {
        let f = |line| function(vec![load_line(Register::EDX, line), load_location(Register::RSI), call("report")]);
        assert!(line_only_evidence(&f(5), &f(6)).is_some());
    }

    #[test]
    fn any_other_difference_is_a_change() {
        let mut b = reporting(Register::RSI, Register::EDX, 11);
        b.insns[3] = other(3);
        assert_eq!(line_only_evidence(&reporting(Register::RSI, Register::EDX, 10), &b), None);
        let mut b = reporting(Register::RSI, Register::EDX, 11);
        b.insns.push(other(4));
        assert_eq!(line_only_evidence(&reporting(Register::RSI, Register::EDX, 10), &b), None);
    }

    #[test]
    fn equal_functions_are_not_line_only() {
        let a = reporting(Register::RSI, Register::EDX, 10);
        assert_eq!(line_only_evidence(&a, &a.clone()), None);
    }

    #[test]
    fn a_bug_table_line_field_alone_is_line_only() {
        let entry = |digest| EntryDigest {
            entry: SpecialEntry { section: SectionId(3), offset: 0, size: 12 },
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
            cold: vec![reporting(Register::RDI, Register::ESI, line)],
            ..function(vec![other(1)])
        };
        assert!(matches!(line_only_evidence(&with_cold(1), &with_cold(2)), Some(LineEvidence::Argument { .. })));
    }
}
