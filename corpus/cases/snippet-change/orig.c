// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Out-of-line slow paths in one executable section shared by every function
 * of the file, with no symbol of their own: a function jumps to its snippet
 * by section symbol plus offset and the snippet jumps back, the shape of
 * older kernels' static_cpu_has() snippets in .altinstr_aux and of .fixup.
 * The patch changes only ring_fast_read's snippet: it tests bit 8, not bit 1
 * (same length, so nothing moves).
 */
#define __init	__attribute__((__section__(".init.text"))) __attribute__((__cold__))

#define SLOWPATH_IF(bit, v, label)					\
	asm goto("jmp 6f\n"						\
		 "7:\n"							\
		 ".pushsection .text.klp_slowpaths,\"ax\"\n"		\
		 "6:\ttestl $" #bit ", %k[val]\n"			\
		 "\tjnz %l[" #label "]\n"				\
		 "\tjmp 7b\n"						\
		 ".popsection\n"					\
		 : : [val] "r" (v) : : label)

extern int ring_slow(int v);

int ring_fast_read(int v)
{
	SLOWPATH_IF(1, v, slow);
	return v + 1;
slow:
	return ring_slow(v);
}

int __init ring_setup(int v)
{
	SLOWPATH_IF(2, v, slow);
	return v;
slow:
	return -v;
}
