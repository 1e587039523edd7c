// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Two functions read through a pointer that may fault.  Each load has a
 * 12-byte x86 __ex_table entry {insn - ., fixup - ., type} whose fixup is a
 * C label in the same function (asm goto, as unsafe_get_user() does).
 * Only uaccess_get_flags() changes, so only its entry belongs in the
 * livepatch object.
 */
#define __stringify_1(x)	#x
#define __stringify(x)		__stringify_1(x)

#define EX_TYPE_UACCESS		3
#define EFAULT			14

#define _ASM_EXTABLE(from, to, type)				\
	".pushsection __ex_table, \"a\"\n\t"			\
	".balign 4\n\t"						\
	".long (" #from ") - .\n\t"				\
	".long (" #to ") - .\n\t"				\
	".long " __stringify(type) "\n\t"			\
	".popsection\n\t"

/* Load *ptr into val, or jump to label if the load faults. */
#define read_u32_or_goto(val, ptr, label)				\
	asm goto("1:	movl %[mem], %[out]\n\t"			\
		 _ASM_EXTABLE(1b, %l[label], EX_TYPE_UACCESS)		\
		 : [out] "=r" (val) : [mem] "m" (*(ptr)) : : label)

int uaccess_get_flags(const unsigned int *uptr, unsigned int *flags)
{
	unsigned int v;

	read_u32_or_goto(v, uptr, efault);
	*flags = v & 0xff;
	return 0;
efault:
	return -EFAULT;
}

int uaccess_get_mode(const unsigned int *uptr, unsigned int *mode)
{
	unsigned int v;

	read_u32_or_goto(v, uptr, efault);
	*mode = v >> 24;
	return 0;
efault:
	return -EFAULT;
}
