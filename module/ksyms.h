/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel internals, resolved at load (resolver.c) from ksyms-table.h.
 *
 * Functions are called through static calls: on x86 each call site is
 * patched into a direct CALL to the resolved address, so no indirect branch
 * ever targets a function whose ENDBR the kernel may have sealed
 * (X86_KERNEL_IBT). The prototype is the kernel's own declaration, so a
 * changed prototype is a build error, not a wrong call.
 *
 * Included from compat.h, after it has said which extra internals this
 * kernel needs.
 */
#ifndef DONTUNMAP_KSYMS_H
#define DONTUNMAP_KSYMS_H

#include <linux/static_call.h>

#define DONTUNMAP_FUNC(name, required, purpose)				\
	DECLARE_STATIC_CALL(dontunmap_##name, name);
#include "ksyms-table.h"

struct percpu_counter;

/* Data symbols; NULL when the kernel does not expose them. */
struct dontunmap_ksym_data {
	int *sysctl_max_map_count;
	struct percpu_counter *vm_committed_as;
	s32 *vm_committed_as_batch;
};
extern struct dontunmap_ksym_data dontunmap_ksym_data;

int dontunmap_resolve_symbols(void);
void dontunmap_release_symbols(void);
int dontunmap_max_map_count(void);
int dontunmap_check_layouts(void);

#endif /* DONTUNMAP_KSYMS_H */
