/* The datastore volume: superblock, format, open, aligned sector I/O. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datastore/ds.h"
#include "datastore/ds_rec.h"
#include "lib/sys.h"

/* Superblock field offsets (the first 512 bytes of sector 0). */
#define SB_MAGIC 0
#define SB_VERSION 8
#define SB_SECTOR 12
#define SB_UUID 16
#define SB_NAME 32
#define SB_MAX_HOSTS 96
#define SB_MAX_LOCKS 100
#define SB_HB_INTERVAL 104
#define SB_HB_TIMEOUT 108
#define SB_SIZE 112
#define SB_CREATED 120
#define SB_HB_OFF 128
#define SB_LOCK_OFF 136
#define SB_END_OFF 144
#define SB_BLOCK 152
#define SB_JOURNAL_SECTORS 156
#define SB_JOURNAL_OFF 160
#define SB_INODE_OFF 168
#define SB_BITMAP_OFF 176
#define SB_DATA_OFF 184
#define SB_NBLOCKS 192
/* The first read covers any sector size we accept. */
#define SB_PROBE 4096
#define DS_MIN_SECTOR 512
#define DS_MAX_SECTOR 4096
#define ZERO_CHUNK (1u << 20)
#define DS_MIN_BLOCK (64u << 10)
#define DS_MAX_BLOCK (64u << 20)
#define DS_MAX_JOURNAL 4096
#define DS_MAX_LOCKS (1u << 20) /* also bounds the inode table read */

void *ds_alloc(const struct ds *ds, size_t len)
{
	void *p = NULL;
	size_t align = ds && ds->g.sector ? ds->g.sector : SB_PROBE;

	if (posix_memalign(&p, align < SB_PROBE ? SB_PROBE : align, len))
		return NULL;
	memset(p, 0, len);
	return p;
}

void ds_free(void *p)
{
	free(p);
}

int ds_read(const struct ds *ds, uint64_t off, void *buf, size_t len)
{
	ssize_t n = sys_pread_full(ds->fd, buf, len, (off_t)off);

	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -ENODATA;
}

int ds_write(const struct ds *ds, uint64_t off, const void *buf, size_t len)
{
	return sys_pwrite_full(ds->fd, buf, len, (off_t)off);
}

/* O_DIRECT where the filesystem has it (not tmpfs); O_DSYNC always, so a
 * completed write is on the medium before we act on it. */
static int open_volume(const char *path, int flags, int *direct)
{
	int fd = open(path, flags | O_DIRECT | O_DSYNC | O_CLOEXEC, 0600);

	*direct = 1;
	if (fd < 0 && errno == EINVAL) {
		*direct = 0;
		fd = open(path, flags | O_DSYNC | O_CLOEXEC, 0600);
	}
	return fd < 0 ? -errno : fd;
}

