/* Test helper: file I/O throughput on the datastore, and the same I/O on a
 * plain local file as the baseline (for bench/ds_io.py).
 *
 *   ds_io DEV HOSTID MODE FILE SIZE_MIB PATTERN [SECONDS]
 *
 * MODE ds: join DEV as host HOSTID (with a heartbeat thread renewing every
 *     interval) and do the I/O with ds_file_pread/ds_file_pwrite on the
 *     datastore file FILE, which is created thick (all blocks allocated and
 *     zeroed) if it does not exist; an existing FILE must be SIZE_MIB MiB.
 *     The file is closed and the host leaves cleanly at the end.
 * MODE raw: DEV and HOSTID are not used. FILE is a local path opened
 *     O_DIRECT | O_DSYNC as the datastore opens its volume (buffered
 *     O_DSYNC where O_DIRECT is refused, e.g. tmpfs). If it does not exist
 *     with SIZE_MIB MiB, it is made allocated first: fallocate'd and fully
 *     written (as FILE.tmp, renamed into place when complete).
 *
 * PATTERN randread4k, randwrite4k (4 KiB at 4 KiB-aligned offsets from a
 *     fixed-seed PRNG, the same sequence in both modes), seqread1m,
 *     seqwrite1m (1 MiB at a time from offset 0, wrapping at the end): runs
 *     for SECONDS (default 3), then prints
 *         RESULT <pattern> <MiB/s> <IOPS>
 * PATTERN firstwrite: ds mode creates FILE as a NEW thin file of SIZE_MIB
 *     MiB (it must not exist) and writes it once, sequentially in 1 MiB
 *     chunks, so every write allocates a block; raw mode writes a fresh
 *     (truncated, not preallocated) FILE the same way. Only the writes are
 *     timed (not the create and open). Prints
 *         RESULT firstwrite <MiB/s>
 *
 * Exit 0 on success, 1 on an I/O error, 2 on usage or set-up failure, 3 if
 * the heartbeat could not be renewed in time (fenced: all I/O stops).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "datastore/ds.h"
#include "lib/sys.h"

#define MIB (1ull << 20)
#define SMALL_IO 4096u
#define LARGE_IO (1u << 20)
#define PRNG_SEED 0x9e3779b97f4a7c15ull

enum pattern { RANDREAD4K, RANDWRITE4K, SEQREAD1M, SEQWRITE1M, FIRSTWRITE };

static const char *const pattern_names[] = {
	[RANDREAD4K] = "randread4k", [RANDWRITE4K] = "randwrite4k",
	[SEQREAD1M] = "seqread1m",   [SEQWRITE1M] = "seqwrite1m",
	[FIRSTWRITE] = "firstwrite",
};

/* Where the I/O goes: an open datastore file or a local fd. */
struct target {
	int raw;
	int fd; /* raw */
	struct ds_file f; /* ds */
	char err[256];
};

static struct ds ds;
static struct ds_host host;
static struct ds_hb_watch watch;

static pthread_mutex_t hb_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hb_cond;
static int hb_stop;

static uint64_t prng_state = PRNG_SEED;

/* xorshift64*: fixed seed, so ds and raw runs touch the same offsets. */
static uint64_t prng_next(void)
{
	prng_state ^= prng_state >> 12;
	prng_state ^= prng_state << 25;
	prng_state ^= prng_state >> 27;
	return prng_state * 0x2545f4914f6cdd1dull;
}

