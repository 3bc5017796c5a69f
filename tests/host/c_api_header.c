/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The C API header compiles as C, and works from C. */
#include <dontunmap/dontunmap.h>
#include <sys/mman.h>
#include <unistd.h>

int c_api_unaligned_native_mremap(void)
{
	long page = sysconf(_SC_PAGESIZE);
	char *src = mmap(NULL, page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret;

	if (src == MAP_FAILED)
		return 1;
	ret = dontunmap_native_mremap(src + 1, page, page,
				      MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL, NULL);
	munmap(src, page);
	return ret;
}
