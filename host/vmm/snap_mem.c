/* The memory section of a snapshot: a bitmap of stored pages, then them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/vmm/snapshot.h"
#include "host/vmm/vmm.h"
#include "lib/crc32c.h"
#include "lib/sys.h"

#define SNAP_PAGE 4096u

static int page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (unsigned i = 0; i < SNAP_PAGE / 8; i++)
		if (w[i])
			return 0;
	return 1;
}

/* Mark the pages worth storing: inside allocated extents of the memfd
 * (holes were never touched) and not all zero. Returns the count. */
static uint64_t mark_pages(struct vm *vm, uint64_t *bm)
{
	uint64_t count = 0;
	off_t pos = 0, end = (off_t)vm->ram_size;

	while (pos < end) {
		off_t data = lseek(vm->mem_fd, pos, SEEK_DATA), hole;

		if (data < 0)
			break; /* ENXIO: no data after pos */
		hole = lseek(vm->mem_fd, data, SEEK_HOLE);
		if (hole < 0 || hole > end)
			hole = end;
		for (off_t a = data & ~(off_t)(SNAP_PAGE - 1); a < hole;
		     a += SNAP_PAGE) {
			uint64_t i = (uint64_t)a / SNAP_PAGE;

			if (!page_is_zero(vm->ram + a)) {
				bm[i / 64] |= 1ull << (i % 64);
				count++;
			}
		}
		pos = hole;
	}
	return count;
}

/* Length of the run of set (want=1) bits starting at i, up to n. */
static uint64_t run_len(const uint64_t *bm, uint64_t i, uint64_t n)
{
	uint64_t j = i;

	while (j < n && (bm[j / 64] >> (j % 64) & 1))
		j++;
	return j - i;
}

int snap_mem_save(struct vm *vm, int fd, off_t *off)
{
	uint64_t n = vm->ram_size / SNAP_PAGE, words = (n + 63) / 64;
	uint64_t *bm = calloc(words, sizeof(uint64_t)), stored;
	struct snap_sec s = { .name = "memory" };
	off_t at = *off + (off_t)sizeof(s);
	uint32_t crc;
	int rc;

	if (!bm)
		return -ENOMEM;
	stored = mark_pages(vm, bm);
	crc = crc32c(0, &n, sizeof(n));
	crc = crc32c(crc, bm, words * 8);
	rc = sys_pwrite_full(fd, &n, sizeof(n), at);
	if (rc == 0)
		rc = sys_pwrite_full(fd, bm, words * 8, at + 8);
	at += (off_t)(8 + words * 8);
	for (uint64_t i = 0; i < n && rc == 0;) {
		uint64_t r = run_len(bm, i, n);

		if (r == 0) {
			i++;
			continue;
		}
		crc = crc32c(crc, vm->ram + i * SNAP_PAGE, r * SNAP_PAGE);
		rc = sys_pwrite_full(fd, vm->ram + i * SNAP_PAGE, r * SNAP_PAGE,
				     at);
		at += (off_t)(r * SNAP_PAGE);
		i += r;
	}
	s.len = 8 + words * 8 + stored * SNAP_PAGE;
	s.crc = crc;
	if (rc == 0)
		rc = sys_pwrite_full(fd, &s, sizeof(s), *off);
	*off = at;
	free(bm);
	return rc;
}

static uint64_t popcount(const uint64_t *bm, uint64_t words)
{
	uint64_t c = 0;

	for (uint64_t i = 0; i < words; i++)
		c += (uint64_t)__builtin_popcountll(bm[i]);
	return c;
}

int snap_mem_load(struct vm *vm, int fd, off_t off, const struct snap_sec *s)
{
	uint64_t n, words, *bm = NULL;
	uint32_t crc;
	int rc = -ENODATA;

	if (sys_pread_full(fd, &n, 8, off) != 8)
		return -ENODATA;
	if (n != vm->ram_size / SNAP_PAGE)
		return -EINVAL;
	words = (n + 63) / 64;
	bm = malloc(words * 8);
	if (!bm)
		return -ENOMEM;
	if (sys_pread_full(fd, bm, words * 8, off + 8) != (ssize_t)(words * 8))
		goto out;
	rc = -EINVAL;
	if ((n % 64 && bm[words - 1] >> (n % 64)) ||
	    s->len != 8 + words * 8 + popcount(bm, words) * SNAP_PAGE)
		goto out;
	crc = crc32c(crc32c(0, &n, 8), bm, words * 8);
	off += (off_t)(8 + words * 8);
	rc = 0;
	for (uint64_t i = 0; i < n && rc == 0;) {
		uint64_t r = run_len(bm, i, n);
		ssize_t got;

		if (r == 0) {
			i++;
			continue;
		}
		got = sys_pread_full(fd, vm->ram + i * SNAP_PAGE, r * SNAP_PAGE,
				     off);
		if (got != (ssize_t)(r * SNAP_PAGE))
			rc = got < 0 ? (int)got : -ENODATA;
		else
			crc = crc32c(crc, vm->ram + i * SNAP_PAGE,
				     r * SNAP_PAGE);
		off += (off_t)(r * SNAP_PAGE);
		i += r;
	}
	if (rc == 0 && crc != s->crc)
		rc = -EBADMSG;
out:
	free(bm);
	return rc;
}
