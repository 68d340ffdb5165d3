/* An epoll event loop: file events, timers, before-sleep hook, posted calls. */
#include "lib/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* Most events taken from one epoll_wait(). */
#define LOOP_MAX_EVENTS 64
/* First size of the fd table and of the timer heap. */
#define LOOP_MIN_SLOTS 16
/* epoll data tag of the internal wake-up eventfd (no fd/gen pair gives it). */
#define LOOP_WAKE_TAG UINT64_MAX
/* Bits a caller may pass in a mask. */
#define LOOP_USER_MASK (LOOP_READ | LOOP_WRITE)

/* One watched fd; mask 0 means the slot is free. */
struct loop_fd {
	unsigned mask;
	uint32_t gen; /* registration number, to spot stale events */
	loop_fd_fn fn;
	void *arg;
};

/* One pending timer; the heap is ordered by (due, seq). */
struct loop_timer {
	uint64_t due; /* monotonic ms */
	uint64_t seq; /* insertion order, renewed on each re-arm */
	uint64_t id;
	loop_timer_fn fn;
	void *arg;
};

/* One call posted by loop_post(). */
struct loop_post {
	struct loop_post *next;
	loop_post_fn fn;
	void *arg;
};

struct loop {
	int epfd;
	int wakefd;
	uint64_t now; /* cached monotonic ms */

	struct loop_fd *fds; /* indexed by fd */
	int nfds;
	uint32_t gen;

	/* Invariant: cap > n after every loop_timer_add(), so a timer taken
	 * out to run can always be pushed back without allocating. */
	struct loop_timer *heap;
	size_t nheap;
	size_t capheap;
	uint64_t next_id;
	uint64_t next_seq;
	struct loop_timer cur; /* the timer whose callback is running */
	bool cur_running;
	bool cur_cancelled;

	loop_hook_fn before_sleep;
	void *before_sleep_arg;

	pthread_mutex_t post_lock;
	struct loop_post *post_head; /* under post_lock */
	struct loop_post *post_tail;
	atomic_bool stop;

	struct epoll_event events[LOOP_MAX_EVENTS];
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ms(void)
{
	return mono_ns() / 1000000u;
}

static void wake(struct loop *l)
{
	uint64_t one = 1;
	ssize_t n;

	/* EAGAIN means the counter is saturated: a wake-up is pending. */
	n = write(l->wakefd, &one, sizeof(one));
	(void)n;
}

static void drain_wake(struct loop *l)
{
	uint64_t v;
	ssize_t n;

	n = read(l->wakefd, &v, sizeof(v));
	(void)n;
}

int loop_create(struct loop **out)
{
	struct epoll_event ev = { .events = EPOLLIN,
				  .data.u64 = LOOP_WAKE_TAG };
	struct loop *l;
	int err;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->next_id = 1;
	l->now = mono_ms();
	atomic_init(&l->stop, false);
	err = -pthread_mutex_init(&l->post_lock, NULL);
	if (err)
		goto err_free;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		err = -errno;
		goto err_mutex;
	}
	l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->wakefd < 0) {
		err = -errno;
		goto err_epoll;
	}
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) < 0) {
		err = -errno;
		goto err_wake;
	}
	*out = l;
	return 0;

err_wake:
	close(l->wakefd);
err_epoll:
	close(l->epfd);
err_mutex:
	pthread_mutex_destroy(&l->post_lock);
err_free:
	free(l);
	return err;
}

void loop_destroy(struct loop *l)
{
	struct loop_post *p, *next;

	if (!l)
		return;
	for (p = l->post_head; p; p = next) {
		next = p->next;
		free(p);
	}
	pthread_mutex_destroy(&l->post_lock);
	close(l->wakefd);
	close(l->epfd);
	free(l->heap);
	free(l->fds);
	free(l);
}

/* ---- file events ------------------------------------------------------ */

static uint32_t epoll_bits(unsigned mask)
{
	return (mask & LOOP_READ ? EPOLLIN : 0) |
	       (mask & LOOP_WRITE ? EPOLLOUT : 0);
}

