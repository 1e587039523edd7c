//! What the fuzz targets run, one function per target, on klp's public
//! library API only. The same file is compiled into `verify/fuzz_regressions.rs`,
//! which replays every saved crash input through these functions, so a fix
//! cannot regress silently.
//!
//! The promise each target checks: whatever the bytes, a result or a
//! `klp::error::Error` (one line, naming the file it is about), never a
//! panic; and what klp writes, klp reads back.

use std::path::Path;

use klp::diff::{DiffOptions, Input, checksum_table};
use klp::elf::{ElfObject, SymbolKind};
use klp::error::Error;
use klp::extract::ExtractOptions;
use klp::kernel::abi::Format;
use klp::kernel::kallsyms::{ParentSymbols, SymbolQuery};
use klp::kernel::symvers::Exports;
use klp::module::check::Rule;
use klp::module::oracle::{self, Kernel};
use klp::module::postlink::{self, Outcome};
use klp::pipeline::{DiffRequest, Verdict};
use klp::synth::entropy::Entropy;
use klp::synth::truth::Answer;
use klp::synth::{self as synth, Layout, Pair, Request, mutate};

const OBJECT: &str = "fuzz.o";
const MODULE: &str = "livepatch-fuzz.ko";
const ORIG: &str = "orig.o";
const PATCHED: &str = "patched.o";
const OUT: &str = "OUT.o";

/// Pairs of our own objects that the `diff` target's edit mode mutates.
const PAIRS: [(&[u8], &[u8]); 4] = [
    (include_bytes!("../../corpus/objects/pktdemo.orig.o"), include_bytes!("../../corpus/objects/pktdemo.patched.o")),
    (
        include_bytes!("../../corpus/kernel/slim-scenario/drop_caches.orig.o"),
        include_bytes!("../../corpus/kernel/slim-scenario/drop_caches.patched.o"),
    ),
    (
        include_bytes!("../../corpus/kernel/def-scenario/show_mem.orig.o"),
        include_bytes!("../../corpus/kernel/def-scenario/show_mem.patched.o"),
    ),
    (
        include_bytes!("../../corpus/kernel/def-scenario/mem.orig.o"),
        include_bytes!("../../corpus/kernel/def-scenario/mem.patched.o"),
    ),
];

/// A `Module.symvers` naming what the pairs above call.
const SYMVERS: &str = "0x0\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n\
0x0\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n\
0x0\tkfree\tvmlinux\tEXPORT_SYMBOL\t\n\
0x0\tmemset\tvmlinux\tEXPORT_SYMBOL\t\n\
0x0\tmemcpy\tvmlinux\tEXPORT_SYMBOL\t\n\
0x0\tjiffies\tvmlinux\tEXPORT_SYMBOL\t\n\
0x0\tpkt_log\tvmlinux\tEXPORT_SYMBOL_GPL\tPKT\n";

/// One rayon worker: the fuzzers share a small machine.
pub fn init() {
    let _ = rayon::ThreadPoolBuilder::new().num_threads(1).build_global();
}

/// A message klp prints: one line.
fn assert_one_line(what: &str, s: &str) {
    assert!(!s.chars().any(char::is_control), "{what} is not one line: {s:?}");
}

/// An error of klp's: one line, naming one of `files` when the call was about files.
fn assert_good_error(e: &Error, files: &[&str]) {
    let s = e.to_string();
    assert_one_line("error", &s);
    if !files.is_empty() {
        let named = e.location.file.as_deref().is_some_and(|f| files.iter().any(|&n| f == Path::new(n)));
        assert!(named, "error does not name the file ({files:?}): {s}");
    }
}

/// `parse`: the ELF model and every per-object stage.
pub fn parse(data: &[u8]) {
    let path = Path::new(OBJECT);
    let obj = match ElfObject::parse(path, data) {
        Ok(obj) => Some(obj),
        Err(e) => {
            assert_good_error(&e, &[OBJECT]);
            None
        }
    };
    if let Some(obj) = &obj {
        // The checksums build the special-section index on the way.
        match checksum_table(obj, &DiffOptions::default()) {
            Ok(rows) => assert!(rows.iter().all(|r| !r.checksum.is_empty())),
            Err(e) => assert_good_error(&e, &[OBJECT]),
        }
        model_queries(obj);
    }
    match ParentSymbols::parse(path, data) {
        Ok(parent) => {
            if let Some(obj) = &obj {
                parent_queries(&parent, obj);
            }
        }
        Err(e) => assert_good_error(&e, &[OBJECT]),
    }
    let text = String::from_utf8_lossy(data);
    match Exports::parse(&text) {
        Ok(exports) => {
            let _ = exports.get("printk");
        }
        Err(e) => assert_good_error(&e, &[]),
    }
}

