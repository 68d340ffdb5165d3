/* libFuzzer harness for the datastore's readers of what is on the shared
 * disk (datastore/: superblock, heartbeat slots, lease records, inodes,
 * block maps, bitmaps, journal headers and the fsck that reads them all):
 * another host may have written any of it, so all of it is hostile.
 *
 * A small volume is formatted once (two files, one with a block map, one
 * host's heartbeat) into a file under /dev/shm; each input patches up to
 * FUZZ_DS_PATCHES of its sectors, then the volume is opened read-only and
 * everything is read as canopy-ds ls/hosts/locks/fsck do. When the first
 * patch asks for it, a second host then joins and runs the mount-time
 * recovery (namespace lock, replay of every pending journal: the other
 * hosts' journals are input too), and everything is read again. Then the
 * volume is put back as it was. A crash, a leak, a hang or a read or
 * write outside a buffer is a bug.
 *
 * Input: patches of  u8 region (0 superblock, 1 heartbeat, 2 lock, 3
 * journal, 4 inode, 5 bitmap, 6 data), u16 index (little-endian, modulo
 * the region's sectors), u8 flags, then up to 512 bytes of sector contents
 * (a short last patch keeps the rest). Flags: bit 0 seals the record's
 * CRC-32C as a writer would, so the fuzzer gets past the checksum; bit 1
 * (first patch) runs the recovery; bit 2 on a journal header sets its
 * payload checksum to match the payload as patched
 * (docs/datastore-format.md, "Journal"), then seals it.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datastore/ds.h"
#include "datastore/ds_rec.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_DS_PATCHES 8
#define FUZZ_DS_HDR 4 /* region, index (2), flags */
#define FUZZ_DS_SEAL 0x1
#define FUZZ_DS_RECOVER 0x2
#define FUZZ_DS_JCRC 0x4
/* Journal header fields (docs/datastore-format.md, "Journal"). */
#define J_COUNT 16
#define J_PAYLOAD_CRC 20

static char path[64];
static uint8_t *tmpl; /* the formatted volume, as written */
static size_t tmpl_size;
static struct ds_geom geom; /* its geometry */
static int fd = -1; /* the volume, for patching */

static void die(const char *what, const char *err)
{
	fprintf(stderr, "fuzz_ds: %s: %s\n", what, err);
	unlink(path);
	exit(1);
}

static void cleanup(void)
{
	unlink(path);
}

/* Two files (one thin with a written block, so it has a block map), the
 * namespace lock taken and given back, host 1's heartbeat left live. */
static void populate(void)
{
	static struct ds_hb_watch w;
	static struct ds_host h;
	struct ds_file f;
	struct ds ds;
	char err[256];
	void *buf;

	if (ds_open(&ds, path, 0, err, sizeof(err)) < 0)
		die("open", err);
	if (ds_hb_join(&h, &ds, 1, "fuzzhost", err, sizeof(err)) < 0)
		die("join", err);
	ds_hb_watch_init(&w);
	if (ds_hb_watch_poll(&ds, &w, 0) < 0)
		die("poll", "read failed");
	if (ds_file_create(&h, &w, "vm1/disk0", 256 << 10, 0, err,
			   sizeof(err)) < 0 ||
	    ds_file_create(&h, &w, "img", 128 << 10, 1, err, sizeof(err)) < 0)
		die("create", err);
	if (ds_file_open(&f, &h, &w, "vm1/disk0", err, sizeof(err)) < 0)
		die("file open", err);
	buf = ds_alloc(&ds, 512);
	if (!buf)
		die("alloc", "out of memory");
	memset(buf, 0xab, 512);
	if (ds_file_pwrite(&f, buf, 512, 64 << 10, err, sizeof(err)) < 0)
		die("pwrite", err);
	ds_free(buf);
	ds_file_close(&f);
	geom = ds.g;
	ds_close(&ds);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct ds_format_opts o = { .name = "fuzz",
				    .size = 6u << 20,
				    .max_locks = 8,
				    .block_size = 64 << 10,
				    .hb_interval_ms = 10,
				    .hb_timeout_ms = 2000 };
	char err[256];

	(void)argc;
	(void)argv;
	snprintf(path, sizeof(path), "/dev/shm/canopy-fuzz-ds-%d.img",
		 (int)getpid());
	atexit(cleanup);
	if (ds_format(path, &o, 1, err, sizeof(err)) < 0)
		die("format", err);
	populate();
	fd = open(path, O_RDWR | O_CLOEXEC);
	tmpl_size = geom.size;
	tmpl = malloc(tmpl_size);
	if (fd < 0 || !tmpl ||
	    pread(fd, tmpl, tmpl_size, 0) != (ssize_t)tmpl_size)
		die("template", "cannot read the volume back");
	return 0;
}

/* Byte offset of sector idx of region r of the template. */
static uint64_t where(uint8_t r, uint16_t idx)
{
	uint64_t s = geom.sector, n;

	switch (r % 7) {
	case 0:
		return 0;
	case 1:
		return geom.hb_off + idx % geom.max_hosts * s;
	case 2:
		n = (uint64_t)geom.max_locks * (1 + geom.max_hosts);
		return geom.lock_off + idx % n * s;
	case 3:
		n = (uint64_t)geom.max_hosts * geom.journal_sectors;
		return geom.journal_off + idx % n * s;
	case 4:
		return geom.inode_off + idx % geom.max_locks * s;
	case 5:
		n = (geom.data_off - geom.bitmap_off) / s;
		return geom.bitmap_off + idx % n * s;
	default:
		n = geom.nblocks * (geom.block_size / s);
		return geom.data_off + idx % n * s;
	}
}

