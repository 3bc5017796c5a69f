// SPDX-License-Identifier: GPL-2.0
/*
 * The declarations compat.h copies from kernel headers that header packages
 * do not ship are checked at load against the running kernel's own BTF: the
 * parameter count of each function, and on 7.3 struct
 * pagetable_move_control member by member (name, offset, and the size of
 * the whole). A stable update that changed any of them fails the load,
 * instead of a call with a wrong prototype or struct.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/stddef.h>
#include <linux/string.h>

#include "compat.h"

#ifdef DONTUNMAP_CHECK_BTF
/* Only here: 5.10's linux/btf.h does not build on its own. */
#include <linux/btf.h>

/* As declared in compat.h. */
static const struct {
	const char *name;
	u32 nr_params;
} dontunmap_btf_funcs[] = {
#if DONTUNMAP_KV(7, 3)
	{ "copy_vma", 7 },
	{ "move_page_tables", 1 },
	{ "split_vma", 4 },
	{ "may_expand_vm", 3 },
	{ "unlink_anon_vmas", 1 },
#else
#ifdef DONTUNMAP_HAVE_COPY_VMA_KEEP_SOURCE
	{ "copy_vma", 6 },
#else
	{ "copy_vma", 5 },
#endif
	{ "move_page_tables", 7 },
#ifndef DONTUNMAP_SPLIT_VMA_MAY_BE_STATIC
	{ "split_vma", 4 },
#endif
#endif
};

#if DONTUNMAP_KV(7, 3)
#define PMC_MEMBER(m) { #m, offsetof(struct pagetable_move_control, m) }
static const struct {
	const char *name;
	size_t offset;
} dontunmap_pmc_members[] = {
	PMC_MEMBER(old),
	PMC_MEMBER(new),
	PMC_MEMBER(old_addr),
	PMC_MEMBER(old_end),
	PMC_MEMBER(new_addr),
	PMC_MEMBER(len_in),
	PMC_MEMBER(need_rmap_locks),
	PMC_MEMBER(for_stack),
};
#endif

static const struct btf_type *dontunmap_btf_find(const char *name, u32 kind,
						 struct btf **btf)
{
	s32 id = static_call(dontunmap_bpf_find_btf_id)(name, kind, btf);

	if (id < 0) {
		pr_err("not loaded: %s is not in the kernel's BTF (%d)\n", name, id);
		return NULL;
	}
	return btf_type_by_id(*btf, id);
}

static bool dontunmap_check_func(const char *name, u32 nr_params)
{
	const struct btf_type *func, *proto = NULL;
	struct btf *btf = NULL;

#ifdef DONTUNMAP_TEST_BTF_MISMATCH
	/* Test builds only: this function is expected with one more. */
	if (!strcmp(name, DONTUNMAP_TEST_BTF_MISMATCH))
		nr_params++;
#endif

	func = dontunmap_btf_find(name, BTF_KIND_FUNC, &btf);
	if (func)
		proto = btf_type_by_id(btf, func->type);
	if (btf)
		static_call(dontunmap_btf_put)(btf);
	if (!proto)
		return false;
	if (btf_type_vlen(proto) != nr_params) {
		pr_err("not loaded: %s() takes %u parameters in this kernel, %u in the one dontunmap was written for\n",
		       name, btf_type_vlen(proto), nr_params);
		return false;
	}
	return true;
}

#if DONTUNMAP_KV(7, 3)
static bool dontunmap_check_pmc(void)
{
	const struct btf_member *member;
	const struct btf_type *t;
	struct btf *btf = NULL;
	bool ok = false;
	unsigned int i;

	t = dontunmap_btf_find("pagetable_move_control", BTF_KIND_STRUCT, &btf);
	if (!t)
		goto out;
	if (t->size != sizeof(struct pagetable_move_control) ||
	    btf_type_vlen(t) != ARRAY_SIZE(dontunmap_pmc_members)) {
		pr_err("not loaded: struct pagetable_move_control: %u bytes, %u members in this kernel; %zu, %zu expected\n",
		       t->size, btf_type_vlen(t),
		       sizeof(struct pagetable_move_control),
		       ARRAY_SIZE(dontunmap_pmc_members));
		goto out;
	}
	member = btf_type_member(t);
	for (i = 0; i < ARRAY_SIZE(dontunmap_pmc_members); i++, member++) {
		const char *name = static_call(dontunmap_btf_name_by_offset)(btf,
							member->name_off);
		u32 bits = __btf_member_bit_offset(t, member);

		if (!name || strcmp(name, dontunmap_pmc_members[i].name) ||
		    bits != dontunmap_pmc_members[i].offset * BITS_PER_BYTE) {
			pr_err("not loaded: struct pagetable_move_control member %u is %s at bit %u; %s at bit %zu expected\n",
			       i, name ?: "?", bits, dontunmap_pmc_members[i].name,
			       dontunmap_pmc_members[i].offset * BITS_PER_BYTE);
			goto out;
		}
	}
	ok = true;
out:
	if (btf)
		static_call(dontunmap_btf_put)(btf);
	return ok;
}
#else
static bool dontunmap_check_pmc(void)
{
	return true;
}
#endif

int dontunmap_check_layouts(void)
{
	size_t checked = ARRAY_SIZE(dontunmap_btf_funcs);
	bool ok = true;
	unsigned int i;

	if (!static_call_query(dontunmap_bpf_find_btf_id) ||
	    !static_call_query(dontunmap_btf_name_by_offset) ||
	    !static_call_query(dontunmap_btf_put)) {
		/*
		 * As a build without BTF: 7.3.4's declarations were read in
		 * its source, 6.12's go by sublevel (compat.h).
		 */
		if (DONTUNMAP_KV(6, 12) ||
		    LINUX_VERSION_CODE == KERNEL_VERSION(7, 3, 4)) {
			pr_warn("no BTF helpers: the declarations copied from mm/ are not checked\n");
			return 0;
		}
		pr_err("not loaded: no BTF helpers to check the declarations copied from 7.3.4 against this kernel\n");
		return -ENOEXEC;
	}
	for (i = 0; i < ARRAY_SIZE(dontunmap_btf_funcs); i++)
		ok &= dontunmap_check_func(dontunmap_btf_funcs[i].name,
					   dontunmap_btf_funcs[i].nr_params);
#ifdef DONTUNMAP_SPLIT_VMA_MAY_BE_STATIC
	/* Whichever the resolver found. */
	ok &= dontunmap_check_func(static_call_query(dontunmap_split_vma) ?
				   "split_vma" : "__split_vma", 4);
	checked++;
#endif
	ok &= dontunmap_check_pmc();
	if (!ok)
		return -ENOEXEC;
	pr_info("layouts checked against the kernel's BTF: %zu prototypes%s\n",
		checked,
		DONTUNMAP_KV(7, 3) ? " and struct pagetable_move_control" : "");
	return 0;
}

#else

int dontunmap_check_layouts(void)
{
	return 0;
}

#endif /* DONTUNMAP_CHECK_BTF */
