/* etcd_tool: a small CLI over lib/etcd.h so that pytest can drive the client.
 *
 *   etcd_tool [--endpoints A,B,C] [--timeout MS] [--dial-timeout MS] CMD ...
 *     get KEY | range PREFIX [--limit N] [--keys-only] [--rev R]
 *     put KEY VALUE [--lease ID] [--prev] | del KEY [--prefix]
 *     cas KEY OLD NEW | create KEY VALUE [--lease ID]
 *     txn KEY:TARGET:OP:ARG... [-- THEN-OP... [-- ELSE-OP...]]
 *         TARGET version|create|mod|value|lease, OP = > < !=;
 *         ops put:KEY:VALUE del:KEY delp:PREFIX get:KEY range:PREFIX
 *     lease-grant TTL | lease-keepalive ID | lease-revoke ID | lease-ttl ID
 *     watch KEY [--prefix] [--from REV] [--count N] [--wait MS] [--prev]
 *     soak [--seconds S] [--prefix P]
 *
 * Results are JSON lines on stdout. On failure the message goes to stderr
 * and the exit status is the errno (ENOENT 2, EEXIST 17, EINVAL 22, ERANGE
 * 34, ETIMEDOUT 110, ECONNREFUSED 111, ESTALE 116, ...).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/etcd.h"

struct args {
	const char *endpoints;
	struct etcd_options opt;
	int argc; /* positional arguments after the command */
	char **argv;
	long long lease, limit, rev, count, wait_ms, seconds;
	bool prefix, prev, keys_only;
	const char *soak_prefix;
};

