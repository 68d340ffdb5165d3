/* canopy-ds: format and inspect a clustered datastore (docs/datastore.md).
 *
 *   canopy-ds format DEV --name N [--size S] [--sector 512|4096]
 *             [--locks N] [--hb-interval MS] [--hb-timeout MS] [--force]
 *   canopy-ds info DEV          [-o json]
 *   canopy-ds heartbeats DEV    [-o json] [--watch MS]
 *   canopy-ds locks DEV         [-o json]
 *   canopy-ds ls DEV            [-o json]
 *   canopy-ds create DEV FILE --size S [--thick] --host-id N
 *   canopy-ds import DEV LOCAL FILE --host-id N
 *   canopy-ds export DEV FILE LOCAL --host-id N
 *   canopy-ds rm DEV FILE --host-id N
 *   canopy-ds rename DEV FILE NEWNAME --host-id N
 *   canopy-ds extend DEV FILE --size S --host-id N
 *   canopy-ds fsck DEV [--repair --host-id N] [-o json]
 *
 * Commands that change the datastore act as host N for their duration: they
 * join (N must not be in use by a live host), keep its heartbeat, take the
 * locks they need and leave cleanly.
 *
 * Exit status: 0 ok, 1 the operation failed, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "datastore/ds.h"
#include "lib/sys.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2

struct opts {
	const char *name;
	uint64_t size;
	uint32_t sector, locks, hb_interval, hb_timeout;
	uint64_t watch_ms;
	uint32_t host_id;
	int force, json, thick, repair;
};

static int usage(void)
{
	fprintf(stderr,
		"usage: canopy-ds format DEV --name N [--size S[K|M|G]] "
		"[--sector 512|4096]\n"
		"                 [--locks N] [--hb-interval MS] "
		"[--hb-timeout MS] [--force]\n"
		"       canopy-ds info DEV [-o json]\n"
		"       canopy-ds heartbeats DEV [-o json] [--watch MS]\n"
		"       canopy-ds locks DEV [-o json]\n"
		"       canopy-ds ls DEV [-o json]\n"
		"       canopy-ds create DEV FILE --size S [--thick] "
		"--host-id N\n"
		"       canopy-ds import DEV LOCAL FILE --host-id N\n"
		"       canopy-ds export DEV FILE LOCAL --host-id N\n"
		"       canopy-ds rm DEV FILE --host-id N\n"
		"       canopy-ds rename DEV FILE NEWNAME --host-id N\n"
		"       canopy-ds extend DEV FILE --size S --host-id N\n"
		"       canopy-ds fsck DEV [--repair --host-id N] [-o json]\n");
	return EXIT_USAGE;
}

/* A size with an optional K/M/G/T suffix (powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'K':
	case 'k':
		shift = 10;
		end++;
		break;
	case 'M':
	case 'm':
		shift = 20;
		end++;
		break;
	case 'G':
	case 'g':
		shift = 30;
		end++;
		break;
	case 'T':
	case 't':
		shift = 40;
		end++;
		break;
	default:
		break;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;

	if (parse_size(s, &v) < 0 || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static void uuid_str(const uint8_t *u, char *out)
{
	sprintf(out,
		"%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		"%02x%02x%02x%02x%02x%02x",
		u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9],
		u[10], u[11], u[12], u[13], u[14], u[15]);
}

/* Names are ours or an operator's; keep JSON valid whatever they hold. */
static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* -o json for the commands that change something: one object on stdout
 * saying what was done (errors stay one line on stderr). */
static int json_out;

static void done(const char *op, const char *file, const char *to,
		 uint64_t bytes, const char *text)
{
	if (!json_out) {
		fputs(text, stdout);
		return;
	}
	printf("{\"ok\":true,\"op\":\"%s\",\"file\":", op);
	json_str(file);
	if (to) {
		printf(",\"to\":");
		json_str(to);
	}
	printf(",\"bytes\":%" PRIu64 "}\n", bytes);
}

