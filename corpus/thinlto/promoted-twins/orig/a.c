// SPDX-License-Identifier: GPL-2.0-or-later
/* Unit a: statics that ThinLTO promotes when c.c imports a_hit() and a_get(). */
static int counter;
static __attribute__((noinline)) void bump(int n) { counter += n; asm volatile("" ::: "memory"); }
static __attribute__((noinline)) int a_only(int x) { asm volatile(""); return x * 3 + counter; }
static __attribute__((noinline)) int helper(int x) { asm volatile(""); return x ^ 0x5a; }
void a_hit(int n) { bump(n); }
int a_get(int x) { return a_only(x); }
int a_calc(int x) { return helper(x) + 1; }
