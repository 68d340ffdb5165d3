/*
 * Requests of a virtio-blk device and the I/O threads that run them, so
 * that several requests of one queue are in flight at once (what O_DIRECT
 * disks need to use their queue depth). The device's worker thread takes
 * a free request, pops a chain into it, and either runs it itself or
 * submits it; I/O threads run submitted requests and signal done_fd; the
 * worker reaps finished requests into the used ring.
 *
 * Threads: get/put/submit/reap/wait_idle from the device's worker only;
 * the I/O threads only call the run function.
 */
#ifndef CANOPY_VMM_BLK_POOL_H
#define CANOPY_VMM_BLK_POOL_H

#include <pthread.h>
#include <stdint.h>

#include "host/vmm/virtq.h"
#include "lib/compiler.h"

/* Requests in flight per disk, and the most I/O threads. */
#define BLK_POOL_REQS 32
#define BLK_POOL_MAX_THREADS 8

struct blk_io {
	void *owner; /* the device model */
	struct virtq_req req;
	struct iovec iov[VIRTQ_MAX_SEGS]; /* scratch for the data part */
	uint32_t written;
	uint8_t status;
	struct blk_io *next;
};

typedef void (*blk_run_fn)(struct blk_io *io);
typedef void (*blk_finish_fn)(struct blk_io *io, struct virtq *q);

struct blk_pool {
	struct blk_io *io; /* BLK_POOL_REQS of them */
	struct blk_io *free; /* worker only */
	unsigned busy; /* submitted and not yet reaped; worker only */
	blk_run_fn run;
	pthread_t threads[BLK_POOL_MAX_THREADS];
	unsigned nthreads;
	pthread_mutex_t lock;
	pthread_cond_t work, idle;
	struct blk_io *jobs, *jobs_tail, *done;
	int stop;
	int done_fd; /* eventfd: some request finished */
};

/* nthreads 0: everything runs on the worker (backends that are not
 * thread-safe). 0 or -errno. */
CN_MUST_CHECK int blk_pool_init(struct blk_pool *p, void *owner,
				unsigned nthreads, blk_run_fn run);
/* Stop the threads (after the worker stopped) and free everything. */
void blk_pool_destroy(struct blk_pool *p);
/* A free request, or NULL when BLK_POOL_REQS are in flight. */
struct blk_io *blk_pool_get(struct blk_pool *p);
void blk_pool_put(struct blk_pool *p, struct blk_io *io);
/* Hand io to the I/O threads. */
void blk_pool_submit(struct blk_pool *p, struct blk_io *io);
/* Finish (finish != NULL) and free every request the threads are done
 * with; returns how many. */
int blk_pool_reap(struct blk_pool *p, struct virtq *q, blk_finish_fn finish);
/* Wait until no submitted request is still running. */
void blk_pool_wait_idle(struct blk_pool *p);

#endif