static int cmd_format(const char *dev, const struct opts *o)
{
	struct ds_format_opts f = {
		.name = o->name,
		.size = o->size,
		.sector = o->sector,
		.max_locks = o->locks,
		.hb_interval_ms = o->hb_interval,
		.hb_timeout_ms = o->hb_timeout,
	};
	char err[512];
	struct ds ds;

	if (!o->name) {
		fprintf(stderr, "canopy-ds: format needs --name\n");
		return EXIT_USAGE;
	}
	if (ds_format(dev, &f, o->force, err, sizeof(err)) < 0 ||
	    ds_open(&ds, dev, DS_RDONLY, err, sizeof(err)) < 0) {
		fprintf(stderr, "canopy-ds: %s\n", err);
		return EXIT_FAIL;
	}
	snprintf(err, sizeof(err),
		 "formatted %s as datastore '%s' (%" PRIu64 " bytes, %u hosts, "
		 "%u locks)\n",
		 dev, ds.g.name, ds.g.size, ds.g.max_hosts, ds.g.max_locks);
	done("format", dev, NULL, ds.g.size, err);
	ds_close(&ds);
	return 0;
}

static int cmd_info(const struct ds *ds, const struct opts *o)
{
	const struct ds_geom *g = &ds->g;
	uint64_t nfree;
	char u[40];

	uuid_str(g->uuid, u);
	if (ds_free_blocks(ds, &nfree) < 0) {
		fprintf(stderr, "canopy-ds: %s: allocation bitmap is corrupt\n",
			ds->path);
		return EXIT_FAIL;
	}
	if (o->json) {
		printf("{\"name\":");
		json_str(g->name);
		printf(",\"uuid\":\"%s\",\"version\":%u,\"size\":%" PRIu64
		       ",\"sector\":%u,\"max_hosts\":%u,\"max_locks\":%u,"
		       "\"hb_interval_ms\":%u,\"hb_timeout_ms\":%u,"
		       "\"fence_margin_ms\":%" PRIu64 ",\"created_ms\":%" PRIu64
		       ",\"block_size\":%u,\"blocks\":%" PRIu64
		       ",\"free_blocks\":%" PRIu64 ",\"direct_io\":%s}\n",
		       u, g->version, g->size, g->sector, g->max_hosts,
		       g->max_locks, g->hb_interval_ms, g->hb_timeout_ms,
		       ds_hb_margin_ms(g), g->created_ms, g->block_size,
		       g->nblocks, nfree, ds->direct ? "true" : "false");
		return 0;
	}
	printf("name:          %s\nuuid:          %s\nformat:        "
	       "version %u\nsize:          %" PRIu64 " bytes\nsector:        "
	       "%u bytes\nhosts:         up to %u\nlocks:         %u\n"
	       "heartbeat:     every %u ms, dead after %u ms (+%" PRIu64
	       " ms margin before a lock break)\n"
	       "space:         %" PRIu64 " of %" PRIu64 " blocks of %u "
	       "bytes free\n"
	       "I/O:           %s\n",
	       g->name, u, g->version, g->size, g->sector, g->max_hosts,
	       g->max_locks, g->hb_interval_ms, g->hb_timeout_ms,
	       ds_hb_margin_ms(g), nfree, g->nblocks, g->block_size,
	       ds->direct ? "O_DIRECT" :
			    "buffered (the filesystem refuses O_DIRECT; "
			    "only safe for hosts on this machine)");
	return 0;
}

