int gone(int v)
{
	return v;
}