/// The lookups later stages make on a parsed object, over all of it.
fn model_queries(obj: &ElfObject) {
    for sec in &obj.sections {
        for r in sec.relocs.iter() {
            let _ = obj.referent(r, 0);
            let _ = obj.referent(r, 4);
        }
        for id in obj.symbols_in(sec.id).take(256) {
            let s = obj.symbol(id);
            let _ = obj.symbol_at(sec.id, s.value);
            let _ = obj.symbol_at(sec.id, s.end());
            if s.is_cold_child() {
                let _ = obj.cold_parent(id);
            }
        }
    }
    for s in obj.symbols.iter().take(256) {
        let _ = obj.symbols_named(s.name);
        let _ = obj.symbols_demangled(s.demangled());
    }
}

/// Symbol positions of `obj`'s names in `parent`.
fn parent_queries(parent: &ParentSymbols, obj: &ElfObject) {
    for s in obj.symbols.iter().filter(|s| !s.name.is_empty()).take(64) {
        let file = s.file.map(|f| (obj.symbol(f).name, 0));
        let q = SymbolQuery { name: s.name, local: s.is_local(), file };
        let _ = parent.count(s.name);
        let _ = parent.sympos(q);
        let _ = parent.address(q);
        for pos in 0..3 {
            let _ = parent.klp_address(s.name, pos);
        }
    }
}

/// `post_link`: an error, or a module klp reads back and checks.
pub fn post_link(data: &[u8]) {
    let path = Path::new(MODULE);
    match postlink::convert(path, data) {
        Err(e) => assert_good_error(&e, &[MODULE]),
        Ok((None, _)) => {}
        Ok((Some(out), outcome)) => {
            let m = ElfObject::parse(path, &out)
                .unwrap_or_else(|e| panic!("post-link wrote a module klp cannot read: {e}"));
            let (violations, _) = klp::module::check::check(&m, None);
            for v in &violations {
                assert_one_line("violation", &v.to_string());
            }
            if matches!(outcome, Outcome::Converted { sections, .. } if sections > 0) {
                let again = postlink::convert(path, &out).map(|(_, o)| o);
                assert_eq!(again, Ok(Outcome::AlreadyConverted), "a converted module converted again");
            }
        }
    }
}

/// `check`: `klp check` and the loader oracle on a module.
pub fn check(data: &[u8]) {
    let path = Path::new(MODULE);
    let m = match ElfObject::parse(path, data) {
        Ok(m) => m,
        Err(e) => return assert_good_error(&e, &[MODULE]),
    };
    let (violations, _) = klp::module::check::check(&m, None);
    for v in &violations {
        assert_one_line("violation", &v.to_string());
    }
    // The module as its own parent: its symbol table read as kallsyms would.
    match ParentSymbols::parse(path, data) {
        Ok(parent) => {
            let _ = klp::module::check::check(&m, Some(&parent));
        }
        Err(e) => assert_good_error(&e, &[MODULE]),
    }
    // The oracle: the module relocated as the kernel would and compared with
    // the patched object the seeds were built from, the original standing
    // in for the kernel; then with itself as the patched object, and itself
    // as the kernel (stand-in and parent).
    let (orig_bytes, patched_bytes) = PAIRS[0];
    let orig = ElfObject::parse(Path::new(ORIG), orig_bytes).expect("our own object parses");
    let patched = ElfObject::parse(Path::new(PATCHED), patched_bytes).expect("our own object parses");
    let kernel = Kernel::parse_stand_in(Path::new(ORIG), orig_bytes).expect("our own object stands in");
    verdicts(oracle::verify(&m, &patched, &kernel, Some(&orig)));
    for kernel in [Kernel::parse_stand_in(path, data), Kernel::parse_parent(path, data)] {
        match kernel {
            Ok(kernel) => verdicts(oracle::verify(&m, &m, &kernel, Some(&m))),
            Err(e) => assert_one_line("oracle error", &e),
        }
    }
}

fn verdicts(v: Vec<oracle::FunctionVerdict>) {
    for f in v {
        if let oracle::Verdict::Wrong(why) | oracle::Verdict::Unverified(why) = &f.verdict {
            assert_one_line("oracle verdict", why);
        }
    }
}

