// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Helpers that take a line number the way kernel subsystems do, each with a
 * different argument position.  patched.c adds one line at the top and
 * nothing else, so every __LINE__ below moves by one.
 */
#include <stdbool.h>

struct super_block;
struct xfs_mount;

extern void __ext4_error(struct super_block *sb, const char *function, unsigned int line,
			 bool force_ro, int error, unsigned long long block, const char *fmt, ...);
extern void __ext4_warning(struct super_block *sb, const char *function, unsigned int line,
			   const char *fmt, ...);
extern void __ext4_std_error(struct super_block *sb, const char *function, unsigned int line, int errno);
extern void __might_sleep(const char *file, int line);
extern void xfs_error_report(const char *tag, int level, struct xfs_mount *mp, const char *filename,
			     int linenum, void *failaddr);
extern void trace_failure(int a, int b, int c, int d, const char *func, int line);
extern int _printk(const char *fmt, ...);
extern int check_entries(void *inode, void *bh, void *buf, void *end, int size, const char *function,
			 unsigned int line);
extern void *__ext4_journal_start_sb(void *inode, struct super_block *sb, unsigned int line, int type,
				     int blocks, int rsv_blocks, int revoke_creds);
extern int read_reg(int reg);

/* function name in %rsi, line in %edx */
int ext4ish_check(struct super_block *sb, int v)
{
	if (v < 0)
		__ext4_error(sb, __func__, __LINE__, false, -5, 0, "bad value %d", v);
	return v * 2;
}

/* the same, with a warning helper */
void ext4ish_warn(struct super_block *sb, int v)
{
	if (v > 100)
		__ext4_warning(sb, __func__, __LINE__, "value %d too large", v);
}

/* a tail call */
void ext4ish_std(struct super_block *sb, int err)
{
	if (err)
		__ext4_std_error(sb, __func__, __LINE__, err);
}

/* file in %rdi, line in %esi */
int sleepy(int reg)
{
	__might_sleep(__FILE__, __LINE__);
	return read_reg(reg) + 1;
}

/* file in %rcx, line in %r8d */
int xfsish_verify(struct xfs_mount *mp, int v)
{
	if (v != 7)
		xfs_error_report("verify", 1, mp, __FILE__, __LINE__, __builtin_return_address(0));
	return v;
}

/* function name in %r8, line in %r9d */
int traced(int a, int b)
{
	if (a > b)
		trace_failure(a, b, a + b, a - b, __func__, __LINE__);
	return a - b;
}

/* printk("%s:%d"): file in %rsi, line in %edx */
void where(void)
{
	_printk("at %s:%d\n", __FILE__, __LINE__);
}

/* function name in %r9, line pushed as the seventh argument */
int seven(void *inode, void *bh, void *buf, int size)
{
	return check_entries(inode, bh, buf, (char *)buf + size, size, __func__, __LINE__);
}

/* no name beside the line: a helper known to take one there */
void *journal_begin(struct super_block *sb, int blocks)
{
	return __ext4_journal_start_sb((void *)0, sb, __LINE__, 3, blocks, 0, 0);
}
