// SPDX-License-Identifier: GPL-2.0-or-later
/* A boot-time __init function changes; its code is freed after boot. */
#define __init	__attribute__((__section__(".init.text"))) __attribute__((__cold__))

extern int register_driver(const char *name, int prio);
extern int printk(const char *fmt, ...);

static int drv_prio = 5;

int __init drv_setup(void)
{
	int ret = register_driver("blinkdrv", drv_prio);

	if (ret)
		printk("blinkdrv: register failed %d\n", ret);
	return ret;
}

int drv_get_prio(void)
{
	return drv_prio;
}