static void *heartbeat(void *arg)
{
	struct timespec ts;

	(void)arg;
	pthread_mutex_lock(&hb_lock);
	while (!hb_stop) {
		int rc;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += ds.g.hb_interval_ms / 1000;
		ts.tv_nsec += (long)(ds.g.hb_interval_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!hb_stop &&
		       pthread_cond_timedwait(&hb_cond, &hb_lock, &ts) == 0)
			;
		if (hb_stop)
			break;
		/* Judged before renewing, as in ds_host: a late renewal does
		 * not undo the time we went without one. */
		if (ds_hb_must_fence(&host, sys_mono_ns())) {
			printf("fenced\n");
			fflush(stdout);
			_exit(3);
		}
		rc = ds_hb_renew(&host);
		if (rc < 0)
			fprintf(stderr, "ds_io %u: renew: %s\n", host.id,
				strerror(-rc));
	}
	pthread_mutex_unlock(&hb_lock);
	return NULL;
}

static int hb_start(pthread_t *t)
{
	pthread_condattr_t ca;

	if (pthread_condattr_init(&ca) != 0 ||
	    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&hb_cond, &ca) != 0)
		return -1;
	pthread_condattr_destroy(&ca);
	return pthread_create(t, NULL, heartbeat, NULL) == 0 ? 0 : -1;
}

static void hb_stop_join(pthread_t t)
{
	pthread_mutex_lock(&hb_lock);
	hb_stop = 1;
	pthread_cond_signal(&hb_cond);
	pthread_mutex_unlock(&hb_lock);
	pthread_join(t, NULL);
}

static int do_read(struct target *t, void *buf, size_t len, uint64_t off)
{
	ssize_t n;

	if (!t->raw)
		return ds_file_pread(&t->f, buf, len, off);
	n = sys_pread_full(t->fd, buf, len, (off_t)off);
	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -ENODATA;
}

static int do_write(struct target *t, const void *buf, size_t len, uint64_t off)
{
	if (!t->raw)
		return ds_file_pwrite(&t->f, buf, len, off, t->err,
				      sizeof(t->err));
	return sys_pwrite_full(t->fd, buf, len, (off_t)off);
}

static void io_error(struct target *t, const char *what, uint64_t off, int rc)
{
	fprintf(stderr, "ds_io: %s at %llu: %s%s%s\n", what,
		(unsigned long long)off, strerror(-rc), *t->err ? ": " : "",
		t->err);
}

/* The timed loop of the four steady-state patterns. */
static int run_pattern(struct target *t, enum pattern p, uint64_t size,
		       double seconds, uint8_t *buf)
{
	uint64_t chunks4k = size / SMALL_IO, bytes = 0, ops = 0, off = 0;
	uint64_t t0 = sys_mono_ns(), limit = (uint64_t)(seconds * 1e9), el;
	size_t len = p == RANDREAD4K || p == RANDWRITE4K ? SMALL_IO : LARGE_IO;
	int rc = 0;

	do {
		if (len == SMALL_IO)
			off = prng_next() % chunks4k * SMALL_IO;
		else if (off + len > size)
			off = 0;
		if (p == RANDREAD4K || p == SEQREAD1M)
			rc = do_read(t, buf, len, off);
		else
			rc = do_write(t, buf, len, off);
		if (rc < 0) {
			io_error(t,
				 p == RANDREAD4K || p == SEQREAD1M ? "read" :
								     "write",
				 off, rc);
			return 1;
		}
		bytes += len;
		ops++;
		if (len == LARGE_IO)
			off += len;
		el = sys_mono_ns() - t0;
	} while (el < limit);
	printf("RESULT %s %.2f %.0f\n", pattern_names[p],
	       (double)bytes / MIB / ((double)el / 1e9),
	       (double)ops / ((double)el / 1e9));
	return 0;
}

/* Write the whole (fresh) target once in 1 MiB chunks, timed. */
static int run_firstwrite(struct target *t, uint64_t size, uint8_t *buf)
{
	uint64_t t0 = sys_mono_ns(), el;

	for (uint64_t off = 0; off < size; off += LARGE_IO) {
		size_t n = size - off < LARGE_IO ? (size_t)(size - off) :
						   LARGE_IO;
		int rc = do_write(t, buf, n, off);

		if (rc < 0) {
			io_error(t, "write", off, rc);
			return 1;
		}
	}
	el = sys_mono_ns() - t0;
	printf("RESULT firstwrite %.2f\n",
	       (double)size / MIB / ((double)el / 1e9));
	return 0;
}

