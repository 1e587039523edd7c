/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Just enough of the kernel's declarations to compile the skeleton with
 * plain gcc (-DKLP_STANDALONE) for link-level tests. Never run.
 */
#ifndef KLP_STANDALONE_H
#define KLP_STANDALONE_H

#include <stddef.h>
#include <stdbool.h>
#include <string.h>

typedef struct {
	unsigned char e_ident[16];
	unsigned short e_type, e_machine;
	unsigned int e_version;
	unsigned long e_entry, e_phoff, e_shoff;
	unsigned int e_flags;
	unsigned short e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx;
} Elf_Ehdr;

typedef struct {
	unsigned int sh_name, sh_type;
	unsigned long sh_flags, sh_addr, sh_offset, sh_size;
	unsigned int sh_link, sh_info;
	unsigned long sh_addralign, sh_entsize;
} Elf_Shdr;

struct klp_modinfo {
	Elf_Ehdr hdr;
	Elf_Shdr *sechdrs;
	char *secstrings;
	unsigned int symndx;
};

struct module {
	char name[56];
	struct klp_modinfo *klp_info;
};

struct klp_object;
struct klp_func {
	const char *old_name;
	void *new_func;
	unsigned long old_sympos;
};
struct klp_callbacks {
	int (*pre_patch)(struct klp_object *obj);
	void (*post_patch)(struct klp_object *obj);
	void (*pre_unpatch)(struct klp_object *obj);
	void (*post_unpatch)(struct klp_object *obj);
	bool post_unpatch_enabled;
};
struct klp_object {
	const char *name;
	struct klp_func *funcs;
	struct klp_callbacks callbacks;
};
struct klp_patch {
	struct module *mod;
	struct klp_object *objs;
	void *states;
	bool replace;
};

extern struct module __this_module;
#define THIS_MODULE (&__this_module)
#define GFP_KERNEL 0
#define ENOMEM 12
#define EINVAL 22
#define __init __attribute__((__section__(".init.text")))
#define __exit __attribute__((__section__(".exit.text")))
extern void *kzalloc(size_t size, int flags);
extern void *kcalloc(size_t n, size_t size, int flags);
extern void *krealloc(const void *p, size_t size, int flags);
extern void kfree(const void *p);
extern int strcmp(const char *a, const char *b);
extern void *memset(void *s, int c, size_t n);
extern int _printk(const char *fmt, ...);
#define pr_err(...) _printk(__VA_ARGS__)
extern int klp_enable_patch(struct klp_patch *patch);

#define __modinfo_cat2(a, b) a##b
#define __modinfo_cat(a, b) __modinfo_cat2(a, b)
#define MODULE_INFO(tag, info)                                                 \
	static const char __modinfo_cat(__mod_##tag, __LINE__)[]                 \
		__attribute__((__used__, __section__(".modinfo"), __aligned__(1))) = \
			#tag "=" info
#define MODULE_LICENSE(l) MODULE_INFO(license, l)
#define MODULE_DESCRIPTION(d) MODULE_INFO(description, d)
#define module_init(fn) int init_module(void) __attribute__((__alias__(#fn)))
#define module_exit(fn) void cleanup_module(void) __attribute__((__alias__(#fn)))

#endif
