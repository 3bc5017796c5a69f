#include <dontunmap/dontunmap.h>
#include <errno.h>

int main(void)
{
	/* unaligned old_addr: the kernel's EINVAL, as -EINVAL */
	return dontunmap_native_mremap((void *)1, 4096, 4096,
				       MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0, 0) == -EINVAL ? 0 : 1;
}
