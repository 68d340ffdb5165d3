/* Unit tests for lib/loop.c: fd events, timers, hook, posts, stop. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/loop.h"

/* Timer that fails a test which would otherwise hang. */
#define SAFETY_MS 2000
/* Iterations allowed to a test that waits for something to happen. */
#define MAX_SPINS 200

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int setup(void **state)
{
	struct loop *l;

	if (loop_create(&l))
		return -1;
	*state = l;
	return 0;
}

static int teardown(void **state)
{
	loop_destroy(*state);
	return 0;
}

static void make_pipe(int p[2])
{
	assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

static void put_byte(int fd)
{
	assert_int_equal(write(fd, "x", 1), 1);
}

/* ---- file events ------------------------------------------------------ */

/* What an fd callback saw. */
struct fd_rec {
	int calls;
	int fd;
	unsigned mask;
	void *arg;
	unsigned masks[8];
};

static void rec_cb(struct loop *l, int fd, unsigned mask, void *arg)
{
	struct fd_rec *r = arg;

	if (r->calls < 8)
		r->masks[r->calls] = mask;
	r->calls++;
	r->fd = fd;
	r->mask = mask;
	r->arg = arg;
}

static void test_pipe_readable(void **state)
{
	struct loop *l = *state;
	struct fd_rec r = { 0 };
	int p[2];

	make_pipe(p);
	assert_int_equal(loop_fd_add(l, p[0], LOOP_READ, rec_cb, &r), 0);
	assert_int_equal(loop_fd_mask(l, p[0]), LOOP_READ);
	/* Nothing to read yet. */
	assert_int_equal(loop_run_once(l, 0), 0);
	assert_int_equal(r.calls, 0);

	put_byte(p[1]);
	assert_int_equal(loop_run_once(l, 1000), 1);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.fd, p[0]);
	assert_int_equal(r.mask, LOOP_READ);
	assert_ptr_equal(r.arg, &r);

	loop_fd_del(l, p[0], LOOP_READ);
	assert_int_equal(loop_fd_mask(l, p[0]), 0);
	assert_int_equal(loop_run_once(l, 0), 0);
	assert_int_equal(r.calls, 1);
	close(p[0]);
	close(p[1]);
}

static void test_write_ready(void **state)
{
	struct loop *l = *state;
	struct fd_rec r = { 0 };
	int p[2];

	make_pipe(p);
	assert_int_equal(loop_fd_add(l, p[1], LOOP_WRITE, rec_cb, &r), 0);
	assert_int_equal(loop_run_once(l, 1000), 1);
	assert_int_equal(r.fd, p[1]);
	assert_int_equal(r.mask, LOOP_WRITE);
	loop_fd_del(l, p[1], LOOP_WRITE);
	close(p[0]);
	close(p[1]);
}

/* A second add extends the mask; the last callback and arg win; a read
 * and a write event on one fd give two calls, read first. */