static int cmd_heartbeats(const struct ds *ds, const struct opts *o)
{
	struct ds_hb_watch w;
	uint64_t now_wall = sys_real_ms(), now;
	int first = 1, rc;

	ds_hb_watch_init(&w);
	rc = ds_hb_watch_poll(ds, &w, 0);
	if (rc == 0 && o->watch_ms) {
		sys_sleep_us((uint64_t)(o->watch_ms) * 1000);
		rc = ds_hb_watch_poll(ds, &w, 0);
	}
	if (rc < 0) {
		fprintf(stderr, "canopy-ds: %s: heartbeats: %s\n", ds->path,
			strerror(-rc));
		return EXIT_FAIL;
	}
	now = sys_mono_ns();
	if (o->json)
		printf("[");
	else
		printf("%-4s %-20s %-6s %10s %10s %12s %s\n", "HOST", "NAME",
		       "STATE", "GENERATION", "COUNTER", "WRITTEN", "LIVENESS");
	for (uint32_t id = 1; id <= ds->g.max_hosts; id++) {
		struct ds_hb_slot s;
		const char *state, *live;
		double ago;

		rc = ds_hb_read(ds, id, &s);
		if (rc == 1)
			continue;
		state = rc < 0		       ? "corrupt" :
			(s.flags & DS_HB_LEFT) ? "left" :
						 "live";
		/* Without --watch one read cannot tell a live host from a
		 * dead one: say so rather than guess. */
		live = o->watch_ms ? ds_liveness_name(
					     ds_hb_liveness(ds, &w, id, now)) :
				     "unknown (use --watch)";
		ago = (double)((int64_t)(now_wall - s.wall_ms)) / 1000;
		if (o->json) {
			printf("%s{\"host\":%u,\"name\":", first ? "" : ",",
			       id);
			json_str(s.host_name);
			printf(",\"state\":\"%s\",\"generation\":%" PRIu64
			       ",\"counter\":%" PRIu64 ",\"wall_ms\":%" PRIu64
			       ",\"liveness\":\"%s\"}",
			       state, s.generation, s.counter, s.wall_ms,
			       o->watch_ms ? live : "unknown");
		} else {
			printf("%-4u %-20.20s %-6s %10" PRIu64 " %10" PRIu64
			       " %10.1fs %s\n",
			       id, s.host_name, state, s.generation, s.counter,
			       ago, live);
		}
		first = 0;
	}
	if (o->json)
		printf("]\n");
	return 0;
}

static int cmd_locks(const struct ds *ds, const struct opts *o)
{
	int first = 1, bad = 0;

	if (o->json)
		printf("[");
	else
		printf("%-6s %-6s %-10s %-8s %s\n", "LOCK", "OWNER",
		       "GENERATION", "LVER", "TAKEN");
	for (uint32_t k = 0; k < ds->g.max_locks; k++) {
		struct ds_lease l;
		int rc = ds_lease_read(ds, k, &l);

		if (rc < 0) {
			fprintf(stderr, "canopy-ds: lock %u: %s\n", k,
				rc == -EBADMSG ? "corrupt lease sector" :
						 strerror(-rc));
			bad = 1;
			continue;
		}
		if (!l.owner)
			continue;
		if (o->json) {
			printf("%s{\"lock\":%u,\"owner\":%u,\"generation\":%" PRIu64
			       ",\"lver\":%" PRIu64 ",\"wall_ms\":%" PRIu64 "}",
			       first ? "" : ",", k, l.owner, l.owner_generation,
			       l.lver, l.wall_ms);
		} else {
			printf("%-6u %-6u %-10" PRIu64 " %-8" PRIu64
			       " %.1fs ago\n",
			       k, l.owner, l.owner_generation, l.lver,
			       (double)(int64_t)(sys_real_ms() - l.wall_ms) /
				       1000);
		}
		first = 0;
	}
	if (o->json)
		printf("]\n");
	return bad ? EXIT_FAIL : 0;
}

