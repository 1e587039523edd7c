// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * dev_report() is static and noinline, so gcc keeps it out of line but is
 * free to rewrite its signature: IPA-SRA replaces the struct pointer by the
 * three ints it loads, giving dev_report.isra.0.
 */
#define noinline	__attribute__((__noinline__))

struct dev {
	int id;
	int state;
	int irq;
};

extern void dev_log(int id, int v);

static noinline void dev_report(const struct dev *d)
{
	dev_log(d->id, d->state * 3 + d->irq);
}

void dev_probe(struct dev *d)
{
	dev_report(d);
}

void dev_resume(struct dev *d, int why)
{
	if (why)
		d->state = 1;
	dev_report(d);
}
