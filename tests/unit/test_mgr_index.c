/* Unit tests for manager/index.c: key parsing and counting of the inventory index. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/etcd.h"
#include "lib/log.h"
#include "manager/index.h"

/* Log lines go to a pipe so that tests can check what was said. */
static int log_pipe[2];

static int setup(void **state)
{
	if (pipe2(log_pipe, O_NONBLOCK))
		return -1;
	log_set_fd(log_pipe[1]);
	log_set_level(LOG_INFO);
	return 0;
}

static int teardown(void **state)
{
	log_set_fd(2);
	close(log_pipe[0]);
	close(log_pipe[1]);
	return 0;
}

/* What was logged since the last call (the read end does not block). */
static void logged(char *buf, size_t n)
{
	size_t len = 0;
	ssize_t got;

	memset(buf, 0, n);
	while (len < n - 1 &&
	       (got = read(log_pipe[0], buf + len, n - 1 - len)) > 0)
		len += (size_t)got;
}

static enum mgr_index_kind parse(const char *key, char *host)
{
	return mgr_index_key_parse(key, strlen(key), host);
}

static void test_parse(void **state)
{
	char host[MGR_ID_MAX + 1];
	char key[400];

	assert_int_equal(parse("/canopy/placement/h1/web1", host),
			 MGR_INDEX_PLACEMENT);
	assert_string_equal(host, "h1");
	assert_int_equal(parse("/canopy/placement/Host_2.lab/vm-9", host),
			 MGR_INDEX_PLACEMENT);
	assert_string_equal(host, "Host_2.lab");
	assert_int_equal(parse("/canopy/hosts/h1", host), MGR_INDEX_HOST);
	assert_int_equal(parse("/canopy/vms/web1", host), MGR_INDEX_VM);
	assert_int_equal(parse("/canopy/running/web1", host),
			 MGR_INDEX_RUNNING);
	/* Keys the index does not count. */
	assert_int_equal(parse("/canopy/tasks/1764201600000-0000a1", host),
			 MGR_INDEX_OTHER);
	assert_int_equal(parse("/canopy/leader", host), MGR_INDEX_OTHER);
	assert_int_equal(parse("/canopy/meta/index-barrier", host),
			 MGR_INDEX_OTHER);
	assert_int_equal(parse("/other/vms/x", host), MGR_INDEX_OTHER);
	assert_int_equal(parse("", host), MGR_INDEX_OTHER);
	/* Malformed keys under counted prefixes. */
	assert_int_equal(parse("/canopy/placement/h1", host), MGR_INDEX_BAD);
	assert_int_equal(parse("/canopy/placement/h1/", host), MGR_INDEX_BAD);
	assert_int_equal(parse("/canopy/placement//web1", host), MGR_INDEX_BAD);
	assert_int_equal(parse("/canopy/placement/h1/web1/x", host),
			 MGR_INDEX_BAD);
	assert_int_equal(parse("/canopy/placement/h 1/web1", host),
			 MGR_INDEX_BAD);
	assert_int_equal(parse("/canopy/placement/h1/Web1", host),
			 MGR_INDEX_BAD);
	assert_int_equal(parse("/canopy/vms/", host), MGR_INDEX_BAD);
	assert_int_equal(parse("/canopy/vms/a/b", host), MGR_INDEX_BAD);
	assert_int_equal(parse("/canopy/running/UPPER", host), MGR_INDEX_BAD);
	assert_int_equal(parse("/canopy/hosts/h/1", host), MGR_INDEX_BAD);
	/* A host id of 65 characters is too long. */
	memset(key, 0, sizeof(key));
	strcpy(key, "/canopy/placement/");
	memset(key + strlen(key), 'h', 65);
	strcat(key, "/web1");
	assert_int_equal(parse(key, host), MGR_INDEX_BAD);
	/* An embedded NUL is not part of a name. */
	assert_int_equal(mgr_index_key_parse("/canopy/vms/ab\0c", 16, host),
			 MGR_INDEX_BAD);
	/* len bounds the key: the same bytes, shorter. */
	assert_int_equal(mgr_index_key_parse("/canopy/vms/web1", 12, host),
			 MGR_INDEX_BAD);
}