static int cmd_ls(const struct ds *ds, const struct opts *o)
{
	char why[160];
	int first = 1, rc = 0;

	if (o->json)
		printf("[");
	else
		printf("%-32s %14s %14s %-6s\n", "NAME", "SIZE", "ALLOCATED",
		       "LOCKED");
	for (uint32_t i = 1; i < ds->g.max_locks; i++) {
		struct ds_inode ino;
		struct ds_lease l;
		uint64_t blocks = 0;
		int c = ds_inode_read(ds, i, &ino);

		if (c == 1)
			continue;
		if (c == 0)
			c = ds_file_blocks(ds, &ino, &blocks);
		if (c == 0)
			c = ds_lease_read(ds, i, &l);
		if (c < 0) {
			fprintf(stderr, "canopy-ds: inode %u: %s\n", i,
				c == -EBADMSG ? "corrupt" : strerror(-c));
			rc = EXIT_FAIL;
			continue;
		}
		/* The disk is not trusted: never print a name we would not
		 * have accepted (terminal escapes and the like). */
		if (ds_name_check(ino.name, why, sizeof(why)) < 0)
			snprintf(ino.name, sizeof(ino.name), "<invalid name>");
		if (o->json) {
			printf("%s{\"name\":", first ? "" : ",");
			json_str(ino.name);
			printf(",\"inode\":%u,\"size\":%" PRIu64
			       ",\"allocated\":%" PRIu64
			       ",\"locked_by\":%u,\"mtime_ms\":%" PRIu64 "}",
			       i, ino.size, blocks * ds->g.block_size, l.owner,
			       ino.mtime_ms);
		} else if (l.owner) {
			printf("%-32s %14" PRIu64 " %14" PRIu64 " host %u\n",
			       ino.name, ino.size, blocks * ds->g.block_size,
			       l.owner);
		} else {
			printf("%-32s %14" PRIu64 " %14" PRIu64 " -\n",
			       ino.name, ino.size, blocks * ds->g.block_size);
		}
		first = 0;
	}
	if (o->json)
		printf("]\n");
	return rc;
}

/* The tool as a host: joined, heartbeat renewed by a thread, which also
 * applies the self-fence rule: past it, the work stops. */
struct session {
	struct ds ds;
	struct ds_host h;
	struct ds_hb_watch w;
	pthread_t hb;
	atomic_int fenced, stop;
};

static void *session_hb(void *arg)
{
	struct session *s = arg;

	while (!atomic_load(&s->stop)) {
		sys_sleep_us((uint64_t)(s->ds.g.hb_interval_ms) * 1000);
		if (ds_hb_must_fence(&s->h, sys_mono_ns())) {
			atomic_store(&s->fenced, 1);
			return NULL;
		}
		if (ds_hb_renew(&s->h) < 0)
			fprintf(stderr,
				"canopy-ds: heartbeat renewal failed\n");
	}
	return NULL;
}

static int session_start(struct session *s, const char *dev,
			 const struct opts *o)
{
	char err[512];

	memset(s, 0, sizeof(*s));
	if (!o->host_id) {
		fprintf(stderr,
			"canopy-ds: this command changes the datastore: "
			"give --host-id N (an id no live host uses)\n");
		return EXIT_USAGE;
	}
	if (ds_open(&s->ds, dev, 0, err, sizeof(err)) < 0 ||
	    ds_hb_join(&s->h, &s->ds, o->host_id, "canopy-ds", err,
		       sizeof(err)) < 0) {
		fprintf(stderr, "canopy-ds: %s\n", err);
		ds_close(&s->ds);
		return EXIT_FAIL;
	}
	ds_hb_watch_init(&s->w);
	if (pthread_create(&s->hb, NULL, session_hb, s) != 0) {
		fprintf(stderr, "canopy-ds: cannot start the heartbeat\n");
		ds_close(&s->ds);
		return EXIT_FAIL;
	}
	return 0;
}

static void session_end(struct session *s)
{
	atomic_store(&s->stop, 1);
	pthread_join(s->hb, NULL);
	if (!atomic_load(&s->fenced) && ds_hb_leave(&s->h) < 0)
		fprintf(stderr, "canopy-ds: could not mark host %u as left\n",
			s->h.id);
	ds_close(&s->ds);
}

#define COPY_CHUNK (1u << 20)

