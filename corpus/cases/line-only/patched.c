// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * pump_wait() passes __LINE__ to __might_sleep(); lines inserted above it
 * change only that immediate.  (A fixed file name is used instead of
 * __FILE__, which would differ between orig.c and patched.c.)
 */
#define might_sleep()	__might_sleep("drivers/misc/pump.c", __LINE__)

extern void __might_sleep(const char *file, int line);
extern int pump_hw_read(int reg);
extern void msleep(unsigned int ms);

int pump_level(void)
{
	int v = pump_hw_read(4);

	/* The level register reads back 0xffff while the pump is off. */
	if (v == 0xffff)
		return 0;
	return v & 0xff;
}

int pump_wait(int target)
{
	int tries = 10;

	might_sleep();
	while ((pump_hw_read(4) & 0xff) < target && --tries)
		msleep(20);
	return tries ? 0 : -110;
}
