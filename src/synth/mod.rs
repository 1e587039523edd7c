//! The ELF synthesizer: programs with known answers for the differ.
//!
//! From a seed (or a fuzzer's bytes) [`generate`] builds a [`model::Program`] of
//! several translation units; [`mutate`] applies mutations whose effect on
//! `klp diff` is known and records it in a [`truth::Truth`]; [`write`]
//! turns each side into an x86-64 relocatable object (code by [`encode`],
//! ELF by [`elf`]).

pub mod elf;
pub mod encode;
pub mod entropy;
pub mod generate;
pub mod model;
pub mod mutate;
pub mod truth;
pub mod write;

use entropy::Entropy;
use mutate::{Mutation, Mutator};
use truth::Answer;

/// What to synthesize: `klp synth --seed N --functions M --mutations K`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub seed: u64,
    pub functions: usize,
    pub mutations: usize,
}

impl Request {
    /// The command line that rebuilds this pair.
    pub fn command(&self) -> String {
        format!(
            "klp synth --seed {} --functions {} --mutations {} --truth t.json a.o b.o",
            self.seed, self.functions, self.mutations
        )
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
    synthesize_from(&mut Entropy::from_seed(req.seed), req.functions, req.mutations, mutate::ALL)
}

/// A pair from any source of choices, with mutations drawn from `allowed`.
pub fn synthesize_from(
    e: &mut Entropy,
    functions: usize,
    mutations: usize,
    allowed: &[Mutation],
) -> Result<Pair, String> {
    let orig = generate::program(e, functions);
    let mut m = Mutator::new(e, orig.clone());
    let applied = mutate::mutate(&mut m, mutations, allowed);
    let answer = truth::resolve(&m.effects, &orig, &m.p);
    Ok(Pair { orig: write::write(&orig)?, patched: write::write(&m.p)?, answer, applied })
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
            let pair =
                synthesize_from(&mut Entropy::from_bytes(data), 1 + data.len() % 60, data.len() % 7, mutate::ALL)
                    .unwrap_or_else(|e| panic!("{} bytes: {e}", data.len()));
            for bytes in [&pair.orig, &pair.patched] {
                crate::elf::ElfObject::parse(std::path::Path::new("x.o"), bytes).expect("klp reads it");
            }
        }
    }

    #[test]
    fn the_command_names_the_request() {
        let r = Request { seed: 7, functions: 2000, mutations: 5 };
        assert_eq!(r.command(), "klp synth --seed 7 --functions 2000 --mutations 5 --truth t.json a.o b.o");
    }
}
