/* Test helper: one process acting as one host of a datastore.
 *
 *   ds_host DEV ID contend LOCKS ITERS GUARD LOG [HOLD_US]
 *       acquire random locks ITERS times; while holding one, claim it in
 *       the GUARD (write this host's id), wait HOLD_US (default 200) and
 *       check nobody else claimed it; append "lock host start_ns end_ns"
 *       to LOG. Prints "done acquired=A busy=B" and exits 0; exits 5 with
 *       "VIOLATION ..." if the guard caught two holders.
 *       GUARD is either a plain file (created if missing; 8 bytes per
 *       lock at lock*8, buffered pread/pwrite: one machine only), or
 *       dev:PATH:OFFSET, for hosts on different machines (QEMU VMs sharing
 *       a disk): PATH is opened O_RDWR|O_DIRECT|O_DSYNC and lock k's guard
 *       is the 4096-byte block at OFFSET + k*4096, whose first 8 bytes
 *       hold the host id; every claim and check reads (and a claim
 *       rewrites) the whole block, past every page cache. Keep the blocks
 *       outside the datastore: e.g. a disk larger than the volume.
 *   ds_host DEV ID hold LOCK
 *       acquire LOCK (waiting as long as it takes), print "holding LOCK",
 *       then keep the heartbeat going until killed.
 *   ds_host DEV ID take LOCK WAIT_MS
 *       acquire LOCK within WAIT_MS; print "acquired LOCK after T ms" and
 *       release it (exit 0), or the last error (exit 1).
 *   ds_host DEV ID bench LOCK N
 *       poll the heartbeats once, then N times acquire and release LOCK
 *       uncontended, printing "lat_us ACQ REL" (microseconds of each call,
 *       under the I/O mutex, so a renewal in progress is not counted); then
 *       leave cleanly and exit 0, or print "error: ..." and exit 1.
 *   ds_host DEV ID flockbench FILE N
 *       the baseline for bench: N times flock(LOCK_EX) and flock(LOCK_UN)
 *       on FILE (created if missing), printing "lat_us ACQ REL" the same
 *       way. A local kernel lock: the cost floor, but it does not work
 *       across hosts. Leaves cleanly and exits 0, or exits 1.
 *
 *   ds_host DEV ID churn PREFIX N
 *       N times: create the thin file PREFIX/hID-i (2 MiB), write its
 *       first block, print "created NAME"; remove every other file after
 *       creating the next, printing "removed NAME". For crash tests: kill
 *       it anywhere, then check nothing acknowledged was lost.
 *
 * A heartbeat thread renews every interval; if it cannot renew in time it
 * prints "fenced" and exits 3 at once (it stops all I/O). Exit 2: usage or
 * set-up failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "datastore/ds.h"
#include "lib/sys.h"

static struct ds ds;
static struct ds_host host;
static pthread_mutex_t io_lock = PTHREAD_MUTEX_INITIALIZER;

static void *heartbeat(void *arg)
{
	(void)arg;
	for (;;) {
		int rc;

		sys_sleep_us((uint64_t)ds.g.hb_interval_ms * 1000);
		/* Judged before renewing: a renewal that succeeds now does not
		 * undo the time we went without one (we may have been stopped
		 * long enough for our locks to be broken). */
		if (ds_hb_must_fence(&host, sys_mono_ns())) {
			printf("fenced\n");
			fflush(stdout);
			_exit(3);
		}
		pthread_mutex_lock(&io_lock);
		rc = ds_hb_renew(&host);
		pthread_mutex_unlock(&io_lock);
		if (rc == -ESHUTDOWN)
			return NULL; /* the host left */
		if (rc < 0)
			fprintf(stderr, "ds_host %u: renew: %s\n", host.id,
				strerror(-rc));
	}
	return NULL;
}

/* Try once (acquisition reads the heartbeats itself). */
static int try_acquire(struct ds_hb_watch *w, uint32_t lock, char *err,
		       size_t errlen)
{
	int rc;

	pthread_mutex_lock(&io_lock);
	rc = ds_lock_acquire(&host, w, lock, err, errlen);
	pthread_mutex_unlock(&io_lock);
	return rc;
}

static int release(uint32_t lock)
{
	int rc;

	pthread_mutex_lock(&io_lock);
	rc = ds_lock_release(&host, lock);
	pthread_mutex_unlock(&io_lock);
	return rc;
}

/* The contend guard: a plain file (8 bytes per lock) or, with
 * "dev:PATH:OFFSET", one 4096-byte block per lock on a shared device, read
 * and written with O_DIRECT so that another machine's writes are seen. */