static int is_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static int do_import(struct session *s, const char *local, const char *name)
{
	uint32_t sec = s->ds.g.sector;
	struct ds_file f;
	struct stat st;
	uint64_t size, off = 0;
	uint8_t *buf = NULL;
	char err[512] = "";
	int fd = open(local, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "canopy-ds: %s: %s\n", local, strerror(errno));
		return EXIT_FAIL;
	}
	size = ((uint64_t)st.st_size + sec - 1) / sec * sec;
	rc = ds_file_create(&s->h, &s->w, name, size, 0, err, sizeof(err));
	if (rc == 0)
		rc = ds_file_open(&f, &s->h, &s->w, name, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "canopy-ds: %s\n", err);
		close(fd);
		return EXIT_FAIL;
	}
	buf = ds_alloc(&s->ds, COPY_CHUNK);
	while (buf && rc == 0 && off < size) {
		size_t want = size - off < COPY_CHUNK ? (size_t)(size - off) :
							COPY_CHUNK;
		ssize_t got = sys_pread_full(fd, buf, want, (off_t)off);

		if (got < 0) {
			snprintf(err, sizeof(err), "%s: %s", local,
				 strerror((int)-got));
			rc = (int)got;
			break;
		}
		memset(buf + got, 0, want - (size_t)got); /* pad the tail */
		if (atomic_load(&s->fenced)) {
			snprintf(err, sizeof(err),
				 "heartbeat lost: stopped "
				 "(self-fence)");
			rc = -ETIMEDOUT;
		} else if (!is_zero(buf, want)) { /* zeros stay thin */
			rc = ds_file_pwrite(&f, buf, want, off, err,
					    sizeof(err));
		}
		off += want;
	}
	ds_file_close(&f);
	ds_free(buf);
	close(fd);
	if (rc < 0 || !buf) {
		fprintf(stderr, "canopy-ds: import %s: %s\n", name,
			buf ? err : "out of memory");
		return EXIT_FAIL;
	}
	snprintf(err, sizeof(err), "imported %s to %s (%" PRIu64 " bytes)\n",
		 local, name, size);
	done("import", name, NULL, size, err);
	return 0;
}

static int do_export(struct session *s, const char *name, const char *local)
{
	char err[512] = "", tmp[4096];
	struct ds_file f;
	uint64_t off = 0;
	uint8_t *buf;
	int fd, rc;

	rc = ds_file_open_mode(&f, &s->h, &s->w, name, 1, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "canopy-ds: %s\n", err);
		return EXIT_FAIL;
	}
	snprintf(tmp, sizeof(tmp), "%s.partial", local);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	buf = ds_alloc(&s->ds, COPY_CHUNK);
	rc = fd < 0 ? -errno : buf ? 0 : -ENOMEM;
	while (rc == 0 && off < f.ino.size) {
		size_t want = f.ino.size - off < COPY_CHUNK ?
				      (size_t)(f.ino.size - off) :
				      COPY_CHUNK;

		if (atomic_load(&s->fenced))
			rc = -ETIMEDOUT;
		if (rc == 0)
			rc = ds_file_pread(&f, buf, want, off);
		if (rc == 0)
			rc = sys_pwrite_full(fd, buf, want, (off_t)off);
		off += want;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (rc == 0 && rename(tmp, local) < 0)
		rc = -errno;
	ds_file_close(&f);
	ds_free(buf);
	if (rc < 0) {
		unlink(tmp);
		fprintf(stderr, "canopy-ds: export %s to %s: %s\n", name, local,
			rc == -ETIMEDOUT ? "heartbeat lost (self-fence)" :
					   strerror(-rc));
		return EXIT_FAIL;
	}
	snprintf(err, sizeof(err), "exported %s to %s (%" PRIu64 " bytes)\n",
		 name, local, f.ino.size);
	done("export", name, local, f.ino.size, err);
	return 0;
}

static void fsck_summary(const struct ds_fsck *r, int json, const char *what)
{
	if (json) {
		printf("{\"phase\":\"%s\",\"files\":%" PRIu64
		       ",\"problems\":%" PRIu64 ",\"orphans\":%" PRIu64
		       ",\"unmarked\":%" PRIu64 ",\"shared\":%" PRIu64
		       ",\"pending\":%" PRIu64 ",\"stale_locks\":%" PRIu64
		       "}\n",
		       what, r->files, r->problems, r->orphans, r->unmarked,
		       r->shared, r->pending, r->stale_locks);
		return;
	}
	printf("fsck (%s): %" PRIu64 " files, %s", what, r->files,
	       r->problems ? "" : "clean\n");
	if (r->problems)
		printf("%" PRIu64 " problems (orphan blocks %" PRIu64
		       ", unmarked %" PRIu64 ", shared %" PRIu64
		       ", unfinished journals %" PRIu64 ", stale locks %" PRIu64
		       ")\n",
		       r->problems, r->orphans, r->unmarked, r->shared,
		       r->pending, r->stale_locks);
}

