// SPDX-License-Identifier: GPL-2.0
/*
 * Symbol resolver: finds the kernel internals listed in ksyms.h once, at
 * load, and binds each function to a static call.
 *
 * kallsyms_lookup_name() is not exported since 5.7. Its address is read from
 * a kprobe registered on it and unregistered at once; no kprobe stays armed
 * afterwards. Every resolved address is then checked with sprint_symbol() to
 * be the start of a symbol of exactly that name, so that neither a compiler
 * clone (foo.isra.0, foo.constprop.0, foo.cold) nor a wrong match is ever
 * called.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/fs.h>
#include <linux/kallsyms.h>
#include <linux/kprobes.h>
#include <linux/string.h>

#include "compat.h"

#define DONTUNMAP_FUNC(name, required, purpose)				\
	DEFINE_STATIC_CALL_NULL(dontunmap_##name, name);
#include "ksyms-table.h"

DEFINE_STATIC_CALL_NULL(dontunmap_kallsyms_lookup_name, kallsyms_lookup_name);

struct dontunmap_ksym_data dontunmap_ksym_data;

#ifdef DONTUNMAP_NEED_DUMP_MM
/*
 * The kernel's dump_mm() is not exported here (compat.h), yet
 * CONFIG_DEBUG_VM's assertions call it: this one satisfies the link and
 * hands over to the kernel's, so the assertions report as they would in mm/.
 */
void dump_mm(const struct mm_struct *mm)
{
	void *kernel_dump_mm = static_call_query(dontunmap_dump_mm);

	if (kernel_dump_mm && kernel_dump_mm != (void *)dump_mm)
		static_call(dontunmap_dump_mm)(mm);
}
#endif

/*
 * Without CONFIG_KALLSYMS_ALL, vm.max_map_count is read from its sysctl
 * file, opened once at load so that no path is looked up in the caller's
 * namespace afterwards.
 */
static struct file *dontunmap_max_map_count_file;

struct dontunmap_ksym {
	const char *name;
	const char *why;
	bool required;
	/* a function: its static call */
	struct static_call_key *key;
	void *tramp;
	/* a data symbol: where its address goes */
	void **slot;
};

static const struct dontunmap_ksym dontunmap_ksyms[] = {
#define DONTUNMAP_FUNC(sym, req, purpose) {				\
	.name = #sym,							\
	.why = purpose,							\
	.required = req,						\
	.key = &STATIC_CALL_KEY(dontunmap_##sym),			\
	.tramp = STATIC_CALL_TRAMP_ADDR(dontunmap_##sym),		\
},
#define DONTUNMAP_DATA(sym, purpose) {					\
	.name = #sym,							\
	.why = purpose,							\
	.slot = (void **)&dontunmap_ksym_data.sym,			\
},
#include "ksyms-table.h"
};

static const char *dontunmap_call_mechanism(void)
{
	if (IS_ENABLED(CONFIG_HAVE_STATIC_CALL_INLINE))
		return "static_call, direct CALL patched at each site";
	if (IS_ENABLED(CONFIG_HAVE_STATIC_CALL))
		return "static_call, direct JMP in a patched trampoline";
	return "static_call, generic (BLR to global functions only)";
}

/*
 * True when @addr is the first byte of a symbol called exactly @name. A
 * kprobe on an IBT kernel reports the address after the ENDBR, so an offset
 * of one ENDBR instruction is accepted for that lookup only.
 */
static bool dontunmap_symbol_is(unsigned long addr, const char *name,
				unsigned long slack)
{
	char buf[KSYM_SYMBOL_LEN];
	size_t len = strlen(name);
	unsigned long off;

	sprint_symbol(buf, addr);
	if (strncmp(buf, name, len) || buf[len] != '+')
		return false;
	if (sscanf(buf + len, "+%lx/", &off) != 1)
		return false;
	return off <= slack;
}

static int dontunmap_find_kallsyms_lookup_name(void)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	unsigned long addr;
	int err;

	/*
	 * register_kprobe() does not consult lockdown (only the kprobe event
	 * interfaces of kernel/trace/ do), so its failure says nothing about
	 * it: a kernel without kprobes, or one refusing this address.
	 */
#ifdef DONTUNMAP_TEST_KPROBE_SYMBOL
	/* Test builds only: probe a symbol that is not there. */
	kp.symbol_name = DONTUNMAP_TEST_KPROBE_SYMBOL;
#endif
	err = register_kprobe(&kp);
	if (err) {
		pr_err("not loaded: cannot find kallsyms_lookup_name: register_kprobe failed (%d)\n",
		       err);
		return err;
	}
	addr = (unsigned long)kp.addr;
	unregister_kprobe(&kp);

	if (!dontunmap_symbol_is(addr, "kallsyms_lookup_name", 4)) {
		pr_err("not loaded: the kprobe address is %pS, not kallsyms_lookup_name\n",
		       (void *)addr);
		return -ENOENT;
	}
	static_call_update(dontunmap_kallsyms_lookup_name,
			   (typeof(&kallsyms_lookup_name))addr);
	return 0;
}

