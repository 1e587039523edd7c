// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The layouts of the kernel structures the tests decode, written from the
 * kernel's own definitions (x86-64 Linux 6.12, and upstream's livepatch
 * tables of v6.19), not from klp's constants. Compiled by the host gcc at
 * test time (same LP64 ABI as the kernel) by verify/common/layouts.rs; prints
 * `sizeof STRUCT N`, `offsetof STRUCT.FIELD N` and `section NAME N` (the entry
 * size of each special section) lines.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef int32_t s32;
typedef uint32_t u32;
typedef uint8_t u8;
#define __packed __attribute__((__packed__))

/* include/linux/jump_label.h, CONFIG_HAVE_ARCH_JUMP_LABEL_RELATIVE (x86-64) */
struct jump_entry {
	s32 code;
	s32 target;
	long key;	/* key address; bits 0 and 1 are flags */
};

/* arch/x86/include/asm/extable.h */
struct exception_table_entry {
	int insn, fixup, data;
};

/* arch/x86/include/asm/alternative.h */
struct alt_instr {
	s32 instr_offset;	/* original instruction */
	s32 repl_offset;	/* offset to replacement instruction */
	union {
		struct {
			u32 cpuid: 16;	/* CPUID bit set for replacement */
			u32 flags: 16;	/* patching control flags */
		};
		u32 ft_flags;
	};
	u8 instrlen;		/* length of original instruction */
	u8 replacementlen;	/* length of new instruction */
} __packed;

/* include/linux/static_call_types.h */
struct static_call_site {
	s32 addr;
	s32 key;
};

/*
 * include/asm-generic/bug.h with CONFIG_GENERIC_BUG_RELATIVE_POINTERS (x86-64)
 * and CONFIG_DEBUG_BUGVERBOSE (x86_64_defconfig)
 */
struct bug_entry {
	signed int bug_addr_disp;
	signed int file_disp;
	unsigned short line;
	unsigned short flags;
};

/* include/linux/livepatch_external.h (v6.19): what .init.klp_funcs holds */
struct klp_func_ext {
	const char *old_name;
	void *new_func;
	unsigned long sympos;
};

/* tools/objtool/include/objtool/klp.h (v6.19): what __klp_relocs holds */
struct klp_reloc {
	void *offset;
	void *sym;
	u32 type;
};

#define SIZE(s) printf("sizeof %s %zu\n", #s, sizeof(struct s))
#define OFFSET(s, f) printf("offsetof %s.%s %zu\n", #s, #f, offsetof(struct s, f))
#define SECTION(name, s) printf("section %s %zu\n", name, sizeof(struct s))

int main(void)
{
	SIZE(jump_entry);
	SIZE(exception_table_entry);
	SIZE(alt_instr);
	SIZE(static_call_site);
	SIZE(bug_entry);
	SIZE(klp_func_ext);
	OFFSET(klp_func_ext, old_name);
	OFFSET(klp_func_ext, new_func);
	OFFSET(klp_func_ext, sympos);
	SIZE(klp_reloc);
	OFFSET(klp_reloc, offset);
	OFFSET(klp_reloc, sym);
	OFFSET(klp_reloc, type);
	/* Which structure each section is an array of (the kernel's headers and
	 * include/asm-generic/vmlinux.lds.h). */
	SECTION("__jump_table", jump_entry);
	SECTION("__ex_table", exception_table_entry);
	SECTION(".altinstructions", alt_instr);
	SECTION(".static_call_sites", static_call_site);
	SECTION("__bug_table", bug_entry);
	return 0;
}
