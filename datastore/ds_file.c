/* Files on the datastore: inode table, allocation bitmap, block maps, and
 * the per-host metadata journal (docs/datastore-format.md, "Files").
 *
 * Every metadata change runs under the namespace lock (lock 0) and is
 * committed as one journal transaction of whole-sector images: the images
 * are written to this host's journal, then a header naming their targets,
 * then the images in place, then the header is marked done. Whoever takes
 * the namespace lock next replays a header that is not marked done, so a
 * host that dies anywhere in between loses nothing that was committed and
 * leaves nothing half-applied. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datastore/ds.h"
#include "datastore/ds_rec.h"
#include "lib/sys.h"

#define INODE_MAGIC 0x444f4e49u /* "INOD" */
#define I_MAGIC 0
#define I_INDEX 4
#define I_FLAGS 8
#define I_GEN 16
#define I_SIZE 24
#define I_MAP 32
#define I_CTIME 40
#define I_MTIME 48
#define I_NAME 64

/* Block-map record: 126 u32 entries (data block + 1, 0 = hole), then the
 * record's index in the map. */
#define MAP_ENTRIES 126
#define MAP_INDEX 504

/* Journal header: magic, state, sequence, count, payload CRC, targets. */
#define JRNL_MAGIC 0x4c4e524au /* "JRNL" */
#define J_MAGIC 0
#define J_STATE 4
#define J_SEQ 8
#define J_COUNT 16
#define J_PAYLOAD_CRC 20
#define J_TARGETS 24
#define TXN_MAX DS_TXN_MAX /* (508 - 24) / 8 */
#define J_PENDING 1
#define J_DONE 2

#define NS_WAIT_SLICE_US 20000

struct txn {
	struct ds_host *h;
	unsigned n;
	uint64_t off[TXN_MAX];
	uint8_t *img; /* n sector images */
};

static int txn_init(struct txn *t, struct ds_host *h)
{
	t->h = h;
	t->n = 0;
	t->img = ds_alloc(h->ds, (size_t)TXN_MAX * h->ds->g.sector);
	return t->img ? 0 : -ENOMEM;
}

static void txn_free(struct txn *t)
{
	ds_free(t->img);
	t->img = NULL;
}

/* Room for k more distinct sectors? */
static int txn_room(const struct txn *t, unsigned k)
{
	return t->n + k <= TXN_MAX;
}

/* The staged image of the sector at off, read from disk the first time. */
static uint8_t *txn_sector(struct txn *t, uint64_t off, int *rc)
{
	size_t s = t->h->ds->g.sector;

	for (unsigned i = 0; i < t->n; i++)
		if (t->off[i] == off)
			return t->img + i * s;
	if (t->n == TXN_MAX) {
		*rc = -E2BIG;
		return NULL;
	}
	*rc = ds_read(t->h->ds, off, t->img + t->n * s, s);
	if (*rc == 0 && ds_rec_check(t->img + t->n * s) < 0)
		*rc = -EBADMSG; /* staged images are sealed only at commit */
	if (*rc < 0)
		return NULL;
	t->off[t->n] = off;
	return t->img + t->n++ * s;
}

/* The journal region: every host's header sector first (one read sees
 * them all), then each host's payload area of journal_sectors - 1. */
static uint64_t journal_off(const struct ds *ds, uint32_t host)
{
	return ds->g.journal_off + (uint64_t)(host - 1) * ds->g.sector;
}

static uint64_t payload_off(const struct ds *ds, uint32_t host)
{
	return ds->g.journal_off + (uint64_t)ds->g.max_hosts * ds->g.sector +
	       (uint64_t)(host - 1) * (ds->g.journal_sectors - 1) *
		       ds->g.sector;
}

static int write_header(const struct ds *ds, uint32_t host, uint8_t *hdr,
			uint32_t state)
{
	put32(hdr + J_STATE, state);
	ds_rec_seal(hdr);
	return ds_write(ds, journal_off(ds, host), hdr, ds->g.sector);
}

/* Transactions only ever write inodes, bitmap records and block-map
 * records (in the data area): a journal naming anything else — the
 * superblock, heartbeats, leases, journals, or past the end — is corrupt
 * or hostile, and nothing of it is applied. */
static int targets_ok(const struct ds *ds, const uint8_t *hdr)
{
	uint32_t n = get32(hdr + J_COUNT);
	uint64_t end = ds->g.data_off + ds->g.nblocks * ds->g.block_size;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t t = get64(hdr + J_TARGETS + 8 * i);

		if (t % ds->g.sector || t < ds->g.inode_off ||
		    t > end - ds->g.sector)
			return 0;
	}
	return 1;
}

static int apply(const struct ds_host *h, const uint8_t *hdr,
		 const uint8_t *img)
{
	const struct ds *ds = h->ds;
	uint32_t n = get32(hdr + J_COUNT);
	int rc = targets_ok(ds, hdr) ? 0 : -EBADMSG;

	for (uint32_t i = 0; i < n && rc == 0; i++) {
		rc = ds_hb_check(h); /* under the namespace lease */
		if (rc == 0)
			rc = ds_write(ds, get64(hdr + J_TARGETS + 8 * i),
				      img + (size_t)i * ds->g.sector,
				      ds->g.sector);
	}
	return rc;
}

