// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/dontunmap: the misc device, its ioctls and the module's life cycle.
 *
 * The ioctls act on the calling process's own address space (current->mm)
 * only; nothing here takes a reference to another mm.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "internal.h"

/*
 * Moving memory is harmless in itself, but the module is new kernel attack
 * surface: root only unless the administrator widens it, here or with the
 * shipped udev rule.
 */
static ushort mode = 0600;
module_param(mode, ushort, 0444);
MODULE_PARM_DESC(mode, "permissions of /dev/dontunmap at load (default 0600)");

#define DONTUNMAP_FEATURES (DONTUNMAP_FEAT_PRIVATE_ANON |		\
			    DONTUNMAP_FEAT_SHARED |			\
			    DONTUNMAP_FEAT_UFFD |			\
			    DONTUNMAP_FEAT_KSM_UNMERGE |		\
			    DONTUNMAP_FEAT_ALIGNED_LEN |		\
			    DONTUNMAP_FEAT_MULTI_VMA |			\
			    DONTUNMAP_FEAT_BATCH)

/*
 * What the module has done since it was loaded, read-only in
 * /sys/class/misc/dontunmap/stats/ (docs/batch.md): completed moves (a
 * batch element is one), the bytes they moved, batch calls, and failed
 * calls by errno (a failed batch counts once, by its element's errno).
 */
#define DONTUNMAP_STAT_ERRNOS	134	/* errno values counted one by one */

static struct {
	atomic64_t moves;
	atomic64_t bytes;
	atomic64_t batches;
	atomic64_t failures[DONTUNMAP_STAT_ERRNOS + 1]; /* [0]: any larger */
} dontunmap_stats;

static void dontunmap_count_moves(const struct dontunmap_remap *reqs,
				  unsigned int done)
{
	unsigned int i;

	for (i = 0; i < done; i++)
		atomic64_add(PAGE_ALIGN(reqs[i].old_len), &dontunmap_stats.bytes);
	atomic64_add(done, &dontunmap_stats.moves);
}

static long dontunmap_count_result(long err)
{
	if (err < 0)
		atomic64_inc(&dontunmap_stats.failures[-err <= DONTUNMAP_STAT_ERRNOS ?
						       -err : 0]);
	return err;
}

#define DONTUNMAP_STAT_ATTR(name)					\
static ssize_t name##_show(struct device *dev,				\
			   struct device_attribute *attr, char *buf)	\
{									\
	return sysfs_emit(buf, "%lld\n",				\
			  (long long)atomic64_read(&dontunmap_stats.name)); \
}									\
static DEVICE_ATTR_RO(name)

DONTUNMAP_STAT_ATTR(moves);
DONTUNMAP_STAT_ATTR(bytes);
DONTUNMAP_STAT_ATTR(batches);

/* One line per errno that has failed a call: "<errno> <count>". */
static ssize_t failures_show(struct device *dev,
			     struct device_attribute *attr, char *buf)
{
	ssize_t len = 0;
	int i;

	for (i = 0; i <= DONTUNMAP_STAT_ERRNOS; i++) {
		s64 n = atomic64_read(&dontunmap_stats.failures[i]);

		if (n)
			len += sysfs_emit_at(buf, len, "%d %lld\n", i,
					     (long long)n);
	}
	return len;
}
static DEVICE_ATTR_RO(failures);

static struct attribute *dontunmap_stats_attrs[] = {
	&dev_attr_moves.attr,
	&dev_attr_bytes.attr,
	&dev_attr_batches.attr,
	&dev_attr_failures.attr,
	NULL
};

static const struct attribute_group dontunmap_stats_group = {
	.name	= "stats",
	.attrs	= dontunmap_stats_attrs,
};

static const struct attribute_group *dontunmap_groups[] = {
	&dontunmap_stats_group,
	NULL
};

/*
 * Does the caller's memory [uarg, uarg + size) meet [start, start + len)?
 * @len is page aligned as the engine aligns it; a range that wraps meets
 * nothing here and fails the engine's own checks.
 */
