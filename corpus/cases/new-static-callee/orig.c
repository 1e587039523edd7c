// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * fan_set_speed() starts clamping its argument through a new static
 * noinline helper, fan_clamp_rpm().  The helper's code must be copied
 * into the livepatch object: the running kernel has no such function.
 */
#define noinline	__attribute__((__noinline__))

struct fan {
	int min_rpm;
	int max_rpm;
	int cur_rpm;
};

extern int fan_hw_write(struct fan *f, int rpm);

int fan_get_speed(const struct fan *f)
{
	return f->cur_rpm;
}

int fan_set_speed(struct fan *f, int rpm)
{
	int ret;

	ret = fan_hw_write(f, rpm);
	if (!ret)
		f->cur_rpm = rpm;
	return ret;
}
