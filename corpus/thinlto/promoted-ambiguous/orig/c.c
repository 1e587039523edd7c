// SPDX-License-Identifier: GPL-2.0-or-later
void a_hit(int); void b_hit(int);
void use_all(int n) { a_hit(n); b_hit(n); }
