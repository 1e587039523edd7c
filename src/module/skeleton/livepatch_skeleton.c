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

static bool same_object(const char *a, const char *b)
{
	/* NULL names vmlinux. */
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/*
 * Append the functions of @ext to @obj. Diff outputs of several translation
 * units of one kernel object (two files of vmlinux, say) each carry a
 * klp_object_ext of the same name, and the kernel wants one klp_object per
 * name, so they are merged here.
 */
static int add_object_ext(struct klp_object *obj, const struct klp_object_ext *ext)
{
	struct klp_func *funcs;
	unsigned int have = 0, j;

	while (obj->funcs && obj->funcs[have].old_name)
		have++;
	/* The zeroed entry after the last function terminates the array. */
	funcs = krealloc(obj->funcs, (have + ext->nr_funcs + 1) * sizeof(*funcs), GFP_KERNEL);
	if (!funcs)
		return -ENOMEM;
	memset(&funcs[have], 0, (ext->nr_funcs + 1) * sizeof(*funcs));
	for (j = 0; j < ext->nr_funcs; j++) {
		funcs[have + j].old_name = ext->funcs[j].old_name;
		funcs[have + j].new_func = ext->funcs[j].new_func;
		funcs[have + j].old_sympos = ext->funcs[j].sympos;
	}
	obj->funcs = funcs;
	obj->name = ext->name;
	if (!obj->callbacks.pre_patch)
		obj->callbacks.pre_patch = ext->callbacks.pre_patch;
	if (!obj->callbacks.post_patch)
		obj->callbacks.post_patch = ext->callbacks.post_patch;
	if (!obj->callbacks.pre_unpatch)
		obj->callbacks.pre_unpatch = ext->callbacks.pre_unpatch;
	if (!obj->callbacks.post_unpatch)
		obj->callbacks.post_unpatch = ext->callbacks.post_unpatch;
	return 0;
}

static int __init livepatch_init(void)
{
	struct klp_object_ext *ext;
	unsigned int nr = 0, nr_objs = 0, i, k;
	int ret;

	ext = find_objects(&nr);
	if (!ext || !nr) {
		pr_err("livepatch: %s: nothing to patch\n", THIS_MODULE->name);
		return -EINVAL;
	}
	patch = kzalloc(sizeof(*patch), GFP_KERNEL);
	if (!patch)
		return -ENOMEM;
	/* At most nr objects, and a zeroed terminator. */
	patch->objs = kcalloc(nr + 1, sizeof(*patch->objs), GFP_KERNEL);
	if (!patch->objs) {
		free_patch();
		return -ENOMEM;
	}
	for (i = 0; i < nr; i++) {
		for (k = 0; k < nr_objs; k++)
			if (same_object(patch->objs[k].name, ext[i].name))
				break;
		if (k == nr_objs)
			nr_objs++;
		ret = add_object_ext(&patch->objs[k], &ext[i]);
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
