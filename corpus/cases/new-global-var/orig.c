// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The patch adds an initialised global, wdt_grace_ms, and wdt_expired()
 * starts reading it.  The variable is new, so OUT.o has to carry its
 * storage (in .data.wdt_grace_ms) and its initial value.
 */
struct wdt {
	unsigned long last_ping;
	unsigned int timeout_ms;
};

extern unsigned long wdt_now_ms(void);

int wdt_expired(const struct wdt *w)
{
	return wdt_now_ms() - w->last_ping > w->timeout_ms;
}

void wdt_ping(struct wdt *w)
{
	w->last_ping = wdt_now_ms();
}