static bool dontunmap_args_within(unsigned long uarg, size_t size,
				  unsigned long start, u64 len)
{
	unsigned long end = start + PAGE_ALIGN(len);

	return end > start && uarg < end && uarg + size > start;
}

/* Does a move of @req touch [uarg, uarg + size)? */
static bool dontunmap_touches(const struct dontunmap_remap *req,
			      unsigned long uarg, size_t size)
{
	/* old_addr is untagged as mremap() untags it; new_addr is not. */
	if (dontunmap_args_within(uarg, size, untagged_addr(req->old_addr),
				  req->old_len))
		return true;
	return (req->flags & MREMAP_FIXED) &&
	       dontunmap_args_within(uarg, size, req->new_addr, req->new_len);
}

/*
 * The destination is written back into the caller's struct once the move is
 * done and the mmap lock dropped. Nothing may stop that write once pages
 * have moved, so, after the argument rules (their EINVAL comes first, as in
 * mremap()) and before anything moves, the call is refused with EFAULT, as
 * for any argument it cannot write, when the struct lies
 *  - in the source range, which the call empties: the write would fault a
 *    page back into the emptied source or, under userfaultfd, wait for a
 *    monitor that may be the caller itself;
 *  - in a MREMAP_FIXED target, whose page the move replaces: the write
 *    would land in the moved data;
 *  - in memory the caller cannot write: storing the hint back first proves
 *    it can be written (and faults its page in).
 * Only another thread unmapping or write-protecting the struct during the
 * call can still make the final write fail; the call then returns EFAULT
 * although the move happened (as read() does when its buffer goes away).
 */
static long dontunmap_ioctl_remap(void __user *argp)
{
	struct dontunmap_remap __user *uarg = argp;
	unsigned long ua = untagged_addr((unsigned long)argp);
	struct dontunmap_remap req;
	long err;

	if (copy_from_user(&req, uarg, sizeof(req)))
		return -EFAULT;
	err = dontunmap_check_args(&req);
	if (!err && dontunmap_touches(&req, ua, sizeof(req)))
		err = -EFAULT;
	if (!err && put_user(req.new_addr, &uarg->new_addr))
		err = -EFAULT;
	if (!err)
		err = dontunmap_remap(&req);
	if (err)
		return err;
	dontunmap_count_moves(&req, 1);
	if (put_user(req.new_addr, &uarg->new_addr))
		return -EFAULT;
	return 0;
}

/*
 * DONTUNMAP_IOC_REMAP_BATCH (docs/batch.md). The elements are copied in
 * before the mmap lock is taken, and their destinations written back after
 * it is dropped: user memory cannot be touched under the lock, whose holder
 * a page fault on it would wait for. As for a single call, nothing may stop
 * the write-back once pages have moved, so the whole call is refused with
 * EFAULT, before anything moves, when the header or the array lies in any
 * element's source range or MREMAP_FIXED target, or cannot be written:
 * both are written back as read before the first move. Only another thread
 * unmapping or write-protecting them during the call can make the final
 * write fail; the call then returns EFAULT and @completed is lost.
 */