/// How the `diff` target reads its input.
///
/// Byte 0 holds flags: bit 0 chooses the mode, bit 1 the v6.19 format,
/// bit 2 a `Module.symvers`, bit 3 the original object as `--parent`,
/// bit 4 no `--objname` (taken from `.modinfo` or the path).
/// - split mode (bit 0 clear): bytes 1..5 are the original object's length
///   n (little endian, cut to what is there); the original is the next n
///   bytes, the patched object the rest.
/// - edit mode (bit 0 set): byte 1 picks one of [`PAIRS`]; then edits of 13
///   bytes each: a byte whose bit 0 picks the side (0 patched, 1 original)
///   and bits 1-2 the width (1, 2, 4 or 8 bytes), a 4-byte offset (modulo
///   the object's length), and 8 bytes of value (little endian, cut to the width).
///
/// - structured mode (bit 7 set; bit 3 then asks for the `ld -r` merged
///   form): byte 1 gives the number of functions,
///   byte 2 the number of mutations, and the rest are the synthesizer's
///   choices ([`klp::synth::synthesize_from`]): a valid pair with a known
///   answer, see [`structured`].
///
/// In edit mode, a pick with bit 7 set edits a synthesized pair (its seed
/// the pick's low bits) instead of one of [`PAIRS`].
///
/// Returns the livepatch object written, if any.
pub fn diff(data: &[u8]) -> Option<Vec<u8>> {
    if data.first().is_some_and(|flags| flags & STRUCTURED != 0) {
        return structured(data);
    }
    let case = DiffCase::decode(data)?;
    let outcome = match case.run() {
        Ok(o) => o,
        Err(e) => {
            assert_good_error(&e, &[ORIG, PATCHED]);
            return None;
        }
    };
    for w in &outcome.warnings {
        assert_one_line("warning", w);
    }
    match outcome.verdict {
        Verdict::Unchanged => None,
        Verdict::Unpatchable(reasons) => {
            for r in &reasons {
                assert_one_line("refusal", r);
            }
            None
        }
        Verdict::Livepatch(bytes) => {
            read_back(&bytes, case.orig.len() + case.patched.len());
            Some(bytes)
        }
    }
}

/// The `diff` target's input, decoded: two objects and the flags.
pub struct DiffCase {
    pub orig: Vec<u8>,
    pub patched: Vec<u8>,
    pub flags: u8,
}

/// The paths the `diff` target's objects are known by in klp's messages.
pub const DIFF_PATHS: (&str, &str) = (ORIG, PATCHED);

impl DiffCase {
    pub fn decode(data: &[u8]) -> Option<DiffCase> {
        let (&flags, rest) = data.split_first()?;
        let (orig, patched) = if flags & 1 == 0 {
            let (len, rest) = rest.split_first_chunk::<4>()?;
            let n = (u32::from_le_bytes(*len) as usize).min(rest.len());
            (rest[..n].to_vec(), rest[n..].to_vec())
        } else {
            let (&pick, edits) = rest.split_first()?;
            let (mut o, mut p) = if pick & 0x80 != 0 {
                let pair = synthesized_pair(u64::from(pick & 0x7f));
                (pair.orig, pair.patched)
            } else {
                let (o, p) = PAIRS[usize::from(pick) % PAIRS.len()];
                (o.to_vec(), p.to_vec())
            };
            for e in edits.chunks_exact(13) {
                let side = if e[0] & 1 == 0 { &mut p } else { &mut o };
                let width = 1usize << ((e[0] >> 1) & 3);
                let at = u32::from_le_bytes(e[1..5].try_into().unwrap()) as usize % side.len();
                let end = (at + width).min(side.len());
                side[at..end].copy_from_slice(&e[5..5 + (end - at)]);
            }
            (o, p)
        };
        Some(DiffCase { orig, patched, flags })
    }

    /// `klp diff` in-process, extraction and writing included.
    pub fn run(&self) -> klp::error::Result<klp::pipeline::DiffOutcome> {
        let flags = self.flags;
        let exports = Exports::parse(SYMVERS).expect("our symvers parses");
        let parent = if flags & 8 != 0 { ParentSymbols::parse(Path::new(ORIG), &self.orig).ok() } else { None };
        let request = DiffRequest {
            orig: Input::new(Path::new(ORIG), &self.orig),
            patched: Input::new(Path::new(PATCHED), &self.patched),
            diff: DiffOptions::default(),
            extract: ExtractOptions {
                objname: (flags & 16 == 0).then(|| "vmlinux".to_owned()),
                exports: (flags & 4 != 0).then_some(&exports),
                parent: parent.as_ref(),
                format: if flags & 2 != 0 { Format::V6_19 } else { Format::Current },
            },
            explain: Vec::new(),
        };
        klp::pipeline::diff(&request)
    }
}

