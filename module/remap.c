// SPDX-License-Identifier: GPL-2.0
/*
 * The remap engine: mremap(MREMAP_MAYMOVE | MREMAP_DONTUNMAP) as the newest
 * upstream mm/mremap.c performs it, built from the running kernel's own
 * primitives (copy_vma(), move_page_tables(), do_munmap(), ...).
 *
 * The structure follows mm/mremap.c after its 2025 rework step by step:
 * check_mremap_params() -> mmap lock -> remap_move() or check_prep_vma() +
 * mremap_to() -> prep_move_vma() -> charge -> copy_vma_and_data() ->
 * dontunmap_complete() -> unlock -> notify_uffd(). Names match upstream where
 * the step matches, so the two can be read side by side.
 *
 * Lock order, as upstream: mmap_lock (write, killable) -> per-VMA write lock
 * of the source (kernels that have them) -> rmap locks and page-table locks,
 * taken inside move_page_tables(). userfaultfd events are delivered after
 * the mmap lock is dropped. See docs/locking.md.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/percpu_counter.h>
#include <linux/huge_mm.h>
#include <linux/hugetlb_inline.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>

#include "internal.h"

/* All state of one call, passed down instead of a dozen parameters. */
struct vma_remap_struct {
	/* User input, page aligned once checked. */
	unsigned long addr;
	unsigned long old_len;
	unsigned long new_len;
	unsigned long flags;
	unsigned long new_addr;

	/* userfaultfd state, completed after the mmap lock is dropped. */
	struct vm_userfaultfd_ctx *uf;
	struct list_head *uf_unmap_early;
	struct list_head *uf_unmap;

	/* Internal state. */
	struct vm_area_struct *vma;	/* source VMA of the current step */
	int max_map_count;		/* vm.max_map_count, or INT_MAX */
	unsigned long charged;		/* pages charged, not yet the new VMA's */
	bool moved;			/* a VMA of this call has moved */
};

static bool vrm_overlaps(struct vma_remap_struct *vrm)
{
	unsigned long end_old = vrm->addr + vrm->old_len;
	unsigned long end_new = vrm->new_addr + vrm->new_len;

	return end_old > vrm->new_addr && end_new > vrm->addr;
}

/*
 * The argument rules of mremap(), in upstream order, for the only operation
 * this module performs: a move that keeps the source. Lengths are compared
 * after page alignment (6.17 behaviour) on every kernel.
 */
static long check_mremap_params(struct vma_remap_struct *vrm)
{
	unsigned long flags = vrm->flags;

	if (flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP))
		return -EINVAL;
	if (offset_in_page(vrm->addr))
		return -EINVAL;
	if (!vrm->new_len)
		return -EINVAL;
	if (vrm->new_len > TASK_SIZE)
		return -EINVAL;
	/*
	 * mremap() without FIXED or DONTUNMAP resizes in place; the kernel
	 * does that itself on every version, so the module refuses it.
	 */
	if (!(flags & MREMAP_DONTUNMAP))
		return -EINVAL;
	if (vrm->new_addr > TASK_SIZE - vrm->new_len)
		return -EINVAL;
	if (offset_in_page(vrm->new_addr))
		return -EINVAL;
	if (!(flags & MREMAP_MAYMOVE))
		return -EINVAL;
	/* MREMAP_DONTUNMAP does not allow resizing in the process. */
	if (vrm->old_len != vrm->new_len)
		return -EINVAL;
	if (vrm_overlaps(vrm))
		return -EINVAL;
	return 0;
}

/*
 * Headroom under vm.max_map_count, as upstream's
 * __check_map_count_against_split(): a FIXED target may be split in two
 * (+2 before the move), the new VMA may not merge (+1) and the source may be
 * split at both ends (+1 net), and an mlocked source is split ahead (+1).
 */
