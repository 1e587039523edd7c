#include "demo.h"

int demo_limit = 10;

int demo_first(int v)
{
	WARN_ON(v > demo_limit);
	return v + 1;
}

int demo_second(int v)
{
	might_sleep_at(__FILE__, __LINE__);
	return demo_check(v) + 3;
}

int demo_third(int v)
{
	WARN_ON(v == 7);
	might_sleep_at(__FILE__, __LINE__);
	return v - 1;
}

#define DEMO_CALL(x) \
	do { \
		warn_at(__FILE__, __LINE__); \
		might_sleep_at(__FILE__, x); \
	} while (0)

int demo_fourth(int v)
{
	DEMO_CALL(v);
	return v;
}

int demo_fifth(int v)
{
	WARN_ON(v == 5);
	return v * 5;
}
