// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Two functions read the TSC through x86-style alternatives: `rdtsc`
 * (NOP-padded to the replacement's length) at label 661, replaced by
 * `rdtscp` (X86_FEATURE_RDTSCP) in clk_stamp_sample() and by
 * `lfence; rdtsc` (X86_FEATURE_LFENCE_RDTSC) in clk_stamp_start().  Each
 * site has a 14-byte .altinstructions entry {s32 instr, s32 repl,
 * u32 ft_flags, u8 instrlen, u8 replacementlen} and its replacement bytes
 * in .altinstr_replacement.  The patch changes only the replacement code
 * of clk_stamp_start()'s alternative: `lfence; rdtsc` becomes
 * `mfence; rdtsc` (the same length); the function's own bytes and its
 * .altinstructions entry stay the same.
 */
#define __always_inline	inline __attribute__((__always_inline__))
#define __stringify_1(x)	#x
#define __stringify(x)		__stringify_1(x)

#define X86_FEATURE_RDTSCP	(1 * 32 + 27)
#define X86_FEATURE_LFENCE_RDTSC	(3 * 32 + 18)

#define alt_orig_len	"(662b - 661b)"
#define alt_repl_len	"(6651f - 6641f)"
#define alt_pad_len	"((" alt_repl_len " - " alt_orig_len ") > 0) * "	\
			"(" alt_repl_len " - " alt_orig_len ")"

#define ALTERNATIVE(oldinstr, newinstr, ft_flags)			\
	"661:\n\t" oldinstr "\n"					\
	"662:\n\t"							\
	".skip -(" alt_pad_len "), 0x90\n"				\
	"663:\n"							\
	".pushsection .altinstructions, \"a\"\n"			\
	"\t.long 661b - .\n"						\
	"\t.long 6641f - .\n"						\
	"\t.4byte " __stringify(ft_flags) "\n"				\
	"\t.byte 663b - 661b\n"						\
	"\t.byte " alt_repl_len "\n"					\
	".popsection\n"							\
	".pushsection .altinstr_replacement, \"ax\"\n"			\
	"6641:\n\t" newinstr "\n"					\
	"6651:\n"							\
	".popsection\n"

static __always_inline unsigned long long clk_cycles(void)
{
	unsigned int lo, hi;

	asm volatile(ALTERNATIVE("rdtsc", "rdtscp", X86_FEATURE_RDTSCP)
		     : "=a" (lo), "=d" (hi) : : "ecx");
	return ((unsigned long long)hi << 32) | lo;
}

static __always_inline unsigned long long clk_cycles_ordered(void)
{
	unsigned int lo, hi;

	asm volatile(ALTERNATIVE("rdtsc", "lfence; rdtsc",
				 X86_FEATURE_LFENCE_RDTSC)
		     : "=a" (lo), "=d" (hi) : : "memory");
	return ((unsigned long long)hi << 32) | lo;
}

struct clk_stamp {
	unsigned long long start;
	unsigned long long last;
	unsigned int samples;
};

void clk_stamp_start(struct clk_stamp *s)
{
	s->start = s->last = clk_cycles_ordered();
	s->samples = 0;
}

unsigned long long clk_stamp_sample(struct clk_stamp *s)
{
	unsigned long long now = clk_cycles();
	unsigned long long delta = now - s->last;

	s->last = now;
	s->samples++;
	return delta;
}