static bool check_map_count(struct vma_remap_struct *vrm, bool pre_split,
			    bool before_unmaps)
{
	int map_count = current->mm->map_count;

	mmap_assert_write_locked(current->mm);

	if (before_unmaps)
		map_count += 2;
	map_count += 2;
	if (pre_split)
		map_count++;

	return map_count <= vrm->max_map_count;
}

static bool needs_pre_split(struct vma_remap_struct *vrm)
{
	return vrm->vma->vm_flags & VM_LOCKED;
}

/* Source checks, upstream's check_prep_vma() for a same-size move. */
static long check_prep_vma(struct vma_remap_struct *vrm)
{
	struct vm_area_struct *vma = vrm->vma;

	if (!vma)
		return -EFAULT;

	/* If mseal()'d, mremap() is prohibited. */
	if (dontunmap_vma_is_sealed(vma))
		return -EPERM;

	/*
	 * Special mappings (vdso, aio ring, hugetlbfs, driver PFN maps) cannot
	 * keep their source: the owner of the mapping does not expect it.
	 */
	if (vma->vm_flags & (VM_DONTEXPAND | VM_PFNMAP))
		return -EINVAL;

	/* We can't remap across the end of the VMA. */
	if (vrm->old_len > vma->vm_end - vrm->addr)
		return -EFAULT;

	return 0;
}

/*
 * Charge the new range to overcommit: the source keeps its own charge (and
 * VM_ACCOUNT), so a DONTUNMAP move adds the whole length. The new VMA
 * carries the charge from here on; unmapping it returns it.
 */
static bool vrm_charge(struct vma_remap_struct *vrm)
{
	unsigned long pages = vrm->new_len >> PAGE_SHIFT;

	if (!(vrm->vma->vm_flags & VM_ACCOUNT))
		return true;
	if (static_call(dontunmap_security_vm_enough_memory_mm)(current->mm,
								pages))
		return false;
	vrm->charged = pages;
	return true;
}

/*
 * Upstream charges before copy_vma() and returns the charge with
 * vm_unacct_memory() if copy_vma() fails. That helper is an inline over
 * vm_committed_as, a data symbol only CONFIG_KALLSYMS_ALL exposes. Without
 * it the charge is made after copy_vma() instead and, if refused, the new
 * VMA is removed again (discard_new_vma()). Nothing is observable in
 * between: the mmap lock is held throughout.
 */
static bool vrm_can_uncharge(void)
{
	return dontunmap_ksym_data.vm_committed_as &&
	       dontunmap_ksym_data.vm_committed_as_batch;
}

/* A charge the move will not use, returned as vm_unacct_memory() does. */
static void vrm_uncharge(struct vma_remap_struct *vrm)
{
	if (!vrm->charged)
		return;
	percpu_counter_add_batch(dontunmap_ksym_data.vm_committed_as,
				 -(long)vrm->charged,
				 READ_ONCE(*dontunmap_ksym_data.vm_committed_as_batch));
	vrm->charged = 0;
}

/*
 * total_vm, data_vm, exec_vm, stack_vm and (for a locked VMA) locked_vm grow
 * by the new range, as upstream's vrm_stat_account(): nothing was unmapped.
 */
static void vrm_stat_account(struct vma_remap_struct *vrm,
			     struct vm_area_struct *vma)
{
	struct mm_struct *mm = current->mm;
	unsigned long pages = vrm->new_len >> PAGE_SHIFT;

	static_call(dontunmap_vm_stat_account)(mm, vma->vm_flags, pages);
	if (vma->vm_flags & VM_LOCKED)
		mm->locked_vm += pages;
}

/*
 * Without vm_committed_as, the charge for a new VMA was refused: unmap it
 * again without returning a charge that was never made. copy_vma() may have
 * merged the range into its neighbours, so VM_ACCOUNT is concealed from the
 * unmap and restored on whatever is left of them, as upstream's
 * unmap_source_vma() does for an accountable move. The unmap also takes
 * back total_vm and locked_vm, which copy_vma() never added: add them first.
 */
