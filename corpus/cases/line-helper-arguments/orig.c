// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Line-taking helpers whose other arguments change, and an ordinary call
 * whose integer argument changes.  patched.c also adds a line at the top,
 * so every __LINE__ moves too.
 */
#include <stdbool.h>

struct super_block;
struct device;

extern void __ext4_error(struct super_block *sb, const char *function, unsigned int line,
			 bool force_ro, int error, unsigned long long block, const char *fmt, ...);
extern void __ext4_warning(struct super_block *sb, const char *function, unsigned int line,
			   const char *fmt, ...);
extern void __might_sleep(const char *file, int line);
extern void set_level(struct device *dev, int level);
extern void set_limits(struct device *dev, const char *name, int level);
extern void *__ext4_journal_start_sb(void *inode, struct super_block *sb, unsigned int line, int type,
				     int blocks, int rsv_blocks, int revoke_creds);

/* the error number (%r8d), not the line, changes: -5 to -22 */
void bad_errno(struct super_block *sb, int v)
{
	if (v < 0)
		__ext4_error(sb, __func__, __LINE__, false, -5, 0, "bad value %d", v);
}

/* an integer for the format changes: 5 to 6 */
void bad_format_argument(struct super_block *sb, int v)
{
	if (v > 100)
		__ext4_warning(sb, __func__, __LINE__, "bad %d", 5);
}

/* the message changes along with the line */
void bad_message(struct super_block *sb, int v)
{
	if (v > 100)
		__ext4_warning(sb, __func__, __LINE__, "value too large");
}

/* an ordinary function's integer argument changes: 5 to 6 */
void level_up(struct device *dev)
{
	set_level(dev, 5);
}

/* after a string that names no location: 5 to 6 */
void limits_up(struct device *dev)
{
	set_limits(dev, "soft", 5);
}

/* only the line changes */
void just_sleeps(void)
{
	__might_sleep(__FILE__, __LINE__);
}

/* a known line helper's other integer argument changes: 16 to 17 blocks */
void *journal_more(struct super_block *sb)
{
	return __ext4_journal_start_sb((void *)0, sb, __LINE__, 3, 16, 0, 0);
}
