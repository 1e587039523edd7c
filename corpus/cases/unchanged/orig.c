// SPDX-License-Identifier: GPL-2.0-or-later
/* Nothing but a comment changes. */
#define noinline	__attribute__((__noinline__))

extern int printk(const char *fmt, ...);

static int seq_base = 7;
static const char *const seq_names[] = { "idle", "busy", "dead" };

static noinline int seq_next(int v)
{
	return v * 31 + seq_base;
}

int seq_show(int state, int v)
{
	if (state < 0 || state > 2)
		return -22;
	return printk("%s: %d\n", seq_names[state], seq_next(v));
}

void seq_set_base(int b)
{
	seq_base = b;
}
