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
#define DONTUNMAP_ABI_VERSION	1	/* changes only if an ioctl changes */
#define DONTUNMAP_ABI_MINOR	1	/* grows when an ioctl is added */

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
#define DONTUNMAP_FEAT_BATCH		(1ULL << 7) /* DONTUNMAP_IOC_REMAP_BATCH (ABI minor 1) */

/* DONTUNMAP_IOC_INFO: what this module supports, so user space need not guess. */
struct dontunmap_info {
	__u32 abi_version;	/* DONTUNMAP_ABI_VERSION */
	__u32 abi_minor;	/* DONTUNMAP_ABI_MINOR; 0 from modules before it */
	__u64 features;		/* DONTUNMAP_FEAT_* */
	__u64 reserved[4];	/* zero */
};

/*
 * DONTUNMAP_IOC_REMAP_BATCH: @count moves, the array of struct
 * dontunmap_remap at @remaps, made in order under one hold of the mmap lock.
 * Each element follows the rules of DONTUNMAP_IOC_REMAP, is all or nothing,
 * and gets its destination written back into its new_addr. The call stops at
 * the first element that fails: @completed says how many moved (elements
 * 0 .. completed - 1, each written back), @error holds that element's
 * negative errno, and the ioctl fails with it (ENOMEM or EINTR before the
 * first element count as element 0's). A call refused as a whole (a bad
 * header, @count 0 or above DONTUNMAP_BATCH_MAX, an array it cannot read,
 * the header or array inside a range an element moves or replaces) moves
 * nothing and leaves the header as it was, or with completed 0 and error 0
 * when the header is writable but the array is not. userfaultfd events
 * of all completed elements are delivered in order, after the lock is
 * dropped. See docs/batch.md.
 */
struct dontunmap_remap_batch {
	__u64 remaps;		/* user pointer to count struct dontunmap_remap */
	__u32 count;		/* 1 .. DONTUNMAP_BATCH_MAX */
	__u32 flags;		/* zero: none defined yet */
	__u32 completed;	/* out: elements moved */
	__s32 error;		/* out: the failed element's -errno, or 0 */
	__u64 reserved[2];	/* zero */
};

/*
 * The most elements one call takes. The bound caps what one call can make
 * others wait for: the mmap lock is held across all elements (faults and
 * mmap() of other threads wait; a fatal signal is honoured between
 * elements), and the kernel copies the array and keeps userfaultfd
 * bookkeeping per element (about 112 bytes each, 112 KiB at the bound).
 * Callers with more moves make more calls.
 */
#define DONTUNMAP_BATCH_MAX	1024

#define DONTUNMAP_IOC_MAGIC	0xD6
#define DONTUNMAP_IOC_REMAP	_IOWR(DONTUNMAP_IOC_MAGIC, 0x01, struct dontunmap_remap)
#define DONTUNMAP_IOC_INFO	_IOR(DONTUNMAP_IOC_MAGIC, 0x02, struct dontunmap_info)
#define DONTUNMAP_IOC_REMAP_BATCH _IOWR(DONTUNMAP_IOC_MAGIC, 0x03, struct dontunmap_remap_batch)

#endif /* _UAPI_LINUX_DONTUNMAP_H */
