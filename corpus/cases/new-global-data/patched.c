// SPDX-License-Identifier: GPL-2.0-or-later
/* A new global variable appears and one function starts using it. */

int timeout_ms = 500;
int timeout_slack_ms = 20;

int timeout_jiffies(int hz)
{
	return (timeout_ms + timeout_slack_ms) * hz / 1000;
}

int timeout_valid(int ms)
{
	return ms > 0 && ms < 60000;
}