static void discard_new_vma(struct vma_remap_struct *vrm,
			    struct vm_area_struct *new_vma)
{
	struct mm_struct *mm = current->mm;
	unsigned long addr = vrm->new_addr;
	unsigned long end = vrm->new_addr + vrm->new_len;
	unsigned long vm_start = new_vma->vm_start;
	unsigned long vm_end = new_vma->vm_end;
	unsigned long hiwater_vm = mm->hiwater_vm;
	struct vm_area_struct *rest;

	dontunmap_vm_flags_clear(new_vma, VM_ACCOUNT);
	vrm_stat_account(vrm, new_vma);
	/*
	 * If this fails (out of memory twice over), the range stays mapped,
	 * empty, and total_vm counts it. What of it is still one VMA with a
	 * neighbour gets VM_ACCOUNT back below, which the neighbour's charge
	 * needs; that VMA's unmap will then return the range's pages too, so
	 * Committed_AS reads low by that much rather than high for ever.
	 */
	if (static_call(dontunmap_do_munmap)(mm, addr, vrm->new_len, NULL))
		pr_warn_ratelimited("could not remove the destination of a refused move\n");
	if (vm_start < addr) {
		rest = dontunmap_vma_lookup(mm, vm_start);
		if (rest)
			dontunmap_vm_flags_set(rest, VM_ACCOUNT);
	}
	if (vm_end > end) {
		rest = dontunmap_vma_lookup(mm, end);
		if (rest)
			dontunmap_vm_flags_set(rest, VM_ACCOUNT);
	}
	mm->hiwater_vm = hiwater_vm;
}

/*
 * Checks and preparation before the source is written, upstream's
 * prep_move_vma().
 */
static long prep_move_vma(struct vma_remap_struct *vrm)
{
	struct vm_area_struct *vma = vrm->vma;
	unsigned long old_addr = vrm->addr;
	unsigned long old_end = vrm->addr + vrm->old_len;
	const bool split_before = vma->vm_start != old_addr;
	const bool split_after = vma->vm_end != old_end;
	vm_flags_t dummy;
	long err = 0;

	/* Avoid failure later on. */
	if (!check_map_count(vrm, needs_pre_split(vrm), false))
		return -ENOMEM;

	if (split_before)
		err = dontunmap_vma_may_split(vma, old_addr);
	if (!err && split_after)
		err = dontunmap_vma_may_split(vma, old_end);
	if (err)
		return err;

	/*
	 * Break KSM pages in the range: they would otherwise turn up at the
	 * new location shared with pages they no longer belong next to.
	 */
	dummy = vma->vm_flags;
	err = ksm_madvise(vma, old_addr, old_end, MADV_UNMERGEABLE, &dummy);
	if (err)
		return err;

	/*
	 * The source loses VM_LOCKED below, the rest of its VMA must not:
	 * split an mlocked source ahead so that locked_vm stays exact.
	 */
	if (needs_pre_split(vrm)) {
		if (split_before)
			err = dontunmap_split_vma(current->mm, vma, old_addr, 1);
		if (!err && split_after)
			err = dontunmap_split_vma(current->mm, vma, old_end, 0);
		/* Either way vma is now [old_addr, old_end). */
		if (err)
			return err;
	}

	return 0;
}

/*
 * copy_vma(), except that a source whose userfaultfd context stays behind
 * (no UFFD_FEATURE_EVENT_REMAP) never lets the new range merge: the context
 * is then dropped from the destination VMA, and from every neighbour that
 * VMA took in - registered neighbours of the same context would stop
 * reporting faults. 7.3's copy_vma() refuses that merge itself ("If not
 * registered for remap, uffd context will be cleared"), as do stable
 * kernels with the backport (Debian 6.12.118); others merge (5.10.262,
 * 6.1.176, 6.1.192, 6.12.95), and a sublevel cannot tell which. Below 7.3
 * the source lends copy_vma() no context: its uffd flags stay, so no
 * neighbour matches, and the new VMA gets the context back for
 * mremap_userfaultfd_prep() to drop as usual.
 */
