/* Dirty-page tracking through KVM's dirty log, for snapshots and vMotion. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "host/vmm/vmm.h"
#include "proto/canopy_vmm.pb-c.h"

#define PAGE_SIZE_4K 4096u

int dirty_log_start(struct vm *vm)
{
	uint64_t *bm, pages;
	int rc;

	if (vm->dirty_logging)
		return 0;
	rc = vm_mem_set_logging(vm, 1);
	if (rc < 0)
		return rc;
	atomic_store(&vm->gmem.logging, 1); /* devices mark what they write */
	/* Start from a clean log: everything before now is not "dirty". */
	rc = dirty_log_get(vm, &bm, &pages);
	if (rc == 0)
		free(bm);
	return rc;
}

int dirty_log_stop(struct vm *vm)
{
	if (!vm->dirty_logging)
		return 0;
	atomic_store(&vm->gmem.logging, 0);
	return vm_mem_set_logging(vm, 0);
}

static int get_slot(struct vm *vm, uint32_t slot, uint64_t *bm)
{
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bm };

	if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return -errno;
	return 0;
}

int dirty_log_get(struct vm *vm, uint64_t **bitmap, uint64_t *pages)
{
	uint64_t n = vm->ram_size / PAGE_SIZE_4K;
	uint64_t low = vm->low_size / PAGE_SIZE_4K;
	uint64_t words = (n + 63) / 64, *bm, *high = NULL;
	int rc;

	if (!vm->dirty_logging)
		return -EBUSY;
	bm = calloc(words + 1, sizeof(uint64_t));
	if (!bm)
		return -ENOMEM;
	rc = get_slot(vm, 0, bm);
	if (rc == 0 && n > low) {
		/* The high slot's bitmap starts at bit 0: shift it in. The
		 * low slot ends at 3 GiB, a multiple of 64 pages. */
		high = calloc((n - low + 63) / 64 + 1, sizeof(uint64_t));
		rc = high ? get_slot(vm, 1, high) : -ENOMEM;
		if (rc == 0)
			memcpy(bm + low / 64, high,
			       (n - low + 63) / 64 * sizeof(uint64_t));
		free(high);
	}
	if (rc < 0) {
		free(bm);
		return rc;
	}
	/* Add what devices wrote (KVM only sees the vCPUs' writes). */
	for (uint64_t i = 0; vm->gmem.dirty && i < words; i++)
		bm[i] |= atomic_exchange(&vm->gmem.dirty[i], 0);
	*bitmap = bm;
	*pages = n;
	return 0;
}

int dirty_log_fetch(struct vm *vm, Canopy__V1__VmmDirtyBitmap *out)
{
	uint64_t *bm, pages, words, set = 0;
	int rc = dirty_log_get(vm, &bm, &pages);

	if (rc < 0)
		return rc;
	words = (pages + 63) / 64;
	for (uint64_t i = 0; i < words; i++)
		set += (uint64_t)__builtin_popcountll(bm[i]);
	out->page_size = PAGE_SIZE_4K;
	out->page_count = pages;
	out->dirty_pages = set;
	out->bitmap.data =
		(uint8_t *)bm; /* little-endian host: as documented */
	out->bitmap.len = words * sizeof(uint64_t);
	return 0;
}
