#include "demo.h"

int brand_new(int v)
{
	WARN_ON(v == 3);
	return v;
}