static struct vm_area_struct *
copy_vma_unmerged_uffd(struct vm_area_struct **vmap,
		       struct vma_remap_struct *vrm, bool *need_rmap_locks)
{
	struct vm_userfaultfd_ctx ctx = NULL_VM_UFFD_CTX;
	struct vm_area_struct *new_vma;
	bool lent = false;

	if (!DONTUNMAP_KV(7, 3) && dontunmap_uffd_dropped_on_move(*vmap)) {
		ctx = (*vmap)->vm_userfaultfd_ctx;
		(*vmap)->vm_userfaultfd_ctx = NULL_VM_UFFD_CTX;
		lent = true;
	}
	new_vma = dontunmap_copy_vma(vmap, vrm->addr, vrm->new_addr,
				     vrm->new_len, need_rmap_locks);
	if (lent) {
		(*vmap)->vm_userfaultfd_ctx = ctx;
		if (new_vma)
			new_vma->vm_userfaultfd_ctx = ctx;
	}
	return new_vma;
}

/*
 * Create the destination VMA, charge it, and move the page tables into it.
 * If the page tables cannot all be moved, move back what was moved and point
 * vrm at the new VMA, so that the caller unmaps it instead of losing the
 * source.
 */
static long copy_vma_and_data(struct vma_remap_struct *vrm,
			      struct vm_area_struct **new_vma_ptr)
{
	struct vm_area_struct *vma = vrm->vma;
	struct vm_area_struct *new_vma;
	unsigned long moved_len;
	bool need_rmap_locks;
	long err = 0;

	*new_vma_ptr = NULL;
	new_vma = copy_vma_unmerged_uffd(&vma, vrm, &need_rmap_locks);
	if (!new_vma) {
		vrm_uncharge(vrm);
		return -ENOMEM;
	}
	vrm->vma = vma;

	if (!vrm_can_uncharge() && !vrm_charge(vrm)) {
		discard_new_vma(vrm, new_vma);
		return -ENOMEM;
	}
	/* The new VMA carries the charge now. */
	vrm->charged = 0;

	moved_len = dontunmap_move_page_tables(vma, vrm->addr, new_vma,
					       vrm->new_addr, vrm->old_len,
					       need_rmap_locks);
	if (moved_len < vrm->old_len)
		err = -ENOMEM;
	else if (vma->vm_ops && vma->vm_ops->mremap)
		err = vma->vm_ops->mremap(new_vma);

	if (unlikely(err)) {
		/*
		 * Move entries back from the new area to the old one, which
		 * succeeds since the old page tables are still there, then
		 * unmap the new area instead of the old.
		 */
		dontunmap_move_page_tables(new_vma, vrm->new_addr, vma,
					   vrm->addr, moved_len, true);
		vrm->vma = new_vma;
		vrm->addr = vrm->new_addr;
	} else {
		dontunmap_mremap_userfaultfd_prep(new_vma, vrm->new_addr,
						  vrm->new_len, vrm->uf);
	}

	*new_vma_ptr = new_vma;
	return err;
}

/*
 * The source stays mapped but empty: it is no longer mlocked (its pages are
 * gone), and if the whole VMA moved, its anon_vma links serve nothing.
 */
static void dontunmap_complete(struct vma_remap_struct *vrm,
			       struct vm_area_struct *new_vma)
{
	struct vm_area_struct *vma = vrm->vma;
	unsigned long start = vrm->addr;
	unsigned long end = vrm->addr + vrm->old_len;

	/* Self-merge is disallowed. */
	VM_WARN_ON_ONCE(new_vma == vma);

	/* We always clear VM_LOCKED[ONFAULT] on the old VMA. */
	dontunmap_vm_flags_clear(vma, VM_LOCKED | VM_LOCKONFAULT);

	if (vma->vm_start == start && vma->vm_end == end) {
		dontunmap_unlink_anon_vmas(vma);
		dontunmap_reset_unfaulted_pgoff(vma);
	}
}

