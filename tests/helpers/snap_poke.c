/* Test helper: damage one guest page inside a snapshot, keeping it valid.
 *
 *   snap_poke FILE PAGE
 *
 * Flips one byte in the middle of guest page PAGE (memfd page numbering,
 * docs/snapshot-format.md) in the snapshot's `memory` section and rewrites
 * the section checksum, so the file still restores but the guest finds its
 * memory changed. This is how the tests prove that the test guest's `dirty`
 * checker notices corruption. Exit 0 on success, 1 if PAGE is not stored in
 * the snapshot (never written or all zero), 2 on any other error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/crc32c.h"

#define HDR_SIZE 48
#define SEC_HDR_SIZE 40
#define SEC_NAME 24
#define PAGE 4096

static int fail(const char *file, const char *what)
{
	fprintf(stderr, "snap_poke: %s: %s\n", file, what);
	return 2;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static int poke(const char *file, unsigned char *m, size_t size, uint64_t page)
{
	size_t off = HDR_SIZE;

	while (off + SEC_HDR_SIZE <= size) {
		unsigned char *sec = m + off, *body = sec + SEC_HDR_SIZE;
		uint64_t len = get64(sec + SEC_NAME), pages, words, nth = 0;
		uint32_t crc;

		if (len > size - off - SEC_HDR_SIZE)
			return fail(file, "truncated section");
		if (strncmp((char *)sec, "memory", SEC_NAME) != 0) {
			off += SEC_HDR_SIZE + len;
			continue;
		}
		pages = get64(body);
		words = (pages + 63) / 64;
		if (page >= pages)
			return fail(file, "page beyond guest memory");
		if (!(get64(body + 8 + (page / 64) * 8) >> (page % 64) & 1))
			return 1;
		for (uint64_t i = 0; i < page; i++)
			nth += get64(body + 8 + (i / 64) * 8) >> (i % 64) & 1;
		if (8 + words * 8 + (nth + 1) * PAGE > len)
			return fail(file,
				    "memory section shorter than its bitmap");
		body[8 + words * 8 + nth * PAGE + PAGE / 2] ^= 0x5a;
		crc = crc32c(0, body, len);
		memcpy(sec + SEC_NAME + 8, &crc, sizeof(crc));
		return 0;
	}
	return fail(file, "no memory section");
}

int main(int argc, char **argv)
{
	struct stat st;
	unsigned char *m;
	char *end;
	uint64_t page;
	int fd, rc;

	if (argc != 3)
		return fprintf(stderr, "usage: snap_poke FILE PAGE\n"), 2;
	errno = 0;
	page = strtoull(argv[2], &end, 0);
	if (errno || *end || end == argv[2])
		return fail(argv[2], "not a page number");
	fd = open(argv[1], O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return fail(argv[1], strerror(errno));
	if ((size_t)st.st_size < HDR_SIZE)
		return fail(argv[1], "shorter than a header");
	m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		 fd, 0);
	if (m == MAP_FAILED)
		return fail(argv[1], strerror(errno));
	rc = poke(argv[1], m, (size_t)st.st_size, page);
	if (msync(m, (size_t)st.st_size, MS_SYNC) < 0)
		rc = fail(argv[1], strerror(errno));
	munmap(m, (size_t)st.st_size);
	close(fd);
	return rc;
}
