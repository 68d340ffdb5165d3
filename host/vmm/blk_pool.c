/* virtio-blk requests in flight and the I/O threads that run them (see
 * blk_pool.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "host/vmm/blk_pool.h"

static void *io_main(void *arg)
{
	struct blk_pool *p = arg;
	struct blk_io *io;
	uint64_t one = 1;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->jobs && !p->stop)
			pthread_cond_wait(&p->work, &p->lock);
		if (!p->jobs)
			break; /* stopping, nothing left */
		io = p->jobs;
		p->jobs = io->next;
		if (!p->jobs)
			p->jobs_tail = NULL;
		pthread_mutex_unlock(&p->lock);
		p->run(io);
		pthread_mutex_lock(&p->lock);
		io->next = p->done;
		p->done = io;
		pthread_cond_broadcast(&p->idle);
		(void)!write(p->done_fd, &one, sizeof(one));
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int blk_pool_init(struct blk_pool *p, void *owner, unsigned nthreads,
		  blk_run_fn run)
{
	int rc = 0;

	memset(p, 0, sizeof(*p));
	p->done_fd = -1;
	p->run = run;
	p->io = calloc(BLK_POOL_REQS, sizeof(*p->io));
	if (!p->io)
		return -ENOMEM;
	for (unsigned i = 0; i < BLK_POOL_REQS; i++) {
		p->io[i].owner = owner;
		blk_pool_put(p, &p->io[i]);
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->idle, NULL);
	if (nthreads > BLK_POOL_MAX_THREADS)
		nthreads = BLK_POOL_MAX_THREADS;
	if (nthreads) {
		p->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (p->done_fd < 0)
			rc = -errno;
	}
	for (unsigned i = 0; rc == 0 && i < nthreads; i++) {
		rc = -pthread_create(&p->threads[i], NULL, io_main, p);
		if (rc == 0)
			p->nthreads++;
	}
	if (rc < 0)
		blk_pool_destroy(p);
	return rc;
}

void blk_pool_destroy(struct blk_pool *p)
{
	if (!p->io)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	p->nthreads = 0;
	if (p->done_fd >= 0)
		close(p->done_fd);
	p->done_fd = -1;
	pthread_cond_destroy(&p->idle);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
	free(p->io);
	p->io = NULL;
}

struct blk_io *blk_pool_get(struct blk_pool *p)
{
	struct blk_io *io = p->free;

	if (io)
		p->free = io->next;
	return io;
}

void blk_pool_put(struct blk_pool *p, struct blk_io *io)
{
	io->next = p->free;
	p->free = io;
}

void blk_pool_submit(struct blk_pool *p, struct blk_io *io)
{
	p->busy++;
	io->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->jobs_tail)
		p->jobs_tail->next = io;
	else
		p->jobs = io;
	p->jobs_tail = io;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}

int blk_pool_reap(struct blk_pool *p, struct virtq *q, blk_finish_fn finish)
{
	struct blk_io *io, *next;
	uint64_t n;
	int count = 0;

	if (!p->busy)
		return 0;
	(void)!read(p->done_fd, &n, sizeof(n));
	pthread_mutex_lock(&p->lock);
	io = p->done;
	p->done = NULL;
	pthread_mutex_unlock(&p->lock);
	for (; io; io = next) {
		next = io->next;
		if (finish)
			finish(io, q);
		p->busy--;
		blk_pool_put(p, io);
		count++;
	}
	return count;
}

void blk_pool_wait_idle(struct blk_pool *p)
{
	unsigned done;

	if (!p->busy)
		return;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		done = 0;
		for (struct blk_io *io = p->done; io; io = io->next)
			done++;
		if (done >= p->busy)
			break;
		pthread_cond_wait(&p->idle, &p->lock);
	}
	pthread_mutex_unlock(&p->lock);
}
