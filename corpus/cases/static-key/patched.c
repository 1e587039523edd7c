// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Two functions test the same static key (jump label).  Each test site is a
 * 5-byte NOP plus a 16-byte __jump_table entry {code - ., target - .,
 * key - .}, modelled on x86's arch_static_branch().  Only pktlog_rx()
 * changes, so only its entry belongs in the livepatch object, and the key
 * is vmlinux's existing pktlog_key.
 */
#define __always_inline	inline __attribute__((__always_inline__))
#define unlikely(x)	__builtin_expect(!!(x), 0)

struct static_key {
	int enabled;
	void *entries;
};

struct static_key pktlog_key;

static __always_inline int arch_static_branch(struct static_key *key, int branch)
{
	asm goto("1:	.byte 0x0f,0x1f,0x44,0x00,0x00\n\t"
		 ".pushsection __jump_table, \"aw\"\n\t"
		 ".balign 8\n\t"
		 ".long 1b - ., %l[l_yes] - .\n\t"
		 ".quad %c0 + %c1 - .\n\t"
		 ".popsection"
		 : : "i" (key), "i" (branch) : : l_yes);
	return 0;
l_yes:
	return 1;
}

#define static_branch_unlikely(key)	unlikely(arch_static_branch(key, 0))

extern void pktlog_record(int dir, const void *buf, unsigned int len);
extern int netdev_rx(const void *buf, unsigned int len);
extern int netdev_tx(const void *buf, unsigned int len);

int pktlog_rx(const void *buf, unsigned int len)
{
	if (static_branch_unlikely(&pktlog_key))
		pktlog_record(0, buf, len > 128 ? 128 : len);
	return netdev_rx(buf, len);
}

int pktlog_tx(const void *buf, unsigned int len)
{
	if (static_branch_unlikely(&pktlog_key))
		pktlog_record(1, buf, len);
	return netdev_tx(buf, len);
}
