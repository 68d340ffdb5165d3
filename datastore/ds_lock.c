/* File locks as Disk Paxos leases (Gafni & Lamport, "Disk Paxos"; the
 * lease scheme is sanlock's "paxos lease"). Each lock has a leader sector
 * (who owns it, granted by which Paxos instance `lver`) and one block per
 * host; a host writes only its own block and reads everyone's, so mutual
 * exclusion needs nothing but sector reads and writes. docs/datastore.md
 * gives the argument. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datastore/ds.h"
#include "datastore/ds_rec.h"
#include "lib/sys.h"

#define LEASE_MAGIC 0x5341454cu /* "LEAS" */
#define DBLK_MAGIC 0x4b4c4244u /* "DBLK" */
/* Leader sector fields. */
#define L_MAGIC 0
#define L_LOCK 4
#define L_OWNER 8
#define L_OWNER_GEN 16
#define L_LVER 24
#define L_WALL 32
/* Per-host block fields. */
#define D_MAGIC 0
#define D_LOCK 4
#define D_HOST 8
#define D_LVER 16
#define D_MBAL 24
#define D_BAL 32
#define D_INP_HOST 40
#define D_INP_GEN 48
#define D_SHARED 56 /* generation holding the lock shared, 0 if not */
/* Ballot = round << 8 | host id: unique per host, ordered by round. */
#define BALLOT_HOST_BITS 8
#define READ_TRIES 5
#define ACQUIRE_TRIES 64

struct dblock {
	uint64_t lver, mbal, bal;
	uint32_t inp_host;
	uint64_t inp_gen;
	uint64_t shared_gen;
	int valid;
};

static uint64_t area_off(const struct ds *ds, uint32_t lock)
{
	return ds->g.lock_off +
	       (uint64_t)lock * (1 + ds->g.max_hosts) * ds->g.sector;
}

static uint64_t dblock_off(const struct ds *ds, uint32_t lock, uint32_t host)
{
	return area_off(ds, lock) + (uint64_t)host * ds->g.sector;
}

int ds_lease_read(const struct ds *ds, uint32_t lock, struct ds_lease *out)
{
	uint8_t *r;
	int rc = 0;

	if (lock >= ds->g.max_locks)
		return -ERANGE;
	r = ds_alloc(ds, ds->g.sector);
	if (!r)
		return -ENOMEM;
	memset(out, 0, sizeof(*out));
	out->lock = lock;
	for (int t = 0; t < READ_TRIES; t++) {
		rc = ds_read(ds, area_off(ds, lock), r, ds->g.sector);
		if (rc == 0)
			rc = ds_rec_check(r);
		if (rc != -EBADMSG)
			break;
	}
	if (rc == 0 &&
	    (get32(r + L_MAGIC) != LEASE_MAGIC || get32(r + L_LOCK) != lock))
		rc = -EBADMSG;
	if (rc == 0) {
		out->owner = get32(r + L_OWNER);
		out->owner_generation = get64(r + L_OWNER_GEN);
		out->lver = get64(r + L_LVER);
		out->wall_ms = get64(r + L_WALL);
	}
	ds_free(r);
	return rc == 1 ? 0 : rc; /* never written: free, instance 0 */
}

static int lease_write(const struct ds_host *h, const struct ds_lease *l)
{
	const struct ds *ds = h->ds;
	uint8_t *r;
	int rc = ds_hb_check(h);

	if (rc < 0)
		return rc; /* fenced: our lease may be broken already */
	r = ds_alloc(ds, ds->g.sector);
	if (!r)
		return -ENOMEM;
	put32(r + L_MAGIC, LEASE_MAGIC);
	put32(r + L_LOCK, l->lock);
	put32(r + L_OWNER, l->owner);
	put64(r + L_OWNER_GEN, l->owner_generation);
	put64(r + L_LVER, l->lver);
	put64(r + L_WALL, sys_real_ms());
	ds_rec_seal(r);
	rc = ds_write(ds, area_off(ds, l->lock), r, ds->g.sector);
	ds_free(r);
	return rc;
}

static int dblock_write(const struct ds_host *h, uint32_t lock,
			const struct dblock *d)
{
	const struct ds *ds = h->ds;
	uint8_t *r = ds_alloc(ds, ds->g.sector);
	int rc;

	if (!r)
		return -ENOMEM;
	put32(r + D_MAGIC, DBLK_MAGIC);
	put32(r + D_LOCK, lock);
	put32(r + D_HOST, h->id);
	put64(r + D_LVER, d->lver);
	put64(r + D_MBAL, d->mbal);
	put64(r + D_BAL, d->bal);
	put32(r + D_INP_HOST, d->inp_host);
	put64(r + D_INP_GEN, d->inp_gen);
	put64(r + D_SHARED, d->shared_gen);
	ds_rec_seal(r);
	rc = ds_write(ds, dblock_off(ds, lock, h->id), r, ds->g.sector);
	ds_free(r);
	return rc;
}