static struct etcd_event ev_make(enum etcd_event_type t, const char *key,
				 int64_t version, int64_t rev)
{
	struct etcd_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = t;
	ev.revision = rev;
	ev.kv.key = (char *)key;
	ev.kv.key_len = strlen(key);
	ev.kv.value = (char *)"";
	ev.kv.version = t == ETCD_EVENT_PUT ? version : 0;
	ev.kv.mod_revision = rev;
	return ev;
}

static int apply(struct mgr_index *ix, enum etcd_event_type t, const char *key,
		 int64_t version, int64_t rev)
{
	struct etcd_event ev = ev_make(t, key, version, rev);

	return mgr_index_apply(ix, &ev);
}

static void test_apply_placement(void **state)
{
	struct mgr_index ix;

	assert_int_equal(mgr_index_init(&ix), 0);
	assert_int_equal(mgr_index_host_vms(&ix, "h1"), 0);
	assert_int_equal(
		apply(&ix, ETCD_EVENT_PUT, "/canopy/placement/h1/a", 1, 10), 0);
	assert_int_equal(
		apply(&ix, ETCD_EVENT_PUT, "/canopy/placement/h1/b", 1, 11), 0);
	assert_int_equal(
		apply(&ix, ETCD_EVENT_PUT, "/canopy/placement/h2/c", 1, 12), 0);
	assert_int_equal(mgr_index_host_vms(&ix, "h1"), 2);
	assert_int_equal(mgr_index_host_vms(&ix, "h2"), 1);
	assert_int_equal(ix.placed, 3);
	assert_int_equal(ix.rev, 12);
	/* A rewrite of an existing key (version > 1) counts nothing. */
	assert_int_equal(
		apply(&ix, ETCD_EVENT_PUT, "/canopy/placement/h1/a", 2, 13), 0);
	assert_int_equal(mgr_index_host_vms(&ix, "h1"), 2);
	assert_int_equal(ix.rev, 13);
	/* A move: delete under h1, create under h2. */
	assert_int_equal(apply(&ix, ETCD_EVENT_DELETE, "/canopy/placement/h1/a",
			       0, 14),
			 0);
	assert_int_equal(
		apply(&ix, ETCD_EVENT_PUT, "/canopy/placement/h2/a", 1, 14), 0);
	assert_int_equal(mgr_index_host_vms(&ix, "h1"), 1);
	assert_int_equal(mgr_index_host_vms(&ix, "h2"), 2);
	/* The last VM of a host gone: the host has no entry any more. */
	assert_int_equal(apply(&ix, ETCD_EVENT_DELETE, "/canopy/placement/h1/b",
			       0, 15),
			 0);
	assert_int_equal(mgr_index_host_vms(&ix, "h1"), 0);
	assert_int_equal(ix.n_entries, 1);
	assert_int_equal(ix.placed, 2);
	/* Events of other keys only move the revision. */
	assert_int_equal(
		apply(&ix, ETCD_EVENT_PUT, "/canopy/events/0001", 1, 20), 0);
	assert_int_equal(ix.rev, 20);
	assert_int_equal(ix.placed, 2);
	mgr_index_free(&ix);
	assert_null(ix.buckets);
	mgr_index_free(&ix); /* twice is harmless */
}

