#define _POSIX_C_SOURCE 200809L /* open(), O_CLOEXEC under -std=c11 */
#include <dontunmap/dontunmap.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* The C API as a consumer outside the tree reaches it: 0 if all answers hold. */
int main(void)
{
	struct dontunmap_capability cap;
	struct dontunmap_ctx *ctx = NULL;
	unsigned completed = 1;
	int fd, ret = 0;

	/* unaligned old_addr: the kernel's EINVAL, as -EINVAL */
	if (dontunmap_native_mremap((void *)1, 4096, 4096,
				    MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0, 0) != -EINVAL)
		return 1;
	/* a descriptor that is not the device */
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd < 0 || dontunmap_ctx_from_fd(DONTUNMAP_BACKEND_MODULE, fd, &ctx) != -ENOTTY)
		ret = 2;
	if (fd >= 0)
		close(fd);
	if (!ret && dontunmap_ctx_capability(NULL, DONTUNMAP_KIND_SHMEM,
					     DONTUNMAP_CAP_BATCH, &cap) != 0)
		ret = 3;
	if (!ret && (cap.native || cap.module || cap.automatic != DONTUNMAP_BACKEND_NONE))
		ret = 4;
	if (!ret && dontunmap_ctx_open(DONTUNMAP_BACKEND_NATIVE, NULL, &ctx) != 0)
		ret = 5;
	if (!ret && (dontunmap_ctx_remap_batch(ctx, NULL, 0, &completed) != 0 || completed != 0))
		ret = 6;
	dontunmap_ctx_close(ctx);
	return ret;
}