/* Every host's block of a lock; d is indexed by host id (1..max_hosts). A
 * block that stays corrupt over READ_TRIES reads is an error: ignoring it
 * could hide an accepted ballot. */
static int dblocks_read(const struct ds *ds, uint32_t lock, struct dblock *d)
{
	uint32_t n = ds->g.max_hosts;
	size_t len = (size_t)n * ds->g.sector;
	uint8_t *buf = ds_alloc(ds, len);
	int rc = buf ? 0 : -ENOMEM;

	for (int t = 0; rc == 0 && t < READ_TRIES; t++) {
		int torn = 0;

		rc = ds_read(ds, dblock_off(ds, lock, 1), buf, len);
		for (uint32_t i = 1; rc == 0 && i <= n; i++) {
			const uint8_t *r = buf + (size_t)(i - 1) * ds->g.sector;
			int c = ds_rec_check(r);

			memset(&d[i], 0, sizeof(d[i]));
			if (c == 0 && (get32(r + D_MAGIC) != DBLK_MAGIC ||
				       get32(r + D_LOCK) != lock ||
				       get32(r + D_HOST) != i))
				c = -EBADMSG;
			if (c < 0) {
				torn = 1;
				continue;
			}
			if (c == 1)
				continue;
			d[i] = (struct dblock){
				.lver = get64(r + D_LVER),
				.mbal = get64(r + D_MBAL),
				.bal = get64(r + D_BAL),
				.inp_host = get32(r + D_INP_HOST),
				.inp_gen = get64(r + D_INP_GEN),
				.shared_gen = get64(r + D_SHARED),
				.valid = 1,
			};
		}
		if (!torn)
			break;
		if (t == READ_TRIES - 1)
			rc = -EBADMSG;
	}
	ds_free(buf);
	return rc;
}

enum round_result { ROUND_OK, ROUND_CONFLICT, ROUND_NEWER };

/* After writing our block: has anyone a higher ballot in this instance,
 * or moved to a later one? */
static enum round_result check(const struct ds *ds, const struct dblock *d,
			       uint64_t lver, uint64_t b, uint64_t *max_mbal,
			       uint64_t *newer)
{
	enum round_result res = ROUND_OK;

	for (uint32_t i = 1; i <= ds->g.max_hosts; i++)
		if (d[i].valid && d[i].lver > lver) {
			if (d[i].lver > *newer)
				*newer = d[i].lver;
			res = ROUND_NEWER;
		}
	if (res == ROUND_NEWER)
		return res;
	for (uint32_t i = 1; i <= ds->g.max_hosts; i++) {
		if (!d[i].valid)
			continue;
		if (d[i].lver == lver && d[i].mbal > b) {
			res = ROUND_CONFLICT;
			if (d[i].mbal > *max_mbal)
				*max_mbal = d[i].mbal;
		}
	}
	return res;
}

/* Write our block, read everyone's, and see whether the ballot in `mine`
 * still stands: ROUND_OK, ROUND_CONFLICT (*round raised above the highest
 * ballot seen), ROUND_NEWER, or -errno. d gets every block. */
static int phase(struct ds_host *h, uint32_t lock, const struct dblock *mine,
		 struct dblock *d, uint64_t *round, uint64_t *newer)
{
	uint64_t max_mbal = 0;
	int rc = dblock_write(h, lock, mine);

	if (rc == 0)
		rc = dblocks_read(h->ds, lock, d);
	if (rc < 0)
		return rc;
	rc = check(h->ds, d, mine->lver, mine->mbal, &max_mbal, newer);
	if (rc != ROUND_OK)
		*round = (max_mbal >> BALLOT_HOST_BITS) + 1;
	return rc;
}

/*
 * One Disk Paxos instance `lver` proposing (h, its generation). Returns
 * ROUND_OK with the decided value in *host / *gen, ROUND_CONFLICT (a higher
 * ballot is in play: back off and retry with a higher one) or ROUND_NEWER
 * (a later instance *newer exists), or -errno.
 */