static void test_add_merges_mask(void **state)
{
	struct loop *l = *state;
	struct fd_rec first = { 0 }, last = { 0 };
	int sv[2];

	assert_int_equal(
		socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(loop_fd_add(l, sv[0], LOOP_READ, rec_cb, &first), 0);
	assert_int_equal(loop_fd_add(l, sv[0], LOOP_WRITE, rec_cb, &last), 0);
	assert_int_equal(loop_fd_mask(l, sv[0]), LOOP_READ | LOOP_WRITE);
	put_byte(sv[1]);
	assert_int_equal(loop_run_once(l, 1000), 2);
	assert_int_equal(first.calls, 0);
	assert_int_equal(last.calls, 2);
	assert_int_equal(last.masks[0], LOOP_READ);
	assert_int_equal(last.masks[1], LOOP_WRITE);

	/* Dropping one event keeps the other. */
	loop_fd_del(l, sv[0], LOOP_WRITE);
	assert_int_equal(loop_fd_mask(l, sv[0]), LOOP_READ);
	assert_int_equal(loop_run_once(l, 1000), 1);
	assert_int_equal(last.masks[2], LOOP_READ);
	loop_fd_del(l, sv[0], LOOP_READ | LOOP_WRITE);
	assert_int_equal(loop_fd_mask(l, sv[0]), 0);
	close(sv[0]);
	close(sv[1]);
}

static void del_self_cb(struct loop *l, int fd, unsigned mask, void *arg)
{
	int *calls = arg;

	(*calls)++;
	loop_fd_del(l, fd, LOOP_READ | LOOP_WRITE);
}

/* Readable and writable at once: the read callback deletes the fd, so the
 * write callback must not run. */
static void test_fd_del_self(void **state)
{
	struct loop *l = *state;
	int calls = 0;
	int sv[2];

	assert_int_equal(
		socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(loop_fd_add(l, sv[0], LOOP_READ | LOOP_WRITE,
				     del_self_cb, &calls),
			 0);
	put_byte(sv[1]);
	assert_int_equal(loop_run_once(l, 1000), 1);
	assert_int_equal(calls, 1);
	assert_int_equal(loop_fd_mask(l, sv[0]), 0);
	assert_int_equal(loop_run_once(l, 0), 0);
	assert_int_equal(calls, 1);
	close(sv[0]);
	close(sv[1]);
}

static void readd_self_cb(struct loop *l, int fd, unsigned mask, void *arg)
{
	struct fd_rec *r = arg;

	rec_cb(l, fd, mask, arg);
	if (r->calls == 1) {
		loop_fd_del(l, fd, LOOP_READ | LOOP_WRITE);
		assert_int_equal(loop_fd_add(l, fd, LOOP_READ | LOOP_WRITE,
					     readd_self_cb, r),
				 0);
	}
}

/* The read callback deletes and re-adds its own fd: the write half of the
 * old event belongs to the old registration and is dropped; the new one
 * reports on the next iteration. */
static void test_fd_del_readd_self(void **state)
{
	struct loop *l = *state;
	struct fd_rec r = { 0 };
	int sv[2];

	assert_int_equal(
		socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(loop_fd_add(l, sv[0], LOOP_READ | LOOP_WRITE,
				     readd_self_cb, &r),
			 0);
	put_byte(sv[1]);
	assert_int_equal(loop_run_once(l, 1000), 1);
	assert_int_equal(r.masks[0], LOOP_READ);
	assert_int_equal(loop_run_once(l, 1000), 2);
	assert_int_equal(r.masks[1], LOOP_READ);
	assert_int_equal(r.masks[2], LOOP_WRITE);
	loop_fd_del(l, sv[0], LOOP_READ | LOOP_WRITE);
	close(sv[0]);
	close(sv[1]);
}

/* Two readable pipes; whichever callback runs first deletes the other (and
 * optionally watches it again): the other's event of this batch is stale. */
struct pair {
	int fd[2];
	int calls[2];
	bool readd;
};

static void del_other_cb(struct loop *l, int fd, unsigned mask, void *arg)
{
	struct pair *pr = arg;
	int me = fd == pr->fd[1];
	int other = pr->fd[!me];

	pr->calls[me]++;
	loop_fd_del(l, other, LOOP_READ);
	if (pr->readd)
		assert_int_equal(
			loop_fd_add(l, other, LOOP_READ, del_other_cb, pr), 0);
	pr->readd = false;
}

static void run_del_other(struct loop *l, bool readd)
{
	struct pair pr = { .readd = readd };
	int a[2], b[2];

	make_pipe(a);
	make_pipe(b);
	pr.fd[0] = a[0];
	pr.fd[1] = b[0];
	assert_int_equal(loop_fd_add(l, a[0], LOOP_READ, del_other_cb, &pr), 0);
	assert_int_equal(loop_fd_add(l, b[0], LOOP_READ, del_other_cb, &pr), 0);
	put_byte(a[1]);
	put_byte(b[1]);
	assert_int_equal(loop_run_once(l, 1000), 1);
	assert_int_equal(pr.calls[0] + pr.calls[1], 1);
	if (readd) {
		/* The new watch fires on the next iteration. */
		assert_int_equal(loop_run_once(l, 1000), 1);
		assert_int_equal(pr.calls[0] + pr.calls[1], 2);
	} else {
		assert_int_equal(loop_run_once(l, 0), 1);
		assert_int_equal(loop_run_once(l, 0), 1);
	}
	loop_fd_del(l, a[0], LOOP_READ);
	loop_fd_del(l, b[0], LOOP_READ);
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
}

static void test_fd_del_other(void **state)
{
	run_del_other(*state, false);
}

static void test_fd_del_readd_other(void **state)
{
	run_del_other(*state, true);
}

/* Closing the writer gives the reader a hang-up: LOOP_ERROR is set. */
static void test_fd_hangup(void **state)
{
	struct loop *l = *state;
	struct fd_rec r = { 0 };
	int p[2];

	make_pipe(p);
	assert_int_equal(loop_fd_add(l, p[0], LOOP_READ, rec_cb, &r), 0);
	close(p[1]);
	assert_int_equal(loop_run_once(l, 1000), 1);
	assert_int_equal(r.mask, LOOP_READ | LOOP_ERROR);
	loop_fd_del(l, p[0], LOOP_READ);
	close(p[0]);
}

/* An fd closed without loop_fd_del() and its number reused can be added. */
static void test_fd_reused_number(void **state)
{
	struct loop *l = *state;
	struct fd_rec r = { 0 };
	int p[2], q[2];

	make_pipe(p);
	assert_int_equal(loop_fd_add(l, p[0], LOOP_READ, rec_cb, &r), 0);
	close(p[0]);
	close(p[1]);
	make_pipe(q);
	assert_int_equal(q[0], p[0]);
	assert_int_equal(loop_fd_add(l, q[0], LOOP_READ, rec_cb, &r), 0);
	put_byte(q[1]);
	assert_int_equal(loop_run_once(l, 1000), 1);
	assert_int_equal(r.fd, q[0]);
	loop_fd_del(l, q[0], LOOP_READ);
	close(q[0]);
	close(q[1]);
}

static void test_fd_bad_input(void **state)
{
	struct loop *l = *state;
	struct fd_rec r = { 0 };
	int p[2], file;

	make_pipe(p);
	assert_int_equal(loop_fd_add(l, -1, LOOP_READ, rec_cb, &r), -EINVAL);
	assert_int_equal(loop_fd_add(l, p[0], 0, rec_cb, &r), -EINVAL);
	assert_int_equal(loop_fd_add(l, p[0], LOOP_ERROR, rec_cb, &r), -EINVAL);
	assert_int_equal(loop_fd_add(l, p[0], 8, rec_cb, &r), -EINVAL);
	assert_int_equal(loop_fd_add(l, p[0], LOOP_READ, NULL, &r), -EINVAL);
	/* Not open. */
	assert_int_equal(loop_fd_add(l, 1 << 20, LOOP_READ, rec_cb, &r),
			 -EBADF);
	/* epoll refuses regular files. */
	file = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	assert_true(file >= 0);
	assert_int_equal(loop_fd_add(l, file, LOOP_READ, rec_cb, &r), -EPERM);
	assert_int_equal(loop_fd_mask(l, file), 0);
	close(file);

	/* Unknown fds are ignored by del and mask. */
	loop_fd_del(l, -1, LOOP_READ);
	loop_fd_del(l, 1 << 20, LOOP_READ);
	loop_fd_del(l, p[0], LOOP_READ);
	assert_int_equal(loop_fd_mask(l, -1), 0);
	assert_int_equal(loop_fd_mask(l, 1 << 20), 0);
	assert_int_equal(loop_run_once(l, 0), 0);
	assert_int_equal(r.calls, 0);
	close(p[0]);
	close(p[1]);
}

/* ---- timers ----------------------------------------------------------- */

/* Order in which timers fired. */
struct order {
	int n;
	int seen[64];
};

struct tmark {
	struct order *o;
	int tag;
};

static int mark_cb(struct loop *l, uint64_t id, void *arg)
{
	struct tmark *m = arg;

	if (m->o->n < 64)
		m->o->seen[m->o->n] = m->tag;
	m->o->n++;
	return LOOP_TIMER_STOP;
}

static void spin_until(struct loop *l, const int *counter, int want)
{
	int i;

	for (i = 0; i < MAX_SPINS && *counter < want; i++)
		assert_true(loop_run_once(l, 100) >= 0);
	assert_int_equal(*counter, want);
}

static void test_timer_order(void **state)
{
	static const uint64_t delays[] = { 30, 10, 20, 10, 0, 10 };
	static const int want[] = { 4, 1, 3, 5, 2, 0 };
	struct loop *l = *state;
	struct order o = { 0 };
	struct tmark m[6];
	uint64_t id, prev = 0;
	size_t i;
	int err;

	for (i = 0; i < 6; i++) {
		m[i].o = &o;
		m[i].tag = (int)i;
		id = loop_timer_add(l, delays[i], mark_cb, &m[i], &err);
		assert_int_equal(err, 0);
		assert_true(id > prev);
		prev = id;
	}
	spin_until(l, &o.n, 6);
	for (i = 0; i < 6; i++)
		assert_int_equal(o.seen[i], want[i]);
}

/* Many timers due in the same millisecond fire in the order added (a heap
 * without the sequence tie-break scrambles them). */
static void test_timer_equal_due_fifo(void **state)
{
	struct loop *l = *state;
	struct order o = { 0 };
	struct tmark m[40];
	int i, err;

	for (i = 0; i < 40; i++) {
		m[i].o = &o;
		m[i].tag = i;
		assert_true(loop_timer_add(l, 5, mark_cb, &m[i], &err) > 0);
		assert_int_equal(err, 0);
	}
	spin_until(l, &o.n, 40);
	for (i = 0; i < 40; i++)
		assert_int_equal(o.seen[i], i);
}

struct rearm {
	int calls;
	int limit;
	uint64_t last;
	uint64_t gap_min;
};

static int rearm_cb(struct loop *l, uint64_t id, void *arg)
{
	struct rearm *r = arg;
	uint64_t t = now_ms();

	if (r->calls && t - r->last < r->gap_min)
		r->gap_min = t - r->last;
	r->last = t;
	return ++r->calls < r->limit ? 3 : LOOP_TIMER_STOP;
}

static void test_timer_rearm(void **state)
{
	struct loop *l = *state;
	struct rearm r = { .limit = 5, .gap_min = UINT64_MAX };
	uint64_t id;
	int err, i;

	id = loop_timer_add(l, 1, rearm_cb, &r, &err);
	assert_true(id > 0);
	spin_until(l, &r.calls, 5);
	/* Re-armed 3 ms later each time (allow 1 ms of clock truncation). */
	assert_true(r.gap_min >= 2);
	for (i = 0; i < 3; i++)
		assert_int_equal(loop_run_once(l, 10), 0);
	assert_int_equal(r.calls, 5);
	assert_int_equal(loop_timer_del(l, id), -ENOENT);
}

/* Re-arms with 0 ms; stops after many runs so that a loop which starves
 * fds fails the test instead of hanging it. */
static int zero_cb(struct loop *l, uint64_t id, void *arg)
{
	return ++(*(int *)arg) < 1000 ? 0 : LOOP_TIMER_STOP;
}

/* A timer re-armed with 0 ms runs once per iteration and lets fd events
 * through. */
static void test_timer_zero_no_starve(void **state)
{
	struct loop *l = *state;
	struct fd_rec r = { 0 };
	int ticks = 0, err, p[2];
	uint64_t id;

	make_pipe(p);
	assert_int_equal(loop_fd_add(l, p[0], LOOP_READ, rec_cb, &r), 0);
	id = loop_timer_add(l, 0, zero_cb, &ticks, &err);
	assert_true(id > 0);
	assert_int_equal(loop_run_once(l, 1000), 1);
	assert_int_equal(ticks, 1);
	put_byte(p[1]);
	assert_int_equal(loop_run_once(l, 1000), 2);
	assert_int_equal(ticks, 2);
	assert_int_equal(r.calls, 1);
	assert_int_equal(loop_timer_del(l, id), 0);
	assert_int_equal(loop_fd_mask(l, p[0]), LOOP_READ);
	loop_fd_del(l, p[0], LOOP_READ);
	assert_int_equal(loop_run_once(l, 0), 0);
	close(p[0]);
	close(p[1]);
}

static int count_cb(struct loop *l, uint64_t id, void *arg)
{
	(*(int *)arg)++;
	return LOOP_TIMER_STOP;
}

static void test_timer_del(void **state)
{
	struct loop *l = *state;
	int fired = 0, err;
	uint64_t a, b;

	a = loop_timer_add(l, 5, count_cb, &fired, &err);
	b = loop_timer_add(l, 5, count_cb, &fired, &err);
	assert_true(a > 0 && b > a);
	assert_int_equal(loop_timer_del(l, a), 0);
	assert_int_equal(loop_timer_del(l, a), -ENOENT);
	assert_int_equal(loop_timer_del(l, 0), -ENOENT);
	assert_int_equal(loop_timer_del(l, b + 1000), -ENOENT);
	spin_until(l, &fired, 1);
	assert_int_equal(loop_timer_del(l, b), -ENOENT);
	assert_int_equal(loop_run_once(l, 20), 0);
	assert_int_equal(fired, 1);

	assert_int_equal(loop_timer_add(l, 5, NULL, NULL, &err), 0);
	assert_int_equal(err, -EINVAL);
}

/* Self-cancel (its return value is then ignored) and cancelling another
 * timer due in the same pass. */
struct cancel {
	int calls;
	uint64_t self;
	uint64_t victim;
	int del_self;
	int del_again;
	int del_victim;
};

static int cancel_cb(struct loop *l, uint64_t id, void *arg)
{
	struct cancel *c = arg;

	c->calls++;
	c->self = id;
	c->del_self = loop_timer_del(l, id);
	c->del_again = loop_timer_del(l, id);
	c->del_victim = loop_timer_del(l, c->victim);
	return 1; /* ignored: cancelled */
}

static void test_timer_self_cancel(void **state)
{
	struct loop *l = *state;
	struct cancel c = { 0 };
	int victim_calls = 0, err, i;
	uint64_t id;

	id = loop_timer_add(l, 0, cancel_cb, &c, &err);
	c.victim = loop_timer_add(l, 0, count_cb, &victim_calls, &err);
	assert_true(id > 0 && c.victim > id);
	spin_until(l, &c.calls, 1);
	assert_int_equal(c.self, id);
	assert_int_equal(c.del_self, 0);
	assert_int_equal(c.del_again, -ENOENT);
	assert_int_equal(c.del_victim, 0);
	for (i = 0; i < 3; i++)
		assert_int_equal(loop_run_once(l, 5), 0);
	assert_int_equal(c.calls, 1);
	assert_int_equal(victim_calls, 0);
	assert_int_equal(loop_timer_del(l, id), -ENOENT);
}

/* The wait ends when the next timer is due, not at the given timeout. */
static void test_run_once_waits_for_timer(void **state)
{
	struct loop *l = *state;
	int fired = 0, err;
	uint64_t t0, dt;

	t0 = now_ms();
	assert_true(loop_timer_add(l, 20, count_cb, &fired, &err) > 0);
	while (!fired && now_ms() - t0 < 1000)
		assert_true(loop_run_once(l, 1000) >= 0);
	dt = now_ms() - t0;
	assert_int_equal(fired, 1);
	assert_true(dt >= 19);
	assert_true(dt < 500);
}

static void test_run_once_idle_timeout(void **state)
{
	struct loop *l = *state;
	uint64_t t0, dt, before;

	before = loop_now_ms(l);
	t0 = now_ms();
	assert_int_equal(loop_run_once(l, 50), 0);
	dt = now_ms() - t0;
	assert_true(dt >= 49);
	assert_true(dt < 550);
	assert_true(loop_now_ms(l) >= before + 49);
}

/* ---- hook, posts, stop ------------------------------------------------ */

static void hook_cb(struct loop *l, void *arg)
{
	(*(int *)arg)++;
}

static void test_before_sleep(void **state)
{
	struct loop *l = *state;
	int hooks = 0, i;

	loop_set_before_sleep(l, hook_cb, &hooks);
	for (i = 0; i < 3; i++)
		assert_int_equal(loop_run_once(l, 0), 0);
	assert_int_equal(hooks, 3);
	loop_set_before_sleep(l, NULL, NULL);
	assert_int_equal(loop_run_once(l, 0), 0);
	assert_int_equal(hooks, 3);
}

/* Shared by the posting thread and the loop thread. */
#define NPOSTS 100
struct xthread {
	struct loop *l;
	pthread_t loop_thread;
	int delay_ms;
	int ran;
	int order[NPOSTS];
	bool wrong_thread;
	bool safety_fired;
	int post_err;
};

struct xitem {
	struct xthread *x;
	int idx;
};

static void item_fn(void *arg)
{
	struct xitem *it = arg;
	struct xthread *x = it->x;

	if (!pthread_equal(pthread_self(), x->loop_thread))
		x->wrong_thread = true;
	if (x->ran < NPOSTS)
		x->order[x->ran] = it->idx;
	x->ran++;
}

static void stop_fn(void *arg)
{
	struct xthread *x = arg;

	loop_stop(x->l);
}

static void *poster(void *arg)
{
	struct xthread *x = arg;
	static struct xitem items[NPOSTS];
	int i, err;

	for (i = 0; i < NPOSTS; i++) {
		items[i].x = x;
		items[i].idx = i;
		err = loop_post(x->l, item_fn, &items[i]);
		if (err)
			x->post_err = err;
	}
	err = loop_post(x->l, stop_fn, x);
	if (err)
		x->post_err = err;
	return NULL;
}

static int safety_cb(struct loop *l, uint64_t id, void *arg)
{
	struct xthread *x = arg;

	x->safety_fired = true;
	loop_stop(l);
	return LOOP_TIMER_STOP;
}

static void test_post_cross_thread(void **state)
{
	struct xthread x = { .l = *state, .loop_thread = pthread_self() };
	pthread_t t;
	uint64_t sid;
	int err, i;

	sid = loop_timer_add(x.l, SAFETY_MS, safety_cb, &x, &err);
	assert_true(sid > 0);
	assert_int_equal(pthread_create(&t, NULL, poster, &x), 0);
	assert_int_equal(loop_run(x.l), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_false(x.safety_fired);
	assert_int_equal(x.post_err, 0);
	assert_false(x.wrong_thread);
	assert_int_equal(x.ran, NPOSTS);
	for (i = 0; i < NPOSTS; i++)
		assert_int_equal(x.order[i], i);
	assert_int_equal(loop_timer_del(x.l, sid), 0);
}

static void *stopper(void *arg)
{
	struct xthread *x = arg;
	struct timespec ts = { 0, (long)x->delay_ms * 1000000L };

	nanosleep(&ts, NULL);
	loop_stop(x->l);
	return NULL;
}

static void test_stop_cross_thread(void **state)
{
	struct xthread x = { .l = *state, .delay_ms = 20 };
	pthread_t t;
	uint64_t sid, t0, dt;
	int err;

	sid = loop_timer_add(x.l, SAFETY_MS, safety_cb, &x, &err);
	assert_true(sid > 0);
	t0 = now_ms();
	assert_int_equal(pthread_create(&t, NULL, stopper, &x), 0);
	assert_int_equal(loop_run(x.l), 0);
	dt = now_ms() - t0;
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_false(x.safety_fired);
	assert_true(dt < 500);
	assert_int_equal(loop_timer_del(x.l, sid), 0);
}

/* A stop requested before loop_run() is not lost; it is consumed. */
static void test_stop_before_run(void **state)
{
	struct xthread x = { .l = *state };
	uint64_t sid;
	int err;

	sid = loop_timer_add(x.l, SAFETY_MS, safety_cb, &x, &err);
	assert_true(sid > 0);
	loop_stop(x.l);
	assert_int_equal(loop_run(x.l), 0);
	assert_false(x.safety_fired);
	/* The wake-up was drained by that iteration. */
	assert_int_equal(loop_run_once(x.l, 0), 0);
	assert_int_equal(loop_timer_del(x.l, sid), 0);
}

static void free_fn(void *arg)
{
	free(arg);
}

/* Destroy with timers, a watched fd and posted calls still pending: the
 * posted args are the poster's, nothing of the loop's must leak. */
static void test_destroy_pending(void **state)
{
	struct loop *l;
	struct fd_rec r = { 0 };
	int fired = 0, err, p[2];
	char *leftover = malloc(8);

	(void)state;
	assert_non_null(leftover);
	assert_int_equal(loop_create(&l), 0);
	make_pipe(p);
	assert_int_equal(loop_fd_add(l, p[0], LOOP_READ, rec_cb, &r), 0);
	assert_true(loop_timer_add(l, 1000, count_cb, &fired, &err) > 0);
	assert_int_equal(loop_post(l, free_fn, leftover), 0);
	loop_destroy(l);
	loop_destroy(NULL);
	free(leftover);
	/* The fd stays the caller's. */
	assert_true(fcntl(p[0], F_GETFD) >= 0);
	close(p[0]);
	close(p[1]);
	assert_int_equal(fired, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_pipe_readable),
		T(test_write_ready),
		T(test_add_merges_mask),
		T(test_fd_del_self),
		T(test_fd_del_readd_self),
		T(test_fd_del_other),
		T(test_fd_del_readd_other),
		T(test_fd_hangup),
		T(test_fd_reused_number),
		T(test_fd_bad_input),
		T(test_timer_order),
		T(test_timer_equal_due_fifo),
		T(test_timer_rearm),
		T(test_timer_zero_no_starve),
		T(test_timer_del),
		T(test_timer_self_cancel),
		T(test_run_once_waits_for_timer),
		T(test_run_once_idle_timeout),
		T(test_before_sleep),
		T(test_post_cross_thread),
		T(test_stop_cross_thread),
		T(test_stop_before_run),
		cmocka_unit_test(test_destroy_pending),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
