//! The program model: translation units of functions, variables and string
//! literals, with references by identity rather than by name, so that a
//! mutation can rename (renumber a `.N` suffix), move or reorder anything
//! without breaking what refers to it.

/// Identity of a function, stable across mutations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FuncId(pub u32);

/// Identity of a variable, stable across mutations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VarId(pub u32);

/// A constant-pool entry: index into its unit's `constants`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConstId(pub u32);

/// A string literal: index into its unit's `strings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StrId(pub u32);

/// A whole program: what `ld -r` of its units would hold, written as one
/// relocatable object with one FILE symbol per unit.
#[derive(Debug, Clone)]
pub struct Program {
    pub units: Vec<Unit>,
    /// Call padding before every function, as CALL_PADDING kernels have it.
    pub padding: CallPadding,
    /// Identities handed out so far (new functions and variables get the next).
    pub next_id: u32,
    /// objtool's `--rethunk --hacks=skylake` on `vmlinux.o`, as defconfig
    /// has it: returns are `jmp __x86_return_thunk`, listed in
    /// `.return_sites`, and direct calls in `.call_sites`.
    pub objtool_sites: bool,
}

/// `-fpatchable-function-entry=16,16`: 16 NOPs before each function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CallPadding {
    #[default]
    None,
    /// Marked by `__patchable_function_entries` (a unit before objtool).
    Entries,
    /// Also named `__pfx_<function>` (after objtool's `--prefix`).
    PrefixSymbols,
}

/// Bytes of call padding.
pub const CALL_PADDING: usize = 16;

/// One translation unit.
#[derive(Debug, Clone)]
pub struct Unit {
    /// The FILE symbol, a source file's base name as gcc records it.
    pub file: String,
    /// Path-like `__FILE__` string the unit passes to `__might_sleep`.
    pub source_path: String,
    pub functions: Vec<Function>,
    pub variables: Vec<Variable>,
    /// Contents of `.rodata.str1.1`, in order, each NUL-terminated on write.
    pub strings: Vec<String>,
    /// Constant-pool entries, in order, each in `.rodata.cst<size>`.
    pub constants: Vec<Constant>,
}

/// A mergeable constant that code loads by section symbol plus offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Constant {
    /// 8 or 16 bytes: `.rodata.cst8` or `.rodata.cst16`.
    pub size: u8,
    pub value: u128,
}

/// Where a function's code lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// `.text.<name>`, one section per function.
    Text,
    /// `.init.text`, shared by the unit's `__init` functions.
    Init,
}

#[derive(Debug, Clone)]
pub struct Function {
    pub id: FuncId,
    /// The symbol name, suffixes included (`foo`, `foo.isra.0`).
    pub name: String,
    pub global: bool,
    pub text: TextKind,
    pub body: Vec<Op>,
    pub ending: Ending,
    /// The `.cold` part (`<name>.cold` in `.text.unlikely.<name>`): what
    /// runs after the parent's `Op::Unlikely` branch, before jumping back.
    pub cold: Option<Vec<Op>>,
    /// Bytes of `int3` filler before the function in its own section
    /// (alignment a patch may shift); not used in `.init.text`.
    pub pad: u32,
}

/// How a function ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Return,
    /// `jmp callee` after the epilogue.
    TailCall(Callee),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callee {
    Func(FuncId),
    /// An undefined kernel function (`printk`, `kfree`, ...).
    Extern(String),
}

/// A register the model's operations use (32-bit views).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    Eax,
    Ebx,
    Ecx,
    Edi,
    R8d,
}

/// One step of a function body; each encodes to a few instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `mov $value, %reg`.
    SetImm { reg: Reg, value: u32 },
    /// `imul $factor, %src, %dst` (a changed constant of real arithmetic).
    Scale { dst: Reg, src: Reg, factor: i8 },
    /// `mov var+offset(%rip), %eax` (R_X86_64_PC32).
    Load { var: VarId, offset: u32 },
    /// `mov %eax, var+offset(%rip)` (R_X86_64_PC32).
    Store { var: VarId, offset: u32 },
    /// `addl $delta, var(%rip)` (R_X86_64_PC32, the field not at the end).
    Bump { var: VarId, delta: i8 },
    /// `mov $var, %rsi` (R_X86_64_32S).
    AddressOf { var: VarId },
    /// `mov $string, %rdi` (R_X86_64_32S against `.rodata.str1.1` + offset).
    String { string: StrId },
    /// `call callee` (R_X86_64_PLT32 to globals and externs, PC32 to
    /// statics by section symbol; none between `.init.text` functions).
    Call { callee: Callee },
    /// `mov $__FILE__, %rdi; mov $line, %esi; call __might_sleep`.
    MightSleep { line: u32 },
    /// `test %edi, %edi; je <epilogue>`: an intra-function branch.
    ExitIfZero,
    /// `cmp $limit, %edi; jg <name>.cold`: the cold part jumps back after it.
    Unlikely { limit: i8 },
    /// `mov .rodata.cst<N>+off(%rip), %rax` (R_X86_64_PC32 against the
    /// pool's section symbol).
    LoadConstant { constant: ConstId },
    /// A static branch: a 5-byte NOP with a `__jump_table` entry whose
    /// target is the epilogue and whose key is `key` (+2, +1 if likely).
    JumpLabel { key: Key, likely: bool },
    /// `mov (%rsi), %eax` that may fault, with an `__ex_table` entry whose
    /// fixup is the next instruction (as 6.12's uaccess helpers have them).
    UserLoad { fixup_type: u8 },
    /// A NOP that an `.altinstructions` entry replaces with `replacement`
    /// (in `.altinstr_replacement`) on CPUs with `feature`.
    Alternative { feature: u16, replacement: Replacement },
    /// `static_cpu_has(bit)`: `jmp` to a snippet in `.altinstr_aux` that
    /// tests `boot_cpu_data` and jumps back, with the two alternatives that
    /// patch the `jmp` away (6.12's `_static_cpu_has`).
    CpuHas { bit: u16 },
    /// `WARN_ON()`: `ud2` with a `__bug_table` entry (file, line, flags).
    Warn { line: u16 },
    /// `static_call(name)()`: `call __SCT__name` with a
    /// `.static_call_sites` entry naming `__SCK__name`.
    StaticCall { name: String },
}

