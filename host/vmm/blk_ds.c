/* Disk backend on the clustered datastore (--disk ds=DEV:FILE,host=ID): the
 * VMM joins the volume's heartbeats as host ID, holds the file's lock for
 * as long as it runs (exclusive, or shared when read-only) and renews its
 * heartbeat on a thread of its own; when it cannot renew in time it fences
 * itself and every later request fails, so a host that breaks the lock
 * after the timeout never overlaps our writes. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datastore/ds.h"
#include "host/vmm/blk_ds.h"
#include "host/vmm/virtio_blk.h"
#include "lib/log.h"
#include "lib/sys.h"

/* Largest request the bounce buffer takes (virtio requests are <= 64 MiB). */
#define BLK_DS_BOUNCE_MAX (64u << 20)

struct blk_ds {
	struct blk_backend b;
	struct ds ds;
	struct ds_host host;
	struct ds_hb_watch watch;
	struct ds_file f;
	int opened, joined;
	int readonly;
	/* Migration hand-over (blk_ds.h): opened without the lock and
	 * waiting for it (destination), or released (source). */
	int pending, released;
	char file[DS_FILE_NAME_MAX + 1];
	/* Heartbeat thread. */
	pthread_t hb;
	int hb_started, hb_stop;
	pthread_mutex_t hb_lock; /* also serialises ds I/O with renewals */
	pthread_cond_t hb_cond;
	_Atomic int fenced;
	uint8_t *bounce;
	size_t bounce_len;
};

/* The registration table of this VMM's datastore disks (hand-over). */
static struct blk_ds *registered[BLK_DS_MAX];
static pthread_mutex_t registered_lock = PTHREAD_MUTEX_INITIALIZER;

static void reg_set(struct blk_ds *d, int add)
{
	pthread_mutex_lock(&registered_lock);
	for (size_t i = 0; i < BLK_DS_MAX; i++)
		if (add ? !registered[i] : registered[i] == d) {
			registered[i] = add ? d : NULL;
			break;
		}
	pthread_mutex_unlock(&registered_lock);
}

static void fence(struct blk_ds *d, const char *why)
{
	if (atomic_exchange(&d->fenced, 1))
		return;
	log_error("vmm", "datastore disk fenced: all its I/O fails from now on",
		  "file=%s host=%u why=\"%s\"", d->file, d->host.id, why);
}

/* Renew every interval; fence when a renewal came too late or failed
 * past the fence margin (ds_hb_must_fence measures it). */
static void *hb_main(void *arg)
{
	struct blk_ds *d = arg;
	uint32_t ms = d->ds.g.hb_interval_ms;
	struct timespec ts;
	int rc;

	pthread_mutex_lock(&d->hb_lock);
	while (!d->hb_stop) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += ms / 1000;
		ts.tv_nsec += (long)(ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		while (!d->hb_stop &&
		       pthread_cond_timedwait(&d->hb_cond, &d->hb_lock, &ts) ==
			       0)
			;
		if (d->hb_stop || atomic_load(&d->fenced))
			break;
		if (ds_hb_must_fence(&d->host, sys_mono_ns())) {
			fence(d, "heartbeat not renewed within the timeout");
			break;
		}
		rc = ds_hb_renew(&d->host);
		if (rc == -EEXIST)
			fence(d, "another process writes this host's slot");
		else if (rc < 0)
			log_warn("vmm", "datastore heartbeat renewal failed",
				 "host=%u err=\"%s\"", d->host.id,
				 strerror(-rc));
	}
	pthread_mutex_unlock(&d->hb_lock);
	return NULL;
}

static void *bounce(struct blk_ds *d, size_t len)
{
	if (len > BLK_DS_BOUNCE_MAX)
		return NULL;
	if (d->bounce_len < len) {
		ds_free(d->bounce);
		d->bounce = ds_alloc(&d->ds, len);
		d->bounce_len = d->bounce ? len : 0;
	}
	return d->bounce;
}

