// SPDX-License-Identifier: GPL-2.0-or-later
/* Unit e of a merged object: a static helper() like every other unit's. */
static __attribute__((noinline)) int helper(int v)
{
	asm volatile("");
	return v * 11 + 1;
}

int e_use(int v)
{
	return helper(v);
}
