// SPDX-License-Identifier: GPL-2.0
/*
 * Clearing the uffd-wp bits of moved entries, for kernels whose
 * move_page_tables() predates "mm: clear uffd-wp PTE/PMD state on mremap()"
 * (see compat.h).
 *
 * Runs after the move with the mmap lock held for writing, so no fault maps,
 * collapses or splits anything in the range; rmap walkers (reclaim,
 * migration) change entries only under the page-table locks taken here.
 * Only the software uffd-wp bit changes: protections stay, so no TLB entry
 * goes stale and no flush is needed.
 */
#include <linux/mm.h>
#include <linux/huge_mm.h>
#include <linux/swap.h>
#include <linux/swapops.h>

#include "internal.h"

#ifdef DONTUNMAP_NEED_CLEAR_UFFD_WP

/*
 * A huge or migrating PMD: clear it and return true. False if, under the
 * lock, it turns out to point to a page table (a split got there first).
 */
static bool clear_uffd_wp_pmd(struct mm_struct *mm, pmd_t *pmd,
			      unsigned long addr)
{
	spinlock_t *ptl = pmd_lock(mm, pmd);
	bool leaf = true;
	pmd_t val = *pmd;

	addr &= HPAGE_PMD_MASK;
	if (is_swap_pmd(val)) {
		if (pmd_swp_uffd_wp(val))
			set_pmd_at(mm, addr, pmd, pmd_swp_clear_uffd_wp(val));
	} else if (pmd_trans_huge(val) || pmd_devmap(val)) {
		if (pmd_uffd_wp(val)) {
			val = pmdp_huge_get_and_clear(mm, addr, pmd);
			set_pmd_at(mm, addr, pmd, pmd_clear_uffd_wp(val));
		}
	} else {
		leaf = false;
	}
	spin_unlock(ptl);
	return leaf;
}

static void clear_uffd_wp_ptes(struct mm_struct *mm, pmd_t *pmd,
			       unsigned long addr, unsigned long end)
{
	pte_t *start_pte, *ptep;
	spinlock_t *ptl;

	start_pte = pte_offset_map_lock(mm, pmd, addr, &ptl);
	/* 6.5+: no page table there any more (retracted), so no entries. */
	if (!start_pte)
		return;
	for (ptep = start_pte; addr < end; ptep++, addr += PAGE_SIZE) {
		pte_t pte = *ptep;

		if (pte_present(pte)) {
			if (!pte_uffd_wp(pte))
				continue;
			pte = ptep_get_and_clear(mm, addr, ptep);
			set_pte_at(mm, addr, ptep, pte_clear_uffd_wp(pte));
		} else if (dontunmap_pte_marker_uffd_wp(pte)) {
			/* As move_ptes(): the marker goes, the entry is none. */
			pte_clear(mm, addr, ptep);
		} else if (is_swap_pte(pte) && pte_swp_uffd_wp(pte)) {
			set_pte_at(mm, addr, ptep, pte_swp_clear_uffd_wp(pte));
		}
	}
	pte_unmap_unlock(start_pte, ptl);
}

static void clear_uffd_wp_pmd_entry(struct mm_struct *mm, pmd_t *pmd,
				    unsigned long addr, unsigned long end)
{
	if (pmd_none(*pmd))
		return;
	if ((is_swap_pmd(*pmd) || pmd_trans_huge(*pmd) || pmd_devmap(*pmd)) &&
	    clear_uffd_wp_pmd(mm, pmd, addr))
		return;
	if (pmd_bad(*pmd))
		return;
	clear_uffd_wp_ptes(mm, pmd, addr, end);
}

static void clear_uffd_wp_pmd_range(struct mm_struct *mm, pud_t *pud,
				    unsigned long addr, unsigned long end)
{
	pmd_t *pmd = pmd_offset(pud, addr);
	unsigned long next;

	do {
		next = pmd_addr_end(addr, end);
		clear_uffd_wp_pmd_entry(mm, pmd, addr, next);
		/* As change_pmd_range(): a long range must not hog the CPU. */
		cond_resched();
	} while (pmd++, addr = next, addr != end);
}

/* Huge PUDs are DAX only, where uffd-wp does not reach. */
static void clear_uffd_wp_pud_range(struct mm_struct *mm, p4d_t *p4d,
				    unsigned long addr, unsigned long end)
{
	pud_t *pud = pud_offset(p4d, addr);
	unsigned long next;

	do {
		next = pud_addr_end(addr, end);
		if (pud_none(*pud) || pud_bad(*pud))
			continue;
		clear_uffd_wp_pmd_range(mm, pud, addr, next);
	} while (pud++, addr = next, addr != end);
}

static void clear_uffd_wp_p4d_range(struct mm_struct *mm, pgd_t *pgd,
				    unsigned long addr, unsigned long end)
{
	p4d_t *p4d = p4d_offset(pgd, addr);
	unsigned long next;

	do {
		next = p4d_addr_end(addr, end);
		if (p4d_none(*p4d) || p4d_bad(*p4d))
			continue;
		clear_uffd_wp_pud_range(mm, p4d, addr, next);
	} while (p4d++, addr = next, addr != end);
}

/*
 * Walks [addr, end) level by level, as mm/mprotect.c's change_*_range() do,
 * so that an empty upper level is stepped over whole rather than probed
 * every PMD_SIZE, and yields the CPU between page tables.
 */
void dontunmap_clear_uffd_wp(struct mm_struct *mm, unsigned long addr,
			     unsigned long end)
{
	pgd_t *pgd = pgd_offset(mm, addr);
	unsigned long next;

	mmap_assert_write_locked(mm);
	do {
		next = pgd_addr_end(addr, end);
		if (pgd_none(*pgd) || pgd_bad(*pgd))
			continue;
		clear_uffd_wp_p4d_range(mm, pgd, addr, next);
	} while (pgd++, addr = next, addr != end);
}

#endif /* DONTUNMAP_NEED_CLEAR_UFFD_WP */
