// SPDX-License-Identifier: GPL-2.0
/*
 * The MREMAP_DONTUNMAP cases of upstream's tools/testing/selftests/mm/
 * mremap_test.c, unmodified: the file is included as it is, its main()
 * renamed, and only its two DONTUNMAP test functions run (the others test
 * plain mremap() behaviour that the wrapper passes to the kernel as it is,
 * and older kernels fail some of them on their own).
 */
#define main mremap_test_main
#include "mm/mremap_test.c"
#undef main

int main(void)
{
	unsigned long page_size = sysconf(_SC_PAGESIZE);
	unsigned int seed = (unsigned int)time(NULL);

	ksft_print_header();
	ksft_print_msg("Test configs:\n\tpattern seed: %u\n", seed);
	ksft_set_plan(2);
	mremap_move_multiple_vmas(seed, page_size, true);
	mremap_move_multiple_vmas_split(seed, page_size, true);
	ksft_finished();
}
