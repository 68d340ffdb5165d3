/* canopy-ds: format and inspect a clustered datastore (docs/datastore.md).
 *
 *   canopy-ds format DEV --name N [--size S] [--sector 512|4096]
 *             [--locks N] [--hb-interval MS] [--hb-timeout MS] [--force]
 *   canopy-ds info DEV          [-o json]
 *   canopy-ds heartbeats DEV    [-o json] [--watch MS]
 *   canopy-ds locks DEV         [-o json]
 *
 * Exit status: 0 ok, 1 the operation failed, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datastore/ds.h"
#include "lib/sys.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2

struct opts {
	const char *name;
	uint64_t size;
	uint32_t sector, locks, hb_interval, hb_timeout;
	uint64_t watch_ms;
	int force, json;
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
		"       canopy-ds locks DEV [-o json]\n");
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
	printf("formatted %s as datastore '%s' (%" PRIu64 " bytes, %u hosts, "
	       "%u locks)\n",
	       dev, ds.g.name, ds.g.size, ds.g.max_hosts, ds.g.max_locks);
	ds_close(&ds);
	return 0;
}

static int cmd_info(const struct ds *ds, const struct opts *o)
{
	const struct ds_geom *g = &ds->g;
	char u[40];

	uuid_str(g->uuid, u);
	if (o->json) {
		printf("{\"name\":");
		json_str(g->name);
		printf(",\"uuid\":\"%s\",\"version\":%u,\"size\":%" PRIu64
		       ",\"sector\":%u,\"max_hosts\":%u,\"max_locks\":%u,"
		       "\"hb_interval_ms\":%u,\"hb_timeout_ms\":%u,"
		       "\"fence_margin_ms\":%" PRIu64 ",\"created_ms\":%" PRIu64
		       ",\"direct_io\":%s}\n",
		       u, g->version, g->size, g->sector, g->max_hosts,
		       g->max_locks, g->hb_interval_ms, g->hb_timeout_ms,
		       ds_hb_margin_ms(g), g->created_ms,
		       ds->direct ? "true" : "false");
		return 0;
	}
	printf("name:          %s\nuuid:          %s\nformat:        "
	       "version %u\nsize:          %" PRIu64 " bytes\nsector:        "
	       "%u bytes\nhosts:         up to %u\nlocks:         %u\n"
	       "heartbeat:     every %u ms, dead after %u ms (+%" PRIu64
	       " ms margin before a lock break)\n"
	       "I/O:           %s\n",
	       g->name, u, g->version, g->size, g->sector, g->max_hosts,
	       g->max_locks, g->hb_interval_ms, g->hb_timeout_ms,
	       ds_hb_margin_ms(g),
	       ds->direct ? "O_DIRECT" :
			    "buffered (the filesystem refuses O_DIRECT; "
			    "only safe for hosts on this machine)");
	return 0;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000),
			       (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int cmd_heartbeats(const struct ds *ds, const struct opts *o)
{
	struct ds_hb_watch w;
	uint64_t now_wall = sys_real_ms(), now;
	int first = 1, rc;

	ds_hb_watch_init(&w);
	rc = ds_hb_watch_poll(ds, &w, sys_mono_ns());
	if (rc == 0 && o->watch_ms) {
		sleep_ms(o->watch_ms);
		rc = ds_hb_watch_poll(ds, &w, sys_mono_ns());
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
	if (argc - optind != 2)
		return usage();
	cmd = argv[optind];
	dev = argv[optind + 1];
	if (strcmp(cmd, "format") == 0)
		return cmd_format(dev, &o);
	if (strcmp(cmd, "info") != 0 && strcmp(cmd, "heartbeats") != 0 &&
	    strcmp(cmd, "locks") != 0) {
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
	else
		rc = cmd_locks(&ds, &o);
	ds_close(&ds);
	return rc;
}
