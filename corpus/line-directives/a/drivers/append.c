#include "demo.h"

int append_first(int v)
{
	WARN_ON(v == 9);
	return v;
}
