// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * What a patch may change that is not code to patch: a section it asks to
 * ignore, a function it asks to ignore (kpatch's KPATCH_IGNORE_SECTION and
 * KPATCH_IGNORE_FUNCTION), and metadata sections (.modinfo), which are not
 * state of the running kernel.
 */
#define KPATCH_IGNORE_SECTION(_sec) \
	static char *__UNIQUE_ID_kpatch_ignore_section_##__LINE__ \
	__attribute__((section(".kpatch.ignore.sections"), used)) = _sec;
#define KPATCH_IGNORE_FUNCTION(_fn) \
	static void *__kpatch_ignore_func_##_fn \
	__attribute__((section(".kpatch.ignore.functions"), used)) = _fn;

extern int printk_stub(const char *fmt, ...);

/* Debug bookkeeping whose initial value the patch changes. */
int scratch_counter __attribute__((section(".data.scratch"))) = 2;
int scratch_limit __attribute__((section(".data.scratch"))) = 2;

static const char modinfo_desc[] __attribute__((section(".modinfo"), used, aligned(1))) =
	"description=pump driver, fixed";
static const char modinfo_version[] __attribute__((section(".modinfo"), used, aligned(1))) =
	"version=2";

int pump_debug_dump(int v)
{
	return printk_stub("pump state %d\n", v);
}

int pump_rate(int v)
{
	return v * 3 + 1;
}

/* A new object: fine to add, reported as new data. */
int pump_rate_bias = 1;

KPATCH_IGNORE_SECTION(".data.scratch")
KPATCH_IGNORE_FUNCTION(pump_debug_dump)
