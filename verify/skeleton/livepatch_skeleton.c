// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The part of a livepatch module that klp diff does not produce: module
 * info, and init code that turns the klp_object_ext / klp_func_ext tables
 * of the diff outputs into a struct klp_patch and enables it.
 *
 * Linux 6.12 has no helper to find the tables, so we walk the module's own
 * section headers, which the module loader keeps for livepatch modules
 * (mod->klp_info) with each section's load address in sh_addr. Both output
 * generations are accepted: .init.klp_objects and __klp_objects.
 *
 * Built through kbuild against a kernel tree; with -DKLP_STANDALONE it
 * builds with plain gcc against the minimal declarations below, for tests
 * that link and inspect the module without a kernel tree.
 */

#ifdef KLP_STANDALONE
#include "standalone.h"
#else
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/slab.h>
#include <linux/string.h>
#endif

/* Layouts written by klp diff (include/linux/livepatch_external.h upstream). */
struct klp_func_ext {
	const char *old_name;
	void *new_func;
	unsigned long sympos;
};

struct klp_callbacks_ext {
	int (*pre_patch)(struct klp_object *obj);
	void (*post_patch)(struct klp_object *obj);
	void (*pre_unpatch)(struct klp_object *obj);
	void (*post_unpatch)(struct klp_object *obj);
	bool post_unpatch_enabled;
};

struct klp_object_ext {
	const char *name;
	struct klp_func_ext *funcs;
	struct klp_callbacks_ext callbacks;
	unsigned int nr_funcs;
};

static struct klp_patch *patch;

/* The klp_object_ext array the diff outputs left in this module. */
static struct klp_object_ext *find_objects(unsigned int *nr)
{
	struct klp_modinfo *info = THIS_MODULE->klp_info;
	unsigned int i;

	if (!info)
		return NULL;
	for (i = 1; i < info->hdr.e_shnum; i++) {
		const char *name = info->secstrings + info->sechdrs[i].sh_name;

		if (strcmp(name, ".init.klp_objects") && strcmp(name, "__klp_objects"))
			continue;
		*nr = info->sechdrs[i].sh_size / sizeof(struct klp_object_ext);
		return (struct klp_object_ext *)info->sechdrs[i].sh_addr;
	}
	return NULL;
}

static void free_patch(void)
{
	struct klp_object *obj;

	if (!patch)
		return;
	for (obj = patch->objs; obj && (obj->name || obj->funcs); obj++)
		kfree(obj->funcs);
	kfree(patch->objs);
	kfree(patch);
	patch = NULL;
}

static int fill_object(struct klp_object *obj, const struct klp_object_ext *ext)
{
	unsigned int j;

	obj->funcs = kcalloc(ext->nr_funcs + 1, sizeof(*obj->funcs), GFP_KERNEL);
	if (!obj->funcs)
		return -ENOMEM;
	for (j = 0; j < ext->nr_funcs; j++) {
		obj->funcs[j].old_name = ext->funcs[j].old_name;
		obj->funcs[j].new_func = ext->funcs[j].new_func;
		obj->funcs[j].old_sympos = ext->funcs[j].sympos;
	}
	obj->name = ext->name;
	obj->callbacks.pre_patch = ext->callbacks.pre_patch;
	obj->callbacks.post_patch = ext->callbacks.post_patch;
	obj->callbacks.pre_unpatch = ext->callbacks.pre_unpatch;
	obj->callbacks.post_unpatch = ext->callbacks.post_unpatch;
	return 0;
}

static int __init livepatch_init(void)
{
	struct klp_object_ext *ext;
	unsigned int nr = 0, i;
	int ret;

	ext = find_objects(&nr);
	if (!ext || !nr) {
		pr_err("livepatch: %s: nothing to patch\n", THIS_MODULE->name);
		return -EINVAL;
	}
	patch = kzalloc(sizeof(*patch), GFP_KERNEL);
	if (!patch)
		return -ENOMEM;
	/* nr objects and a zeroed terminator. */
	patch->objs = kcalloc(nr + 1, sizeof(*patch->objs), GFP_KERNEL);
	if (!patch->objs) {
		free_patch();
		return -ENOMEM;
	}
	for (i = 0; i < nr; i++) {
		ret = fill_object(&patch->objs[i], &ext[i]);
		if (ret) {
			free_patch();
			return ret;
		}
	}
	patch->mod = THIS_MODULE;
#ifndef KLP_NO_REPLACE
	patch->replace = true;
#endif
	ret = klp_enable_patch(patch);
	if (ret)
		free_patch();
	return ret;
}

static void __exit livepatch_exit(void)
{
	free_patch();
}

module_init(livepatch_init);
module_exit(livepatch_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Live patch built by klp");
MODULE_INFO(livepatch, "Y");
