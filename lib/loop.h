/*
 * An epoll event loop in the style of Redis `ae`: file events, timers, a
 * before-sleep hook, cross-thread wake-up through an eventfd and a clean
 * stop. One loop owns the state of one daemon or I/O thread; every callback
 * runs on the thread that called loop_run().
 *
 * Thread rules: loop_post() and loop_stop() may be called from any thread;
 * every other function only from the loop's own thread (or before
 * loop_run() starts).
 */
#ifndef CANOPY_LIB_LOOP_H
#define CANOPY_LIB_LOOP_H

#include <stdint.h>

#include "lib/compiler.h"

struct loop;

/* File event mask bits. */
#define LOOP_READ 1u
#define LOOP_WRITE 2u
/* Set in the mask passed to a callback when the fd reported an error or
 * hang-up (EPOLLERR/EPOLLHUP); the callback should read to see why. */
#define LOOP_ERROR 4u

/* A timer callback returns this to be deleted, or the next delay in ms. */
#define LOOP_TIMER_STOP (-1)

typedef void (*loop_fd_fn)(struct loop *l, int fd, unsigned mask, void *arg);
typedef int (*loop_timer_fn)(struct loop *l, uint64_t id, void *arg);
typedef void (*loop_hook_fn)(struct loop *l, void *arg);
typedef void (*loop_post_fn)(void *arg);

/* Create a loop (epoll fd, eventfd for wake-up). 0 or -errno. */
CN_MUST_CHECK int loop_create(struct loop **out);
/* Free it; fds registered with it are not closed (they are the caller's).
 * Pending timers are dropped; posted calls that never ran are dropped too
 * (their arg is the poster's to free: post only what the loop will run). */
void loop_destroy(struct loop *l);

/* Watch fd for the events in mask (LOOP_READ and/or LOOP_WRITE); a second
 * call for the same fd adds events, each with the callback and arg given
 * last. 0 or -errno (-EINVAL for a bad fd or empty mask). */
CN_MUST_CHECK int loop_fd_add(struct loop *l, int fd, unsigned mask,
			      loop_fd_fn fn, void *arg);
/* Stop watching the events in mask; removing the last one forgets the fd.
 * Safe from inside any callback, including the fd's own. */
void loop_fd_del(struct loop *l, int fd, unsigned mask);
/* The events fd is watched for (0 when unknown). */
unsigned loop_fd_mask(struct loop *l, int fd);

/* Call fn after delay_ms (monotonic clock), then again after the delay it
 * returns until it returns LOOP_TIMER_STOP. Timers due at the same time fire
 * in the order they were added. Returns a timer id > 0 (or 0 with *err set). */
CN_MUST_CHECK uint64_t loop_timer_add(struct loop *l, uint64_t delay_ms,
				      loop_timer_fn fn, void *arg, int *err);
/* Cancel a timer; -ENOENT if it is not pending. Safe from inside a timer
 * callback (including to cancel itself: its return value is then ignored). */
int loop_timer_del(struct loop *l, uint64_t id);

/* Run hook before each wait for events (Redis' beforeSleep). NULL clears. */
void loop_set_before_sleep(struct loop *l, loop_hook_fn fn, void *arg);

/* From any thread: run fn(arg) on the loop thread soon, in posting order.
 * 0 or -ENOMEM. */
CN_MUST_CHECK int loop_post(struct loop *l, loop_post_fn fn, void *arg);
/* From any thread: make loop_run() return after the current iteration. */
void loop_stop(struct loop *l);

/* Process events until loop_stop(). Returns 0, or -errno if epoll fails. */
CN_MUST_CHECK int loop_run(struct loop *l);
/* One iteration: wait at most timeout_ms (-1 = until the next timer or an
 * event) and dispatch. Returns the number of callbacks run or -errno. */
CN_MUST_CHECK int loop_run_once(struct loop *l, int timeout_ms);

/* The loop's cached monotonic time in ms (updated each iteration). */
uint64_t loop_now_ms(struct loop *l);

#endif