/* O_DIRECT | O_DSYNC where the filesystem has O_DIRECT, as ds_open. */
static int open_raw(const char *path, int flags)
{
	int fd = sys_open(path, flags | O_DIRECT | O_DSYNC, 0600);

	if (fd == -EINVAL) {
		fprintf(stderr, "ds_io: %s: no O_DIRECT, buffered O_DSYNC\n",
			path);
		fd = sys_open(path, flags | O_DSYNC, 0600);
	}
	if (fd < 0)
		fprintf(stderr, "ds_io: %s: %s\n", path, strerror(-fd));
	return fd;
}

/* Make path an allocated file of size bytes unless it already is one:
 * fallocate and write it all as path.tmp, then rename it into place, so a
 * file of the right size under the real name is always fully written. */
static int raw_prepare(const char *path, uint64_t size, uint8_t *buf)
{
	char tmp[4096];
	struct stat st;
	int fd, rc = 0;

	if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	    (uint64_t)st.st_size == size)
		return 0;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open_raw(tmp, O_RDWR | O_CREAT | O_TRUNC);
	if (fd < 0)
		return fd;
	if (fallocate(fd, 0, 0, (off_t)size) < 0)
		rc = -errno;
	for (uint64_t off = 0; rc == 0 && off < size; off += LARGE_IO)
		rc = sys_pwrite_full(
			fd, buf,
			size - off < LARGE_IO ? (size_t)(size - off) : LARGE_IO,
			(off_t)off);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	sys_close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		fprintf(stderr, "ds_io: prepare %s: %s\n", path, strerror(-rc));
		if (unlink(tmp) < 0 && errno != ENOENT)
			fprintf(stderr, "ds_io: unlink %s: %s\n", tmp,
				strerror(errno));
	}
	return rc;
}

static int run_raw(const char *path, uint64_t size, enum pattern p,
		   double seconds)
{
	struct target t = { .raw = 1 };
	uint8_t *buf = ds_alloc(NULL, LARGE_IO);
	int rc;

	if (!buf)
		return 2;
	memset(buf, 0xa5, LARGE_IO);
	if (p == FIRSTWRITE) {
		t.fd = open_raw(path, O_RDWR | O_CREAT | O_TRUNC);
		if (t.fd < 0) {
			ds_free(buf);
			return 2;
		}
		rc = run_firstwrite(&t, size, buf);
	} else {
		if (raw_prepare(path, size, buf) < 0) {
			ds_free(buf);
			return 2;
		}
		t.fd = open_raw(path, O_RDWR);
		if (t.fd < 0) {
			ds_free(buf);
			return 2;
		}
		rc = run_pattern(&t, p, size, seconds, buf);
	}
	sys_close(t.fd);
	ds_free(buf);
	return rc;
}

/* Create (thick, or thin for firstwrite) if needed, open, and check the
 * size. 0, or an exit code. */
static int ds_prepare(struct target *t, const char *name, uint64_t size,
		      enum pattern p)
{
	struct ds_inode ino;
	int rc = ds_lookup(&ds, name, &ino);

	if (rc == 0 && p == FIRSTWRITE) {
		fprintf(stderr,
			"ds_io: %s exists; firstwrite needs a new file\n",
			name);
		return 2;
	}
	if (rc == -ENOENT) {
		rc = ds_file_create(&host, &watch, name, size, p != FIRSTWRITE,
				    t->err, sizeof(t->err));
		if (rc < 0) {
			fprintf(stderr, "ds_io: create %s: %s\n", name, t->err);
			return 2;
		}
	} else if (rc < 0) {
		fprintf(stderr, "ds_io: lookup %s: %s\n", name, strerror(-rc));
		return 2;
	}
	rc = ds_file_open(&t->f, &host, &watch, name, t->err, sizeof(t->err));
	if (rc < 0) {
		fprintf(stderr, "ds_io: open %s: %s\n", name, t->err);
		return 2;
	}
	if (t->f.ino.size != size) {
		fprintf(stderr, "ds_io: %s is %llu bytes, not %llu\n", name,
			(unsigned long long)t->f.ino.size,
			(unsigned long long)size);
		ds_file_close(&t->f);
		return 2;
	}
	return 0;
}

