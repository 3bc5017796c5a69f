/* SPDX-License-Identifier: GPL-2.0 */
#ifndef DONTUNMAP_INTERNAL_H
#define DONTUNMAP_INTERNAL_H

#include <linux/dontunmap.h>

#include "compat.h"

long dontunmap_check_args(const struct dontunmap_remap *req);
long dontunmap_remap(struct dontunmap_remap *req);
long dontunmap_remap_batch(struct dontunmap_remap *reqs, unsigned int count,
			   unsigned int *done);
long dontunmap_no_restart(long err);

#endif /* DONTUNMAP_INTERNAL_H */
