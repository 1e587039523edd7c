// SPDX-License-Identifier: GPL-2.0-or-later
/* A constant-pool value changes: gcc loads it by the pool entry's .LC label. */

double scale_rate(double x)
{
	return x * 2.5;
}

double offset_rate(double x)
{
	return x + 0.25;
}
