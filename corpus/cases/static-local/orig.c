// SPDX-License-Identifier: GPL-2.0-or-later
/* A function with a function-local static counter changes; the static does not. */

extern int printk(const char *fmt, ...);

int rate_limited_warn(int code)
{
	static int counter = 10;

	if (counter <= 0)
		return 0;
	counter--;
	printk("warning %d\n", code);
	return 1;
}

int warn_budget_left(int x)
{
	return x + 1;
}
