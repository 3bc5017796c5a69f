/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * dontunmap: mremap(MREMAP_MAYMOVE | MREMAP_DONTUNMAP) with the newest
 * upstream semantics, through an ioctl on /dev/dontunmap.
 *
 * This header is shared by the kernel module and user space, and is usable
 * from C and C++. Fields are fixed width; unknown flag bits and reserved
 * fields must be zero, else the ioctl fails with EINVAL.
 */
#ifndef _UAPI_LINUX_DONTUNMAP_H
#define _UAPI_LINUX_DONTUNMAP_H

#include <linux/types.h>
#include <linux/ioctl.h>

/* The mremap() flag values; older libc headers lack some of them. */
#ifndef MREMAP_MAYMOVE
#define MREMAP_MAYMOVE		1
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED		2
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP	4
#endif

#define DONTUNMAP_DEVICE	"/dev/dontunmap"
#define DONTUNMAP_ABI_VERSION	1

/*
 * DONTUNMAP_IOC_REMAP: the arguments of mremap(). @flags takes the MREMAP_*
 * values and must include MREMAP_MAYMOVE | MREMAP_DONTUNMAP. @new_addr is the
 * hint (or, with MREMAP_FIXED, the target) on input and the destination on
 * output. Errors are those mremap() gives on the newest upstream kernel, and
 * EFAULT, before anything moves, for a struct the call could not write the
 * destination back into: one that is not writable, or that lies in the
 * source range or in a MREMAP_FIXED target (which the move empties or
 * replaces). The ioctl returns 0, not the address: the ioctl system call
 * returns an int. Only another thread unmapping or write-protecting the
 * struct during the call can make it fail with EFAULT after the move.
 */
struct dontunmap_remap {
	__u64 old_addr;
	__u64 old_len;
	__u64 new_len;
	__u64 flags;
	__u64 new_addr;
};

/* Feature bits reported by DONTUNMAP_IOC_INFO. */
#define DONTUNMAP_FEAT_PRIVATE_ANON	(1ULL << 0) /* private anonymous sources */
#define DONTUNMAP_FEAT_SHARED		(1ULL << 1) /* shared anon, shmem/memfd, files */
#define DONTUNMAP_FEAT_UFFD		(1ULL << 2) /* userfaultfd kept on source, EVENT_REMAP */
#define DONTUNMAP_FEAT_KSM_UNMERGE	(1ULL << 3) /* KSM pages unmerged before the move */
#define DONTUNMAP_FEAT_ALIGNED_LEN	(1ULL << 4) /* lengths compared after page alignment */
#define DONTUNMAP_FEAT_DIRECT_CALLS	(1ULL << 5) /* kernel internals reached by direct branches */
#define DONTUNMAP_FEAT_MULTI_VMA	(1ULL << 6) /* MREMAP_FIXED moves spanning several VMAs */

/* DONTUNMAP_IOC_INFO: what this module supports, so user space need not guess. */
struct dontunmap_info {
	__u32 abi_version;	/* DONTUNMAP_ABI_VERSION */
	__u32 reserved0;	/* zero */
	__u64 features;		/* DONTUNMAP_FEAT_* */
	__u64 reserved[4];	/* zero */
};

#define DONTUNMAP_IOC_MAGIC	0xD6
#define DONTUNMAP_IOC_REMAP	_IOWR(DONTUNMAP_IOC_MAGIC, 0x01, struct dontunmap_remap)
#define DONTUNMAP_IOC_INFO	_IOR(DONTUNMAP_IOC_MAGIC, 0x02, struct dontunmap_info)

#endif /* _UAPI_LINUX_DONTUNMAP_H */
