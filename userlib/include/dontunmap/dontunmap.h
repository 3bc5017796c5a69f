/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdontunmap's C API: the C++ API (dontunmap.hpp) for C callers.
 *
 * Every function returns 0 on success or a negative errno (as libbpf does);
 * the errno is the one the kernel gave. Arguments are those of mremap(2);
 * flags must include MREMAP_MAYMOVE | MREMAP_DONTUNMAP for the module.
 * A moved range's destination is stored in *out when out is not NULL.
 */
#ifndef DONTUNMAP_DONTUNMAP_H
#define DONTUNMAP_DONTUNMAP_H

#include <linux/dontunmap.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum dontunmap_backend {
	DONTUNMAP_BACKEND_AUTO = 0,	/* native where it covers the call, else the module */
	DONTUNMAP_BACKEND_NATIVE = 1,	/* mremap(2) of the running kernel */
	DONTUNMAP_BACKEND_MODULE = 2,	/* ioctl(DONTUNMAP_IOC_REMAP) on /dev/dontunmap */
};

/* mremap() through syscall(2), with the running kernel's semantics. */
int dontunmap_native_mremap(void *old_addr, size_t old_len, size_t new_len,
			    int flags, void *new_addr, void **out);

/*
 * One move with the automatic backend. Opens and closes /dev/dontunmap on
 * each call: keep a dontunmap_ctx for repeated moves.
 */
int dontunmap_mremap(void *old_addr, size_t old_len, size_t new_len,
		     int flags, void *new_addr, void **out);

/* A backend and, for AUTO and MODULE, the open device. */
struct dontunmap_ctx;

/*
 * backend is an enum dontunmap_backend; path NULL means DONTUNMAP_DEVICE.
 * MODULE fails with open()'s errno; AUTO without the device uses native.
 */
int dontunmap_ctx_open(int backend, const char *path, struct dontunmap_ctx **out);
void dontunmap_ctx_close(struct dontunmap_ctx *ctx); /* NULL is fine */

int dontunmap_ctx_mremap(const struct dontunmap_ctx *ctx, void *old_addr,
			 size_t old_len, size_t new_len, int flags,
			 void *new_addr, void **out);

/* DONTUNMAP_IOC_INFO of the open device; -ENODEV when none is open. */
int dontunmap_ctx_info(const struct dontunmap_ctx *ctx, struct dontunmap_info *out);

#ifdef __cplusplus
}
#endif

#endif /* DONTUNMAP_DONTUNMAP_H */
