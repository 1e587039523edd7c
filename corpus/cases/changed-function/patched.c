// SPDX-License-Identifier: GPL-2.0-or-later
/* One function's logic changes; its neighbours stay identical. */

struct widget {
	int id;
	int refs;
	unsigned long flags;
};

extern void widget_release(struct widget *w);

int widget_get(struct widget *w)
{
	if (!w)
		return -22;
	w->refs++;
	return 0;
}

void widget_put(struct widget *w)
{
	if (--w->refs == 0)
		widget_release(w);
}

int widget_is_busy(const struct widget *w)
{
	return (w->flags & 0x4) && w->refs > 1;
}
