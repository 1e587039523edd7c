// SPDX-License-Identifier: GPL-2.0-or-later
/* A static helper is deleted together with its only call. */
#define noinline	__attribute__((__noinline__))

struct buf {
	char *data;
	unsigned long len;
	unsigned long cap;
};

extern void trace_buf(const struct buf *b, int what);

static noinline void buf_poison(struct buf *b)
{
	unsigned long i;

	for (i = b->len; i < b->cap; i++)
		b->data[i] = 0x6b;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	buf_poison(b);
	trace_buf(b, 1);
}

unsigned long buf_room(const struct buf *b)
{
	return b->cap - b->len;
}
