// SPDX-License-Identifier: GPL-2.0-or-later
/* A new out-of-line helper appears and an existing function starts calling it. */
#define noinline	__attribute__((__noinline__))

struct pkt {
	unsigned int len;
	unsigned int csum;
	unsigned char data[64];
};

extern int netif_deliver(struct pkt *p);

int pkt_validate(const struct pkt *p)
{
	return p->len <= sizeof(p->data);
}

static noinline unsigned int pkt_csum(const struct pkt *p)
{
	unsigned int i, sum = 0;

	for (i = 0; i < p->len; i++)
		sum = (sum << 1) ^ p->data[i];
	return sum;
}

int pkt_receive(struct pkt *p)
{
	if (!pkt_validate(p))
		return -74;
	if (pkt_csum(p) != p->csum)
		return -74;
	return netif_deliver(p);
}