/// What `klp diff` wrote: klp reads it, checksums it and checks it.
fn read_back(bytes: &[u8], input_len: usize) {
    // Memory and output proportional to the input.
    assert!(
        bytes.len() <= 16 * input_len + (128 << 20),
        "{} bytes written from {input_len} bytes of input",
        bytes.len()
    );
    let out =
        ElfObject::parse(Path::new(OUT), bytes).unwrap_or_else(|e| panic!("klp diff wrote what klp rejects: {e}"));
    match checksum_table(&out, &DiffOptions::default()) {
        Ok(_) => {}
        Err(e) => panic!("klp diff wrote what klp checksum rejects: {e}"),
    }
    for s in &out.sections {
        let t = s.sh_type;
        let ok = [
            object_type::NULL,
            object_type::PROGBITS,
            object_type::SYMTAB,
            object_type::STRTAB,
            object_type::RELA,
            object_type::NOBITS,
            object_type::NOTE,
            object_type::INIT_ARRAY,
            object_type::FINI_ARRAY,
            object_type::PREINIT_ARRAY,
            object_type::SYMTAB_SHNDX,
        ];
        assert!(ok.contains(&t), "klp diff wrote section {} of type {t:#x}", s.name);
    }
    for sym in &out.symbols {
        if sym.kind == SymbolKind::Func {
            assert!(sym.is_defined() || sym.size == 0);
        }
    }
    let _ = klp::module::check::check(&out, None);
}

/// ELF section types (`object::elf::SHT_*`, without depending on `object`).
mod object_type {
    pub const NULL: u32 = 0;
    pub const PROGBITS: u32 = 1;
    pub const SYMTAB: u32 = 2;
    pub const STRTAB: u32 = 3;
    pub const RELA: u32 = 4;
    pub const NOBITS: u32 = 8;
    pub const NOTE: u32 = 7;
    pub const INIT_ARRAY: u32 = 14;
    pub const FINI_ARRAY: u32 = 15;
    pub const PREINIT_ARRAY: u32 = 16;
    pub const SYMTAB_SHNDX: u32 = 18;
}

/// Byte 0 of the `diff` target's input: structured mode.
const STRUCTURED: u8 = 0x80;

/// The synthesized pair of `seed` that edit mode mutates: small and valid.
fn synthesized_pair(seed: u64) -> Pair {
    let layout = Layout { merged: seed % 2 == 1, sections_over_64k: false };
    let req = Request { seed, functions: 8 + (seed % 40) as usize, mutations: 1 + (seed % 5) as usize, layout };
    synth::synthesize(&req).unwrap_or_else(|e| panic!("{}: the synthesizer failed: {e}", req.command()))
}

/// Structured mode: a synthesized pair with a known answer, diffed in-process.
/// What must hold, since the pair is valid:
/// - `klp diff` succeeds and reports exactly the synthesizer's truth
///   (changed, new, removed, line-only, refused, new data) and its verdict;
/// - OUT.o reads back, as in the byte modes;
/// - post-link converts OUT.o, standing in for the linked module (its
///   `__klp_relocs` refer to its own sections, as after `ld -r` with the
///   skeleton), into a module `klp check` finds nothing wrong with, and a
///   second post-link is a no-op;
/// - each side diffed against itself reports nothing and writes nothing.
fn structured(data: &[u8]) -> Option<Vec<u8>> {
    let [flags, functions, mutations, choices @ ..] = data else { return None };
    let (functions, mutations) = (1 + usize::from(functions % 64), usize::from(mutations % 8));
    // Bit 3 (`--parent` in the byte modes) picks the `ld -r` merged form.
    let layout = Layout { merged: flags & 8 != 0, sections_over_64k: false };
    let pair = synth::synthesize_from(&mut Entropy::from_bytes(choices), functions, mutations, mutate::ALL, layout)
        .unwrap_or_else(|e| panic!("the synthesizer failed: {e}"));
    // `--parent` with the original object is a byte-mode game (a relocatable
    // object is not a linked kernel), and without `--objname` klp rightly
    // refuses a translation unit: structured mode keeps `--objname vmlinux`.
    let flags = flags & !(8 | 16);
    for side in [&pair.orig, &pair.patched] {
        let same = DiffCase { orig: side.clone(), patched: side.clone(), flags };
        let outcome = same.run().unwrap_or_else(|e| panic!("self-diff failed: {e}"));
        assert!(matches!(outcome.verdict, Verdict::Unchanged), "self-diff found changes: {:?}", outcome.report.changed);
    }
    let case = DiffCase { orig: pair.orig.clone(), patched: pair.patched.clone(), flags };
    let outcome = case.run().unwrap_or_else(|e| panic!("klp diff failed on a valid pair ({:?}): {e}", pair.applied));
    if let Err(wrong) = exactly_the_truth(&outcome, &pair.answer) {
        panic!("mutations {:?}: {wrong}", pair.applied);
    }
    let Verdict::Livepatch(bytes) = outcome.verdict else { return None };
    read_back(&bytes, case.orig.len() + case.patched.len());
    post_link_clean(&bytes);
    Some(bytes)
}