static uint64_t fd_tag(int fd, uint32_t gen)
{
	return (uint64_t)gen << 32 | (uint32_t)fd;
}

/* Make room for fd in the table; the fd must be open. */
static int fds_grow(struct loop *l, int fd)
{
	struct loop_fd *fds;
	size_t n;

	if (fd < l->nfds)
		return 0;
	if (fcntl(fd, F_GETFD) < 0)
		return -errno;
	n = CN_MAX((size_t)l->nfds * 2, (size_t)LOOP_MIN_SLOTS);
	n = CN_MAX(n, (size_t)fd + 1);
	n = CN_MIN(n, (size_t)INT_MAX);
	fds = realloc(l->fds, n * sizeof(*fds));
	if (!fds)
		return -ENOMEM;
	memset(fds + l->nfds, 0, (n - (size_t)l->nfds) * sizeof(*fds));
	l->fds = fds;
	l->nfds = (int)n;
	return 0;
}

/* Register a new watch for fd with mask; fills *gen. */
static int fd_ctl_add(struct loop *l, int fd, unsigned mask, uint32_t *gen)
{
	struct epoll_event ev = { .events = epoll_bits(mask) };

	*gen = ++l->gen;
	ev.data.u64 = fd_tag(fd, *gen);
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}

/* Change the events of fd's existing watch to mask. */
static int fd_ctl_mod(struct loop *l, int fd, unsigned mask, uint32_t gen)
{
	struct epoll_event ev = { .events = epoll_bits(mask),
				  .data.u64 = fd_tag(fd, gen) };

	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		return -errno;
	return 0;
}

int loop_fd_add(struct loop *l, int fd, unsigned mask, loop_fd_fn fn, void *arg)
{
	struct loop_fd *f;
	uint32_t gen;
	int err;

	if (fd < 0 || !mask || (mask & ~LOOP_USER_MASK) || !fn)
		return -EINVAL;
	if (fd == l->epfd || fd == l->wakefd)
		return -EINVAL;
	err = fds_grow(l, fd);
	if (err)
		return err;
	f = &l->fds[fd];
	if (f->mask) {
		gen = f->gen;
		err = fd_ctl_mod(l, fd, f->mask | mask, gen);
		if (!err)
			mask |= f->mask;
	}
	/* No watch yet, or the fd was closed and its number reused without
	 * loop_fd_del() (epoll dropped it): start a fresh registration. */
	if (!f->mask || err == -ENOENT)
		err = fd_ctl_add(l, fd, mask, &gen);
	if (err)
		return err;
	f->mask = mask;
	f->gen = gen;
	f->fn = fn;
	f->arg = arg;
	return 0;
}

void loop_fd_del(struct loop *l, int fd, unsigned mask)
{
	struct epoll_event ev;
	struct loop_fd *f;
	unsigned left;

	if (fd < 0 || fd >= l->nfds || !l->fds[fd].mask)
		return;
	f = &l->fds[fd];
	left = f->mask & ~mask;
	if (left == f->mask)
		return;
	if (!left) {
		/* Errors mean the fd is already out of the epoll set. */
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
		memset(f, 0, sizeof(*f));
		return;
	}
	ev.events = epoll_bits(left);
	ev.data.u64 = fd_tag(fd, f->gen);
	epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev);
	f->mask = left;
}

unsigned loop_fd_mask(struct loop *l, int fd)
{
	if (fd < 0 || fd >= l->nfds)
		return 0;
	return l->fds[fd].mask;
}

/* The fd's registration that produced the event, or NULL once it is gone. */
static struct loop_fd *fd_live(struct loop *l, int fd, uint32_t gen)
{
	if (fd >= l->nfds || !l->fds[fd].mask || l->fds[fd].gen != gen)
		return NULL;
	return &l->fds[fd];
}

