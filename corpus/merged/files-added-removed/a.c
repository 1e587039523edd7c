// SPDX-License-Identifier: GPL-2.0-or-later
/* Unit a of a merged object: a static helper() like every other unit's. */
static __attribute__((noinline)) int helper(int v)
{
	asm volatile("");
	return v * 7 + 1;
}

int a_use(int v)
{
	return helper(v);
}
