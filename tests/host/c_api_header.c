/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The C API header compiles as C, and works from C. */
#include <dontunmap/dontunmap.h>
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

int c_api_unaligned_native_mremap(void)
{
	long page = sysconf(_SC_PAGESIZE);
	char *src = mmap(NULL, page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret;

	if (src == MAP_FAILED)
		return 1;
	ret = dontunmap_native_mremap(src + 1, page, page,
				      MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL, NULL);
	munmap(src, page);
	return ret;
}

/*
 * From C: a two-element batch through a native context moves both pages,
 * and the capability query answers. 0 on success, else the failed step.
 */
int c_api_batch_and_capability(void)
{
	long page = sysconf(_SC_PAGESIZE);
	struct dontunmap_ctx *ctx = NULL;
	struct dontunmap_capability cap;
	struct dontunmap_remap reqs[2];
	unsigned completed = 0;
	char *src = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int i, ret = 0;

	if (src == MAP_FAILED)
		return 1;
	if (dontunmap_ctx_open(DONTUNMAP_BACKEND_NATIVE, NULL, &ctx) != 0) {
		munmap(src, 2 * page);
		return 2;
	}
	for (i = 0; i < 2; i++) {
		src[i * page] = (char)('a' + i);
		reqs[i].old_addr = (uintptr_t)(src + i * page);
		reqs[i].old_len = page;
		reqs[i].new_len = page;
		reqs[i].flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP;
		reqs[i].new_addr = 0;
	}
	if (dontunmap_ctx_remap_batch(ctx, reqs, 2, &completed) != 0 || completed != 2)
		ret = 3;
	for (i = 0; i < 2 && !ret; i++)
		if (*(char *)(uintptr_t)reqs[i].new_addr != 'a' + i)
			ret = 4;
	for (i = 0; i < 2; i++)
		if (reqs[i].new_addr)
			munmap((void *)(uintptr_t)reqs[i].new_addr, page);
	if (!ret && dontunmap_ctx_capability(ctx, DONTUNMAP_KIND_PRIVATE_ANON,
					     DONTUNMAP_CAP_MOVE, &cap) != 0)
		ret = 5;
	if (!ret && (cap.module != 0 || cap.automatic != DONTUNMAP_BACKEND_NATIVE))
		ret = 6;
	if (!ret && dontunmap_ctx_capability(ctx, 9, DONTUNMAP_CAP_MOVE, &cap) != -EINVAL)
		ret = 7;
	dontunmap_ctx_close(ctx);
	munmap(src, 2 * page);
	return ret;
}