/// The report's sets against the answer; the verdict refuses exactly when
/// the truth has refusals.
fn exactly_the_truth(outcome: &klp::pipeline::DiffOutcome, answer: &Answer) -> Result<(), String> {
    let (r, t) = (&outcome.report, &answer.truth);
    let sorted = |v: Vec<String>| {
        let mut v = v;
        v.sort();
        v
    };
    let refused = r.refusals.iter().map(|x| x.symbol.clone()).collect();
    let sets = [
        ("changed", &t.changed, sorted(r.changed.clone())),
        ("new", &t.new, sorted(r.new_functions.clone())),
        ("removed", &t.removed, sorted(r.removed.clone())),
        ("line_only", &t.line_only, sorted(r.line_only.clone())),
        ("refused", &t.refused, sorted(refused)),
        ("new data", &answer.new_data, sorted(r.new_data.clone())),
    ];
    let mut wrong: Vec<String> = sets
        .into_iter()
        .filter(|(_, want, got)| *want != got)
        .map(|(name, want, got)| format!("{name}: expected {want:?}, klp said {got:?}"))
        .collect();
    let refused_verdict = matches!(outcome.verdict, Verdict::Unpatchable(_));
    if refused_verdict == t.refused.is_empty() {
        wrong.push(format!("refused verdict {refused_verdict}, truth refused {:?}", t.refused));
    }
    // Removed and line-only functions need no livepatch: nothing to write.
    let nothing_to_patch = t.changed.is_empty() && t.new.is_empty() && t.refused.is_empty();
    if matches!(outcome.verdict, Verdict::Unchanged) != nothing_to_patch {
        let verdict = match outcome.verdict {
            Verdict::Unchanged => "unchanged",
            Verdict::Unpatchable(_) => "unpatchable",
            Verdict::Livepatch(_) => "a livepatch",
        };
        wrong.push(format!("verdict {verdict} while the truth is {t:?}"));
    }
    if wrong.is_empty() { Ok(()) } else { Err(wrong.join("; ")) }
}

/// Post-link of a valid OUT.o: converted (or nothing to convert), klp
/// check's rules hold, and a second conversion changes nothing.
fn post_link_clean(out: &[u8]) {
    let path = Path::new(MODULE);
    let (converted, outcome) =
        postlink::convert(path, out).unwrap_or_else(|e| panic!("post-link rejects klp diff's output: {e}"));
    let module = match (converted, &outcome) {
        (Some(bytes), Outcome::Converted { .. }) => bytes,
        (None, Outcome::NothingToConvert) => out.to_vec(),
        (_, o) => panic!("post-link of a fresh OUT.o: {o:?}"),
    };
    let m = ElfObject::parse(path, &module).unwrap_or_else(|e| panic!("post-link wrote what klp rejects: {e}"));
    // `.modinfo` comes with the skeleton at link time; every other rule applies.
    let (violations, _) = klp::module::check::check(&m, None);
    let from_link = |r: &Rule| matches!(r, Rule::ModinfoLivepatch | Rule::ModinfoLicense);
    if let Some(v) = violations.iter().find(|v| !from_link(&v.rule)) {
        panic!("klp check: {v}");
    }
    let (again, _) = postlink::convert(path, &module).unwrap_or_else(|e| panic!("second post-link: {e}"));
    assert!(again.is_none(), "a second post-link changed the module");
}
