// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * cache_lookup() bumps a file-scope static counter, hits, in both versions;
 * the patch changes only the lookup itself.  The counter already lives in
 * the running kernel, so the patched function must keep using that
 * instance instead of getting a private, zeroed copy.
 */
struct cache_ent {
	unsigned long key;
	void *val;
};

static unsigned long hits;

void *cache_lookup(struct cache_ent *tbl, unsigned int n, unsigned long key)
{
	unsigned int i;

	if (!key)
		return 0;
	for (i = 0; i < n; i++) {
		if (tbl[i].key == key) {
			hits++;
			return tbl[i].val;
		}
	}
	return 0;
}

unsigned long cache_hits(void)
{
	return hits;
}
