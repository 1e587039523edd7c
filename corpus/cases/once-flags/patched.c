// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Flags the kernel keeps per call site: DO_ONCE()'s ___done in .data..once,
 * and a dynamic-debug descriptor in __dyndbg. A patched function gets
 * fresh copies of its own (spec §3.3), never the running kernel's: they
 * are not paired, and the changed function's references to them are
 * copies in the output, not KLP relocations.
 */
#include <stdbool.h>

extern void init_thing(int how);
extern void debug_note(const void *descriptor, int v);

struct _ddebug {
	const char *function;
	const char *format;
	unsigned int flags;
};

void seed(int v)
{
	static bool __attribute__((section(".data..once"))) ___done;
	static struct _ddebug __attribute__((section("__dyndbg"), used)) dd_site = {
		.function = "seed", .format = "seeded %d\n", .flags = 0,
	};

	if (!___done) {
		___done = true;
		init_thing(2);
	}
	debug_note(&dd_site, v);
}