#ifdef DONTUNMAP_TEST_ABSENT
/*
 * Test builds only (tests/vm/build-module --define): the symbols named in
 * DONTUNMAP_TEST_ABSENT, separated by spaces, are treated as absent, so that
 * the paths for kernels without them run on kernels with them.
 */
static bool dontunmap_test_absent(const char *name)
{
	const char *list = DONTUNMAP_TEST_ABSENT;
	size_t len = strlen(name);

	while ((list = strstr(list, name))) {
		if ((list == DONTUNMAP_TEST_ABSENT || list[-1] == ' ') &&
		    (list[len] == ' ' || list[len] == '\0'))
			return true;
		list += len;
	}
	return false;
}
#else
static bool dontunmap_test_absent(const char *name)
{
	return false;
}
#endif

static unsigned long dontunmap_lookup(const char *name)
{
	unsigned long addr;

	if (dontunmap_test_absent(name))
		return 0;
	addr = static_call(dontunmap_kallsyms_lookup_name)(name);
	if (addr && !dontunmap_symbol_is(addr, name, 0)) {
		pr_warn("%s resolves to %pS, not the start of %s; ignored\n",
			name, (void *)addr, name);
		return 0;
	}
	return addr;
}

/*
 * vm.max_map_count, for the headroom checks upstream makes so that a move
 * does not fail half way; INT_MAX (no pre-check: split_vma() and
 * do_munmap() still enforce the limit) if it cannot be read. Where only
 * __split_vma() resolves, this is the limit's one check, and the load
 * requires it readable.
 */
int dontunmap_max_map_count(void)
{
	struct file *file = dontunmap_max_map_count_file;
	char buf[16];
	loff_t pos = 0;
	ssize_t len;
	int val;

	if (dontunmap_ksym_data.sysctl_max_map_count)
		return READ_ONCE(*dontunmap_ksym_data.sysctl_max_map_count);
	if (!file)
		return INT_MAX;
	len = kernel_read(file, buf, sizeof(buf) - 1, &pos);
	if (len <= 0)
		return INT_MAX;
	buf[len] = '\0';
	if (kstrtoint(strim(buf), 10, &val))
		return INT_MAX;
	return val;
}

static void dontunmap_open_max_map_count(void)
{
	struct file *file;

	if (dontunmap_ksym_data.sysctl_max_map_count)
		return;
	file = filp_open("/proc/sys/vm/max_map_count", O_RDONLY, 0);
	if (IS_ERR(file)) {
		pr_warn("vm.max_map_count unreadable (%ld): map-count headroom is left to the kernel's own checks\n",
			PTR_ERR(file));
		return;
	}
	dontunmap_max_map_count_file = file;
}

void dontunmap_release_symbols(void)
{
	if (dontunmap_max_map_count_file)
		filp_close(dontunmap_max_map_count_file, NULL);
}

int dontunmap_resolve_symbols(void)
{
	char resolved[512] = "", absent[256] = "";
	size_t rlen = 0, alen = 0;
	bool missing = false;
	unsigned int i;
	int err;

	err = dontunmap_find_kallsyms_lookup_name();
	if (err)
		return err;
#ifdef DONTUNMAP_TEST_ABSENT
	pr_notice("test build: treating as absent: %s\n", DONTUNMAP_TEST_ABSENT);
#endif

	for (i = 0; i < ARRAY_SIZE(dontunmap_ksyms); i++) {
		const struct dontunmap_ksym *s = &dontunmap_ksyms[i];
		unsigned long addr = dontunmap_lookup(s->name);

		if (!addr) {
			if (s->required)
				pr_err("not loaded: required kernel symbol %s not found (%s)\n",
				       s->name, s->why);
			missing |= s->required;
			alen += scnprintf(absent + alen, sizeof(absent) - alen,
					  " %s", s->name);
			continue;
		}
		if (s->key)
			__static_call_update(s->key, s->tramp, (void *)addr);
		else
			*s->slot = (void *)addr;
		rlen += scnprintf(resolved + rlen, sizeof(resolved) - rlen,
				  " %s", s->name);
	}
#ifdef DONTUNMAP_SPLIT_VMA_MAY_BE_STATIC
	if (!static_call_query(dontunmap_split_vma) &&
	    !static_call_query(dontunmap___split_vma)) {
		pr_err("not loaded: required kernel symbol split_vma not found, nor __split_vma (split an mlocked source before the move)\n");
		missing = true;
	}
#endif
	if (missing)
		return -ENOENT;
	err = dontunmap_check_layouts();
	if (err)
		return err;
	dontunmap_open_max_map_count();
#ifdef DONTUNMAP_SPLIT_VMA_MAY_BE_STATIC
	/* __split_vma() does not check the limit: the module must. */
	if (!static_call_query(dontunmap_split_vma) &&
	    !dontunmap_ksym_data.sysctl_max_map_count &&
	    !dontunmap_max_map_count_file) {
		pr_err("not loaded: split_vma() is static here and vm.max_map_count cannot be read, so __split_vma() would split past it\n");
		return -ENOENT;
	}
#endif

	pr_info("resolved via kallsyms_lookup_name (kprobe, released):%s; absent:%s; calls: %s\n",
		resolved, alen ? absent : " none", dontunmap_call_mechanism());
	return 0;
}