static int volume_size(int fd, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
	if (!S_ISREG(st.st_mode))
		return -ENOTBLK;
	*size = (uint64_t)st.st_size;
	return 0;
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* Region offsets for a geometry whose size, sector, block size and counts
 * are set. nblocks is 0 when the size leaves no room for data. */
static void layout(struct ds_geom *g)
{
	uint64_t s = g->sector, bits, bm_bytes, est;

	g->hb_off = round_up(SB_PROBE, s);
	g->lock_off = g->hb_off + (uint64_t)g->max_hosts * s;
	g->journal_off = g->lock_off + (uint64_t)g->max_locks *
					       (1 + (uint64_t)g->max_hosts) * s;
	g->inode_off = g->journal_off +
		       (uint64_t)g->max_hosts * g->journal_sectors * s;
	g->bitmap_off = g->inode_off + (uint64_t)g->max_locks * s;
	/* The bitmap's size depends on the block count and the other way
	 * round: size it for every block after it, then count what fits. */
	est = g->size > g->bitmap_off ?
		      (g->size - g->bitmap_off) / g->block_size :
		      0;
	bits = (uint64_t)DS_BITMAP_BITS;
	bm_bytes = (est + bits - 1) / bits * s;
	g->data_off = round_up(g->bitmap_off + bm_bytes, g->block_size);
	g->nblocks = g->size > g->data_off ?
			     (g->size - g->data_off) / g->block_size :
			     0;
	g->end_off = g->data_off;
}

static int valid_block(const struct ds_geom *g)
{
	return g->block_size >= DS_MIN_BLOCK && g->block_size <= DS_MAX_BLOCK &&
	       !(g->block_size & (g->block_size - 1)) &&
	       g->block_size >= g->sector;
}

static void sb_encode(uint8_t *b, const struct ds_geom *g)
{
	memset(b, 0, DS_REC_SIZE);
	memcpy(b + SB_MAGIC, DS_MAGIC, 8);
	put32(b + SB_VERSION, g->version);
	put32(b + SB_SECTOR, g->sector);
	memcpy(b + SB_UUID, g->uuid, 16);
	memcpy(b + SB_NAME, g->name, strnlen(g->name, DS_NAME_MAX));
	put32(b + SB_MAX_HOSTS, g->max_hosts);
	put32(b + SB_MAX_LOCKS, g->max_locks);
	put32(b + SB_HB_INTERVAL, g->hb_interval_ms);
	put32(b + SB_HB_TIMEOUT, g->hb_timeout_ms);
	put64(b + SB_SIZE, g->size);
	put64(b + SB_CREATED, g->created_ms);
	put64(b + SB_HB_OFF, g->hb_off);
	put64(b + SB_LOCK_OFF, g->lock_off);
	put64(b + SB_END_OFF, g->end_off);
	put32(b + SB_BLOCK, g->block_size);
	put32(b + SB_JOURNAL_SECTORS, g->journal_sectors);
	put64(b + SB_JOURNAL_OFF, g->journal_off);
	put64(b + SB_INODE_OFF, g->inode_off);
	put64(b + SB_BITMAP_OFF, g->bitmap_off);
	put64(b + SB_DATA_OFF, g->data_off);
	put64(b + SB_NBLOCKS, g->nblocks);
	ds_rec_seal(b);
}

/* Decode and validate; err names what is wrong. */
int ds_sb_decode(const uint8_t *b, struct ds_geom *g, char *err, size_t errlen)
{
	struct ds_geom want;

	if (memcmp(b + SB_MAGIC, DS_MAGIC, 8) != 0) {
		snprintf(err, errlen, "not a canopy datastore (no superblock)");
		return -EMEDIUMTYPE;
	}
	if (ds_rec_check(b) != 0) {
		snprintf(err, errlen, "corrupt superblock (checksum mismatch)");
		return -EBADMSG;
	}
	memset(g, 0, sizeof(*g));
	g->version = get32(b + SB_VERSION);
	if (g->version > DS_VERSION || g->version == 0) {
		snprintf(err, errlen,
			 "format version %u; this build reads version %d",
			 g->version, DS_VERSION);
		return -EPROTONOSUPPORT;
	}
	g->sector = get32(b + SB_SECTOR);
	memcpy(g->uuid, b + SB_UUID, 16);
	memcpy(g->name, b + SB_NAME, DS_NAME_MAX);
	g->max_hosts = get32(b + SB_MAX_HOSTS);
	g->max_locks = get32(b + SB_MAX_LOCKS);
	g->hb_interval_ms = get32(b + SB_HB_INTERVAL);
	g->hb_timeout_ms = get32(b + SB_HB_TIMEOUT);
	g->size = get64(b + SB_SIZE);
	g->created_ms = get64(b + SB_CREATED);
	g->hb_off = get64(b + SB_HB_OFF);
	g->lock_off = get64(b + SB_LOCK_OFF);
	g->end_off = get64(b + SB_END_OFF);
	g->block_size = get32(b + SB_BLOCK);
	g->journal_sectors = get32(b + SB_JOURNAL_SECTORS);
	g->journal_off = get64(b + SB_JOURNAL_OFF);
	g->inode_off = get64(b + SB_INODE_OFF);
	g->bitmap_off = get64(b + SB_BITMAP_OFF);
	g->data_off = get64(b + SB_DATA_OFF);
	g->nblocks = get64(b + SB_NBLOCKS);
	want = *g;
	if (g->sector < DS_MIN_SECTOR || g->sector > DS_MAX_SECTOR ||
	    (g->sector & (g->sector - 1)) || !valid_block(g) ||
	    g->journal_sectors < DS_TXN_MAX + 1 ||
	    g->journal_sectors > DS_MAX_JOURNAL)
		want.hb_off = ~g->hb_off; /* no layout: fails below */
	else
		layout(&want);
	if (want.hb_off != g->hb_off || want.lock_off != g->lock_off ||
	    want.journal_off != g->journal_off ||
	    want.inode_off != g->inode_off ||
	    want.bitmap_off != g->bitmap_off || want.data_off != g->data_off ||
	    want.nblocks != g->nblocks || g->nblocks == 0 ||
	    want.end_off != g->end_off || g->max_hosts == 0 ||
	    g->max_hosts > DS_MAX_HOSTS || g->max_locks == 0 ||
	    g->max_locks > DS_MAX_LOCKS || g->end_off > g->size ||
	    g->hb_interval_ms == 0 ||
	    g->hb_interval_ms > DS_MAX_HB_INTERVAL_MS ||
	    g->hb_timeout_ms < 4 * (uint64_t)g->hb_interval_ms) {
		snprintf(err, errlen,
			 "corrupt superblock (inconsistent "
			 "geometry)");
		return -EBADMSG;
	}
	return 0;
}

static int zero_range(int fd, uint64_t off, uint64_t len)
{
	uint8_t *z = NULL;
	int rc = 0;

	if (posix_memalign((void **)&z, SB_PROBE, ZERO_CHUNK))
		return -ENOMEM;
	memset(z, 0, ZERO_CHUNK);
	while (len && rc == 0) {
		size_t n = len < ZERO_CHUNK ? (size_t)len : ZERO_CHUNK;

		rc = sys_pwrite_full(fd, z, n, (off_t)off);
		off += n;
		len -= n;
	}
	free(z);
	return rc;
}

static int fill_uuid(uint8_t *u)
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = sys_read_full(fd, u, 16);
	close(fd);
	if (n != 16)
		return -EIO;
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* version 4 */
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
	return 0;
}

