// SPDX-License-Identifier: GPL-2.0-or-later
/* Unit b: a static bump() of its own, promoted as a's is. */
static int counter;
static __attribute__((noinline)) void bump(int n) { counter -= n; asm volatile("" ::: "memory"); }
static __attribute__((noinline)) int b_only(int x) { asm volatile(""); return x * 5 - counter; }
void b_hit(int n) { bump(n); }
int b_get(int x) { return b_only(x); }