static int txn_commit(struct txn *t)
{
	const struct ds *ds = t->h->ds;
	size_t s = ds->g.sector;
	uint8_t *hdr;
	int rc;

	if (t->n == 0)
		return 0;
	for (unsigned i = 0; i < t->n; i++)
		ds_rec_seal(t->img + i * s);
	hdr = ds_alloc(ds, s);
	if (!hdr)
		return -ENOMEM;
	put32(hdr + J_MAGIC, JRNL_MAGIC);
	put64(hdr + J_SEQ, sys_real_ms());
	put32(hdr + J_COUNT, t->n);
	put32(hdr + J_PAYLOAD_CRC, crc32c(0, t->img, t->n * s));
	for (unsigned i = 0; i < t->n; i++)
		put64(hdr + J_TARGETS + 8 * i, t->off[i]);
	rc = ds_hb_check(t->h);
	if (rc == 0)
		rc = ds_write(ds, payload_off(ds, t->h->id), t->img, t->n * s);
	if (rc == 0)
		rc = ds_hb_check(t->h);
	if (rc == 0)
		rc = write_header(ds, t->h->id, hdr, J_PENDING);
	if (rc == 0)
		rc = apply(t->h, hdr, t->img);
	if (rc == 0)
		rc = write_header(ds, t->h->id, hdr, J_DONE);
	ds_free(hdr);
	t->n = 0;
	return rc;
}

/* Finish host's last transaction if it was committed but not marked done.
 * One whose payload does not match was never committed: nothing of it was
 * applied, and it is dropped. hdr is the host's header as just read. */
static int replay(struct ds_host *h, uint32_t host, uint8_t *hdr)
{
	const struct ds *ds = h->ds;
	size_t s = ds->g.sector;
	uint8_t *img = NULL;
	uint32_t n;
	int rc = 0;

	if (ds_rec_check(hdr) != 0 || get32(hdr + J_MAGIC) != JRNL_MAGIC ||
	    get32(hdr + J_STATE) != J_PENDING)
		return 0;
	n = get32(hdr + J_COUNT);
	if (n == 0 || n > TXN_MAX || n + 1 > ds->g.journal_sectors)
		return 0;
	img = ds_alloc(ds, n * s);
	rc = img ? ds_read(ds, payload_off(ds, host), img, n * s) : -ENOMEM;
	/* A payload that does not match was never committed; targets outside
	 * the metadata were never written by us: both are dropped. */
	if (rc == 0 && crc32c(0, img, n * s) == get32(hdr + J_PAYLOAD_CRC) &&
	    targets_ok(ds, hdr))
		rc = apply(h, hdr, img);
	if (rc == 0)
		rc = write_header(ds, host, hdr, J_DONE);
	ds_free(img);
	return rc;
}

/* Every host's journal header in one read; replay the unfinished ones. */
static int replay_all(struct ds_host *h)
{
	const struct ds *ds = h->ds;
	size_t s = ds->g.sector;
	uint8_t *hdrs = ds_alloc(ds, (size_t)ds->g.max_hosts * s);
	int rc = hdrs ? ds_read(ds, journal_off(ds, 1), hdrs,
				(size_t)ds->g.max_hosts * s) :
			-ENOMEM;

	for (uint32_t i = 1; rc == 0 && i <= ds->g.max_hosts; i++)
		rc = replay(h, i, hdrs + (size_t)(i - 1) * s);
	ds_free(hdrs);
	return rc;
}

/* A release that fails (an I/O error) leaves the lease ours; others may
 * break it once our heartbeat stops, as for any lease we die holding. */
static void unlock(struct ds_host *h, uint32_t lock)
{
	if (ds_lock_release(h, lock) < 0)
		return;
}

/* Take the namespace lock, waiting out other hosts' short holds (and a dead
 * holder's break wait), then replay every unfinished journal. */
static int ns_begin(struct ds_host *h, struct ds_hb_watch *w, char *err,
		    size_t errlen)
{
	const struct ds_geom *g = &h->ds->g;
	uint64_t limit = (g->hb_timeout_ms + ds_hb_margin_ms(g) +
			  2 * g->hb_interval_ms + 1000) *
			 1000000ull;
	uint64_t t0 = sys_mono_ns();
	int rc;

	for (;;) {
		rc = ds_lock_acquire(h, w, DS_NAMESPACE_LOCK, err, errlen);
		if (rc == 0)
			break;
		if ((rc != -EBUSY && rc != -EAGAIN) ||
		    sys_mono_ns() - t0 > limit)
			return rc;
		sys_sleep_us(NS_WAIT_SLICE_US);
	}
	rc = replay_all(h);
	if (rc < 0) {
		snprintf(err, errlen, "journal replay: %s", strerror(-rc));
		unlock(h, DS_NAMESPACE_LOCK);
	}
	return rc;
}

static void ns_end(struct ds_host *h)
{
	unlock(h, DS_NAMESPACE_LOCK);
}

int ds_recover(struct ds_host *h, struct ds_hb_watch *w, char *err,
	       size_t errlen)
{
	int rc = ns_begin(h, w, err, errlen);

	if (rc == 0)
		ns_end(h);
	return rc;
}

/* --- names and inodes -------------------------------------------------- */

