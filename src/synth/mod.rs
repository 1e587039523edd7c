//! The ELF synthesizer: programs with known answers for the differ.
//!
//! From a seed (or a fuzzer's bytes) [`generate`] builds a [`model::Program`] of
//! several translation units; [`mutate`] applies mutations whose effect on
//! `klp diff` is known and records it in a [`truth::Truth`]; [`write`](mod@write)
//! turns each side into an x86-64 relocatable object (code by [`encode`],
//! ELF by [`elf`]), in the translation-unit or the merged form of
//! [`layout`].

pub mod elf;
pub mod encode;
pub mod entropy;
pub mod generate;
pub mod layout;
pub mod model;
pub mod mutate;
pub mod truth;
pub mod write;

use entropy::Entropy;
pub use layout::Layout;
use mutate::{Mutation, Mutator};
use truth::Answer;

/// What to synthesize: `klp synth --seed N --functions M --mutations K
/// [--merged] [--sections-over-64k]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub seed: u64,
    pub functions: usize,
    pub mutations: usize,
    pub layout: Layout,
}

impl Request {
    /// The command line that rebuilds this pair.
    pub fn command(&self) -> String {
        let merged = if self.layout.merged { " --merged" } else { "" };
        let many = if self.layout.sections_over_64k { " --sections-over-64k" } else { "" };
        format!(
            "klp synth --seed {} --functions {} --mutations {}{merged}{many} --truth t.json a.o b.o",
            self.seed, self.functions, self.mutations
        )
    }

    /// The functions the program gets: as asked, or as many as more than
    /// 65,280 sections need.
    pub fn function_count(&self) -> usize {
        match self.layout.sections_over_64k {
            true => self.functions.max(layout::functions_over_64k(self.layout)),
            false => self.functions,
        }
    }
}

/// An original and a patched object, and what a correct differ reports.
#[derive(Debug, Clone)]
pub struct Pair {
    pub orig: Vec<u8>,
    pub patched: Vec<u8>,
    pub answer: Answer,
    pub applied: Vec<Mutation>,
}

/// The pair a request describes: the same bytes for the same request.
pub fn synthesize(req: &Request) -> Result<Pair, String> {
    let e = &mut Entropy::from_seed(req.seed);
    synthesize_from(e, req.function_count(), req.mutations, mutate::ALL, req.layout)
}

/// A pair from any source of choices, with mutations drawn from `allowed`.
pub fn synthesize_from(
    e: &mut Entropy,
    functions: usize,
    mutations: usize,
    allowed: &[Mutation],
    layout: Layout,
) -> Result<Pair, String> {
    let orig = generate::program(e, functions);
    let mut m = Mutator::new(e, orig.clone());
    let applied = mutate::mutate(&mut m, mutations, allowed);
    let answer = truth::resolve(&m.effects, &orig, &m.p);
    Ok(Pair { orig: write::write(&orig, layout)?, patched: write::write(&m.p, layout)?, answer, applied })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_bytes_give_a_pair_that_klp_reads() {
        // What a fuzzer would feed: short, long, empty, all-ones.
        let mut seed = entropy::SplitMix64(99);
        let inputs: Vec<Vec<u8>> = (0..40)
            .map(|i| (0..i * 37).map(|_| seed.next_u64() as u8).collect())
            .chain([vec![], vec![0xff; 4096]])
            .collect();
        for data in &inputs {
            let layout = Layout { merged: data.len() % 2 == 1, sections_over_64k: false };
            let (functions, mutations) = (1 + data.len() % 60, data.len() % 7);
            let pair = synthesize_from(&mut Entropy::from_bytes(data), functions, mutations, mutate::ALL, layout)
                .unwrap_or_else(|e| panic!("{} bytes: {e}", data.len()));
            for bytes in [&pair.orig, &pair.patched] {
                crate::elf::ElfObject::parse(std::path::Path::new("x.o"), bytes).expect("klp reads it");
            }
        }
    }

    #[test]
    fn the_command_names_the_request() {
        let r = Request { seed: 7, functions: 2000, mutations: 5, layout: Layout::default() };
        assert_eq!(r.command(), "klp synth --seed 7 --functions 2000 --mutations 5 --truth t.json a.o b.o");
        let both = Layout { merged: true, sections_over_64k: true };
        let r = Request { layout: both, ..r };
        assert!(r.command().contains("--mutations 5 --merged --sections-over-64k --truth"), "{}", r.command());
        assert_eq!(r.function_count(), layout::functions_over_64k(both));
    }
}