static void json_str(const char *s, size_t len)
{
	size_t i;

	putchar('"');
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void json_kv(const struct etcd_kv *kv)
{
	printf("{\"key\":");
	json_str(kv->key, kv->key_len);
	printf(",\"value\":");
	json_str(kv->value, kv->value_len);
	printf(",\"create_revision\":%lld,\"mod_revision\":%lld,"
	       "\"version\":%lld,\"lease\":%lld}",
	       (long long)kv->create_revision, (long long)kv->mod_revision,
	       (long long)kv->version, (long long)kv->lease);
}

static void print_kvs(const struct etcd_kvs *r)
{
	size_t i;

	printf("{\"revision\":%lld,\"more\":%s,\"count\":%lld,\"kvs\":[",
	       (long long)r->revision, r->more ? "true" : "false",
	       (long long)r->count);
	for (i = 0; i < r->n_kvs; i++) {
		if (i)
			putchar(',');
		json_kv(&r->kvs[i]);
	}
	printf("]}\n");
}

static int fail(struct etcd_client *c, const char *what, int rc)
{
	fprintf(stderr, "etcd_tool: %s: %s: %s\n", what, strerror(-rc),
		c ? etcd_client_last_error(c) : "");
	return -rc;
}

static int need(const struct args *a, int n, const char *usage)
{
	if (a->argc == n)
		return 0;
	fprintf(stderr, "etcd_tool: usage: %s\n", usage);
	return -EINVAL;
}

static int cmd_get_range(struct etcd_client *c, struct args *a, bool range)
{
	struct etcd_range_opts o = { .prefix = true,
				     .limit = a->limit,
				     .keys_only = a->keys_only,
				     .revision = a->rev };
	struct etcd_kvs *r;
	int rc = need(a, 1, range ? "range PREFIX" : "get KEY");

	if (rc)
		return -rc;
	rc = range ? etcd_kv_range(c, a->argv[0], &o, &r) :
		     etcd_kv_get(c, a->argv[0], &r);
	if (rc)
		return fail(c, range ? "range" : "get", rc);
	print_kvs(r);
	etcd_kvs_free(r);
	return 0;
}

static int cmd_put(struct etcd_client *c, struct args *a)
{
	struct etcd_kv *prev = NULL;
	int64_t rev = 0;
	int rc = need(a, 2, "put KEY VALUE [--lease ID] [--prev]");

	if (rc)
		return -rc;
	rc = etcd_kv_put(c, a->argv[0], a->argv[1], strlen(a->argv[1]),
			 a->lease, &rev, a->prev ? &prev : NULL);
	if (rc)
		return fail(c, "put", rc);
	printf("{\"revision\":%lld,\"prev\":", (long long)rev);
	if (prev)
		json_kv(prev);
	else
		printf("null");
	printf("}\n");
	etcd_kv_free(prev);
	return 0;
}

static int cmd_del(struct etcd_client *c, struct args *a)
{
	int64_t rev = 0, deleted = 0;
	int rc = need(a, 1, "del KEY [--prefix]");

	if (rc)
		return -rc;
	rc = etcd_kv_delete(c, a->argv[0], a->prefix, &deleted, &rev);
	if (rc)
		return fail(c, "del", rc);
	printf("{\"revision\":%lld,\"deleted\":%lld}\n", (long long)rev,
	       (long long)deleted);
	return 0;
}

static int cmd_cas_create(struct etcd_client *c, struct args *a, bool cas)
{
	int64_t rev = 0;
	int rc =
		need(a, cas ? 3 : 2,
		     cas ? "cas KEY OLD NEW" : "create KEY VALUE [--lease ID]");

	if (rc)
		return -rc;
	if (cas)
		rc = etcd_kv_cas(c, a->argv[0], a->argv[1], strlen(a->argv[1]),
				 a->argv[2], strlen(a->argv[2]), &rev);
	else
		rc = etcd_kv_create(c, a->argv[0], a->argv[1],
				    strlen(a->argv[1]), a->lease, &rev);
	if (rc)
		return fail(c, cas ? "cas" : "create", rc);
	printf("{\"revision\":%lld}\n", (long long)rev);
	return 0;
}

static int parse_ll(const char *s, long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(s, &end, 0);
	if (errno || end == s || *end) {
		fprintf(stderr, "etcd_tool: not a number: %s\n", s);
		return -EINVAL;
	}
	return 0;
}

static int cmd_lease(struct etcd_client *c, struct args *a, const char *cmd)
{
	int64_t id = 0, ttl = 0, granted = 0;
	long long n;
	int rc = need(a, 1, "lease-grant TTL | lease-* ID");

	if (rc || (rc = parse_ll(a->argv[0], &n)))
		return -rc;
	if (strcmp(cmd, "lease-grant") == 0) {
		rc = etcd_lease_grant(c, n, &id, &ttl);
		if (rc == 0)
			printf("{\"id\":%lld,\"ttl\":%lld}\n", (long long)id,
			       (long long)ttl);
	} else if (strcmp(cmd, "lease-keepalive") == 0) {
		rc = etcd_lease_keepalive(c, n, &ttl);
		if (rc == 0)
			printf("{\"ttl\":%lld}\n", (long long)ttl);
	} else if (strcmp(cmd, "lease-revoke") == 0) {
		rc = etcd_lease_revoke(c, n);
		if (rc == 0)
			printf("{}\n");
	} else {
		rc = etcd_lease_ttl(c, n, &ttl, &granted);
		if (rc == 0)
			printf("{\"ttl\":%lld,\"granted\":%lld}\n",
			       (long long)ttl, (long long)granted);
	}
	return rc ? fail(c, cmd, rc) : 0;
}

/* Split s at the first n - 1 colons into f[0..n-1]; the last keeps the
 * rest. -EINVAL if there are fewer fields. */
static int split(char *s, char **f, int n)
{
	int i;

	for (i = 0; i < n - 1; i++) {
		f[i] = s;
		s = strchr(s, ':');
		if (!s)
			return -EINVAL;
		*s++ = '\0';
	}
	f[n - 1] = s;
	return 0;
}

/* "key:target:op:arg", target version|create|mod|value|lease, op = > < !=. */
static int parse_cmp(char *s, struct etcd_cmp *c)
{
	static const char *const targets[] = { "version", "create", "mod",
					       "value", "lease" };
	static const char *const ops[] = { "=", ">", "<", "!=" };
	unsigned t, o;
	long long n = 0;
	char *f[4];

	if (split(s, f, 4))
		return -EINVAL;
	for (t = 0; t < 5 && strcmp(f[1], targets[t]); t++)
		;
	for (o = 0; o < 4 && strcmp(f[2], ops[o]); o++)
		;
	if (t == 5 || o == 4 || (t != ETCD_CMP_VALUE && parse_ll(f[3], &n)))
		return -EINVAL;
	*c = (struct etcd_cmp){ .key = f[0],
				.target = (enum etcd_cmp_target)t,
				.result = (enum etcd_cmp_result)o,
				.number = n,
				.value = f[3],
				.value_len = strlen(f[3]) };
	return 0;
}

/* "put:key:value", "del:key", "delp:prefix", "get:key", "range:prefix". */
static int parse_op(char *s, struct etcd_op *o)
{
	char *f[3];

	if (split(s, f, 2))
		return -EINVAL;
	*o = (struct etcd_op){ .key = f[1] };
	if (strcmp(f[0], "put") == 0) {
		if (split(f[1], f + 1, 2))
			return -EINVAL;
		*o = (struct etcd_op){ .type = ETCD_OP_PUT,
				       .key = f[1],
				       .value = f[2],
				       .value_len = strlen(f[2]) };
	} else if (strcmp(f[0], "del") == 0 || strcmp(f[0], "delp") == 0) {
		o->type = ETCD_OP_DELETE;
		o->prefix = f[0][3] == 'p';
	} else if (strcmp(f[0], "get") == 0 || strcmp(f[0], "range") == 0) {
		o->type = ETCD_OP_RANGE;
		o->prefix = f[0][0] == 'r';
	} else {
		return -EINVAL;
	}
	return 0;
}

static void print_txn(const struct etcd_txn_result *r)
{
	size_t i, j;

	printf("{\"revision\":%lld,\"succeeded\":%s,\"results\":[",
	       (long long)r->revision, r->succeeded ? "true" : "false");
	for (i = 0; i < r->n_results; i++) {
		const struct etcd_op_result *o = &r->results[i];
		static const char *const names[] = { "range", "put", "delete" };

		printf("%s{\"type\":\"%s\",\"deleted\":%lld,\"kvs\":[",
		       i ? "," : "", names[o->type], (long long)o->deleted);
		for (j = 0; j < o->n_kvs; j++) {
			if (j)
				putchar(',');
			json_kv(&o->kvs[j]);
		}
		printf("]}");
	}
	printf("]}\n");
}

/* txn CMP... [-- THEN-OP... [-- ELSE-OP...]] */
static int cmd_txn(struct etcd_client *c, struct args *a)
{
	struct etcd_cmp cmps[70];
	struct etcd_op ops[2][70];
	size_t n[3] = { 0, 0, 0 };
	struct etcd_txn t = { .cmps = cmps,
			      .then_ops = ops[0],
			      .else_ops = ops[1] };
	struct etcd_txn_result *r;
	int i, part = 0, rc = 0;

	for (i = 0; i < a->argc && rc == 0; i++) {
		if (strcmp(a->argv[i], "--") == 0 && part < 2)
			part++;
		else if (n[part] == 70)
			rc = -E2BIG;
		else if (part == 0)
			rc = parse_cmp(a->argv[i], &cmps[n[0]++]);
		else
			rc = parse_op(a->argv[i], &ops[part - 1][n[part]++]);
	}
	if (rc) {
		fprintf(stderr, "etcd_tool: txn: bad argument %s\n",
			a->argv[i - 1]);
		return -rc;
	}
	t.n_cmps = n[0];
	t.n_then = n[1];
	t.n_else = n[2];
	rc = etcd_kv_txn(c, &t, &r);
	if (rc)
		return fail(c, "txn", rc);
	print_txn(r);
	etcd_txn_result_free(r);
	return 0;
}

static void print_event(const struct etcd_event *ev)
{
	printf("{\"type\":\"%s\",\"revision\":%lld,\"key\":",
	       ev->type == ETCD_EVENT_PUT ? "PUT" : "DELETE",
	       (long long)ev->revision);
	json_str(ev->kv.key, ev->kv.key_len);
	printf(",\"value\":");
	json_str(ev->kv.value, ev->kv.value_len);
	printf(",\"prev_value\":");
	if (ev->prev_kv)
		json_str(ev->prev_kv->value, ev->prev_kv->value_len);
	else
		printf("null");
	printf("}\n");
}

/* Print a line each time the watch (re)connects. */
static void print_connects(struct etcd_watch *w, unsigned *seen)
{
	char ep[256], why[512];
	unsigned n = etcd_watch_connects(w);

	if (n == *seen)
		return;
	*seen = n;
	etcd_watch_endpoint(w, ep, sizeof(ep));
	etcd_watch_last_error(w, why, sizeof(why));
	printf("{\"connected\":\"%s\",\"connects\":%u,\"why\":", ep, n);
	json_str(why, strlen(why));
	printf("}\n");
}

static int watch_loop(struct etcd_watch *w, struct args *a)
{
	long long got = 0, left_ms = a->wait_ms ? a->wait_ms : 30000;
	struct etcd_event *ev;
	unsigned seen = 0;
	char why[512];
	int rc;

	while (a->count == 0 || got < a->count) {
		rc = etcd_watch_wait(w, 100, &ev);
		print_connects(w, &seen);
		if (rc == -ETIMEDOUT) {
			left_ms -= 100;
			if (left_ms <= 0)
				break;
			continue;
		}
		if (rc == -ERANGE) {
			printf("{\"compacted\":%lld}\n",
			       (long long)etcd_watch_compact_revision(w));
		}
		if (rc) {
			etcd_watch_last_error(w, why, sizeof(why));
			fprintf(stderr, "etcd_tool: watch: %s: %s\n",
				strerror(-rc), why);
			return -rc;
		}
		print_event(ev);
		etcd_event_free(ev);
		got++;
	}
	if (a->count && got < a->count) {
		fprintf(stderr, "etcd_tool: watch: %lld of %lld events\n", got,
			a->count);
		return ETIMEDOUT;
	}
	return 0;
}

static int cmd_watch(struct etcd_client *c, struct args *a)
{
	struct etcd_watch_opts o = { .prefix = a->prefix,
				     .start_revision = a->rev,
				     .prev_kv = a->prev };
	struct etcd_watch *w;
	int rc = need(a, 1, "watch KEY [--prefix] [--from REV] [--count N]");

	if (rc)
		return -rc;
	rc = etcd_watch_start(c, a->argv[0], &o, &w);
	if (rc)
		return fail(c, "watch", rc);
	rc = watch_loop(w, a);
	etcd_watch_stop(w);
	return rc;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Put then read back keys for secs seconds; print each failure and a
 * summary. Exit status 0 only if every round trip succeeded. */
static int soak(struct etcd_client *c, const char *prefix, long long secs)
{
	long long end = now_ms() + secs * 1000, ok = 0, failed = 0, n;
	struct etcd_kvs *r;
	char key[256], val[64];
	int rc;

	for (n = 0; now_ms() < end; n++) {
		snprintf(key, sizeof(key), "%s%lld", prefix, n % 100);
		snprintf(val, sizeof(val), "v%lld", n);
		rc = etcd_kv_put(c, key, val, strlen(val), 0, NULL, NULL);
		if (rc == 0) {
			rc = etcd_kv_get(c, key, &r);
			if (rc == 0 && strcmp(r->kvs[0].value, val) != 0)
				rc = -EBADMSG;
			etcd_kvs_free(r); /* NULL on failure */
		}
		if (rc == 0) {
			ok++;
			continue;
		}
		failed++;
		printf("{\"fail\":%lld,\"errno\":%d,\"endpoint\":\"%s\","
		       "\"why\":",
		       n, -rc, etcd_client_endpoint(c));
		json_str(etcd_client_last_error(c),
			 strlen(etcd_client_last_error(c)));
		printf("}\n");
	}
	printf("{\"ok\":%lld,\"failed\":%lld}\n", ok, failed);
	return failed ? EIO : 0;
}

/* Options after the global ones and the command; positionals collected. */
static int parse_opts(struct args *a, int argc, char **argv)
{
	static const struct {
		const char *name;
		size_t off;
	} nums[] = {
		{ "--lease", offsetof(struct args, lease) },
		{ "--limit", offsetof(struct args, limit) },
		{ "--rev", offsetof(struct args, rev) },
		{ "--from", offsetof(struct args, rev) },
		{ "--count", offsetof(struct args, count) },
		{ "--wait", offsetof(struct args, wait_ms) },
		{ "--seconds", offsetof(struct args, seconds) },
	};
	int i, rc;
	size_t k;

	a->argv = calloc((size_t)argc + 1, sizeof(char *));
	for (i = 0; a->argv && i < argc; i++) {
		for (k = 0; k < CN_ARRAY_SIZE(nums); k++)
			if (strcmp(argv[i], nums[k].name) == 0)
				break;
		if (k < CN_ARRAY_SIZE(nums)) {
			if (i + 1 >= argc)
				return -EINVAL;
			rc = parse_ll(argv[++i],
				      (long long *)((char *)a + nums[k].off));
			if (rc)
				return rc;
		} else if (strcmp(argv[i], "--prefix") == 0) {
			a->prefix = true;
			if (i + 1 < argc && argv[i + 1][0] != '-')
				a->soak_prefix = argv[++i];
		} else if (strcmp(argv[i], "--prev") == 0) {
			a->prev = true;
		} else if (strcmp(argv[i], "--keys-only") == 0) {
			a->keys_only = true;
		} else {
			a->argv[a->argc++] = argv[i];
		}
	}
	return a->argv ? 0 : -ENOMEM;
}

static int run(struct etcd_client *c, const char *cmd, struct args *a)
{
	if (strcmp(cmd, "get") == 0 || strcmp(cmd, "range") == 0)
		return cmd_get_range(c, a, strcmp(cmd, "range") == 0);
	if (strcmp(cmd, "put") == 0)
		return cmd_put(c, a);
	if (strcmp(cmd, "del") == 0)
		return cmd_del(c, a);
	if (strcmp(cmd, "cas") == 0 || strcmp(cmd, "create") == 0)
		return cmd_cas_create(c, a, strcmp(cmd, "cas") == 0);
	if (strcmp(cmd, "txn") == 0)
		return cmd_txn(c, a);
	if (strncmp(cmd, "lease-", 6) == 0)
		return cmd_lease(c, a, cmd);
	if (strcmp(cmd, "watch") == 0)
		return cmd_watch(c, a);
	if (strcmp(cmd, "soak") == 0)
		return soak(c, a->soak_prefix ? a->soak_prefix : "/soak/",
			    a->seconds ? a->seconds : 10);
	fprintf(stderr, "etcd_tool: unknown command %s\n", cmd);
	return EINVAL;
}

int main(int argc, char **argv)
{
	struct args a = { .endpoints = "127.0.0.1:2379" };
	struct etcd_client *c = NULL;
	const char *why = "";
	long long v;
	int i = 1, rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (strcmp(argv[i], "--endpoints") == 0) {
			a.endpoints = argv[i + 1];
			continue;
		}
		if (parse_ll(argv[i + 1], &v) || v < 0 || v > 600000)
			return EINVAL;
		if (strcmp(argv[i], "--timeout") == 0)
			a.opt.request_timeout_ms = (unsigned)v;
		else if (strcmp(argv[i], "--dial-timeout") == 0)
			a.opt.dial_timeout_ms = (unsigned)v;
		else
			break;
	}
	if (i >= argc) {
		fprintf(stderr, "etcd_tool: usage: etcd_tool [--endpoints "
				"A,B] [--timeout MS] CMD ARGS...\n");
		return EINVAL;
	}
	rc = etcd_client_create(a.endpoints, &a.opt, &c, &why);
	if (rc) {
		fprintf(stderr, "etcd_tool: endpoints: %s: %s\n", strerror(-rc),
			why);
		return -rc;
	}
	rc = parse_opts(&a, argc - i - 1, argv + i + 1);
	rc = rc ? -rc : run(c, argv[i], &a);
	free(a.argv);
	etcd_client_destroy(c);
	return rc;
}