int ds_name_check(const char *name, char *err, size_t errlen)
{
	size_t n = strlen(name), part = 0;

	if (n == 0 || n > DS_FILE_NAME_MAX) {
		snprintf(err, errlen, "file name: 1 to %d bytes",
			 DS_FILE_NAME_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i <= n; i++) {
		char c = name[i];

		if (c == '/' || c == '\0') {
			if (part == 0 || (part == 1 && name[i - 1] == '.') ||
			    (part == 2 && name[i - 1] == '.' &&
			     name[i - 2] == '.')) {
				snprintf(err, errlen,
					 "file name '%s': empty, '.' or '..' "
					 "part",
					 name);
				return -EINVAL;
			}
			part = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-')) {
			snprintf(err, errlen,
				 "file name: character 0x%02x not allowed "
				 "(use A-Z a-z 0-9 . _ - and /)",
				 (unsigned char)c);
			return -EINVAL;
		}
		part++;
	}
	return 0;
}

static uint64_t inode_off(const struct ds *ds, uint32_t index)
{
	return ds->g.inode_off + (uint64_t)index * ds->g.sector;
}

static int inode_decode(const uint8_t *r, uint32_t index, struct ds_inode *o)
{
	int rc = ds_rec_check(r);

	memset(o, 0, sizeof(*o));
	o->index = index;
	if (rc != 0)
		return rc;
	if (get32(r + I_MAGIC) != INODE_MAGIC || get32(r + I_INDEX) != index)
		return -EBADMSG;
	o->flags = get32(r + I_FLAGS);
	o->generation = get64(r + I_GEN);
	o->size = get64(r + I_SIZE);
	o->map_block = get64(r + I_MAP);
	o->ctime_ms = get64(r + I_CTIME);
	o->mtime_ms = get64(r + I_MTIME);
	memcpy(o->name, r + I_NAME, DS_FILE_NAME_MAX);
	return (o->flags & DS_INODE_USED) ? 0 : 1;
}

static void inode_encode(uint8_t *r, const struct ds_inode *o)
{
	memset(r, 0, DS_REC_SIZE);
	put32(r + I_MAGIC, INODE_MAGIC);
	put32(r + I_INDEX, o->index);
	put32(r + I_FLAGS, o->flags);
	put64(r + I_GEN, o->generation);
	put64(r + I_SIZE, o->size);
	put64(r + I_MAP, o->map_block);
	put64(r + I_CTIME, o->ctime_ms);
	put64(r + I_MTIME, o->mtime_ms);
	memcpy(r + I_NAME, o->name, strnlen(o->name, DS_FILE_NAME_MAX));
}

int ds_inode_read(const struct ds *ds, uint32_t index, struct ds_inode *out)
{
	uint8_t *r;
	int rc = 0;

	if (index == 0 || index >= ds->g.max_locks)
		return -ERANGE;
	r = ds_alloc(ds, ds->g.sector);
	if (!r)
		return -ENOMEM;
	for (int t = 0; t < 5; t++) {
		rc = ds_read(ds, inode_off(ds, index), r, ds->g.sector);
		if (rc == 0)
			rc = inode_decode(r, index, out);
		if (rc != -EBADMSG)
			break;
	}
	ds_free(r);
	return rc;
}

/* Scan the inode table: the file called name (0), or -ENOENT and the first
 * free index in *free_index (0 if none). */
static int scan(const struct ds *ds, const char *name, struct ds_inode *out,
		uint32_t *free_index)
{
	uint32_t n = ds->g.max_locks, fallback = 0;
	size_t s = ds->g.sector;
	uint8_t *tab = ds_alloc(ds, (size_t)n * s);
	int rc;

	if (free_index)
		*free_index = 0;
	if (!tab)
		return -ENOMEM;
	rc = ds_read(ds, ds->g.inode_off, tab, (size_t)n * s);
	for (uint32_t i = 1; rc == 0 && i < n; i++) {
		struct ds_inode ino;
		int c = inode_decode(tab + (size_t)i * s, i, &ino);

		if (c == 0 && strcmp(ino.name, name) == 0) {
			*out = ino;
			ds_free(tab);
			return 0;
		}
		/* A free inode whose lock someone still holds (a remove
		 * that died before letting go) is passed over while others
		 * are available: opening it would wait for the break. */
		if (c == 1 && free_index) {
			struct ds_lease l;

			if (!fallback)
				fallback = i;
			if (!*free_index && ds_lease_read(ds, i, &l) == 0 &&
			    l.owner == 0)
				*free_index = i;
		}
	}
	if (free_index && !*free_index)
		*free_index = fallback;
	ds_free(tab);
	return rc < 0 ? rc : -ENOENT;
}

int ds_lookup(const struct ds *ds, const char *name, struct ds_inode *out)
{
	return scan(ds, name, out, NULL);
}

/* --- the allocation bitmap and block maps ------------------------------ */

static int is_blank(const uint8_t *r)
{
	for (size_t i = 0; i < DS_REC_SIZE; i++)
		if (r[i])
			return 0;
	return 1;
}

static uint64_t bitmap_rec_off(const struct ds *ds, uint64_t block)
{
	return ds->g.bitmap_off + block / DS_BITMAP_BITS * ds->g.sector;
}

static int bit_get(const uint8_t *r, uint64_t block)
{
	uint64_t b = block % DS_BITMAP_BITS;

	return r[DS_BITMAP_HDR + b / 8] >> (b % 8) & 1;
}

static void bit_set(uint8_t *r, const struct ds *ds, uint64_t block, int on)
{
	uint64_t b = block % DS_BITMAP_BITS;
	uint8_t m = (uint8_t)(1u << (b % 8));

	put32(r, DS_BITMAP_MAGIC);
	put32(r + 4, (uint32_t)(block / DS_BITMAP_BITS));
	(void)ds;
	if (on)
		r[DS_BITMAP_HDR + b / 8] |= m;
	else
		r[DS_BITMAP_HDR + b / 8] &= (uint8_t)~m;
}

/* A staged bitmap image (checksum checked when it was read). */
static int bitmap_staged_ok(const uint8_t *r, uint64_t rec)
{
	if (is_blank(r))
		return 1;
	return get32(r) == DS_BITMAP_MAGIC && get32(r + 4) == rec;
}

static int bitmap_valid(const uint8_t *r, uint64_t rec)
{
	int c = ds_rec_check(r);

	if (c == 1)
		return 1;
	return c == 0 && get32(r) == DS_BITMAP_MAGIC && get32(r + 4) == rec;
}

int ds_free_blocks(const struct ds *ds, uint64_t *out)
{
	uint64_t nrec = (ds->g.nblocks + DS_BITMAP_BITS - 1) / DS_BITMAP_BITS;
	size_t s = ds->g.sector;
	uint8_t *bm = ds_alloc(ds, nrec * s);
	int rc;

	if (!bm)
		return -ENOMEM;
	*out = 0;
	rc = ds_read(ds, ds->g.bitmap_off, bm, nrec * s);
	for (uint64_t b = 0; rc == 0 && b < ds->g.nblocks; b++) {
		const uint8_t *r = bm + b / DS_BITMAP_BITS * s;

		if (!bitmap_valid(r, b / DS_BITMAP_BITS))
			rc = -EBADMSG;
		else if (!bit_get(r, b))
			(*out)++;
	}
	ds_free(bm);
	return rc;
}

/* Pick a free block (not yet taken in this transaction) and mark it. */
static int alloc_block(struct txn *t, uint64_t *block)
{
	const struct ds *ds = t->h->ds;
	uint64_t nb = ds->g.nblocks;
	/* Hosts start their search at different places. */
	uint64_t start = nb * (t->h->id - 1) / ds->g.max_hosts;

	for (uint64_t i = 0; i < nb; i++) {
		uint64_t b = (start + i) % nb, ro = bitmap_rec_off(ds, b);
		uint8_t *r;
		int rc;

		if (!txn_room(t, 1)) {
			/* Only sectors already staged can be used. */
			unsigned k;

			for (k = 0; k < t->n && t->off[k] != ro; k++)
				;
			if (k == t->n)
				continue;
		}
		r = txn_sector(t, ro, &rc);
		if (!r)
			return rc;
		if (!bitmap_staged_ok(r, b / DS_BITMAP_BITS))
			return -EBADMSG;
		if (!bit_get(r, b)) {
			bit_set(r, ds, b, 1);
			*block = b;
			return 0;
		}
	}
	return -ENOSPC;
}

static uint64_t block_off(const struct ds *ds, uint64_t block)
{
	return ds->g.data_off + block * ds->g.block_size;
}

static int zero_block(const struct ds *ds, uint64_t block)
{
	uint8_t *z = ds_alloc(ds, ds->g.block_size);
	int rc;

	if (!z)
		return -ENOMEM;
	rc = ds_write(ds, block_off(ds, block), z, ds->g.block_size);
	ds_free(z);
	return rc;
}

/* Sector offset of the map record holding file block fb. */
static uint64_t map_rec_off(const struct ds *ds, const struct ds_inode *ino,
			    uint64_t fb)
{
	return block_off(ds, ino->map_block - 1) +
	       fb / MAP_ENTRIES * ds->g.sector;
}

static uint64_t max_file_blocks(const struct ds *ds)
{
	return (uint64_t)(ds->g.block_size / ds->g.sector) * MAP_ENTRIES;
}

/* Data block + 1 of file block fb, 0 for a hole. */
static int map_get(const struct ds *ds, const struct ds_inode *ino, uint64_t fb,
		   uint64_t *out)
{
	uint8_t *r;
	int rc;

	*out = 0;
	if (!ino->map_block)
		return 0;
	r = ds_alloc(ds, ds->g.sector);
	if (!r)
		return -ENOMEM;
	rc = ds_read(ds, map_rec_off(ds, ino, fb), r, ds->g.sector);
	if (rc == 0 && ds_rec_check(r) < 0)
		rc = -EBADMSG;
	if (rc == 0)
		*out = get32(r + 4 * (fb % MAP_ENTRIES));
	ds_free(r);
	return rc;
}

/* The block-map entries of file blocks [first, last] into out (one read;
 * a corrupt map record is -EBADMSG). A file without a map is all holes. */
static int map_read(const struct ds *ds, const struct ds_inode *ino,
		    uint64_t first, uint64_t last, uint32_t *out)
{
	uint64_t r0 = first / MAP_ENTRIES, r1 = last / MAP_ENTRIES;
	size_t s = ds->g.sector;
	uint8_t *m;
	int rc;

	if (!ino->map_block) {
		memset(out, 0, (last - first + 1) * sizeof(*out));
		return 0;
	}
	m = ds_alloc(ds, (r1 - r0 + 1) * s);
	if (!m)
		return -ENOMEM;
	rc = ds_read(ds, map_rec_off(ds, ino, first), m, (r1 - r0 + 1) * s);
	for (uint64_t r = r0; rc == 0 && r <= r1; r++)
		if (ds_rec_check(m + (r - r0) * s) < 0)
			rc = -EBADMSG;
	for (uint64_t fb = first; rc == 0 && fb <= last; fb++)
		out[fb - first] = get32(m + (fb / MAP_ENTRIES - r0) * s +
					4 * (fb % MAP_ENTRIES));
	ds_free(m);
	return rc;
}

/* All map entries of a file (calloc'd, *n of them), after checking the
 * inode's map and size are in range: -EBADMSG for a corrupt inode. */
static int map_read_all(const struct ds *ds, const struct ds_inode *ino,
			uint32_t **out, uint64_t *n)
{
	uint64_t fbs =
		ino->size / ds->g.block_size + !!(ino->size % ds->g.block_size);
	int rc;

	*out = NULL;
	*n = 0;
	if (!ino->map_block)
		return 0;
	if (ino->map_block > ds->g.nblocks || fbs > max_file_blocks(ds))
		return -EBADMSG; /* a corrupt inode */
	if (!fbs)
		return 0;
	*out = calloc(fbs, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	rc = map_read(ds, ino, 0, fbs - 1, *out);
	if (rc < 0) {
		free(*out);
		*out = NULL;
		return rc;
	}
	*n = fbs;
	return 0;
}

int ds_file_blocks(const struct ds *ds, const struct ds_inode *ino,
		   uint64_t *out)
{
	uint32_t *map;
	uint64_t n;
	int rc = map_read_all(ds, ino, &map, &n);

	*out = 0;
	for (uint64_t fb = 0; rc == 0 && fb < n; fb++)
		*out += map[fb] != 0;
	free(map);
	return rc;
}

/*
 * Allocate file blocks [first, last] that are holes, in transactions that
 * each fit the journal. Blocks are zeroed before the map points at them, so
 * a new block never shows another file's old data. ino is updated (map
 * block, mtime) and written in each transaction.
 */
/* What a newly allocated block starts as: the part of the caller's write
 * that covers it whole (written before the map points at it), or zeros. */
struct fill {
	const uint8_t *buf; /* NULL: zeros */
	uint64_t off;
	size_t len;
};

static int fill_block(const struct ds *ds, const struct fill *fl, uint64_t fb,
		      uint64_t b)
{
	uint64_t bs = ds->g.block_size, start = fb * bs;

	if (fl && fl->buf && start >= fl->off &&
	    start + bs <= fl->off + fl->len)
		return ds_write(ds, block_off(ds, b),
				fl->buf + (start - fl->off), bs);
	return zero_block(ds, b);
}

static int alloc_range(struct ds_host *h, struct ds_inode *ino, uint64_t first,
		       uint64_t last, const struct fill *fl, char *err,
		       size_t errlen)
{
	const struct ds *ds = h->ds;
	struct txn t;
	uint64_t fb = first;
	int rc = txn_init(&t, h);

	while (rc == 0 && fb <= last) {
		uint8_t *ir;

		if (!ino->map_block) {
			uint64_t mb;

			rc = alloc_block(&t, &mb);
			if (rc == 0)
				rc = zero_block(ds, mb);
			if (rc < 0)
				break;
			ino->map_block = mb + 1;
		}
		ir = txn_sector(&t, inode_off(ds, ino->index), &rc);
		while (ir && rc == 0 && fb <= last && txn_room(&t, 2)) {
			uint64_t cur, b;
			uint8_t *mr;

			rc = map_get(ds, ino, fb, &cur);
			if (rc < 0 || cur) {
				fb++;
				continue;
			}
			mr = txn_sector(&t, map_rec_off(ds, ino, fb), &rc);
			if (rc == 0 && mr && get32(mr + 4 * (fb % MAP_ENTRIES)))
				fb++; /* staged in this transaction */
			else if (rc == 0 && mr &&
				 (rc = alloc_block(&t, &b)) == 0 &&
				 (rc = fill_block(ds, fl, fb, b)) == 0) {
				put32(mr + 4 * (fb % MAP_ENTRIES),
				      (uint32_t)(b + 1));
				put32(mr + MAP_INDEX,
				      (uint32_t)(fb / MAP_ENTRIES));
				fb++;
			}
		}
		if (rc == 0 && ir) {
			ino->mtime_ms = sys_real_ms();
			inode_encode(ir, ino);
			rc = txn_commit(&t);
		}
	}
	if (rc == -ENOSPC)
		snprintf(err, errlen, "no space left on the datastore");
	else if (rc < 0)
		snprintf(err, errlen, "allocate: %s",
			 rc == -EBADMSG ? "corrupt bitmap or block map" :
					  strerror(-rc));
	txn_free(&t);
	return rc;
}

/* One transaction that rewrites one inode. */
static int inode_commit(struct ds_host *h, const struct ds_inode *ino)
{
	struct txn t;
	uint8_t *r;
	int rc = txn_init(&t, h);

	r = rc == 0 ? txn_sector(&t, inode_off(h->ds, ino->index), &rc) : NULL;
	if (r) {
		inode_encode(r, ino);
		rc = txn_commit(&t);
	}
	txn_free(&t);
	return rc;
}

/* ds_lookup with the error spelt out in err. */
static int lookup_named(const struct ds *ds, const char *name,
			struct ds_inode *out, char *err, size_t errlen)
{
	int rc = ds_lookup(ds, name, out);

	if (rc < 0)
		snprintf(err, errlen, "%s: %s", name,
			 rc == -ENOENT ? "no such file" : strerror(-rc));
	return rc;
}

/* --- operations --------------------------------------------------------- */

/* A file size the format can hold: whole sectors, within one block map. */
static int size_check(const struct ds *ds, uint64_t size, char *err,
		      size_t errlen)
{
	/* No (size + bs - 1): sizes come from disk too and may be huge. */
	uint64_t fbs = size / ds->g.block_size + !!(size % ds->g.block_size);

	if (fbs <= max_file_blocks(ds) && size % ds->g.sector == 0)
		return 0;
	snprintf(err, errlen,
		 "size %llu: must be a multiple of %u up to %llu "
		 "bytes",
		 (unsigned long long)size, ds->g.sector,
		 (unsigned long long)(max_file_blocks(ds) * ds->g.block_size));
	return -EFBIG;
}

int ds_file_create(struct ds_host *h, struct ds_hb_watch *w, const char *name,
		   uint64_t size, int thick, char *err, size_t errlen)
{
	const struct ds *ds = h->ds;
	struct ds_inode ino, old;
	uint64_t fbs = (size + ds->g.block_size - 1) / ds->g.block_size, nfree;
	uint32_t idx;
	int rc = ds_name_check(name, err, errlen);

	if (rc < 0)
		return rc;
	rc = size_check(ds, size, err, errlen);
	if (rc < 0)
		return rc;
	rc = ns_begin(h, w, err, errlen);
	if (rc < 0)
		return rc;
	rc = scan(ds, name, &old, &idx);
	if (rc == 0) {
		snprintf(err, errlen, "%s: name exists", name);
		rc = -EEXIST;
		goto out;
	}
	if (rc != -ENOENT) {
		snprintf(err, errlen, "inode table: %s", strerror(-rc));
		goto out;
	}
	if (!idx) {
		snprintf(err, errlen,
			 "no free inode (the datastore holds at "
			 "most %u files)",
			 ds->g.max_locks - 1);
		rc = -ENOSPC;
		goto out;
	}
	if (thick) {
		rc = ds_free_blocks(ds, &nfree);
		if (rc == 0 && nfree < fbs + 1) {
			snprintf(err, errlen,
				 "no space: %llu blocks needed, %llu free",
				 (unsigned long long)(fbs + 1),
				 (unsigned long long)nfree);
			rc = -ENOSPC;
			goto out;
		}
	}
	rc = ds_inode_read(ds, idx, &old);
	memset(&ino, 0, sizeof(ino));
	ino.index = idx;
	ino.flags = DS_INODE_USED;
	ino.generation = (rc == 1 ? old.generation : 0) + 1;
	ino.size = size;
	ino.ctime_ms = ino.mtime_ms = sys_real_ms();
	snprintf(ino.name, sizeof(ino.name), "%s", name);
	rc = inode_commit(h, &ino);
	if (rc < 0) {
		snprintf(err, errlen, "create %s: %s", name, strerror(-rc));
		goto out;
	}
	if (thick && fbs)
		rc = alloc_range(h, &ino, 0, fbs - 1, NULL, err, errlen);
out:
	ns_end(h);
	return rc;
}

/* Free the data blocks of a removed inode's map (already unreferenced). */
static int free_blocks_of(struct ds_host *h, const struct ds_inode *ino)
{
	const struct ds *ds = h->ds;
	char ignored[160];
	uint32_t *map;
	uint64_t n;
	struct txn t;
	int rc;

	/* A corrupt inode's blocks are left as orphans for fsck. */
	if (ino->map_block > ds->g.nblocks ||
	    size_check(ds, ino->size, ignored, sizeof(ignored)) < 0)
		return 0;
	rc = map_read_all(ds, ino, &map, &n);
	if (rc < 0)
		return rc;
	rc = txn_init(&t, h);
	for (uint64_t fb = 0; rc == 0 && ino->map_block && fb <= n; fb++) {
		/* The data blocks, then the map itself, last. */
		uint64_t b = fb < n ? map[fb] : ino->map_block;
		uint8_t *r;

		if (!b || b > ds->g.nblocks)
			continue; /* out of range: left to fsck */
		if (!txn_room(&t, 1))
			rc = txn_commit(&t);
		r = rc == 0 ? txn_sector(&t, bitmap_rec_off(ds, b - 1), &rc) :
			      NULL;
		if (r && bitmap_staged_ok(r, (b - 1) / DS_BITMAP_BITS))
			bit_set(r, ds, b - 1, 0);
	}
	if (rc == 0)
		rc = txn_commit(&t);
	txn_free(&t);
	free(map);
	return rc;
}

int ds_file_remove(struct ds_host *h, struct ds_hb_watch *w, const char *name,
		   char *err, size_t errlen)
{
	const struct ds *ds = h->ds;
	struct ds_inode ino, gone;
	int rc = ds_name_check(name, err, errlen);

	if (rc < 0)
		return rc;
	rc = ns_begin(h, w, err, errlen);
	if (rc < 0)
		return rc;
	rc = lookup_named(ds, name, &ino, err, errlen);
	if (rc < 0)
		goto out;
	/* In use by a VM (or anyone): its lock says so. */
	rc = ds_lock_acquire_mode(h, w, ino.index, 0, err, errlen);
	if (rc < 0)
		goto out;
	/* The name goes first; the blocks after it are orphans until freed,
	 * and fsck reclaims them if we die in between. */
	gone = ino;
	gone.flags = 0;
	gone.size = 0;
	gone.map_block = 0;
	memset(gone.name, 0, sizeof(gone.name));
	rc = inode_commit(h, &gone);
	if (rc == 0)
		rc = free_blocks_of(h, &ino);
	if (rc < 0)
		snprintf(err, errlen, "remove %s: %s", name, strerror(-rc));
	unlock(h, ino.index);
out:
	ns_end(h);
	return rc;
}

/* Fill f->map[first..last] from the file's block map on disk. */
static int map_load(struct ds_file *f, uint64_t first, uint64_t last)
{
	int rc = map_read(f->h->ds, &f->ino, first, last, f->map + first);

	for (uint64_t fb = first; rc == 0 && fb <= last; fb++)
		if (f->map[fb] > f->h->ds->g.nblocks)
			rc = -EBADMSG; /* beyond the data area */
	return rc;
}

int ds_file_open(struct ds_file *f, struct ds_host *h, struct ds_hb_watch *w,
		 const char *name, char *err, size_t errlen)
{
	return ds_file_open_mode(f, h, w, name, 0, err, errlen);
}

int ds_file_open_mode(struct ds_file *f, struct ds_host *h,
		      struct ds_hb_watch *w, const char *name, int shared,
		      char *err, size_t errlen)
{
	int rc;

	memset(f, 0, sizeof(*f));
	rc = lookup_named(h->ds, name, &f->ino, err, errlen);
	if (rc < 0)
		return rc;
	rc = ds_lock_acquire_mode(h, w, f->ino.index, shared, err, errlen);
	if (rc < 0)
		return rc;
	f->shared = shared;
	/* Re-read under the lock: it may have been removed and reused. */
	rc = ds_inode_read(h->ds, f->ino.index, &f->ino);
	if (rc != 0 || strcmp(f->ino.name, name) != 0) {
		f->h = h;
		ds_file_close(f);
		snprintf(err, errlen, "%s: removed while opening", name);
		return -ENOENT;
	}
	f->h = h;
	f->w = w;
	/* The inode comes from a shared disk: check it before using it. */
	if (f->ino.map_block > h->ds->g.nblocks ||
	    size_check(h->ds, f->ino.size, err, errlen) < 0) {
		snprintf(err, errlen,
			 "%s: corrupt inode (size or block map "
			 "out of range)",
			 name);
		ds_file_close(f);
		return -EBADMSG;
	}
	f->nmap = (f->ino.size + h->ds->g.block_size - 1) / h->ds->g.block_size;
	f->map = calloc(f->nmap ? f->nmap : 1, sizeof(*f->map));
	rc = f->map ? 0 : -ENOMEM;
	if (rc == 0 && f->nmap)
		rc = map_load(f, 0, f->nmap - 1);
	if (rc < 0) {
		snprintf(err, errlen, "%s: block map: %s", name,
			 rc == -EBADMSG ? "corrupt" : strerror(-rc));
		ds_file_close(f);
	}
	return rc;
}

void ds_file_close(struct ds_file *f)
{
	/* A failed release leaves a mark or lease that goes stale when we
	 * leave or die; others then ignore or break it. */
	if (f->h && f->shared)
		(void)!ds_lock_release_shared(f->h, f->ino.index);
	else if (f->h)
		unlock(f->h, f->ino.index);
	f->h = NULL;
	free(f->map);
	f->map = NULL;
}

static int check_range(const struct ds_file *f, size_t len, uint64_t off)
{
	uint32_t s = f->h->ds->g.sector;

	if (off % s || len % s)
		return -EINVAL;
	if (off > f->ino.size || len > f->ino.size - off)
		return -EFBIG;
	return 0;
}

int ds_file_pread(struct ds_file *f, void *buf, size_t len, uint64_t off)
{
	const struct ds *ds = f->h->ds;
	uint64_t bs = ds->g.block_size;
	int rc = check_range(f, len, off);

	while (rc == 0 && len) {
		uint64_t fb = off / bs, in = off % bs, b;
		size_t n = len < bs - in ? len : (size_t)(bs - in);

		b = f->map[fb];
		if (b)
			rc = ds_read(ds, block_off(ds, b - 1) + in, buf, n);
		else
			memset(buf, 0, n);
		buf = (uint8_t *)buf + n;
		off += n;
		len -= n;
	}
	return rc;
}

int ds_file_pwrite(struct ds_file *f, const void *buf, size_t len, uint64_t off,
		   char *err, size_t errlen)
{
	const struct ds *ds = f->h->ds;
	uint64_t bs = ds->g.block_size, filled_from = 1, filled_to = 0;
	uint8_t *hole = NULL;
	int rc = f->shared ? -EBADF : check_range(f, len, off);

	if (rc < 0) {
		snprintf(err, errlen, "write of %zu at %llu: %s", len,
			 (unsigned long long)off,
			 rc == -EBADF  ? "opened shared (read-only)" :
			 rc == -EINVAL ? "not sector aligned" :
					 "beyond the end of the file");
		return rc;
	}
	if (len)
		hole = calloc((off + len - 1) / bs - off / bs + 1, 1);
	if (!hole)
		rc = len ? -ENOMEM : 0;
	while (rc == 0 && len) {
		uint64_t fb = off / bs, in = off % bs, b;
		size_t n = len < bs - in ? len : (size_t)(bs - in);

		b = f->map[fb];
		if (!b) {
			/* A hole: allocate it and the rest of this write's
			 * holes at once, under the namespace lock. Blocks the
			 * write covers whole get their data at allocation;
			 * the others are zeroed, then written below. */
			uint64_t last = (off + len - 1) / bs;
			struct fill fl = { buf, off, len };

			rc = ns_begin(f->h, f->w, err, errlen);
			if (rc < 0)
				break;
			rc = ds_inode_read(ds, f->ino.index, &f->ino);
			if (rc == 0)
				rc = alloc_range(f->h, &f->ino, fb, last, &fl,
						 err, errlen);
			ns_end(f->h);
			if (rc < 0)
				break;
			/* Holes before this call, now filled: skip them. */
			filled_from = fb;
			filled_to = last;
			for (uint64_t k = fb; k <= last; k++)
				hole[k - fb] = f->map[k] == 0;
			rc = map_load(f, fb, last);
			if (rc < 0)
				break;
			b = f->map[fb];
		}
		if (rc == 0)
			rc = ds_hb_check(f->h); /* fenced: no more writes */
		if (rc == 0 && !(fb >= filled_from && fb <= filled_to &&
				 hole[fb - filled_from] && in == 0 && n == bs))
			rc = ds_write(ds, block_off(ds, b - 1) + in, buf, n);
		buf = (const uint8_t *)buf + n;
		off += n;
		len -= n;
	}
	free(hole);
	if (rc < 0 && !*err)
		snprintf(err, errlen, "write: %s", strerror(-rc));
	return rc;
}

int ds_fsck_repair(struct ds_host *h, struct ds_hb_watch *w, struct ds_fsck *r,
		   char *err, size_t errlen)
{
	const struct ds *ds = h->ds;
	uint8_t *refs = NULL, *bm = NULL;
	struct txn t;
	int rc = ns_begin(h, w, err, errlen);

	if (rc < 0)
		return rc;
	rc = ds_fsck(ds, r, &refs, &bm);
	if (rc == 0)
		rc = txn_init(&t, h);
	for (uint64_t b = 0; rc == 0 && b < ds->g.nblocks; b++) {
		const uint8_t *rec = bm + b / DS_BITMAP_BITS * ds->g.sector;
		uint64_t bit = b % DS_BITMAP_BITS;
		int used = rec[DS_BITMAP_HDR + bit / 8] >> (bit % 8) & 1;
		uint8_t *img;

		if (used == (refs[b] != 0) ||
		    !bitmap_valid(rec, b / DS_BITMAP_BITS))
			continue;
		/* With records we could not read, an unreferenced block may
		 * still be someone's: only ever mark, never free. */
		if (used && r->unreadable)
			continue;
		if (!txn_room(&t, 1))
			rc = txn_commit(&t);
		img = rc == 0 ? txn_sector(&t, bitmap_rec_off(ds, b), &rc) :
				NULL;
		if (img)
			bit_set(img, ds, b, refs[b] != 0);
	}
	if (rc == 0)
		rc = txn_commit(&t);
	if (bm)
		txn_free(&t);
	if (rc < 0)
		snprintf(err, errlen, "repair: %s", strerror(-rc));
	free(refs);
	ds_free(bm);
	ns_end(h);
	return rc;
}

/* Rename or resize (grow only) a file that nobody has open: one inode
 * transaction under the namespace lock, with the file's lock held. */
static int change_inode(struct ds_host *h, struct ds_hb_watch *w,
			const char *name, const char *new_name,
			uint64_t new_size, char *err, size_t errlen)
{
	const struct ds *ds = h->ds;
	struct ds_inode ino, other;
	int rc = ds_name_check(name, err, errlen);

	if (rc == 0 && new_name)
		rc = ds_name_check(new_name, err, errlen);
	if (rc < 0)
		return rc;
	if (new_size) {
		rc = size_check(ds, new_size, err, errlen);
		if (rc < 0)
			return rc;
	}
	rc = ns_begin(h, w, err, errlen);
	if (rc < 0)
		return rc;
	rc = lookup_named(ds, name, &ino, err, errlen);
	if (rc < 0)
		goto out;
	if (new_name && ds_lookup(ds, new_name, &other) == 0) {
		snprintf(err, errlen, "%s: name exists", new_name);
		rc = -EEXIST;
		goto out;
	}
	if (new_size && new_size < ino.size) {
		snprintf(err, errlen,
			 "%s: %llu bytes; shrinking (to %llu) is not "
			 "supported",
			 name, (unsigned long long)ino.size,
			 (unsigned long long)new_size);
		rc = -EINVAL;
		goto out;
	}
	rc = ds_lock_acquire_mode(h, w, ino.index, 0, err, errlen);
	if (rc < 0)
		goto out;
	if (new_name)
		snprintf(ino.name, sizeof(ino.name), "%s", new_name);
	if (new_size)
		ino.size = new_size;
	ino.mtime_ms = sys_real_ms();
	rc = inode_commit(h, &ino);
	if (rc < 0)
		snprintf(err, errlen, "%s: %s", name, strerror(-rc));
	unlock(h, ino.index);
out:
	ns_end(h);
	return rc;
}

int ds_file_rename(struct ds_host *h, struct ds_hb_watch *w, const char *name,
		   const char *new_name, char *err, size_t errlen)
{
	return change_inode(h, w, name, new_name, 0, err, errlen);
}

int ds_file_extend(struct ds_host *h, struct ds_hb_watch *w, const char *name,
		   uint64_t size, char *err, size_t errlen)
{
	if (!size) {
		snprintf(err, errlen, "size 0: nothing to extend to");
		return -EINVAL;
	}
	return change_inode(h, w, name, NULL, size, err, errlen);
}
