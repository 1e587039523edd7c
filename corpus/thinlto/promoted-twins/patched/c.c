// SPDX-License-Identifier: GPL-2.0-or-later
/* Unit c imports a's and b's small functions, and with them their statics. */
void a_hit(int); void b_hit(int); int a_get(int); int b_get(int); int a_calc(int);
int use_all(int n) { a_hit(n); b_hit(n); return a_get(n) + b_get(n) + a_calc(n); }