static size_t iov_len(const struct iovec *iov, int n)
{
	size_t t = 0;

	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

static ssize_t ds_rw(struct blk_backend *b, const struct iovec *iov, int n,
		     uint64_t off, int wr)
{
	struct blk_ds *d = (struct blk_ds *)b;
	size_t len = iov_len(iov, n), pos = 0;
	uint8_t *p;
	char err[256];
	int rc;

	if (atomic_load(&d->fenced))
		return -EIO;
	if ((off | len) % d->ds.g.sector)
		return -EINVAL;
	p = bounce(d, len);
	if (!p)
		return -ENOMEM;
	if (wr)
		for (int i = 0; i < n; pos += iov[i].iov_len, i++)
			memcpy(p + pos, iov[i].iov_base, iov[i].iov_len);
	pthread_mutex_lock(&d->hb_lock);
	if (!d->opened) /* the lock is not ours (hand-over): no I/O */
		rc = -EIO;
	else
		rc = wr ? ds_file_pwrite(&d->f, p, len, off, err, sizeof(err)) :
			  ds_file_pread(&d->f, p, len, off);
	pthread_mutex_unlock(&d->hb_lock);
	if (rc == -ETIMEDOUT)
		fence(d, "the library refused I/O: heartbeat too old");
	if (rc < 0)
		return rc;
	if (!wr)
		for (int i = 0; i < n; pos += iov[i].iov_len, i++)
			memcpy(iov[i].iov_base, p + pos, iov[i].iov_len);
	return (ssize_t)len;
}

static ssize_t ds_preadv(struct blk_backend *b, const struct iovec *iov, int n,
			 uint64_t off)
{
	return ds_rw(b, iov, n, off, 0);
}

static ssize_t ds_pwritev(struct blk_backend *b, const struct iovec *iov, int n,
			  uint64_t off)
{
	return ds_rw(b, iov, n, off, 1);
}

/* The volume is open O_DIRECT | O_DSYNC: a completed write is durable. */
static int ds_flush(struct blk_backend *b)
{
	struct blk_ds *d = (struct blk_ds *)b;

	return atomic_load(&d->fenced) ? -EIO : 0;
}

static void ds_teardown(struct blk_ds *d)
{
	if (d->hb_started) {
		pthread_mutex_lock(&d->hb_lock);
		d->hb_stop = 1;
		pthread_cond_signal(&d->hb_cond);
		pthread_mutex_unlock(&d->hb_lock);
		pthread_join(d->hb, NULL);
	}
	if (d->opened)
		ds_file_close(&d->f); /* releases the lock */
	/* A fenced host does not claim a clean leave: its lease stays until
	 * others see the heartbeat expire. */
	if (d->joined && !atomic_load(&d->fenced))
		(void)!ds_hb_leave(&d->host);
	if (d->ds.fd >= 0)
		ds_close(&d->ds);
	ds_free(d->bounce);
	pthread_cond_destroy(&d->hb_cond);
	pthread_mutex_destroy(&d->hb_lock);
	free(d);
}

static void ds_backend_close(struct blk_backend *b)
{
	reg_set((struct blk_ds *)b, 0);
	ds_teardown((struct blk_ds *)b);
}

static const struct blk_backend_ops ds_ops = {
	.preadv = ds_preadv,
	.pwritev = ds_pwritev,
	.flush = ds_flush,
	.close = ds_backend_close,
};

static int hb_start(struct blk_ds *d)
{
	int rc = -pthread_create(&d->hb, NULL, hb_main, d);

	d->hb_started = rc == 0;
	return rc;
}

/* The heartbeat waits on the monotonic clock, as fencing measures it. */
static void cond_init_mono(pthread_cond_t *c)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(c, &ca);
	pthread_condattr_destroy(&ca);
}

/* Join, start renewing, open the file with its lock. */
static int ds_attach(struct blk_ds *d, const struct blk_spec *s, char *err,
		     size_t errlen)
{
	char e[256] = "";
	int rc = ds_open(&d->ds, s->ds_dev, 0, e, sizeof(e));

	if (rc == 0) {
		rc = ds_hb_join(&d->host, &d->ds, s->ds_host, s->ds_name, e,
				sizeof(e));
		d->joined = rc == 0;
	}
	if (rc == 0)
		rc = hb_start(d);
	if (rc == 0 && s->defer_lock) {
		/* Incoming migration: the size now, the lock at the
		 * hand-over (the source holds it until stop-and-copy). */
		ds_hb_watch_init(&d->watch);
		rc = ds_lookup(&d->ds, d->file, &d->f.ino);
		if (rc == -ENOENT)
			snprintf(e, sizeof(e), "no such file on the volume");
		d->pending = rc == 0;
	} else if (rc == 0) {
		ds_hb_watch_init(&d->watch);
		pthread_mutex_lock(&d->hb_lock);
		rc = ds_file_open_mode(&d->f, &d->host, &d->watch, d->file,
				       s->readonly, e, sizeof(e));
		pthread_mutex_unlock(&d->hb_lock);
		d->opened = rc == 0;
	}
	if (rc < 0)
		snprintf(err, errlen, "--disk ds=%s:%s: %s", s->ds_dev, d->file,
			 e[0] ? e : strerror(-rc));
	return rc;
}