static int paxos(struct ds_host *h, uint32_t lock, uint64_t lver,
		 uint64_t *round, uint32_t *host, uint64_t *gen,
		 uint64_t *newer)
{
	const struct ds *ds = h->ds;
	struct dblock d[DS_MAX_HOSTS + 1], mine = { 0 };
	uint64_t b, best = 0;
	int rc;

	rc = dblocks_read(ds, lock, d);
	if (rc < 0)
		return rc;
	/* Our own block may carry an accepted value for this instance from
	 * before a crash: it must be kept. */
	if (d[h->id].valid && d[h->id].lver == lver)
		mine = d[h->id];
	mine.shared_gen = d[h->id].shared_gen; /* not ours to change here */
	for (uint32_t i = 1; i <= ds->g.max_hosts; i++)
		if (d[i].valid && d[i].lver == lver &&
		    d[i].mbal >> BALLOT_HOST_BITS >= *round)
			*round = (d[i].mbal >> BALLOT_HOST_BITS) + 1;
	b = *round << BALLOT_HOST_BITS | h->id;

	/* Phase 1: claim ballot b, learn what may have been chosen. */
	mine.lver = lver;
	mine.mbal = b;
	rc = phase(h, lock, &mine, d, round, newer);
	if (rc != ROUND_OK)
		return rc;
	*host = h->id;
	*gen = h->generation;
	for (uint32_t i = 1; i <= ds->g.max_hosts; i++)
		if (d[i].valid && d[i].lver == lver && d[i].bal > best &&
		    d[i].inp_host) {
			best = d[i].bal;
			*host = d[i].inp_host;
			*gen = d[i].inp_gen;
		}

	/* Phase 2: accept the value at ballot b. */
	mine.bal = b;
	mine.inp_host = *host;
	mine.inp_gen = *gen;
	return phase(h, lock, &mine, d, round, newer);
}

static void backoff(const struct ds_host *h, int attempt)
{
	/* Random, growing: hosts that collided rarely collide again. */
	unsigned us = 100u << (attempt < 6 ? attempt : 6);

	us += (unsigned)(sys_mono_ns() ^ (h->id * 2654435761u)) % us;
	sys_sleep_us(us);
}

/* May l, owned by someone else, be taken? 0 yes, else -EBUSY/-EAGAIN with
 * err set. */
static int may_take(struct ds_host *h, struct ds_hb_watch *w,
		    const struct ds_lease *l, char *err, size_t errlen)
{
	uint64_t now = sys_mono_ns(), age;
	enum ds_liveness lv;

	if (l->owner == 0 || l->owner == h->id)
		return 0; /* free, or ours from an earlier incarnation */
	lv = ds_hb_liveness(h->ds, w, l->owner, now);
	age = ds_hb_age_ms(w, l->owner, now);
	/* The owner joined again since it took the lease: the incarnation
	 * that held it was silent for the break wait before that. */
	if (lv != DS_HOST_UNKNOWN &&
	    w->h[l->owner].generation > l->owner_generation)
		return 0;
	switch (lv) {
	case DS_HOST_DEAD:
	case DS_HOST_LEFT:
		return 0;
	case DS_HOST_SUSPECT:
		snprintf(err, errlen,
			 "lock %u: held by host %u, whose heartbeat stopped "
			 "%.1f s ago; breakable after %.1f s",
			 l->lock, l->owner, (double)age / 1000,
			 (double)(h->ds->g.hb_timeout_ms +
				  ds_hb_margin_ms(&h->ds->g)) /
				 1000);
		return -EAGAIN;
	case DS_HOST_UNKNOWN:
		snprintf(err, errlen,
			 "lock %u: held by host %u; its heartbeat has not "
			 "been read yet",
			 l->lock, l->owner);
		return -EAGAIN;
	default:
		snprintf(err, errlen,
			 "lock %u: locked by host %u (heartbeat %.1f s ago)",
			 l->lock, l->owner, (double)age / 1000);
		return -EBUSY;
	}
}

