// SPDX-License-Identifier: GPL-2.0-or-later
/* An existing initialised global array changes its initialiser. */

int limits[4] = { 1, 2, 3, 4 };
int limit_scale = 8;

int limit_for(unsigned int level)
{
	if (level >= 4)
		return -1;
	return limits[level] * limit_scale;
}

int limit_max(void)
{
	return limit_scale * 4;
}