static long dontunmap_ioctl_remap_batch(void __user *argp)
{
	struct dontunmap_remap_batch __user *ubatch = argp;
	unsigned long ub = untagged_addr((unsigned long)argp);
	struct dontunmap_remap_batch batch;
	struct dontunmap_remap __user *ureqs;
	struct dontunmap_remap *reqs;
	unsigned int done = 0;
	unsigned long ua;
	size_t size;
	long err;
	u32 i;

	if (copy_from_user(&batch, ubatch, sizeof(batch)))
		return -EFAULT;
	if (batch.flags || batch.reserved[0] || batch.reserved[1])
		return -EINVAL;
	if (!batch.count || batch.count > DONTUNMAP_BATCH_MAX)
		return -EINVAL;

	ureqs = u64_to_user_ptr(batch.remaps);
	ua = untagged_addr((unsigned long)ureqs);
	size = array_size(batch.count, sizeof(*reqs));
	reqs = vmemdup_user(ureqs, size);
	if (IS_ERR(reqs))
		return PTR_ERR(reqs);

	/*
	 * An element that fails the argument rules moves nothing and gets its
	 * own errno when its turn comes, as a single call would: only the
	 * others can disturb the header or the array.
	 */
	err = 0;
	for (i = 0; i < batch.count && !err; i++)
		if (!dontunmap_check_args(&reqs[i]) &&
		    (dontunmap_touches(&reqs[i], ub, sizeof(batch)) ||
		     dontunmap_touches(&reqs[i], ua, size)))
			err = -EFAULT;
	batch.completed = 0;
	batch.error = 0;
	if (!err && (copy_to_user(ubatch, &batch, sizeof(batch)) ||
		     copy_to_user(ureqs, reqs, size)))
		err = -EFAULT;
	if (err)
		goto out;

	atomic64_inc(&dontunmap_stats.batches);
	err = dontunmap_remap_batch(reqs, batch.count, &done);
	dontunmap_count_moves(reqs, done);
	batch.completed = done;
	/* A call that is restarted writes its header again. */
	batch.error = dontunmap_no_restart(err);
	if (copy_to_user(ureqs, reqs, array_size(done, sizeof(*reqs))) ||
	    copy_to_user(ubatch, &batch, sizeof(batch)))
		err = -EFAULT;
out:
	kvfree(reqs);
	return err;
}

static long dontunmap_ioctl_info(void __user *argp)
{
	struct dontunmap_info info = {
		.abi_version = DONTUNMAP_ABI_VERSION,
		.abi_minor = DONTUNMAP_ABI_MINOR,
		.features = DONTUNMAP_FEATURES,
	};

	if (IS_ENABLED(CONFIG_HAVE_STATIC_CALL))
		info.features |= DONTUNMAP_FEAT_DIRECT_CALLS;
	if (copy_to_user(argp, &info, sizeof(info)))
		return -EFAULT;
	return 0;
}

static long dontunmap_ioctl(struct file *file, unsigned int cmd,
			    unsigned long arg)
{
	void __user *argp = (void __user *)arg;

	if (!current->mm)
		return -EINVAL;

	switch (cmd) {
	case DONTUNMAP_IOC_REMAP:
		return dontunmap_count_result(dontunmap_ioctl_remap(argp));
	case DONTUNMAP_IOC_INFO:
		return dontunmap_ioctl_info(argp);
	case DONTUNMAP_IOC_REMAP_BATCH:
		return dontunmap_count_result(dontunmap_ioctl_remap_batch(argp));
	default:
		return -ENOTTY;
	}
}

static const struct file_operations dontunmap_fops = {
	.owner		= THIS_MODULE,
	.unlocked_ioctl	= dontunmap_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.llseek		= noop_llseek,
};

static struct miscdevice dontunmap_dev = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "dontunmap",
	.fops	= &dontunmap_fops,
	.groups	= dontunmap_groups,
};

static int __init dontunmap_init(void)
{
	int err;

	/* Each refusal has said why, in a line of its own. */
	err = dontunmap_resolve_symbols();
	if (err)
		return err;

	dontunmap_dev.mode = mode & 0777;
	err = misc_register(&dontunmap_dev);
	if (err) {
		pr_err("not loaded: misc_register failed (%d)\n", err);
		dontunmap_release_symbols();
		return err;
	}
	return 0;
}

static void __exit dontunmap_exit(void)
{
	misc_deregister(&dontunmap_dev);
	dontunmap_release_symbols();
}

module_init(dontunmap_init);
module_exit(dontunmap_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("mremap(MREMAP_DONTUNMAP) with the newest upstream semantics");
MODULE_VERSION(DONTUNMAP_MODULE_VERSION);