/* Everything the tools read, through the library's readers. */
static void read_all(void)
{
	static struct ds_hb_watch w;
	struct ds_fsck r = { 0 };
	struct ds_hb_slot slot;
	struct ds_lease lease;
	struct ds_inode ino;
	uint64_t n;
	char err[256];
	struct ds ds;

	if (ds_open(&ds, path, DS_RDONLY, err, sizeof(err)) < 0)
		return;
	for (uint32_t h = 0; h <= ds.g.max_hosts + 1; h++)
		(void)!ds_hb_read(&ds, h, &slot);
	ds_hb_watch_init(&w);
	if (ds_hb_watch_poll(&ds, &w, 1000000) == 0)
		for (uint32_t h = 0; h <= ds.g.max_hosts + 1; h++)
			(void)ds_liveness_name(
				ds_hb_liveness(&ds, &w, h, 2000000000ull));
	for (uint32_t k = 0; k <= ds.g.max_locks && k < 64; k++)
		(void)!ds_lease_read(&ds, k, &lease);
	for (uint32_t i = 0; i <= ds.g.max_locks && i < 64; i++)
		if (ds_inode_read(&ds, i, &ino) == 0)
			(void)!ds_file_blocks(&ds, &ino, &n);
	if (ds_lookup(&ds, "vm1/disk0", &ino) == 0)
		(void)!ds_file_blocks(&ds, &ino, &n);
	(void)!ds_free_blocks(&ds, &n);
	(void)!ds_fsck(&ds, &r, NULL, NULL);
	ds_close(&ds);
}

/* Make the journal header at off (host h's) name a payload that matches:
 * its count's sectors of h's payload area, as they are now. */
static void journal_fix(uint64_t off)
{
	uint64_t s = geom.sector, h = (off - geom.journal_off) / s;
	uint64_t pay = geom.journal_off + geom.max_hosts * s +
		       h * (geom.journal_sectors - 1) * s;
	uint8_t hdr[512], *img;
	uint32_t n;

	if (pread(fd, hdr, 512, (off_t)off) != 512)
		abort();
	n = get32(hdr + J_COUNT);
	if (n > geom.journal_sectors - 1)
		n = geom.journal_sectors - 1;
	img = malloc(n * s + 1);
	if (!img || pread(fd, img, n * s, (off_t)pay) != (ssize_t)(n * s))
		abort();
	put32(hdr + J_PAYLOAD_CRC, crc32c(0, img, n * s));
	ds_rec_seal(hdr);
	free(img);
	if (pwrite(fd, hdr, 512, (off_t)off) != 512)
		abort();
}

/* A second host joins, recovers (replays pending journals) and leaves. */
static void recover(void)
{
	static struct ds_hb_watch w;
	static struct ds_host h;
	char err[256];
	struct ds ds;

	if (ds_open(&ds, path, 0, err, sizeof(err)) < 0)
		return;
	if (ds_hb_join(&h, &ds, 2, "fuzzer", err, sizeof(err)) == 0) {
		ds_hb_watch_init(&w);
		if (ds_hb_watch_poll(&ds, &w, 0) == 0)
			(void)!ds_recover(&h, &w, err, sizeof(err));
		(void)!ds_hb_leave(&h);
	}
	ds_close(&ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t at[FUZZ_DS_PATCHES];
	uint8_t sec[512], flags[FUZZ_DS_PATCHES];
	size_t k = 0, len, n;

	while (k < FUZZ_DS_PATCHES && size > FUZZ_DS_HDR) {
		at[k] = where(data[0], (uint16_t)(data[1] | data[2] << 8));
		flags[k] = data[3];
		len = size - FUZZ_DS_HDR < 512 ? size - FUZZ_DS_HDR : 512;
		memcpy(sec, tmpl + at[k], 512);
		memcpy(sec, data + FUZZ_DS_HDR, len);
		if (flags[k] & FUZZ_DS_SEAL)
			ds_rec_seal(sec);
		if (pwrite(fd, sec, 512, (off_t)at[k]) != 512)
			abort();
		data += FUZZ_DS_HDR + len;
		size -= FUZZ_DS_HDR + len;
		k++;
	}
	for (n = 0; n < k; n++)
		if ((flags[n] & FUZZ_DS_JCRC) && at[n] >= geom.journal_off &&
		    at[n] < geom.journal_off + geom.max_hosts * geom.sector)
			journal_fix(at[n]);
	read_all();
	if (k && (flags[0] & FUZZ_DS_RECOVER)) {
		recover();
		read_all();
		/* The replay may have written anywhere: all of it back. */
		if (pwrite(fd, tmpl, tmpl_size, 0) != (ssize_t)tmpl_size)
			abort();
		return 0;
	}
	while (k--)
		if (pwrite(fd, tmpl + at[k], 512, (off_t)at[k]) != 512)
			abort();
	return 0;
}
