// SPDX-License-Identifier: GPL-2.0-or-later
/* Unit a: a static bump(), promoted when c.c imports a_hit(). */
static int counter;
static __attribute__((noinline)) void bump(int n) { counter += 2 * n; asm volatile("" ::: "memory"); }
void a_hit(int n) { bump(n); }