/* Unmap the new VMA of a failed move; its unmap returns the charge. */
static void unmap_failed_move(struct vma_remap_struct *vrm)
{
	struct mm_struct *mm = current->mm;

	if (static_call(dontunmap_do_munmap)(mm, vrm->addr, vrm->old_len,
					     vrm->uf_unmap) < 0)
		pr_warn_ratelimited("could not unmap the destination of a failed move\n");
	vrm->vma = NULL;
}

static long move_vma(struct vma_remap_struct *vrm)
{
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *new_vma;
	unsigned long hiwater_vm;
	long err;

	err = prep_move_vma(vrm);
	if (err)
		return err;

	/* Charge up front, as upstream, where the charge can be returned. */
	vrm->charged = 0;
	if (vrm_can_uncharge() && !vrm_charge(vrm))
		return -ENOMEM;

	/* We don't want racing faults. */
	dontunmap_vma_start_write(vrm->vma);

	err = copy_vma_and_data(vrm, &new_vma);
	if (err && !new_vma)
		return err;

	/*
	 * total_vm grows by the new range; on failure the unmap of the new
	 * VMA below takes it back. Keep the high watermark as it was.
	 */
	hiwater_vm = mm->hiwater_vm;
	if (!err)
		dontunmap_complete(vrm, new_vma);
	vrm_stat_account(vrm, vrm->vma);
	if (err)
		unmap_failed_move(vrm);
	mm->hiwater_vm = hiwater_vm;

	return err ? err : (long)vrm->new_addr;
}

/* Place and perform the move of one source VMA, upstream's mremap_to(). */
static long mremap_to(struct vma_remap_struct *vrm)
{
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *vma;
	unsigned long map_flags = 0;
	unsigned long res;
	long err;

	if (vrm->flags & MREMAP_FIXED) {
		/* The target's old contents go first, as with MAP_FIXED. */
		err = static_call(dontunmap_do_munmap)(mm, vrm->new_addr,
						       vrm->new_len,
						       vrm->uf_unmap_early);
		vrm->vma = NULL;
		if (err)
			return err;
		vrm->vma = dontunmap_vma_lookup(mm, vrm->addr);
		if (!vrm->vma)
			return -EFAULT;
	}
	vma = vrm->vma;

	/* MREMAP_DONTUNMAP expands by old_len since old_len == new_len. */
	if (!dontunmap_may_expand_vm(mm, vma, vrm->old_len >> PAGE_SHIFT))
		return -ENOMEM;

	if (vrm->flags & MREMAP_FIXED)
		map_flags |= MAP_FIXED;
	if (vma->vm_flags & VM_MAYSHARE)
		map_flags |= MAP_SHARED;
	res = dontunmap_get_unmapped_area(vma->vm_file, vrm->new_addr,
					  vrm->new_len,
					  linear_page_index(vma, vrm->addr),
					  map_flags);
	if (IS_ERR_VALUE(res))
		return (long)res;
	vrm->new_addr = res;

	return move_vma(vrm);
}

/*
 * Can this VMA be one of several moved by one call? Only where the target
 * address is certain to be honoured, and not with userfaultfd, whose
 * notification needs the mmap lock dropped after each VMA.
 */
static bool vma_multi_allowed(struct vm_area_struct *vma)
{
	struct file *file = vma->vm_file;

	if (userfaultfd_armed(vma))
		return false;
	if (!file || !file->f_op->get_unmapped_area)
		return true;
	if (static_call(dontunmap_vma_is_shmem)(vma))
		return true;
	if (is_vm_hugetlb_page(vma))
		return true;
	if (file->f_op->get_unmapped_area == thp_get_unmapped_area)
		return true;
	return false;
}

/*
 * MREMAP_FIXED with equal lengths may span several VMAs (6.17): each is moved
 * to the same offset from the target as it had from the start of the range,
 * so the gaps between them are kept. A gap at the start is EFAULT.
 */
