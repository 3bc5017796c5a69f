/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdontunmap's C API: the C++ API (dontunmap.hpp) for C callers.
 *
 * Every function returns 0 on success or a negative errno (as libbpf does);
 * the errno is the one the kernel gave. Arguments are those of mremap(2);
 * flags must include MREMAP_MAYMOVE | MREMAP_DONTUNMAP for the module.
 * A moved range's destination is stored in *out when out is not NULL.
 *
 * AUTO fails with -EOPNOTSUPP, before any call that could change memory,
 * when neither the kernel nor the module does what the move needs (a shared
 * source before 5.13, lengths equal only once page-aligned before 6.17, ...):
 * userlib/README.md says exactly when. Every other errno is the kernel's.
 */
#ifndef DONTUNMAP_DONTUNMAP_H
#define DONTUNMAP_DONTUNMAP_H

#include <linux/dontunmap.h>
#include <stddef.h>

/* What libdontunmap.so exports (version node DONTUNMAP_1.0); all else is hidden. */
#ifndef DONTUNMAP_API
#define DONTUNMAP_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum dontunmap_backend {
	DONTUNMAP_BACKEND_AUTO = 0,	/* native where it covers the call, else the module */
	DONTUNMAP_BACKEND_NATIVE = 1,	/* mremap(2) of the running kernel */
	DONTUNMAP_BACKEND_MODULE = 2,	/* ioctl(DONTUNMAP_IOC_REMAP) on /dev/dontunmap */
	DONTUNMAP_BACKEND_NONE = -1,	/* in struct dontunmap_capability: neither */
};

/* mremap() through syscall(2), with the running kernel's semantics. */
DONTUNMAP_API int dontunmap_native_mremap(void *old_addr, size_t old_len, size_t new_len,
					  int flags, void *new_addr, void **out);

/*
 * One move with the automatic backend. Opens and closes /dev/dontunmap on
 * each call: keep a dontunmap_ctx for repeated moves.
 */
DONTUNMAP_API int dontunmap_mremap(void *old_addr, size_t old_len, size_t new_len,
				   int flags, void *new_addr, void **out);

/* A backend and, for AUTO and MODULE, the open device. */
struct dontunmap_ctx;

/*
 * backend is an enum dontunmap_backend; path NULL means DONTUNMAP_DEVICE.
 * MODULE fails as dontunmap_ctx_from_fd() does, or with open()'s errno;
 * AUTO without a device it can use (absent, not the device, another ABI)
 * uses native alone.
 */
DONTUNMAP_API int dontunmap_ctx_open(int backend, const char *path, struct dontunmap_ctx **out);
DONTUNMAP_API void dontunmap_ctx_close(struct dontunmap_ctx *ctx); /* NULL is fine */

DONTUNMAP_API int dontunmap_ctx_mremap(const struct dontunmap_ctx *ctx, void *old_addr,
				       size_t old_len, size_t new_len, int flags,
				       void *new_addr, void **out);

/* DONTUNMAP_IOC_INFO of the open device; -ENODEV when none is open. */
DONTUNMAP_API int dontunmap_ctx_info(const struct dontunmap_ctx *ctx,
				     struct dontunmap_info *out);

/*
 * A context over a descriptor opened earlier (before entering a sandbox, or
 * passed by another process). backend is DONTUNMAP_BACKEND_MODULE or _AUTO
 * (_NATIVE: -EINVAL). fd is duplicated (F_DUPFD_CLOEXEC) and stays the
 * caller's to close. -EBADF for a descriptor that is not open, -ENOTTY for
 * one that is not the device, -EPROTO for a module of another
 * DONTUNMAP_ABI_VERSION (dontunmap_ctx_open() answers the same for MODULE).
 */
DONTUNMAP_API int dontunmap_ctx_from_fd(int backend, int fd, struct dontunmap_ctx **out);

/* Kinds of source mapping and features, for dontunmap_ctx_capability(). */
enum dontunmap_kind {
	DONTUNMAP_KIND_PRIVATE_ANON = 0,	/* MAP_PRIVATE | MAP_ANONYMOUS */
	DONTUNMAP_KIND_SHARED_ANON = 1,		/* MAP_SHARED | MAP_ANONYMOUS */
	DONTUNMAP_KIND_SHMEM = 2,		/* memfd, tmpfs, SysV shm */
	DONTUNMAP_KIND_FILE = 3,		/* any other file mapping */
};

enum dontunmap_cap {
	DONTUNMAP_CAP_MOVE = 0,		/* a DONTUNMAP move of the kind at all */
	DONTUNMAP_CAP_ALIGNED_LEN = 1,	/* lengths equal once page-aligned (6.17) */
	DONTUNMAP_CAP_MULTI_VMA = 2,	/* MREMAP_FIXED over several VMAs (6.17) */
	DONTUNMAP_CAP_UFFD_KEPT = 3,	/* source keeps its userfaultfd registration */
	DONTUNMAP_CAP_BATCH = 4,	/* many moves in one call */
};

struct dontunmap_capability {
	int native;	/* 1: the running kernel's own mremap() does it */
	int module;	/* 1: the context's module says it does (DONTUNMAP_IOC_INFO) */
	int automatic;	/* how AUTO does it: DONTUNMAP_BACKEND_NATIVE, _MODULE or _NONE */
};

/*
 * Does a move of `kind` with `cap` work here. ctx NULL answers for a context
 * without the device. -EINVAL for an unknown kind or cap. userlib/README.md
 * has the table of answers.
 */
DONTUNMAP_API int dontunmap_ctx_capability(const struct dontunmap_ctx *ctx, int kind, int cap,
					   struct dontunmap_capability *out);

/*
 * Moves reqs[0 .. count) in order, each one's new_addr written back,
 * stopping at the first that fails; *completed (when not NULL) says how many
 * moved. 0, or the -errno of element *completed (or of a call the kernel
 * refused as a whole, which moved nothing of it). Through
 * DONTUNMAP_IOC_REMAP_BATCH where the context's module has it (see
 * userlib/README.md), else one move at a time. count 0 moves nothing.
 */
DONTUNMAP_API int dontunmap_ctx_remap_batch(const struct dontunmap_ctx *ctx,
					    struct dontunmap_remap *reqs, unsigned count,
					    unsigned *completed);

#ifdef __cplusplus
}
#endif

#endif /* DONTUNMAP_DONTUNMAP_H */
