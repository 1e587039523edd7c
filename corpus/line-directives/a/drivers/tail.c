#include "demo.h"

int tail_first(int v)
{
	WARN_ON(v == 1);
	return v;
}

int tail_last(int v)
{
	return v + 100;
}