/// The key of a jump label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A `struct static_key` of the program.
    Var(VarId),
    /// One the kernel defines elsewhere.
    Extern(String),
}

/// What an alternative puts in place of its NOP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacement {
    /// `lfence` over a 3-byte NOP.
    Lfence,
    /// `call` an undefined kernel function over a 5-byte NOP (a relocation
    /// in `.altinstr_replacement`).
    CallExtern(&'static str),
}

/// Where a variable lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarKind {
    /// `.data.<name>`, initialised.
    Data,
    /// `.rodata.<name>`.
    ReadOnly,
    /// `.bss.<name>`, NOBITS.
    Bss,
}

#[derive(Debug, Clone)]
pub struct Variable {
    pub id: VarId,
    /// The symbol name (`count`, or `count.3` for a function-local static).
    pub name: String,
    pub global: bool,
    pub kind: VarKind,
    /// Initial bytes (for `Bss`: zeros, only the length counts).
    pub bytes: Vec<u8>,
    /// `R_X86_64_64` pointers to functions stored in the object: (offset, target).
    pub pointers: Vec<(u32, FuncId)>,
}

impl Program {
    pub fn fresh_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    pub fn functions(&self) -> impl Iterator<Item = (usize, &Function)> {
        self.units.iter().enumerate().flat_map(|(u, unit)| unit.functions.iter().map(move |f| (u, f)))
    }

    /// The unit and index of function `id`.
    pub fn find_function(&self, id: FuncId) -> Option<(usize, usize)> {
        self.units
            .iter()
            .enumerate()
            .find_map(|(u, unit)| unit.functions.iter().position(|f| f.id == id).map(|i| (u, i)))
    }

    pub fn function(&self, id: FuncId) -> Option<&Function> {
        self.find_function(id).map(|(u, i)| &self.units[u].functions[i])
    }

    pub fn function_mut(&mut self, id: FuncId) -> Option<&mut Function> {
        let (u, i) = self.find_function(id)?;
        Some(&mut self.units[u].functions[i])
    }

    pub fn variable(&self, id: VarId) -> Option<&Variable> {
        self.units.iter().flat_map(|u| &u.variables).find(|v| v.id == id)
    }

    pub fn variable_mut(&mut self, id: VarId) -> Option<&mut Variable> {
        self.units.iter_mut().flat_map(|u| &mut u.variables).find(|v| v.id == id)
    }

    /// Every function that refers to `target` (call, tail call, or a pointer
    /// in a variable: then the variable's unit functions are not users, but
    /// the target is still used, which `is_used` reports).
    pub fn callers_of(&self, target: FuncId) -> Vec<FuncId> {
        self.functions().filter(|(_, f)| f.calls(target)).map(|(_, f)| f.id).collect()
    }

    /// Something refers to `target`: a call or a pointer in data.
    pub fn is_used(&self, target: FuncId) -> bool {
        !self.callers_of(target).is_empty()
            || self.units.iter().flat_map(|u| &u.variables).any(|v| v.pointers.iter().any(|p| p.1 == target))
    }
}

impl Function {
    /// The ops of the body and of the cold part.
    pub fn all_ops(&self) -> impl Iterator<Item = &Op> {
        self.body.iter().chain(self.cold.iter().flatten())
    }

    pub fn calls(&self, target: FuncId) -> bool {
        let is_target = |c: &Callee| *c == Callee::Func(target);
        self.all_ops().any(|op| matches!(op, Op::Call { callee } if is_target(callee)))
            || matches!(&self.ending, Ending::TailCall(c) if is_target(c))
    }

    /// Variables the function refers to.
    pub fn variables(&self) -> impl Iterator<Item = VarId> + '_ {
        self.all_ops().filter_map(|op| match *op {
            Op::Load { var, .. } | Op::Store { var, .. } | Op::Bump { var, .. } | Op::AddressOf { var } => Some(var),
            Op::JumpLabel { key: Key::Var(var), .. } => Some(var),
            _ => None,
        })
    }
}