int blk_ds_open(const struct blk_spec *s, struct blk_backend **out, char *err,
		size_t errlen)
{
	struct blk_ds *d = calloc(1, sizeof(*d));
	int rc;

	if (!d)
		return -ENOMEM;
	d->ds.fd = -1;
	snprintf(d->file, sizeof(d->file), "%s", s->ds_file);
	pthread_mutex_init(&d->hb_lock, NULL);
	cond_init_mono(&d->hb_cond);
	rc = ds_attach(d, s, err, errlen);
	if (rc < 0) {
		ds_teardown(d);
		return rc;
	}
	d->b.ops = &ds_ops;
	d->b.size = d->f.ino.size & ~511ull;
	d->b.block_size = d->ds.g.sector;
	d->b.readonly = s->readonly;
	d->readonly = s->readonly;
	log_info("vmm",
		 d->pending ? "datastore disk opened, lock at the hand-over" :
			      "datastore disk locked",
		 "volume=%s file=%s host=%u mode=%s", s->ds_dev, d->file,
		 s->ds_host, s->readonly ? "shared" : "exclusive");
	reg_set(d, 1);
	*out = &d->b;
	return 0;
}

/* ---- migration hand-over (blk_ds.h) ---------------------------------- */

/* Take d's lock and open its file; retries a busy lock until ms pass. */
static int lock_take(struct blk_ds *d, uint64_t ms, char *err, size_t errlen)
{
	uint64_t end = sys_mono_ns() + ms * 1000000ull;
	char e[256] = "";
	int rc;

	for (;;) {
		pthread_mutex_lock(&d->hb_lock);
		rc = ds_file_open_mode(&d->f, &d->host, &d->watch, d->file,
				       d->readonly, e, sizeof(e));
		d->opened = rc == 0;
		pthread_mutex_unlock(&d->hb_lock);
		if ((rc != -EBUSY && rc != -EAGAIN) || sys_mono_ns() >= end)
			break;
		sys_sleep_us(20000);
	}
	if (rc < 0)
		snprintf(err, errlen, "datastore file %s: lock not taken: %s",
			 d->file, e[0] ? e : strerror(-rc));
	return rc;
}

/* Call fn on each registered disk (in order) until one fails. */
static int each(int (*fn)(struct blk_ds *, char *, size_t), char *err,
		size_t errlen)
{
	int rc = 0;

	pthread_mutex_lock(&registered_lock);
	for (size_t i = 0; i < BLK_DS_MAX && rc == 0; i++)
		if (registered[i])
			rc = fn(registered[i], err, errlen);
	pthread_mutex_unlock(&registered_lock);
	return rc;
}

static int release_one(struct blk_ds *d, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	pthread_mutex_lock(&d->hb_lock);
	if (d->opened) {
		ds_file_close(&d->f); /* the lease is free on the volume */
		d->opened = 0;
		d->released = 1;
	}
	pthread_mutex_unlock(&d->hb_lock);
	if (d->released)
		log_info("vmm", "datastore lock released for the hand-over",
			 "file=%s host=%u", d->file, d->host.id);
	return 0;
}

static int acquire_one(struct blk_ds *d, char *err, size_t errlen)
{
	int rc;

	if (!d->pending)
		return 0;
	rc = lock_take(d, BLK_DS_ACQUIRE_MS, err, errlen);
	if (rc == 0) {
		d->pending = 0;
		log_info("vmm", "datastore lock taken over", "file=%s host=%u",
			 d->file, d->host.id);
	}
	return rc;
}

static int reclaim_one(struct blk_ds *d, char *err, size_t errlen)
{
	int rc;

	if (!d->released)
		return 0;
	rc = lock_take(d, BLK_DS_RECLAIM_MS, err, errlen);
	d->released = 0;
	if (rc < 0)
		fence(d, "its lock could not be taken back after a failed "
			 "migration");
	else
		log_info("vmm", "datastore lock taken back", "file=%s host=%u",
			 d->file, d->host.id);
	return rc;
}

int blk_ds_handover_release(char *err, size_t errlen)
{
	return each(release_one, err, errlen);
}

int blk_ds_handover_acquire(char *err, size_t errlen)
{
	return each(acquire_one, err, errlen);
}

int blk_ds_handover_reclaim(char *err, size_t errlen)
{
	return each(reclaim_one, err, errlen);
}

size_t blk_ds_count(void)
{
	size_t n = 0;

	pthread_mutex_lock(&registered_lock);
	for (size_t i = 0; i < BLK_DS_MAX; i++)
		n += registered[i] != NULL;
	pthread_mutex_unlock(&registered_lock);
	return n;
}