/* Run the read then the write callback of one event; returns calls made. */
static int dispatch_fd(struct loop *l, const struct epoll_event *ev)
{
	int fd = (int)(uint32_t)ev->data.u64;
	uint32_t gen = (uint32_t)(ev->data.u64 >> 32);
	unsigned err = ev->events & (EPOLLERR | EPOLLHUP) ? LOOP_ERROR : 0;
	struct loop_fd *f;
	int n = 0;

	/* Re-look the slot up after each call: a callback may delete the fd
	 * or grow (move) the table. */
	f = fd_live(l, fd, gen);
	if (f && (f->mask & LOOP_READ) && ((ev->events & EPOLLIN) || err)) {
		f->fn(l, fd, LOOP_READ | err, f->arg);
		n++;
	}
	f = fd_live(l, fd, gen);
	if (f && (f->mask & LOOP_WRITE) && ((ev->events & EPOLLOUT) || err)) {
		f->fn(l, fd, LOOP_WRITE | err, f->arg);
		n++;
	}
	return n;
}

/* ---- posted calls and stop ------------------------------------------ */

int loop_post(struct loop *l, loop_post_fn fn, void *arg)
{
	struct loop_post *p;
	int err;

	p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->next = NULL;
	p->fn = fn;
	p->arg = arg;
	err = -pthread_mutex_lock(&l->post_lock);
	if (err) {
		free(p);
		return err;
	}
	if (l->post_tail)
		l->post_tail->next = p;
	else
		l->post_head = p;
	l->post_tail = p;
	pthread_mutex_unlock(&l->post_lock);
	wake(l);
	return 0;
}

/* Run every call posted so far, outside the lock; returns calls made. */
static int run_posts(struct loop *l)
{
	struct loop_post *p, *next;
	int n = 0;

	drain_wake(l);
	if (pthread_mutex_lock(&l->post_lock))
		return 0;
	p = l->post_head;
	l->post_head = NULL;
	l->post_tail = NULL;
	pthread_mutex_unlock(&l->post_lock);
	for (; p; p = next) {
		next = p->next;
		p->fn(p->arg);
		free(p);
		n++;
	}
	return n;
}

void loop_stop(struct loop *l)
{
	atomic_store(&l->stop, true);
	wake(l);
}

/* ---- timers --------------------------------------------------------- */