int ds_format(const char *path, const struct ds_format_opts *o, int force,
	      char *err, size_t errlen)
{
	struct ds_geom g = { .version = DS_VERSION };
	uint8_t *sb = NULL;
	int direct, fd, rc, existed = access(path, F_OK) == 0;
	uint64_t have;

	g.sector = o->sector ? o->sector : DS_DEFAULT_SECTOR;
	if (g.sector < DS_MIN_SECTOR || g.sector > DS_MAX_SECTOR ||
	    (g.sector & (g.sector - 1))) {
		snprintf(err, errlen,
			 "sector size %u: must be a power of two "
			 "from 512 to 4096",
			 g.sector);
		return -EINVAL;
	}
	if (!o->name || !*o->name || strlen(o->name) > DS_NAME_MAX) {
		snprintf(err, errlen, "datastore name: 1 to %d bytes",
			 DS_NAME_MAX);
		return -EINVAL;
	}
	snprintf(g.name, sizeof(g.name), "%s", o->name);
	g.max_hosts = DS_MAX_HOSTS;
	g.max_locks = o->max_locks ? o->max_locks : DS_DEFAULT_LOCKS;
	g.hb_interval_ms = o->hb_interval_ms ? o->hb_interval_ms :
					       DS_DEFAULT_HB_INTERVAL_MS;
	g.hb_timeout_ms = o->hb_timeout_ms ? o->hb_timeout_ms :
					     DS_DEFAULT_HB_TIMEOUT_MS;
	if (g.hb_interval_ms > DS_MAX_HB_INTERVAL_MS) {
		snprintf(err, errlen, "heartbeat interval %u ms: at most %u",
			 g.hb_interval_ms, DS_MAX_HB_INTERVAL_MS);
		return -EINVAL;
	}
	if (g.hb_timeout_ms < 4 * (uint64_t)g.hb_interval_ms) {
		snprintf(err, errlen,
			 "heartbeat timeout %u ms must be at least "
			 "four times the interval (%u ms)",
			 g.hb_timeout_ms, g.hb_interval_ms);
		return -EINVAL;
	}
	if (g.max_locks > DS_MAX_LOCKS) {
		snprintf(err, errlen, "%u locks: at most %u", g.max_locks,
			 DS_MAX_LOCKS);
		return -EINVAL;
	}
	g.block_size = o->block_size ? o->block_size : DS_DEFAULT_BLOCK;
	g.journal_sectors = DS_DEFAULT_JOURNAL;
	if (!valid_block(&g)) {
		snprintf(err, errlen,
			 "block size %u: must be a power of two from 64K to "
			 "64M, and at least the sector",
			 g.block_size);
		return -EINVAL;
	}
	fd = open_volume(path, O_RDWR | O_CREAT, &direct);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-fd));
		return fd;
	}
	rc = volume_size(fd, &have);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path,
			 rc == -ENOTBLK ? "neither a file nor a block device" :
					  strerror(-rc));
		goto out;
	}
	g.size = o->size ? o->size : have;
	layout(&g);
	if (g.nblocks == 0 || g.size % g.sector) {
		rc = -ENOSPC;
		snprintf(err, errlen,
			 "%s: size %llu bytes; need a multiple of %u of at "
			 "least %llu for %u hosts, %u locks and one %u-byte "
			 "data block",
			 path, (unsigned long long)g.size, g.sector,
			 (unsigned long long)(g.data_off + g.block_size),
			 g.max_hosts, g.max_locks, g.block_size);
		goto out;
	}
	sb = ds_alloc(NULL, SB_PROBE);
	if (!sb) {
		rc = -ENOMEM;
		goto out;
	}
	if (!force && have >= SB_PROBE &&
	    sys_pread_full(fd, sb, SB_PROBE, 0) == SB_PROBE &&
	    memcmp(sb, DS_MAGIC, 8) == 0) {
		rc = -EEXIST;
		snprintf(err, errlen,
			 "%s already holds a datastore; use "
			 "--force to destroy it",
			 path);
		goto out;
	}
	if (have < g.size && ftruncate(fd, (off_t)g.size) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: grow to %llu bytes: %s", path,
			 (unsigned long long)g.size, strerror(errno));
		goto out;
	}
	rc = fill_uuid(g.uuid);
	g.created_ms = sys_real_ms();
	/* Regions first, the superblock last: a format cut short is not a
	 * datastore. The old magic goes first, so it never survives either. */
	if (rc == 0) {
		memset(sb, 0, SB_PROBE);
		rc = sys_pwrite_full(fd, sb, SB_PROBE, 0);
	}
	if (rc == 0)
		rc = zero_range(fd, g.hb_off, g.end_off - g.hb_off);
	if (rc == 0) {
		sb_encode(sb, &g);
		rc = sys_pwrite_full(fd, sb, SB_PROBE, 0);
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (rc < 0)
		snprintf(err, errlen, "%s: write: %s%s", path, strerror(-rc),
			 rc == -EINVAL && direct ?
				 " (is the sector size below the device's?)" :
				 "");
out:
	ds_free(sb);
	close(fd);
	if (rc < 0 && !existed)
		unlink(path); /* leave nothing behind that we made */
	return rc;
}

