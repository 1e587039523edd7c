#include "demo.h"

int append_first(int v)
{
	WARN_ON(v == 9);
	return v;
}

int append_added(int v)
{
	return v + 9;
}