static bool timer_before(const struct loop_timer *a, const struct loop_timer *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_swap(struct loop *l, size_t i, size_t j)
{
	struct loop_timer t = l->heap[i];

	l->heap[i] = l->heap[j];
	l->heap[j] = t;
}

static void heap_up(struct loop *l, size_t i)
{
	while (i > 0 && timer_before(&l->heap[i], &l->heap[(i - 1) / 2])) {
		heap_swap(l, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(struct loop *l, size_t i)
{
	size_t min, c;

	for (;;) {
		min = i;
		c = 2 * i + 1;
		if (c < l->nheap && timer_before(&l->heap[c], &l->heap[min]))
			min = c;
		c++;
		if (c < l->nheap && timer_before(&l->heap[c], &l->heap[min]))
			min = c;
		if (min == i)
			return;
		heap_swap(l, i, min);
		i = min;
	}
}

/* Insert t; the caller guarantees room (see the invariant in struct loop). */
static void heap_push(struct loop *l, const struct loop_timer *t)
{
	l->heap[l->nheap] = *t;
	heap_up(l, l->nheap++);
}

static void heap_remove(struct loop *l, size_t i)
{
	l->nheap--;
	if (i == l->nheap)
		return;
	l->heap[i] = l->heap[l->nheap];
	heap_up(l, i);
	heap_down(l, i);
}

static uint64_t due_after(uint64_t delay_ms)
{
	uint64_t now = mono_ms();

	return delay_ms > UINT64_MAX - now ? UINT64_MAX : now + delay_ms;
}

uint64_t loop_timer_add(struct loop *l, uint64_t delay_ms, loop_timer_fn fn,
			void *arg, int *err)
{
	struct loop_timer t;
	struct loop_timer *heap;
	size_t cap;

	if (!fn) {
		*err = -EINVAL;
		return 0;
	}
	if (l->nheap + 2 > l->capheap) {
		cap = CN_MAX(l->capheap * 2, (size_t)LOOP_MIN_SLOTS);
		heap = realloc(l->heap, cap * sizeof(*heap));
		if (!heap) {
			*err = -ENOMEM;
			return 0;
		}
		l->heap = heap;
		l->capheap = cap;
	}
	t.due = due_after(delay_ms);
	t.seq = l->next_seq++;
	t.id = l->next_id++;
	t.fn = fn;
	t.arg = arg;
	heap_push(l, &t);
	*err = 0;
	return t.id;
}

int loop_timer_del(struct loop *l, uint64_t id)
{
	size_t i;

	if (l->cur_running && l->cur.id == id) {
		if (l->cur_cancelled)
			return -ENOENT;
		l->cur_cancelled = true;
		return 0;
	}
	for (i = 0; i < l->nheap; i++) {
		if (l->heap[i].id == id) {
			heap_remove(l, i);
			return 0;
		}
	}
	return -ENOENT;
}

/* Fire the timers due now that were pending when this pass began (a timer
 * re-armed with 0 ms waits for the next iteration). Returns calls made. */
static int run_timers(struct loop *l)
{
	uint64_t limit = l->next_seq;
	int n = 0;
	int ret;

	while (l->nheap && l->heap[0].due <= l->now && l->heap[0].seq < limit) {
		l->cur = l->heap[0];
		heap_remove(l, 0);
		l->cur_running = true;
		l->cur_cancelled = false;
		ret = l->cur.fn(l, l->cur.id, l->cur.arg);
		l->cur_running = false;
		n++;
		if (l->cur_cancelled || ret < 0)
			continue;
		l->cur.due = due_after((uint64_t)ret);
		l->cur.seq = l->next_seq++;
		heap_push(l, &l->cur);
	}
	return n;
}

/* How long to wait: until the next timer, capped by timeout_ms (< 0 for
 * no cap). Rounded up so that the timer is due when the wait ends. */
static int wait_ms(struct loop *l, int timeout_ms)
{
	uint64_t due_ns, now_ns, ms;

	if (!l->nheap)
		return timeout_ms < 0 ? -1 : timeout_ms;
	if (l->heap[0].due > UINT64_MAX / 1000000u) {
		ms = INT_MAX;
	} else {
		due_ns = l->heap[0].due * 1000000u;
		now_ns = mono_ns();
		ms = due_ns <= now_ns ? 0 :
					(due_ns - now_ns + 999999u) / 1000000u;
	}
	if (timeout_ms >= 0 && (uint64_t)timeout_ms < ms)
		ms = (uint64_t)timeout_ms;
	return (int)CN_MIN(ms, (uint64_t)INT_MAX);
}

/* ---- running -------------------------------------------------------- */

int loop_run_once(struct loop *l, int timeout_ms)
{
	int i, nev, n = 0;

	if (l->before_sleep)
		l->before_sleep(l, l->before_sleep_arg);
	nev = epoll_wait(l->epfd, l->events, LOOP_MAX_EVENTS,
			 wait_ms(l, timeout_ms));
	if (nev < 0) {
		if (errno != EINTR)
			return -errno;
		nev = 0;
	}
	l->now = mono_ms();
	for (i = 0; i < nev; i++) {
		if (l->events[i].data.u64 == LOOP_WAKE_TAG)
			n += run_posts(l);
		else
			n += dispatch_fd(l, &l->events[i]);
	}
	n += run_timers(l);
	return n;
}

int loop_run(struct loop *l)
{
	int n;

	for (;;) {
		n = loop_run_once(l, -1);
		if (n < 0)
			return n;
		if (atomic_exchange(&l->stop, false))
			return 0;
	}
}

void loop_set_before_sleep(struct loop *l, loop_hook_fn fn, void *arg)
{
	l->before_sleep = fn;
	l->before_sleep_arg = arg;
}

uint64_t loop_now_ms(struct loop *l)
{
	return l->now;
}
