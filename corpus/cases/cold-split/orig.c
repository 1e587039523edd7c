// SPDX-License-Identifier: GPL-2.0-or-later
/* printk() is __cold, so queue_push()'s error path goes to queue_push.cold. */
#define unlikely(x)	__builtin_expect(!!(x), 0)

struct queue {
	unsigned int head;
	unsigned int tail;
	unsigned int mask;
	unsigned long drops;
	void *slot[16];
};

#define __cold		__attribute__((__cold__))

extern __cold int printk(const char *fmt, ...);
extern void dump_stack(void);

int queue_push(struct queue *q, void *item)
{
	unsigned int next = (q->head + 1) & q->mask;

	if (unlikely(next == q->tail)) {
		q->drops++;
		printk("queue %p full, %lu drops\n", q, q->drops);
		dump_stack();
		return -28;
	}
	q->slot[q->head] = item;
	q->head = next;
	return 0;
}

unsigned int queue_len(const struct queue *q)
{
	return (q->head - q->tail) & q->mask;
}
