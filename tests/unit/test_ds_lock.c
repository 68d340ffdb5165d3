/* Unit tests for the datastore volume, heartbeats and leases: several hosts
 * in one process on a temporary image, with observer clocks moved by hand. */
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

#include "datastore/ds.h"
#include "datastore/ds_rec.h"
#include "lib/sys.h"

#define INTERVAL 50
/* Long enough that no host must fence while a test runs on a loaded
 * machine (fencing starts at TIMEOUT - MARGIN after the last renewal and
 * these tests do not renew); aging is simulated, nothing sleeps. */
#define TIMEOUT 5000
#define MARGIN (TIMEOUT / 4)
#define NS_PER_MS 1000000ull

struct fixture {
	char path[64];
	struct ds a, b;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct ds_format_opts o = { .name = "unit",
				    .size = 8 << 20,
				    .max_locks = 8,
				    .hb_interval_ms = INTERVAL,
				    .hb_timeout_ms = TIMEOUT };
	char err[256];
	int fd;

	snprintf(f->path, sizeof(f->path), "/tmp/test_ds_XXXXXX");
	fd = mkstemp(f->path);
	if (fd < 0)
		return -1;
	close(fd);
	if (ds_format(f->path, &o, 1, err, sizeof(err)) < 0 ||
	    ds_open(&f->a, f->path, 0, err, sizeof(err)) < 0 ||
	    ds_open(&f->b, f->path, 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "setup: %s\n", err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ds_close(&f->a);
	ds_close(&f->b);
	unlink(f->path);
	free(f);
	return 0;
}

static void test_records(void **state)
{
	uint8_t r[DS_REC_SIZE] = { 0 };

	(void)state;
	assert_int_equal(ds_rec_check(r), 1); /* never written */
	r[3] = 7;
	ds_rec_seal(r);
	assert_int_equal(ds_rec_check(r), 0);
	r[100] ^= 1;
	assert_int_equal(ds_rec_check(r), -EBADMSG);
}

static void test_superblock_checks(void **state)
{
	struct fixture *f = *state;
	uint8_t *sb = ds_alloc(&f->a, 4096);
	struct ds_geom g;
	char err[160];

	assert_int_equal(ds_read(&f->a, 0, sb, 4096), 0);
	assert_int_equal(ds_sb_decode(sb, &g, err, sizeof(err)), 0);
	assert_string_equal(g.name, "unit");
	assert_int_equal(g.max_locks, 8);
	assert_int_equal(g.hb_timeout_ms, TIMEOUT);

	sb[12] = 0x20; /* sector 512 -> 544 */
	assert_int_equal(ds_sb_decode(sb, &g, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "checksum"));
	ds_rec_seal(sb);
	assert_int_equal(ds_sb_decode(sb, &g, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "inconsistent geometry"));

	assert_int_equal(ds_read(&f->a, 0, sb, 4096), 0);
	put32(sb + 8, 9); /* version */
	ds_rec_seal(sb);
	assert_int_equal(ds_sb_decode(sb, &g, err, sizeof(err)),
			 -EPROTONOSUPPORT);
	assert_non_null(strstr(err, "format version 9"));

	memcpy(sb, "NOTADSTR", 8);
	assert_int_equal(ds_sb_decode(sb, &g, err, sizeof(err)), -EMEDIUMTYPE);
	ds_free(sb);
}

static void test_heartbeat_liveness(void **state)
{
	struct fixture *f = *state;
	struct ds_host h;
	struct ds_hb_watch w;
	struct ds_hb_slot s;
	char err[160];
	uint64_t t = 1000 * NS_PER_MS;

	assert_int_equal(ds_hb_join(&h, &f->a, 3, "h3", err, sizeof(err)), 0);
	assert_int_equal(h.generation, 1);
	assert_int_equal(ds_hb_renew(&h), 0);
	assert_int_equal(ds_hb_read(&f->b, 3, &s), 0);
	assert_int_equal(s.counter, 2); /* join's own renewal, and ours */
	assert_int_equal(s.flags, DS_HB_LIVE);
	assert_string_equal(s.host_name, "h3");

	ds_hb_watch_init(&w);
	assert_int_equal(ds_hb_liveness(&f->b, &w, 3, t), DS_HOST_UNKNOWN);
	assert_int_equal(ds_hb_watch_poll(&f->b, &w, t), 0);
	assert_int_equal(ds_hb_liveness(&f->b, &w, 3, t), DS_HOST_ALIVE);
	assert_int_equal(ds_hb_liveness(&f->b, &w, 4, t), DS_HOST_UNUSED);
	/* No renewal: alive until the timeout, suspect until the margin. */
	t += (TIMEOUT - 1) * NS_PER_MS;
	assert_int_equal(ds_hb_watch_poll(&f->b, &w, t), 0);
	assert_int_equal(ds_hb_liveness(&f->b, &w, 3, t), DS_HOST_ALIVE);
	t += NS_PER_MS;
	assert_int_equal(ds_hb_liveness(&f->b, &w, 3, t), DS_HOST_SUSPECT);
	t += MARGIN * NS_PER_MS;
	assert_int_equal(ds_hb_liveness(&f->b, &w, 3, t), DS_HOST_DEAD);
	/* One renewal and it is alive again, measured from now. */
	assert_int_equal(ds_hb_renew(&h), 0);
	assert_int_equal(ds_hb_watch_poll(&f->b, &w, t), 0);
	assert_int_equal(ds_hb_liveness(&f->b, &w, 3, t), DS_HOST_ALIVE);
	/* Self-fence: (timeout - margin) after the last good renewal. */
	assert_false(ds_hb_must_fence(
		&h, h.last_ok_issue_ns + (TIMEOUT - MARGIN - 1) * NS_PER_MS));
	assert_true(ds_hb_must_fence(
		&h, h.last_ok_issue_ns + (TIMEOUT - MARGIN) * NS_PER_MS));
	assert_int_equal(ds_hb_leave(&h), 0);
	/* A renewal racing the leave cannot bring the slot back to life. */
	assert_int_equal(ds_hb_renew(&h), -ESHUTDOWN);
	assert_int_equal(ds_hb_watch_poll(&f->b, &w, t), 0);
	assert_int_equal(ds_hb_liveness(&f->b, &w, 3, t), DS_HOST_LEFT);
	/* A cleanly left slot is joined again at once, next generation. */
	assert_int_equal(ds_hb_join(&h, &f->a, 3, "h3", err, sizeof(err)), 0);
	assert_int_equal(h.generation, 2);
	assert_int_equal(ds_hb_join(&h, &f->a, 65, "x", err, sizeof(err)),
			 -ERANGE);
}

/* Make host id look silent for `ms` to watch w. */
static void age(struct ds_hb_watch *w, uint32_t id, uint64_t ms)
{
	w->h[id].changed_ns = sys_mono_ns() - ms * NS_PER_MS;
}

static void test_lock_exclusion_and_break(void **state)
{
	struct fixture *f = *state;
	struct ds_host a, b;
	struct ds_hb_watch wa, wb;
	struct ds_lease l;
	char err[256];

	assert_int_equal(ds_hb_join(&a, &f->a, 1, "a", err, sizeof(err)), 0);
	assert_int_equal(ds_hb_join(&b, &f->b, 2, "b", err, sizeof(err)), 0);
	ds_hb_watch_init(&wa);
	ds_hb_watch_init(&wb);
	assert_int_equal(ds_hb_watch_poll(&f->a, &wa, sys_mono_ns()), 0);

	assert_int_equal(ds_lock_acquire(&a, &wa, 4, err, sizeof(err)), 0);
	assert_int_equal(ds_lock_acquire(&a, &wa, 4, err, sizeof(err)), 0);
	assert_int_equal(ds_lease_read(&f->b, 4, &l), 0);
	assert_int_equal(l.owner, 1);
	assert_int_equal(l.owner_generation, a.generation);
	assert_int_equal(l.lver, 1);

	/* Acquisition reads the heartbeats itself: a is seen alive. */
	assert_int_equal(ds_lock_acquire(&b, &wb, 4, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "locked by host 1"));
	age(&wb, 1, TIMEOUT + MARGIN / 4); /* suspect, far from dead */
	assert_int_equal(ds_lock_acquire(&b, &wb, 4, err, sizeof(err)),
			 -EAGAIN);
	assert_non_null(strstr(err, "breakable after"));
	age(&wb, 1, TIMEOUT + MARGIN);
	assert_int_equal(ds_lock_acquire(&b, &wb, 4, err, sizeof(err)), 0);
	assert_int_equal(ds_lease_read(&f->a, 4, &l), 0);
	assert_int_equal(l.owner, 2);
	assert_int_equal(l.lver, 2);
	/* a lost it: it may not release b's lease. */
	assert_int_equal(ds_lock_release(&a, 4), -EPERM);
	assert_int_equal(ds_lock_release(&b, 4), 0);
	assert_int_equal(ds_lease_read(&f->a, 4, &l), 0);
	assert_int_equal(l.owner, 0);
	/* Free: a takes it in the next instance. */
	assert_int_equal(ds_lock_acquire(&a, &wa, 4, err, sizeof(err)), 0);
	assert_int_equal(ds_lease_read(&f->a, 4, &l), 0);
	assert_int_equal(l.lver, 3);
	assert_int_equal(ds_lock_acquire(&a, &wa, 8, err, sizeof(err)),
			 -ERANGE);
}

static void test_owner_rejoined_and_left(void **state)
{
	struct fixture *f = *state;
	struct ds_host a, a2, b;
	struct ds_hb_watch wb;
	char err[256];

	assert_int_equal(ds_hb_join(&a, &f->a, 1, "a", err, sizeof(err)), 0);
	assert_int_equal(ds_hb_join(&b, &f->b, 2, "b", err, sizeof(err)), 0);
	ds_hb_watch_init(&wb);
	assert_int_equal(ds_lock_acquire(&a, &wb, 0, err, sizeof(err)), 0);
	assert_int_equal(ds_lock_acquire(&a, &wb, 1, err, sizeof(err)), 0);
	/* a crashes; its next incarnation joins (after watching the slot for
	 * the break wait) and takes its own lease over at once. */
	assert_int_equal(ds_hb_join(&a2, &f->a, 1, "a", err, sizeof(err)), 0);
	assert_int_equal(a2.generation, a.generation + 1);
	assert_int_equal(ds_lock_acquire(&a2, &wb, 0, err, sizeof(err)), 0);
	/* The old incarnation has fenced: it may not write a lease. */
	assert_int_equal(ds_lock_acquire(&a, &wb, 2, err, sizeof(err)),
			 -ETIMEDOUT);
	/* Its lease on lock 1: b may break it at once, because the owner's
	 * generation moved on. (b renews first: nothing else does here.) */
	assert_int_equal(ds_hb_renew(&b), 0);
	assert_int_equal(ds_lock_acquire(&b, &wb, 1, err, sizeof(err)), 0);
	assert_int_equal(ds_lock_acquire(&b, &wb, 0, err, sizeof(err)), -EBUSY);
}

static void test_shared_locks(void **state)
{
	struct fixture *f = *state;
	struct ds_host a, b, c;
	struct ds_hb_watch wa, wb, wc;
	char err[256];

	assert_int_equal(ds_hb_join(&a, &f->a, 1, "a", err, sizeof(err)), 0);
	assert_int_equal(ds_hb_join(&b, &f->b, 2, "b", err, sizeof(err)), 0);
	assert_int_equal(ds_hb_join(&c, &f->a, 3, "c", err, sizeof(err)), 0);
	ds_hb_watch_init(&wa);
	ds_hb_watch_init(&wb);
	ds_hb_watch_init(&wc);
	assert_int_equal(ds_hb_watch_poll(&f->a, &wa, sys_mono_ns()), 0);
	assert_int_equal(ds_hb_watch_poll(&f->b, &wb, sys_mono_ns()), 0);
	assert_int_equal(ds_hb_watch_poll(&f->a, &wc, sys_mono_ns()), 0);

	/* Two readers share; a writer is refused while they hold it. */
	assert_int_equal(ds_lock_acquire_mode(&a, &wa, 2, 1, err, sizeof(err)),
			 0);
	assert_int_equal(ds_lock_acquire_mode(&b, &wb, 2, 1, err, sizeof(err)),
			 0);
	assert_int_equal(ds_lock_acquire_mode(&c, &wc, 2, 0, err, sizeof(err)),
			 -EBUSY);
	assert_non_null(strstr(err, "shared by host"));
	assert_int_equal(ds_lock_release_shared(&a, 2), 0);
	assert_int_equal(ds_lock_release_shared(&a, 2), -EPERM);
	assert_int_equal(ds_lock_acquire_mode(&c, &wc, 2, 0, err, sizeof(err)),
			 -EBUSY);
	/* b dies holding it shared: its mark is stale once b is dead. */
	age(&wc, 2, TIMEOUT + MARGIN);
	assert_int_equal(ds_lock_acquire_mode(&c, &wc, 2, 0, err, sizeof(err)),
			 0);
	/* Held exclusively: nobody may share it. */
	assert_int_equal(ds_lock_acquire_mode(&a, &wa, 2, 1, err, sizeof(err)),
			 -EBUSY);
	assert_non_null(strstr(err, "locked by host 3"));
	assert_int_equal(ds_lock_release(&c, 2), 0);
	assert_int_equal(ds_lock_acquire_mode(&a, &wa, 2, 1, err, sizeof(err)),
			 0);
}

static void test_corrupt_lease_is_an_error(void **state)
{
	struct fixture *f = *state;
	struct ds_host a;
	struct ds_hb_watch w;
	uint8_t *junk = ds_alloc(&f->a, 512);
	char err[256];

	memset(junk, 0x5a, 512);
	assert_int_equal(ds_write(&f->a, f->a.g.lock_off, junk, 512), 0);
	assert_int_equal(ds_hb_join(&a, &f->a, 1, "a", err, sizeof(err)), 0);
	ds_hb_watch_init(&w);
	assert_int_equal(ds_lock_acquire(&a, &w, 0, err, sizeof(err)),
			 -EBADMSG);
	assert_non_null(strstr(err, "corrupt sector"));
	/* The other locks are unaffected. */
	assert_int_equal(ds_lock_acquire(&a, &w, 1, err, sizeof(err)), 0);
	ds_free(junk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_records),
		cmocka_unit_test_setup_teardown(test_superblock_checks, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_heartbeat_liveness, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_lock_exclusion_and_break,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_owner_rejoined_and_left,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_lease_is_an_error,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_locks, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
