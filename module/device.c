// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/dontunmap: the misc device, its ioctls and the module's life cycle.
 *
 * The ioctls act on the calling process's own address space (current->mm)
 * only; nothing here takes a reference to another mm.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
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
			    DONTUNMAP_FEAT_MULTI_VMA)

/*
 * Does the caller's struct at @uarg lie in [start, start + len)? @len is
 * page aligned as the engine aligns it; ranges that wrap cannot pass the
 * argument rules, which have run by then.
 */
static bool dontunmap_args_within(unsigned long uarg, unsigned long start,
				  u64 len)
{
	unsigned long end = start + PAGE_ALIGN(len);

	return end > start && uarg < end &&
	       uarg + sizeof(struct dontunmap_remap) > start;
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
	if (err)
		return err;
	/* old_addr is untagged as mremap() untags it; new_addr is not. */
	if (dontunmap_args_within(ua, untagged_addr(req.old_addr), req.old_len))
		return -EFAULT;
	if ((req.flags & MREMAP_FIXED) &&
	    dontunmap_args_within(ua, req.new_addr, req.new_len))
		return -EFAULT;
	if (put_user(req.new_addr, &uarg->new_addr))
		return -EFAULT;

	err = dontunmap_remap(&req);
	if (err)
		return err;
	if (put_user(req.new_addr, &uarg->new_addr))
		return -EFAULT;
	return 0;
}

static long dontunmap_ioctl_info(void __user *argp)
{
	struct dontunmap_info info = {
		.abi_version = DONTUNMAP_ABI_VERSION,
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
		return dontunmap_ioctl_remap(argp);
	case DONTUNMAP_IOC_INFO:
		return dontunmap_ioctl_info(argp);
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