static int cmd_fsck(const char *dev, const struct opts *o)
{
	struct ds_fsck r = { .report = o->json ? NULL : stdout };
	char err[512] = "";
	struct session s;
	struct ds ds;
	int rc;

	if (!o->repair) {
		if (ds_open(&ds, dev, DS_RDONLY, err, sizeof(err)) < 0) {
			fprintf(stderr, "canopy-ds: %s\n", err);
			return EXIT_FAIL;
		}
		rc = ds_fsck(&ds, &r, NULL, NULL);
		ds_close(&ds);
		if (rc < 0) {
			fprintf(stderr, "canopy-ds: fsck: %s\n", strerror(-rc));
			return EXIT_FAIL;
		}
		fsck_summary(&r, o->json, "check");
		return r.problems ? EXIT_FAIL : 0;
	}
	rc = session_start(&s, dev, o);
	if (rc)
		return rc;
	rc = ds_fsck_repair(&s.h, &s.w, &r, err, sizeof(err));
	if (rc == 0) {
		fsck_summary(&r, o->json, "before repair");
		memset(&r, 0, sizeof(r));
		r.report = o->json ? NULL : stdout;
		rc = ds_fsck(&s.ds, &r, NULL, NULL);
		if (rc == 0)
			fsck_summary(&r, o->json, "after repair");
	} else {
		fprintf(stderr, "canopy-ds: %s\n", err);
	}
	session_end(&s);
	return rc < 0 || r.problems ? EXIT_FAIL : 0;
}

