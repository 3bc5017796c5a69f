/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Run by ctest through dontunmap-run: a plain C program's mremap() calls
 * with libdontunmap-preload.so preloaded. Checks that the symbol the
 * program calls is the interposer's, that a DONTUNMAP move, a FIXED one and
 * a plain resize give mremap()'s results, and that a call mremap() refuses
 * fails with mremap()'s errno. A DONTUNMAP call passes new_addr: the kernel
 * reads it as a hint. Prints one line per failure; exit 0 if none.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

static int failures;

#define CHECK(cond, ...)                       \
	do {                                   \
		if (!(cond)) {                 \
			printf("FAIL: " __VA_ARGS__); \
			printf("\n");          \
			failures++;            \
		}                              \
	} while (0)

int main(void)
{
	long page = sysconf(_SC_PAGESIZE);
	Dl_info info;
	/* The definition the dynamic linker binds a call to, not a PLT stub. */
	void *fn = dlsym(RTLD_DEFAULT, "mremap");
	char *src, *dst, *hole, *p;

	CHECK(fn && dladdr(fn, &info) && info.dli_fname &&
		      strstr(info.dli_fname, "libdontunmap-preload.so"),
	      "mremap resolves to %s, not the interposer",
	      info.dli_fname ? info.dli_fname : "?");

	src = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(src != MAP_FAILED, "mmap: %s", strerror(errno));
	memset(src, 'x', 2 * page);
	dst = mremap(src, 2 * page, 2 * page, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
	CHECK(dst != MAP_FAILED && dst != src, "DONTUNMAP move: %s", strerror(errno));
	if (dst != MAP_FAILED) {
		CHECK(dst[0] == 'x' && dst[2 * page - 1] == 'x', "the pages did not move");
		CHECK(src[0] == 0, "the source is not empty");
	}

	/* FIXED: the fifth argument is read and honoured. */
	hole = mmap(NULL, 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(src, 'y', 2 * page);
	p = mremap(src, 2 * page, 2 * page, MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED, hole);
	CHECK(p == hole, "FIXED DONTUNMAP move went to %p, not %p (%s)", (void *)p, (void *)hole,
	      strerror(errno));
	if (p == hole)
		CHECK(hole[0] == 'y', "the FIXED move lost the pages");

	/* Refused as mremap() refuses it: DONTUNMAP without MAYMOVE. */
	errno = 0;
	p = mremap(src, 2 * page, 2 * page, MREMAP_DONTUNMAP, NULL);
	CHECK(p == MAP_FAILED && errno == EINVAL, "DONTUNMAP without MAYMOVE: %p, errno %d", (void *)p,
	      errno);

	/* Not a DONTUNMAP call: passed to the kernel as it came. */
	p = mremap(src, 2 * page, page, 0);
	CHECK(p == src, "a plain shrink: %p (%s)", (void *)p, strerror(errno));

	if (!failures)
		printf("preload: every mremap() answered as the kernel's\n");
	return failures != 0;
}
