// SPDX-License-Identifier: GPL-2.0-or-later
/* Functions each own a `static int calls`; gcc names them calls.N. */

extern int printk(const char *fmt, ...);

int rx_event(int n)
{
	static int calls = 100;

	calls += n;
	return calls;
}

int tx_event(int n)
{
	static int calls = 200;

	if (n < 0)
		return calls;
	calls -= n;
	return calls;
}

int err_event(int n)
{
	static int calls;

	calls++;
	return printk("err %d after %d\n", n, calls);
}