static long remap_move(struct vma_remap_struct *vrm)
{
	struct mm_struct *mm = current->mm;
	unsigned long start = vrm->addr;
	unsigned long end = vrm->addr + vrm->old_len;
	unsigned long target = vrm->new_addr;
	unsigned long last_end = 0;
	bool seen_vma = false;
	long res = -EFAULT;

	/*
	 * Look each VMA up afresh: the previous move may have split, merged
	 * or unmapped around it, so no iterator survives a step.
	 */
	while (start < end) {
		struct vm_area_struct *vma = find_vma(mm, start);
		unsigned long addr, len, offset;
		long res_vma;
		bool multi_allowed;

		if (!vma || vma->vm_start >= end)
			break;
		/* No gap permitted at the start of the range. */
		if (!seen_vma && start < vma->vm_start)
			return -EFAULT;

		addr = max(vma->vm_start, start);
		len = min(end, vma->vm_end) - addr;
		offset = seen_vma ? vma->vm_start - last_end : 0;
		last_end = vma->vm_end;

		vrm->vma = vma;
		vrm->addr = addr;
		vrm->new_addr = target + offset;
		vrm->old_len = len;
		vrm->new_len = len;

		multi_allowed = vma_multi_allowed(vma);
		if (!multi_allowed && (seen_vma || vma->vm_end < end))
			return -EFAULT;

		res_vma = check_prep_vma(vrm);
		if (!res_vma)
			res_vma = mremap_to(vrm);
		if (IS_ERR_VALUE(res_vma))
			return res_vma;

		if (!seen_vma)
			res = res_vma;
		seen_vma = true;
		vrm->moved = true;
		target = res_vma + len;
		start = addr + len;
	}

	return res;
}

/*
 * What a move leaves for after the mmap lock is dropped: its userfaultfd
 * context and unmap lists, and the range the events describe. A batch keeps
 * one per element, so that each element's events go out in order.
 */
struct remap_uffd {
	struct vm_userfaultfd_ctx ctx;
	struct list_head unmap_early;
	struct list_head unmap;
	unsigned long addr;
	unsigned long new_addr;
	unsigned long len;
	long err;
};

/*
 * The user's arguments as mremap() takes them: old_addr untagged, lengths
 * page aligned.
 */
static void vrm_set_args(struct vma_remap_struct *vrm,
			 const struct dontunmap_remap *req)
{
	vrm->addr = untagged_addr(req->old_addr);
	vrm->old_len = PAGE_ALIGN(req->old_len);
	vrm->new_len = PAGE_ALIGN(req->new_len);
	vrm->flags = req->flags;
	vrm->new_addr = req->new_addr;
}

static void vrm_init(struct vma_remap_struct *vrm,
		     const struct dontunmap_remap *req, struct remap_uffd *uffd,
		     int max_map_count)
{
	*vrm = (struct vma_remap_struct) {
		.uf = &uffd->ctx,
		.uf_unmap_early = &uffd->unmap_early,
		.uf_unmap = &uffd->unmap,
		.max_map_count = max_map_count,
	};
	uffd->ctx = NULL_VM_UFFD_CTX;
	INIT_LIST_HEAD(&uffd->unmap_early);
	INIT_LIST_HEAD(&uffd->unmap);
	vrm_set_args(vrm, req);
}

/*
 * The argument rules that need no lock, for a caller that must know whether
 * the call can go ahead before it prepares anything: the engine applies them
 * again.
 */
long dontunmap_check_args(const struct dontunmap_remap *req)
{
	struct vma_remap_struct vrm;

	vrm_set_args(&vrm, req);
	return check_mremap_params(&vrm);
}

/*
 * One move, under the mmap write lock: the argument rules, then upstream's
 * remap_move() or mremap_to().
 */
static long remap_locked(struct vma_remap_struct *vrm)
{
	struct mm_struct *mm = current->mm;
	long res;

	mmap_assert_write_locked(mm);

	res = check_mremap_params(vrm);
	if (res)
		return res;

	if (!check_map_count(vrm, true, true))
		return -ENOMEM;
	if (vrm->flags & MREMAP_FIXED)
		return remap_move(vrm);
	vrm->vma = dontunmap_vma_lookup(mm, vrm->addr);
	res = check_prep_vma(vrm);
	if (res)
		return res;
	return mremap_to(vrm);
}