static int run_ds(const char *dev, uint32_t id, const char *name, uint64_t size,
		  enum pattern p, double seconds)
{
	struct target t = { .raw = 0 };
	char hname[32];
	pthread_t hb;
	uint8_t *buf;
	int rc, lrc;

	snprintf(hname, sizeof(hname), "ds-io-%u", id);
	if (ds_open(&ds, dev, 0, t.err, sizeof(t.err)) < 0) {
		fprintf(stderr, "ds_io: %s\n", t.err);
		return 2;
	}
	if (ds_hb_join(&host, &ds, id, hname, t.err, sizeof(t.err)) < 0) {
		fprintf(stderr, "ds_io: %s\n", t.err);
		ds_close(&ds);
		return 2;
	}
	ds_hb_watch_init(&watch);
	if (hb_start(&hb) < 0) {
		fprintf(stderr, "ds_io: heartbeat thread failed\n");
		if (ds_hb_leave(&host) < 0)
			fprintf(stderr, "ds_io: leave failed\n");
		ds_close(&ds);
		return 2;
	}
	buf = ds_alloc(&ds, LARGE_IO);
	rc = buf ? ds_prepare(&t, name, size, p) : 2;
	if (rc == 0) {
		memset(buf, 0xa5, LARGE_IO);
		t.err[0] = '\0';
		if (p == FIRSTWRITE)
			rc = run_firstwrite(&t, size, buf);
		else
			rc = run_pattern(&t, p, size, seconds, buf);
		ds_file_close(&t.f);
	}
	ds_free(buf);
	hb_stop_join(hb);
	lrc = ds_hb_leave(&host);
	if (lrc < 0) {
		fprintf(stderr, "ds_io %u: leave: %s\n", id, strerror(-lrc));
		if (rc == 0)
			rc = 1;
	}
	ds_close(&ds);
	return rc;
}

int main(int argc, char **argv)
{
	enum pattern p = RANDREAD4K;
	unsigned long long mib;
	double seconds = 3;
	unsigned long id;
	size_t i;
	char *end;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 7 || argc > 8)
		goto usage;
	id = strtoul(argv[2], &end, 10);
	if (strcmp(argv[3], "ds") == 0 && (*end || id < 1 || id > DS_MAX_HOSTS))
		goto usage;
	mib = strtoull(argv[5], &end, 10);
	if (*end || mib < 1 || mib > (1ull << 30))
		goto usage;
	for (i = 0; i < CN_ARRAY_SIZE(pattern_names); i++)
		if (strcmp(argv[6], pattern_names[i]) == 0)
			break;
	if (i == CN_ARRAY_SIZE(pattern_names))
		goto usage;
	p = (enum pattern)i;
	if (argc == 8) {
		seconds = strtod(argv[7], &end);
		if (*end || !(seconds > 0))
			goto usage;
	}
	if (strcmp(argv[3], "raw") == 0)
		return run_raw(argv[4], mib * MIB, p, seconds);
	if (strcmp(argv[3], "ds") == 0)
		return run_ds(argv[1], (uint32_t)id, argv[4], mib * MIB, p,
			      seconds);
usage:
	fprintf(stderr,
		"usage: ds_io DEV HOSTID ds|raw FILE SIZE_MIB "
		"randread4k|randwrite4k|seqread1m|seqwrite1m|firstwrite "
		"[SECONDS]\n");
	return 2;
}