static void test_apply_counts(void **state)
{
	struct mgr_index ix;

	assert_int_equal(mgr_index_init(&ix), 0);
	assert_int_equal(apply(&ix, ETCD_EVENT_PUT, "/canopy/hosts/h1", 1, 2),
			 0);
	assert_int_equal(apply(&ix, ETCD_EVENT_PUT, "/canopy/hosts/h1", 7, 3),
			 0);
	assert_int_equal(apply(&ix, ETCD_EVENT_PUT, "/canopy/vms/web1", 1, 4),
			 0);
	assert_int_equal(apply(&ix, ETCD_EVENT_PUT, "/canopy/vms/web2", 1, 4),
			 0);
	assert_int_equal(
		apply(&ix, ETCD_EVENT_PUT, "/canopy/running/web1", 1, 5), 0);
	assert_int_equal(ix.hosts, 1);
	assert_int_equal(ix.vms, 2);
	assert_int_equal(ix.running, 1);
	assert_int_equal(
		apply(&ix, ETCD_EVENT_DELETE, "/canopy/running/web1", 0, 6), 0);
	assert_int_equal(
		apply(&ix, ETCD_EVENT_DELETE, "/canopy/vms/web2", 0, 7), 0);
	assert_int_equal(ix.running, 0);
	assert_int_equal(ix.vms, 1);
	/* A delete of a key never counted: kept at 0, reported, logged. */
	assert_int_equal(apply(&ix, ETCD_EVENT_DELETE, "/canopy/running/web9",
			       0, 8),
			 -ERANGE);
	assert_int_equal(ix.running, 0);
	assert_int_equal(ix.underflows, 1);
	assert_int_equal(apply(&ix, ETCD_EVENT_DELETE, "/canopy/placement/h7/x",
			       0, 9),
			 -ERANGE);
	assert_int_equal(ix.underflows, 2);
	assert_int_equal(ix.rev, 9);
	mgr_index_free(&ix);
}

static void test_bad_keys_ignored_and_logged(void **state)
{
	struct mgr_index ix;
	char out[4096];

	logged(out, sizeof(out)); /* drop earlier lines */
	assert_int_equal(mgr_index_init(&ix), 0);
	assert_int_equal(apply(&ix, ETCD_EVENT_PUT, "/canopy/placement/h1", 1,
			       3),
			 -EINVAL);
	assert_int_equal(apply(&ix, ETCD_EVENT_PUT, "/canopy/vms/Bad!", 1, 4),
			 -EINVAL);
	assert_int_equal(apply(&ix, ETCD_EVENT_DELETE, "/canopy/vms/Bad!", 0,
			       5),
			 -EINVAL);
	assert_int_equal(ix.bad_keys, 3);
	assert_int_equal(ix.vms, 0);
	assert_int_equal(ix.placed, 0);
	assert_int_equal(ix.n_entries, 0);
	assert_int_equal(ix.rev, 5); /* the revision still moves on */
	logged(out, sizeof(out));
	assert_non_null(strstr(out, "inventory index ignores a malformed key"));
	assert_non_null(strstr(out, "/canopy/placement/h1"));
	assert_non_null(strstr(out, "/canopy/vms/Bad!"));
	/* mgr_index_add directly (the snapshot path) says the same. */
	assert_int_equal(mgr_index_add(&ix, "/canopy/hosts/", 14, 1), -EINVAL);
	assert_int_equal(mgr_index_add(&ix, "/canopy/hosts/h1", 16, 1), 0);
	assert_int_equal(ix.hosts, 1);
	mgr_index_free(&ix);
}

/* Many hosts: the table grows and every count stays right. */
static void test_many_hosts(void **state)
{
	char key[MGR_KEY_MAX], host[MGR_ID_MAX + 1];
	struct mgr_index ix;
	int i, j;

	assert_int_equal(mgr_index_init(&ix), 0);
	for (i = 0; i < 2500; i++)
		for (j = 0; j <= i % 5; j++) {
			snprintf(key, sizeof(key), "/canopy/placement/h%d/v%d",
				 i, j);
			assert_int_equal(
				mgr_index_add(&ix, key, strlen(key), 1), 0);
		}
	assert_true(ix.n_buckets >= 2500);
	assert_int_equal(ix.n_entries, 2500);
	for (i = 0; i < 2500; i++) {
		snprintf(host, sizeof(host), "h%d", i);
		assert_int_equal(mgr_index_host_vms(&ix, host), i % 5 + 1);
	}
	assert_int_equal(ix.placed, 500 * (1 + 2 + 3 + 4 + 5));
	assert_int_equal(mgr_index_host_vms(&ix, "h2500"), 0);
	assert_int_equal(mgr_index_host_vms(&ix, NULL), 0);
	mgr_index_free(&ix);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_apply_placement),
		cmocka_unit_test(test_apply_counts),
		cmocka_unit_test(test_bad_keys_ignored_and_logged),
		cmocka_unit_test(test_many_hosts),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