int ds_lock_acquire(struct ds_host *h, struct ds_hb_watch *w, uint32_t lock,
		    char *err, size_t errlen)
{
	struct ds_lease l;
	uint64_t round = 1;
	int rc, reread = 1, joining = 0;

	if (lock >= h->ds->g.max_locks) {
		snprintf(err, errlen, "lock %u: the datastore has %u locks",
			 lock, h->ds->g.max_locks);
		return -ERANGE;
	}
	/* Judge other hosts on a fresh reading, never a stale one. */
	rc = ds_hb_watch_poll(h->ds, w, 0);
	if (rc < 0) {
		snprintf(err, errlen, "heartbeats: %s", strerror(-rc));
		return rc;
	}
	for (int attempt = 0; attempt < ACQUIRE_TRIES; attempt++) {
		uint32_t host;
		uint64_t gen, newer = 0;

		if (reread) {
			rc = ds_lease_read(h->ds, lock, &l);
			if (rc < 0) {
				snprintf(err, errlen, "lock %u: lease: %s",
					 lock,
					 rc == -EBADMSG ? "corrupt sector" :
							  strerror(-rc));
				return rc;
			}
		}
		reread = 1;
		if (l.owner == h->id && l.owner_generation == h->generation)
			return 0;
		/* Joining a later instance someone else started needs no check
		 * of the earlier owner: whoever started it made that check. */
		rc = joining ? 0 : may_take(h, w, &l, err, errlen);
		joining = 0;
		if (rc < 0)
			return rc;
		rc = paxos(h, lock, l.lver + 1, &round, &host, &gen, &newer);
		if (rc < 0) {
			snprintf(err, errlen, "lock %u: %s", lock,
				 rc == -EBADMSG ? "corrupt host block" :
						  strerror(-rc));
			return rc;
		}
		if (rc == ROUND_CONFLICT) {
			backoff(h, attempt);
			reread = 0;
			continue;
		}
		if (rc == ROUND_NEWER) {
			/* A later instance exists (its winner may not have
			 * written the leader, or died first): take part in it
			 * to learn, or decide, its outcome. */
			l.lver = newer - 1;
			round = 1;
			reread = 0;
			joining = 1;
			continue;
		}
		l.lver++;
		l.owner = host;
		l.owner_generation = gen;
		if (host == h->id && gen == h->generation) {
			rc = lease_write(h, &l);
			if (rc < 0)
				snprintf(err, errlen, "lock %u: write: %s",
					 lock, strerror(-rc));
			return rc;
		}
		/* Someone else won instance lver. It may not have written the
		 * leader yet, or may have died before: judge it like an
		 * owner, and break it in the next instance if it is dead. */
		reread = 0;
	}
	snprintf(err, errlen,
		 "lock %u: no decision after %d rounds of "
		 "contention",
		 lock, ACQUIRE_TRIES);
	return -EAGAIN;
}

/* Is another live host holding lock shared? -EBUSY (err set) if so. */
static int shared_holders(struct ds_host *h, struct ds_hb_watch *w,
			  uint32_t lock, char *err, size_t errlen)
{
	struct dblock d[DS_MAX_HOSTS + 1];
	uint64_t now = sys_mono_ns();
	int rc = dblocks_read(h->ds, lock, d);

	for (uint32_t i = 1; rc == 0 && i <= h->ds->g.max_hosts; i++) {
		enum ds_liveness lv;

		if (i == h->id || !d[i].valid || !d[i].shared_gen)
			continue;
		lv = ds_hb_liveness(h->ds, w, i, now);
		/* Stale: that incarnation is gone (the same rules as for
		 * breaking an exclusive lease). */
		if (lv == DS_HOST_DEAD || lv == DS_HOST_LEFT ||
		    (lv != DS_HOST_UNKNOWN &&
		     w->h[i].generation > d[i].shared_gen))
			continue;
		snprintf(err, errlen, "lock %u: shared by host %u", lock, i);
		rc = -EBUSY;
	}
	return rc;
}

int ds_lock_acquire_mode(struct ds_host *h, struct ds_hb_watch *w,
			 uint32_t lock, int shared, char *err, size_t errlen)
{
	struct dblock d[DS_MAX_HOSTS + 1];
	int rc = ds_lock_acquire(h, w, lock, err, errlen), rel;

	if (rc < 0)
		return rc;
	if (!shared) {
		rc = shared_holders(h, w, lock, err, errlen);
		if (rc < 0 && ds_lock_release(h, lock) < 0)
			return rc; /* the lease stays ours until we leave */
		return rc;
	}
	/* Shared: while holding the lease, mark our block; then let go of
	 * the lease. An exclusive acquirer checks the marks after winning. */
	rc = dblocks_read(h->ds, lock, d);
	if (rc == 0) {
		d[h->id].shared_gen = h->generation;
		rc = dblock_write(h, lock, &d[h->id]);
	}
	rel = ds_lock_release(h, lock);
	if (rc < 0)
		snprintf(err, errlen, "lock %u: shared mark: %s", lock,
			 strerror(-rc));
	return rc < 0 ? rc : rel;
}

int ds_lock_release_shared(struct ds_host *h, uint32_t lock)
{
	struct dblock d[DS_MAX_HOSTS + 1];
	int rc = dblocks_read(h->ds, lock, d);

	if (rc < 0)
		return rc;
	if (d[h->id].shared_gen != h->generation)
		return -EPERM;
	d[h->id].shared_gen = 0;
	return dblock_write(h, lock, &d[h->id]);
}

int ds_lock_release(struct ds_host *h, uint32_t lock)
{
	struct ds_lease l;
	int rc = ds_lease_read(h->ds, lock, &l);

	if (rc < 0)
		return rc;
	if (l.owner != h->id || l.owner_generation != h->generation)
		return -EPERM;
	l.owner = 0;
	l.owner_generation = 0;
	return lease_write(h, &l);
}
