/* etcd watches: start/stop and the event queue read through an eventfd. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/etcd_internal.h"

void etcd_event_free(struct etcd_event *ev)
{
	if (!ev)
		return;
	etcd_kv_clear(&ev->kv);
	etcd_kv_free(ev->prev_kv);
	free(ev);
}

/* Make the eventfd readable (lock held). */
static void efd_raise(struct etcd_watch *w)
{
	uint64_t one = 1;

	if (write(w->efd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow with one write per event. */
	}
}

/* Make the eventfd unreadable (lock held). */
static void efd_clear(struct etcd_watch *w)
{
	uint64_t v;

	if (read(w->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: already clear. */
	}
}

bool etcd_watch_stopping(struct etcd_watch *w)
{
	bool s;

	pthread_mutex_lock(&w->lock);
	s = w->stop;
	pthread_mutex_unlock(&w->lock);
	return s;
}

int etcd_watch_push(struct etcd_watch *w, struct etcd_event *ev)
{
	pthread_mutex_lock(&w->lock);
	while (w->q_len == ETCD_WATCH_QUEUE_MAX && !w->stop)
		pthread_cond_wait(&w->space, &w->lock);
	if (w->stop) {
		pthread_mutex_unlock(&w->lock);
		etcd_event_free(ev);
		return -ECANCELED;
	}
	w->q[(w->q_head + w->q_len) % ETCD_WATCH_QUEUE_MAX] = ev;
	w->q_len++;
	efd_raise(w);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

void etcd_watch_finish(struct etcd_watch *w, int err, int64_t compact_rev,
		       const char *msg)
{
	pthread_mutex_lock(&w->lock);
	w->final_err = err;
	w->compact_rev = compact_rev;
	snprintf(w->err, sizeof(w->err), "%s", msg);
	efd_raise(w);
	pthread_mutex_unlock(&w->lock);
}

void etcd_watch_note(struct etcd_watch *w, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&w->lock);
	va_start(ap, fmt);
	vsnprintf(w->err, sizeof(w->err), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&w->lock);
}

int etcd_watch_fd(const struct etcd_watch *w)
{
	return w->efd;
}

int etcd_watch_next(struct etcd_watch *w, struct etcd_event **out)
{
	int rc = -EAGAIN;

	*out = NULL;
	pthread_mutex_lock(&w->lock);
	if (w->q_len > 0) {
		*out = w->q[w->q_head];
		w->q_head = (w->q_head + 1) % ETCD_WATCH_QUEUE_MAX;
		w->q_len--;
		pthread_cond_signal(&w->space);
		rc = 0;
	} else if (w->final_err) {
		rc = w->final_err;
	}
	/* Keep the fd readable while anything is left to read. */
	if (w->q_len == 0 && !w->final_err)
		efd_clear(w);
	pthread_mutex_unlock(&w->lock);
	return rc;
}

int etcd_watch_wait(struct etcd_watch *w, int timeout_ms,
		    struct etcd_event **out)
{
	struct pollfd p = { .fd = w->efd, .events = POLLIN };
	uint64_t end =
		etcd_now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
	int rc, left;

	for (;;) {
		rc = etcd_watch_next(w, out);
		if (rc != -EAGAIN)
			return rc;
		left = timeout_ms < 0 ? -1 :
					(int)(end - CN_MIN(end, etcd_now_ms()));
		if (timeout_ms >= 0 && left == 0)
			return -ETIMEDOUT;
		rc = poll(&p, 1, left);
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
}

int64_t etcd_watch_compact_revision(struct etcd_watch *w)
{
	int64_t r;

	pthread_mutex_lock(&w->lock);
	r = w->compact_rev;
	pthread_mutex_unlock(&w->lock);
	return r;
}

unsigned etcd_watch_connects(struct etcd_watch *w)
{
	unsigned n;

	pthread_mutex_lock(&w->lock);
	n = w->connects;
	pthread_mutex_unlock(&w->lock);
	return n;
}

void etcd_watch_endpoint(struct etcd_watch *w, char *buf, size_t len)
{
	pthread_mutex_lock(&w->lock);
	snprintf(buf, len, "%s", w->endpoint);
	pthread_mutex_unlock(&w->lock);
}

void etcd_watch_last_error(struct etcd_watch *w, char *buf, size_t len)
{
	pthread_mutex_lock(&w->lock);
	snprintf(buf, len, "%s", w->err);
	pthread_mutex_unlock(&w->lock);
}

/* Fill w's fixed fields from the client and the request. */
static int watch_setup(struct etcd_watch *w, struct etcd_client *c,
		       const char *key, const struct etcd_watch_opts *opts)
{
	const char *why;

	if (etcd_key_check(key, &why)) {
		etcd_set_error(c, "watch: %s", why);
		return -EINVAL;
	}
	if (opts && opts->start_revision < 0) {
		etcd_set_error(c, "watch: start revision must be >= 0");
		return -EINVAL;
	}
	if (etcd_tls_copy(&w->tls, &c->tls))
		return -ENOMEM;
	w->eps = c->eps;
	w->cur = c->cur;
	w->dial_ms = c->dial_ms;
	w->key_len = strlen(key);
	memcpy(w->key, key, w->key_len + 1);
	if (opts && opts->prefix)
		etcd_prefix_end(key, w->key_len, w->end, &w->end_len);
	w->prev_kv = opts && opts->prev_kv;
	w->next_rev = opts ? opts->start_revision : 0;
	return 0;
}

int etcd_watch_start(struct etcd_client *c, const char *key,
		     const struct etcd_watch_opts *opts,
		     struct etcd_watch **out)
{
	struct etcd_watch *w;
	int rc;

	*out = NULL;
	etcd_clear_error(c);
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	rc = watch_setup(w, c, key, opts);
	if (rc)
		goto out_free;
	rc = -ENOMEM;
	w->q = calloc(ETCD_WATCH_QUEUE_MAX, sizeof(*w->q));
	if (!w->q)
		goto out_free;
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		rc = -errno;
		goto out_q;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->space, NULL);
	grpc_init();
	w->cq = grpc_completion_queue_create_for_next(NULL);
	rc = -pthread_create(&w->thread, NULL, etcd_watch_main, w);
	if (rc)
		goto out_grpc;
	*out = w;
	return 0;
out_grpc:
	grpc_completion_queue_destroy(w->cq);
	grpc_shutdown();
	pthread_cond_destroy(&w->space);
	pthread_mutex_destroy(&w->lock);
	close(w->efd);
out_q:
	free(w->q);
out_free:
	if (rc != -EINVAL)
		etcd_set_error(c, "watch: cannot start (%s)", strerror(-rc));
	etcd_tls_clear(&w->tls);
	free(w);
	return rc;
}

void etcd_watch_stop(struct etcd_watch *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->space);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	while (w->q_len > 0) {
		etcd_event_free(w->q[w->q_head]);
		w->q_head = (w->q_head + 1) % ETCD_WATCH_QUEUE_MAX;
		w->q_len--;
	}
	grpc_completion_queue_destroy(w->cq);
	grpc_shutdown();
	pthread_cond_destroy(&w->space);
	pthread_mutex_destroy(&w->lock);
	close(w->efd);
	free(w->q);
	etcd_tls_clear(&w->tls);
	free(w);
}