static int cmd_change(const char *cmd, char **args, int nargs,
		      const struct opts *o)
{
	int three = strcmp(cmd, "import") == 0 || strcmp(cmd, "export") == 0 ||
		    strcmp(cmd, "rename") == 0;
	struct session s;
	char err[512] = "";
	int rc;

	if (nargs != (three ? 3 : 2))
		return usage();
	if ((strcmp(cmd, "create") == 0 || strcmp(cmd, "extend") == 0) &&
	    !o->size) {
		fprintf(stderr, "canopy-ds: %s needs --size\n", cmd);
		return EXIT_USAGE;
	}
	rc = session_start(&s, args[0], o);
	if (rc)
		return rc;
	if (strcmp(cmd, "create") == 0) {
		rc = ds_file_create(&s.h, &s.w, args[1], o->size, o->thick, err,
				    sizeof(err));
		if (rc == 0)
			snprintf(err, sizeof(err),
				 "created %s (%" PRIu64 " bytes, %s)\n",
				 args[1], o->size, o->thick ? "thick" : "thin");
		done("create", args[1], NULL, o->size, err);
	} else if (strcmp(cmd, "rm") == 0) {
		rc = ds_file_remove(&s.h, &s.w, args[1], err, sizeof(err));
		if (rc == 0)
			snprintf(err, sizeof(err), "removed %s\n", args[1]);
		done("rm", args[1], NULL, 0, err);
	} else if (strcmp(cmd, "rename") == 0) {
		rc = ds_file_rename(&s.h, &s.w, args[1], args[2], err,
				    sizeof(err));
		if (rc == 0)
			snprintf(err, sizeof(err), "renamed %s to %s\n",
				 args[1], args[2]);
		done("rename", args[1], args[2], 0, err);
	} else if (strcmp(cmd, "extend") == 0) {
		rc = ds_file_extend(&s.h, &s.w, args[1], o->size, err,
				    sizeof(err));
		if (rc == 0)
			snprintf(err, sizeof(err),
				 "extended %s to %" PRIu64 " bytes\n", args[1],
				 o->size);
		done("extend", args[1], NULL, o->size, err);
	} else if (strcmp(cmd, "import") == 0) {
		rc = do_import(&s, args[1], args[2]) ? -EIO : 0;
		err[0] = 0;
	} else {
		rc = do_export(&s, args[1], args[2]) ? -EIO : 0;
		err[0] = 0;
	}
	if (rc < 0 && err[0])
		fprintf(stderr, "canopy-ds: %s\n", err);
	session_end(&s);
	return rc < 0 ? EXIT_FAIL : 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' },
		{ "sector", required_argument, NULL, 'S' },
		{ "locks", required_argument, NULL, 'l' },
		{ "hb-interval", required_argument, NULL, 'i' },
		{ "hb-timeout", required_argument, NULL, 't' },
		{ "watch", required_argument, NULL, 'w' },
		{ "force", no_argument, NULL, 'f' },
		{ "thick", no_argument, NULL, 'T' },
		{ "repair", no_argument, NULL, 'R' },
		{ "host-id", required_argument, NULL, 'H' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { 0 };
	const char *cmd, *dev;
	char err[512];
	struct ds ds;
	int c, rc;

	while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 'n':
			o.name = optarg;
			break;
		case 's':
			bad = parse_size(optarg, &o.size);
			break;
		case 'S':
			bad = parse_u32(optarg, &o.sector);
			break;
		case 'l':
			bad = parse_u32(optarg, &o.locks);
			break;
		case 'i':
			bad = parse_u32(optarg, &o.hb_interval);
			break;
		case 't':
			bad = parse_u32(optarg, &o.hb_timeout);
			break;
		case 'w':
			bad = parse_size(optarg, &o.watch_ms);
			break;
		case 'f':
			o.force = 1;
			break;
		case 'T':
			o.thick = 1;
			break;
		case 'R':
			o.repair = 1;
			break;
		case 'H':
			bad = parse_u32(optarg, &o.host_id);
			break;
		case 'o':
			if (strcmp(optarg, "json") == 0)
				o.json = 1;
			else if (strcmp(optarg, "text") != 0)
				bad = -EINVAL;
			break;
		default:
			return usage();
		}
		if (bad) {
			fprintf(stderr, "canopy-ds: bad value '%s'\n", optarg);
			return EXIT_USAGE;
		}
	}
	json_out = o.json;
	if (argc - optind < 2)
		return usage();
	cmd = argv[optind];
	dev = argv[optind + 1];
	if (strcmp(cmd, "create") == 0 || strcmp(cmd, "rm") == 0 ||
	    strcmp(cmd, "import") == 0 || strcmp(cmd, "export") == 0 ||
	    strcmp(cmd, "rename") == 0 || strcmp(cmd, "extend") == 0)
		return cmd_change(cmd, argv + optind + 1, argc - optind - 1,
				  &o);
	if (argc - optind != 2)
		return usage();
	if (strcmp(cmd, "fsck") == 0)
		return cmd_fsck(dev, &o);
	if (strcmp(cmd, "format") == 0)
		return cmd_format(dev, &o);
	if (strcmp(cmd, "info") != 0 && strcmp(cmd, "heartbeats") != 0 &&
	    strcmp(cmd, "locks") != 0 && strcmp(cmd, "ls") != 0) {
		fprintf(stderr, "canopy-ds: unknown command '%s'\n", cmd);
		return usage();
	}
	if (ds_open(&ds, dev, DS_RDONLY, err, sizeof(err)) < 0) {
		fprintf(stderr, "canopy-ds: %s\n", err);
		return EXIT_FAIL;
	}
	if (strcmp(cmd, "info") == 0)
		rc = cmd_info(&ds, &o);
	else if (strcmp(cmd, "heartbeats") == 0)
		rc = cmd_heartbeats(&ds, &o);
	else if (strcmp(cmd, "ls") == 0)
		rc = cmd_ls(&ds, &o);
	else
		rc = cmd_locks(&ds, &o);
	ds_close(&ds);
	return rc;
}
