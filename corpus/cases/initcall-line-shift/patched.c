// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * An initcall as the kernel's define_initcall() names it:
 * __initcall__kmod_<module>__<counter>_<line>_<function><level>, a pointer
 * in .initcall6.init. A line added above it (patched.c) renames it; it is
 * the kernel's own boot-time table, never patched and never paired, so the
 * rename is no change at all.
 */
/* one more line */
typedef int (*initcall_t)(void);

static int counter;

__attribute__((section(".init.text"), used)) static int demo_setup(void)
{
	counter = 1;
	return 0;
}

__attribute__((used, section(".initcall6.init")))
static initcall_t __initcall__kmod_demo__301_25_demo_setup6 = demo_setup;

int demo_read(void)
{
	return counter;
}
