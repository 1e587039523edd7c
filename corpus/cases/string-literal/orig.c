// SPDX-License-Identifier: GPL-2.0-or-later
/* Only the text of one printk() format string changes. */

extern int printk(const char *fmt, ...);

struct link {
	int speed;
	int duplex;
};

void link_report_up(const struct link *l)
{
	printk("link up: %d Mbps\n", l->speed);
}

void link_report_duplex(const struct link *l)
{
	printk("link %s duplex\n", l->duplex ? "full" : "half");
}

void link_report_down(void)
{
	printk("link down\n");
}

void link_report_all(const struct link *l)
{
	link_report_up(l);
	link_report_duplex(l);
}