/*
 * A restarted call would run again from its first element, over memory that
 * has already moved (and a FIXED target that now holds the moved pages).
 * Once anything has moved, an interrupted call reports EINTR instead.
 */
long dontunmap_no_restart(long err)
{
	switch (err) {
	case -ERESTARTSYS:
	case -ERESTARTNOINTR:
	case -ERESTARTNOHAND:
	case -ERESTART_RESTARTBLOCK:
		return -EINTR;
	}
	return err;
}

/*
 * userfaultfd events, after the mmap lock is dropped: the unmap of a FIXED
 * target, then UFFD_EVENT_REMAP (or the release of the context on failure),
 * then any unmap of a failed move.
 */
static void notify_uffd(struct remap_uffd *uffd)
{
	struct mm_struct *mm = current->mm;

	static_call(dontunmap_userfaultfd_unmap_complete)(mm,
							  &uffd->unmap_early);
	if (uffd->err)
		dontunmap_uffd_fail(&uffd->ctx, uffd->addr, uffd->err,
				    uffd->len);
	else
		static_call(dontunmap_mremap_userfaultfd_complete)(&uffd->ctx,
				uffd->addr, uffd->new_addr, uffd->len);
	static_call(dontunmap_userfaultfd_unmap_complete)(mm, &uffd->unmap);
}

/**
 * dontunmap_remap_batch - make @count moves in order under one mmap lock hold
 * @reqs: the moves; each completed one gets its destination in new_addr
 * @count: how many, at least one
 * @done: set to the number of moves completed
 *
 * Each move is all or nothing, with the rules and errnos of a single call;
 * the first that fails ends the batch and its errno is returned. A fatal
 * signal ends it between moves with EINTR. userfaultfd events of every move
 * attempted go out in order once the lock is dropped.
 *
 * Return: 0, or the negative errno of move *@done.
 */
long dontunmap_remap_batch(struct dontunmap_remap *reqs, unsigned int count,
			   unsigned int *done)
{
	struct mm_struct *mm = current->mm;
	struct remap_uffd one, *uffd = &one;
	unsigned int i, tried = 0;
	int max_map_count;
	long res = 0;

	*done = 0;
	if (count > 1) {
		uffd = kvcalloc(count, sizeof(*uffd), GFP_KERNEL);
		if (!uffd)
			return -ENOMEM;
	}
	max_map_count = dontunmap_max_map_count();

	if (mmap_write_lock_killable(mm)) {
		res = -EINTR;
		goto out_free;
	}
	for (i = 0; i < count; i++) {
		struct vma_remap_struct vrm;

		if (i) {
			if (fatal_signal_pending(current)) {
				res = -EINTR;
				break;
			}
			cond_resched();
		}
		vrm_init(&vrm, &reqs[i], &uffd[i], max_map_count);
		res = remap_locked(&vrm);
		tried++;
		if (IS_ERR_VALUE(res) && (i || vrm.moved))
			res = dontunmap_no_restart(res);

		uffd[i].addr = vrm.addr;
		uffd[i].new_addr = vrm.new_addr;
		uffd[i].len = vrm.old_len;
		uffd[i].err = IS_ERR_VALUE(res) ? res : 0;
		if (IS_ERR_VALUE(res))
			break;
		reqs[i].new_addr = res;
		res = 0;
	}
	*done = i;
	mmap_write_unlock(mm);

	for (i = 0; i < tried; i++)
		notify_uffd(&uffd[i]);
out_free:
	if (uffd != &one)
		kvfree(uffd);
	return res;
}

long dontunmap_remap(struct dontunmap_remap *req)
{
	unsigned int done;

	return dontunmap_remap_batch(req, 1, &done);
}
