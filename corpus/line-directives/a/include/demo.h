/* A header with a helper every user inlines: its __LINE__ is compiled
 * into each user. */
#ifndef DEMO_H
#define DEMO_H

extern void warn_at(const char *file, int line);
extern void might_sleep_at(const char *file, int line);

#define WARN_ON(c) do { if (c) warn_at(__FILE__, __LINE__); } while (0)

static inline int demo_check(int v)
{
	WARN_ON(v < 0);
	return v * 2;
}

#endif
