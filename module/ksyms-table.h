/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one table of kernel internals dontunmap reaches: every unexported
 * symbol it resolves at load, with its purpose. Included several times with
 * different definitions of the two macros (as asm/kvm-x86-ops.h is), so a
 * symbol is named here once and declared, defined and resolved from here.
 *
 * DONTUNMAP_FUNC(name, required, purpose): a function, called through a
 *	static call with the kernel's own prototype (typeof(name)). A missing
 *	required one fails the load.
 * DONTUNMAP_DATA(name, purpose): a data symbol, visible only with
 *	CONFIG_KALLSYMS_ALL, so always optional: the engine has a path without.
 */
#ifndef DONTUNMAP_FUNC
#define DONTUNMAP_FUNC(name, required, purpose)
#endif
#ifndef DONTUNMAP_DATA
#define DONTUNMAP_DATA(name, purpose)
#endif

DONTUNMAP_FUNC(copy_vma, true, "create the destination VMA")
DONTUNMAP_FUNC(move_page_tables, true, "move the page tables")
DONTUNMAP_FUNC(do_munmap, true, "unmap a MREMAP_FIXED target or a failed move")
#ifdef DONTUNMAP_SPLIT_VMA_MAY_BE_STATIC
/* One of the two is required (resolver.c). */
DONTUNMAP_FUNC(split_vma, false, "split an mlocked source before the move")
DONTUNMAP_FUNC(__split_vma, false, "split_vma() where it is static and inlined")
#else
DONTUNMAP_FUNC(split_vma, true, "split an mlocked source before the move")
#endif
DONTUNMAP_FUNC(may_expand_vm, true, "RLIMIT_AS and RLIMIT_DATA")
DONTUNMAP_FUNC(security_vm_enough_memory_mm, true, "overcommit pre-charge")
DONTUNMAP_FUNC(vm_stat_account, true, "total_vm and data_vm accounting")
DONTUNMAP_FUNC(unlink_anon_vmas, true, "drop an emptied source's anon_vma")
DONTUNMAP_FUNC(vma_is_shmem, true, "multi-VMA moves: known placement")
DONTUNMAP_FUNC(mremap_userfaultfd_prep, true, "userfaultfd on the destination")
DONTUNMAP_FUNC(mremap_userfaultfd_complete, true, "UFFD_EVENT_REMAP")
DONTUNMAP_FUNC(userfaultfd_unmap_complete, true, "UFFD_EVENT_UNMAP of a FIXED target")
#ifdef DONTUNMAP_NEED_UFFD_FAIL
DONTUNMAP_FUNC(mremap_userfaultfd_fail, true, "userfaultfd: a failed move")
#endif
#ifdef DONTUNMAP_CHECK_BTF
DONTUNMAP_FUNC(bpf_find_btf_id, false, "check copied layouts against BTF")
DONTUNMAP_FUNC(btf_name_by_offset, false, "check copied layouts against BTF")
DONTUNMAP_FUNC(btf_put, false, "check copied layouts against BTF")
#endif
#ifdef DONTUNMAP_NEED_GET_UNMAPPED_AREA
DONTUNMAP_FUNC(__get_unmapped_area, true, "place the destination")
#endif
#ifdef DONTUNMAP_NEED_DUMP_MM
DONTUNMAP_FUNC(dump_mm, false, "VM_BUG_ON_MM() reports (CONFIG_DEBUG_VM)")
#endif

DONTUNMAP_DATA(sysctl_max_map_count, "vm.max_map_count headroom (else read from /proc/sys)")
DONTUNMAP_DATA(vm_committed_as, "charge before copy_vma() as upstream (else after it)")
DONTUNMAP_DATA(vm_committed_as_batch, "charge before copy_vma() as upstream (else after it)")

#undef DONTUNMAP_FUNC
#undef DONTUNMAP_DATA
