// SPDX-License-Identifier: GPL-2.0-or-later
/* Unit b: a static bump(), promoted when c.c imports b_hit(). */
static int counter;
static __attribute__((noinline)) void bump(int n) { counter -= 3 * n; asm volatile("" ::: "memory"); }
void b_hit(int n) { bump(n); }
