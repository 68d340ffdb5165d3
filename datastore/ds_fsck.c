/* fsck: check every metadata record and the agreement between the inodes'
 * block maps and the allocation bitmap; repair what can be repaired
 * without guessing (docs/datastore-format.md, "fsck"). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datastore/ds.h"
#include "datastore/ds_rec.h"
#include "lib/sys.h"

#define MAP_ENTRIES 126 /* as ds_file.c */

static void problem(struct ds_fsck *r, const char *fmt, ...)
{
	va_list ap;

	r->problems++;
	if (!r->report)
		return;
	va_start(ap, fmt);
	vfprintf(r->report, fmt, ap);
	va_end(ap);
	fputc('\n', r->report);
}

/* Reference counts of every data block from the inodes' maps. */
static int count_refs(const struct ds *ds, struct ds_fsck *r, uint8_t *refs)
{
	char err[160];

	for (uint32_t i = 1; i < ds->g.max_locks; i++) {
		struct ds_inode ino, other;
		uint64_t fbs, mb;
		uint8_t *m;
		int c = ds_inode_read(ds, i, &ino);

		if (c == 1)
			continue;
		if (c < 0) {
			problem(r, "inode %u: corrupt record", i);
			r->unreadable++;
			continue;
		}
		r->files++;
		if (ds_name_check(ino.name, err, sizeof(err)) < 0)
			problem(r, "inode %u: bad name", i);
		else if (ds_lookup(ds, ino.name, &other) == 0 &&
			 other.index != i)
			problem(r, "inode %u: name '%s' also used by inode %u",
				i, ino.name, other.index);
		if (!ino.map_block)
			continue;
		mb = ino.map_block - 1;
		if (mb >= ds->g.nblocks) {
			problem(r,
				"inode %u (%s): block map at block %llu, "
				"beyond the datastore",
				i, ino.name, (unsigned long long)mb);
			r->unreadable++;
			continue;
		}
		if (refs[mb] < 255)
			refs[mb]++;
		fbs = ino.size / ds->g.block_size +
		      !!(ino.size % ds->g.block_size);
		if (fbs >
		    (uint64_t)(ds->g.block_size / ds->g.sector) * MAP_ENTRIES) {
			problem(r,
				"inode %u (%s): size %llu beyond what a block "
				"map holds",
				i, ino.name, (unsigned long long)ino.size);
			r->unreadable++;
			continue;
		}
		m = ds_alloc(ds, ds->g.block_size);
		if (!m)
			return -ENOMEM;
		c = ds_read(ds, ds->g.data_off + mb * ds->g.block_size, m,
			    ds->g.block_size);
		for (uint64_t fb = 0; c == 0 && fb < fbs; fb++) {
			const uint8_t *rec =
				m + fb / MAP_ENTRIES * ds->g.sector;
			uint64_t b;

			if (fb % MAP_ENTRIES == 0 && ds_rec_check(rec) < 0) {
				problem(r,
					"inode %u (%s): corrupt block map "
					"record %llu",
					i, ino.name,
					(unsigned long long)(fb / MAP_ENTRIES));
				r->unreadable++;
				fb += MAP_ENTRIES - 1;
				continue;
			}
			b = get32(rec + 4 * (fb % MAP_ENTRIES));
			if (!b)
				continue;
			if (b - 1 >= ds->g.nblocks) {
				problem(r,
					"inode %u (%s): block %llu beyond "
					"the datastore",
					i, ino.name, (unsigned long long)b - 1);
				continue;
			}
			if (refs[b - 1] < 255)
				refs[b - 1]++;
		}
		ds_free(m);
		if (c < 0)
			return c;
	}
	return 0;
}

int ds_fsck(const struct ds *ds, struct ds_fsck *r, uint8_t **refs_out,
	    uint8_t **bitmap_out)
{
	uint64_t nb = ds->g.nblocks;
	uint64_t nrec = (nb + DS_BITMAP_BITS - 1) / DS_BITMAP_BITS;
	size_t s = ds->g.sector;
	uint8_t *refs = calloc(nb, 1), *bm = ds_alloc(ds, nrec * s);
	int rc = refs && bm ? 0 : -ENOMEM;

	if (rc == 0)
		rc = count_refs(ds, r, refs);
	if (rc == 0)
		rc = ds_read(ds, ds->g.bitmap_off, bm, nrec * s);
	for (uint64_t k = 0; rc == 0 && k < nrec; k++) {
		const uint8_t *rec = bm + k * s;
		int c = ds_rec_check(rec);

		if (c < 0 || (c == 0 && (get32(rec) != DS_BITMAP_MAGIC ||
					 get32(rec + 4) != k)))
			problem(r, "bitmap record %llu: corrupt",
				(unsigned long long)k);
	}
	for (uint64_t b = 0; rc == 0 && b < nb; b++) {
		const uint8_t *rec = bm + b / DS_BITMAP_BITS * s;
		uint64_t bit = b % DS_BITMAP_BITS;
		int used = rec[DS_BITMAP_HDR + bit / 8] >> (bit % 8) & 1;

		if (refs[b] > 1) {
			problem(r, "block %llu: used by %u files",
				(unsigned long long)b, refs[b]);
			r->shared++;
		}
		if (refs[b] && !used) {
			problem(r, "block %llu: in use but free in the bitmap",
				(unsigned long long)b);
			r->unmarked++;
		}
		if (!refs[b] && used) {
			r->orphans++; /* reported as a count below */
			r->problems++;
		}
	}
	if (rc == 0 && r->orphans && r->report)
		fprintf(r->report,
			"%llu blocks allocated but used by no file (orphans "
			"of an interrupted remove or create)\n",
			(unsigned long long)r->orphans);
	for (uint32_t h = 1; rc == 0 && h <= ds->g.max_hosts; h++) {
		uint8_t *hdr = ds_alloc(ds, s);
		uint64_t jo = ds->g.journal_off + (uint64_t)(h - 1) * s;

		rc = hdr ? ds_read(ds, jo, hdr, s) : -ENOMEM;
		if (rc == 0 && ds_rec_check(hdr) < 0)
			problem(r, "journal of host %u: corrupt header", h);
		else if (rc == 0 && ds_rec_check(hdr) == 0 &&
			 get32(hdr + 4) == 1) {
			problem(r,
				"journal of host %u: a transaction is not "
				"finished (replayed by the next change)",
				h);
			r->pending++;
		}
		ds_free(hdr);
	}
	for (uint32_t k = 0; rc == 0 && k < ds->g.max_locks; k++) {
		struct ds_lease l;
		struct ds_hb_slot slot;
		int c = ds_lease_read(ds, k, &l);

		if (c < 0) {
			problem(r, "lock %u: corrupt lease", k);
			continue;
		}
		if (!l.owner)
			continue;
		c = ds_hb_read(ds, l.owner, &slot);
		if (c != 0 || (slot.flags & DS_HB_LEFT) ||
		    slot.generation != l.owner_generation) {
			problem(r,
				"lock %u: held by host %u generation %llu, "
				"which is gone (stale; breakable)",
				k, l.owner,
				(unsigned long long)l.owner_generation);
			r->stale_locks++;
		}
	}
	if (rc == 0 && refs_out && bitmap_out) {
		*refs_out = refs;
		*bitmap_out = bm;
		return 0;
	}
	free(refs);
	ds_free(bm);
	return rc;
}