int ds_open(struct ds *ds, const char *path, int flags, char *err,
	    size_t errlen)
{
	uint8_t *sb;
	uint64_t have;
	int rc;

	memset(ds, 0, sizeof(*ds));
	snprintf(ds->path, sizeof(ds->path), "%s", path);
	ds->fd = open_volume(path, flags & DS_RDONLY ? O_RDONLY : O_RDWR,
			     &ds->direct);
	if (ds->fd < 0) {
		rc = ds->fd;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	sb = ds_alloc(NULL, SB_PROBE);
	rc = sb ? volume_size(ds->fd, &have) : -ENOMEM;
	if (rc == 0 && have < SB_PROBE) {
		snprintf(err, errlen, "%s: not a canopy datastore (%llu bytes)",
			 path, (unsigned long long)have);
		rc = -EMEDIUMTYPE;
	} else if (rc == 0) {
		rc = ds_read(ds, 0, sb, SB_PROBE);
		if (rc < 0)
			snprintf(err, errlen, "%s: read: %s", path,
				 strerror(-rc));
	} else {
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
	}
	if (rc == 0) {
		char why[160];

		rc = ds_sb_decode(sb, &ds->g, why, sizeof(why));
		if (rc < 0)
			snprintf(err, errlen, "%s: %s", path, why);
	}
	if (rc == 0 && have < ds->g.size) {
		snprintf(err, errlen,
			 "%s: truncated: %llu bytes, formatted as %llu", path,
			 (unsigned long long)have,
			 (unsigned long long)ds->g.size);
		rc = -ENODATA;
	}
	ds_free(sb);
	if (rc < 0) {
		close(ds->fd);
		ds->fd = -1;
	}
	return rc;
}

void ds_close(struct ds *ds)
{
	if (ds->fd >= 0)
		close(ds->fd);
	ds->fd = -1;
}