#define GUARD_BLOCK 4096
struct guard {
	int fd;
	int dev; /* dev:PATH:OFFSET form */
	uint64_t off; /* of lock 0's block */
	uint8_t *buf; /* GUARD_BLOCK bytes, aligned, dev form only */
};

static int guard_open(struct guard *g, const char *spec)
{
	memset(g, 0, sizeof(*g));
	g->fd = -1;
	if (strncmp(spec, "dev:", 4) == 0) {
		const char *colon = strrchr(spec + 4, ':');
		char path[256], *end;
		size_t n;

		if (!colon || colon == spec + 4 ||
		    (n = (size_t)(colon - (spec + 4))) >= sizeof(path)) {
			fprintf(stderr, "ds_host: bad guard %s\n", spec);
			return -EINVAL;
		}
		memcpy(path, spec + 4, n);
		path[n] = 0;
		errno = 0;
		g->off = strtoull(colon + 1, &end, 0);
		if (errno || end == colon + 1 || *end || g->off % GUARD_BLOCK) {
			fprintf(stderr,
				"ds_host: guard offset %s: want a multiple "
				"of %d\n",
				colon + 1, GUARD_BLOCK);
			return -EINVAL;
		}
		g->dev = 1;
		if (posix_memalign((void **)&g->buf, GUARD_BLOCK,
				   GUARD_BLOCK) != 0)
			return -ENOMEM;
		g->fd = open(path, O_RDWR | O_DIRECT | O_DSYNC | O_CLOEXEC);
		if (g->fd < 0)
			fprintf(stderr, "ds_host: guard %s: %s\n", path,
				strerror(errno));
	} else {
		g->fd = open(spec, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (g->fd < 0)
			fprintf(stderr, "ds_host: guard %s: %s\n", spec,
				strerror(errno));
	}
	return g->fd < 0 ? -EIO : 0;
}

static void guard_close(struct guard *g)
{
	if (g->fd >= 0)
		close(g->fd);
	free(g->buf);
	g->fd = -1;
	g->buf = NULL;
}

static int guard_read_block(struct guard *g, uint32_t lock)
{
	ssize_t n =
		sys_pread_full(g->fd, g->buf, GUARD_BLOCK,
			       (off_t)(g->off + (uint64_t)lock * GUARD_BLOCK));

	if (n == GUARD_BLOCK)
		return 0;
	fprintf(stderr, "ds_host: guard read lock %u: %s\n", lock,
		n < 0 ? strerror((int)-n) : "short read");
	return -EIO;
}

/* Write this host's id into lock's guard. */
static int guard_claim(struct guard *g, uint32_t lock, uint64_t me)
{
	int rc;

	if (!g->dev)
		rc = sys_pwrite_full(g->fd, &me, 8, (off_t)lock * 8);
	else {
		rc = guard_read_block(g, lock);
		if (rc < 0)
			return rc;
		memcpy(g->buf, &me, 8);
		rc = sys_pwrite_full(
			g->fd, g->buf, GUARD_BLOCK,
			(off_t)(g->off + (uint64_t)lock * GUARD_BLOCK));
	}
	if (rc < 0)
		fprintf(stderr, "ds_host: guard write lock %u: %s\n", lock,
			strerror(-rc));
	return rc;
}

/* The host id in lock's guard. */
static int guard_get(struct guard *g, uint32_t lock, uint64_t *seen)
{
	int rc;

	if (!g->dev) {
		ssize_t n = sys_pread_full(g->fd, seen, 8, (off_t)lock * 8);

		if (n == 8)
			return 0;
		fprintf(stderr, "ds_host: guard read lock %u: %s\n", lock,
			n < 0 ? strerror((int)-n) : "short read");
		return -EIO;
	}
	rc = guard_read_block(g, lock);
	if (rc == 0)
		memcpy(seen, g->buf, 8);
	return rc;
}

static int contend(uint32_t locks, unsigned iters, const char *guard_spec,
		   const char *log_path, unsigned hold_us)
{
	struct ds_hb_watch w;
	struct guard g;
	unsigned acquired = 0, busy = 0;
	FILE *log;
	char err[256];

	if (guard_open(&g, guard_spec) < 0)
		return 2;
	log = fopen(log_path, "a");
	if (!log) {
		fprintf(stderr, "ds_host: %s: %s\n", log_path, strerror(errno));
		return 2;
	}
	setvbuf(log, NULL, _IOLBF, 0);
	ds_hb_watch_init(&w);
	srand((unsigned)(sys_mono_ns() ^ host.id));
	for (unsigned i = 0; i < iters; i++) {
		uint32_t k = (uint32_t)rand() % locks;
		uint64_t me = host.id, seen = 0, t0, t1;
		int rc = try_acquire(&w, k, err, sizeof(err));

		if (rc == -EBUSY || rc == -EAGAIN) {
			busy++;
			continue;
		}
		if (rc < 0) {
			fprintf(stderr, "ds_host %u: %s\n", host.id, err);
			return 1;
		}
		t0 = sys_mono_ns();
		if (guard_claim(&g, k, me) < 0)
			return 2;
		sys_sleep_us(hold_us);
		if (guard_get(&g, k, &seen) < 0)
			return 2;
		t1 = sys_mono_ns();
		if (seen != me) {
			printf("VIOLATION lock %u: host %u holds it, guard "
			       "says host %llu\n",
			       k, host.id, (unsigned long long)seen);
			fflush(stdout);
			return 5;
		}
		fprintf(log, "%u %u %llu %llu\n", k, host.id,
			(unsigned long long)t0, (unsigned long long)t1);
		acquired++;
		rc = release(k);
		if (rc < 0) {
			fprintf(stderr, "ds_host %u: release %u: %s\n", host.id,
				k, strerror(-rc));
			return 1;
		}
	}
	fclose(log);
	guard_close(&g);
	pthread_mutex_lock(&io_lock);
	if (ds_hb_leave(&host) < 0)
		fprintf(stderr, "ds_host %u: leave failed\n", host.id);
	pthread_mutex_unlock(&io_lock);
	printf("done acquired=%u busy=%u\n", acquired, busy);
	return 0;
}

static int leave(void)
{
	int rc;

	pthread_mutex_lock(&io_lock);
	rc = ds_hb_leave(&host);
	pthread_mutex_unlock(&io_lock);
	if (rc < 0)
		fprintf(stderr, "ds_host %u: leave: %s\n", host.id,
			strerror(-rc));
	return rc;
}

static int churn(const char *prefix, unsigned n)
{
	struct ds_hb_watch w;
	char err[256], name[DS_FILE_NAME_MAX + 1], prev[DS_FILE_NAME_MAX + 1];
	uint8_t *buf = ds_alloc(&ds, ds.g.block_size);
	int rc = buf ? 0 : -ENOMEM;

	ds_hb_watch_init(&w);
	if (buf)
		memset(buf, 0xa5, ds.g.block_size);
	for (unsigned i = 0; rc == 0 && i < n; i++) {
		struct ds_file f;

		snprintf(name, sizeof(name), "%s/h%u-%u", prefix, host.id, i);
		pthread_mutex_lock(&io_lock);
		rc = ds_file_create(&host, &w, name, 2u << 20, 0, err,
				    sizeof(err));
		if (rc == 0)
			rc = ds_file_open(&f, &host, &w, name, err,
					  sizeof(err));
		if (rc == 0) {
			rc = ds_file_pwrite(&f, buf, ds.g.block_size, 0, err,
					    sizeof(err));
			ds_file_close(&f);
		}
		pthread_mutex_unlock(&io_lock);
		if (rc == 0)
			printf("created %s\n", name);
		if (rc == 0 && i % 2 == 1) {
			pthread_mutex_lock(&io_lock);
			rc = ds_file_remove(&host, &w, prev, err, sizeof(err));
			pthread_mutex_unlock(&io_lock);
			if (rc == 0)
				printf("removed %s\n", prev);
		}
		snprintf(prev, sizeof(prev), "%s", name);
	}
	ds_free(buf);
	if (rc < 0) {
		printf("error: %s\n", err);
		return 1;
	}
	if (leave() < 0)
		return 1;
	printf("done\n");
	return 0;
}

static int take(uint32_t lock, uint64_t wait_ms, int keep)
{
	struct ds_hb_watch w;
	uint64_t t0 = sys_mono_ns();
	char err[256] = "";
	int rc;

	ds_hb_watch_init(&w);
	for (;;) {
		rc = try_acquire(&w, lock, err, sizeof(err));
		if (rc == 0)
			break;
		if ((rc != -EBUSY && rc != -EAGAIN) ||
		    (wait_ms && sys_mono_ns() - t0 >= wait_ms * 1000000ull)) {
			printf("error: %s\n", err);
			pthread_mutex_lock(&io_lock);
			if (ds_hb_leave(&host) < 0)
				fprintf(stderr, "ds_host: leave failed\n");
			pthread_mutex_unlock(&io_lock);
			return 1;
		}
		sys_sleep_us(50000);
	}
	if (keep) {
		printf("holding %u\n", lock);
		fflush(stdout);
		for (;;)
			pause();
	}
	printf("acquired %u after %llu ms\n", lock,
	       (unsigned long long)((sys_mono_ns() - t0) / 1000000));
	rc = release(lock);
	pthread_mutex_lock(&io_lock);
	if (rc == 0)
		rc = ds_hb_leave(&host);
	pthread_mutex_unlock(&io_lock);
	return rc < 0 ? 1 : 0;
}

static double us_between(uint64_t t0_ns, uint64_t t1_ns)
{
	return (double)(t1_ns - t0_ns) / 1000.0;
}

/* Uncontended acquire + release of one lock, timed call by call. */
static int bench(uint32_t lock, unsigned n)
{
	struct ds_hb_watch w;
	char err[256] = "";
	int rc;

	ds_hb_watch_init(&w);
	pthread_mutex_lock(&io_lock);
	rc = ds_hb_watch_poll(&ds, &w, 0);
	pthread_mutex_unlock(&io_lock);
	if (rc < 0) {
		printf("error: heartbeats: %s\n", strerror(-rc));
		leave();
		return 1;
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t t0, t1, t2, t3;

		pthread_mutex_lock(&io_lock);
		t0 = sys_mono_ns();
		rc = ds_lock_acquire(&host, &w, lock, err, sizeof(err));
		t1 = sys_mono_ns();
		pthread_mutex_unlock(&io_lock);
		if (rc < 0) {
			printf("error: %s\n", err);
			leave();
			return 1;
		}
		pthread_mutex_lock(&io_lock);
		t2 = sys_mono_ns();
		rc = ds_lock_release(&host, lock);
		t3 = sys_mono_ns();
		pthread_mutex_unlock(&io_lock);
		if (rc < 0) {
			printf("error: release %u: %s\n", lock, strerror(-rc));
			leave();
			return 1;
		}
		printf("lat_us %.3f %.3f\n", us_between(t0, t1),
		       us_between(t2, t3));
	}
	return leave() < 0 ? 1 : 0;
}

/* The baseline: a local kernel lock on a file, same loop and output. */
static int flockbench(const char *path, unsigned n)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	int rc = 0;

	if (fd < 0) {
		printf("error: %s: %s\n", path, strerror(errno));
		leave();
		return 1;
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t t0, t1, t2, t3;

		t0 = sys_mono_ns();
		rc = flock(fd, LOCK_EX);
		t1 = sys_mono_ns();
		if (rc < 0)
			break;
		t2 = sys_mono_ns();
		rc = flock(fd, LOCK_UN);
		t3 = sys_mono_ns();
		if (rc < 0)
			break;
		printf("lat_us %.3f %.3f\n", us_between(t0, t1),
		       us_between(t2, t3));
	}
	if (rc < 0)
		printf("error: flock %s: %s\n", path, strerror(errno));
	close(fd);
	if (leave() < 0)
		rc = -1;
	return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	pthread_t hb;
	char err[256], name[32];
	uint32_t id;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 4)
		return fprintf(stderr, "ds_host: see the source for usage\n"),
		       2;
	id = (uint32_t)strtoul(argv[2], NULL, 10);
	snprintf(name, sizeof(name), "test-host-%u", id);
	if (ds_open(&ds, argv[1], 0, err, sizeof(err)) < 0 ||
	    ds_hb_join(&host, &ds, id, name, err, sizeof(err)) < 0) {
		printf("error: %s\n", err);
		return 2;
	}
	printf("joined %u generation %llu\n", id,
	       (unsigned long long)host.generation);
	if (pthread_create(&hb, NULL, heartbeat, NULL) != 0)
		return 2;
	if (strcmp(argv[3], "contend") == 0 && argc >= 8)
		return contend((uint32_t)atoi(argv[4]), (unsigned)atoi(argv[5]),
			       argv[6], argv[7],
			       argc > 8 ? (unsigned)atoi(argv[8]) : 200);
	if (strcmp(argv[3], "hold") == 0 && argc >= 5)
		return take((uint32_t)atoi(argv[4]), 0, 1);
	if (strcmp(argv[3], "churn") == 0 && argc >= 6)
		return churn(argv[4], (unsigned)atoi(argv[5]));
	if (strcmp(argv[3], "take") == 0 && argc >= 6)
		return take((uint32_t)atoi(argv[4]),
			    strtoull(argv[5], NULL, 10), 0);
	if (strcmp(argv[3], "bench") == 0 && argc >= 6)
		return bench((uint32_t)atoi(argv[4]), (unsigned)atoi(argv[5]));
	if (strcmp(argv[3], "flockbench") == 0 && argc >= 6)
		return flockbench(argv[4], (unsigned)atoi(argv[5]));
	fprintf(stderr, "ds_host: bad arguments\n");
	return 2;
}
