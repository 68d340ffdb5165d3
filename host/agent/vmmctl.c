/* canopy-agent: non-blocking VMM control-socket calls on the agent's loop. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "host/agent/vmmctl.h"
#include "lib/frame.h"
#include "lib/loop.h"
#include "lib/sys.h"

struct vmmctl_call {
	struct loop *loop;
	int fd;
	uint64_t id;
	uint64_t timer;
	struct frame_reader rd;
	struct frame_writer wr;
	vmmctl_done_fn cb;
	void *arg;
};

/* Request ids: any nonzero value; the reply must echo it. */
static uint64_t next_id = 1;

static void call_free(struct vmmctl_call *c)
{
	if (c->timer)
		(void)loop_timer_del(c->loop, c->timer);
	loop_fd_del(c->loop, c->fd, LOOP_READ | LOOP_WRITE);
	sys_close(c->fd);
	frame_reader_free(&c->rd);
	frame_writer_free(&c->wr);
	free(c);
}

void vmmctl_call_cancel(struct vmmctl_call *c)
{
	if (c)
		call_free(c);
}

static void finish(struct vmmctl_call *c, int status,
		   const Canopy__V1__VmmReply *rep)
{
	vmmctl_done_fn cb = c->cb;
	void *arg = c->arg;

	call_free(c);
	cb(arg, status, rep);
}

static int on_timeout(struct loop *l, uint64_t id, void *arg)
{
	struct vmmctl_call *c = arg;

	c->timer = 0;
	finish(c, -ETIMEDOUT, NULL);
	return LOOP_TIMER_STOP;
}

/* Decode one reply frame; 1 when the call finished, 0 to wait for more. */
static int take_reply(struct vmmctl_call *c)
{
	const uint8_t *body;
	uint32_t len;
	Canopy__V1__VmmReply *rep;
	int rc = frame_next(&c->rd, &body, &len);

	if (rc == 0)
		return 0;
	if (rc < 0) {
		finish(c, rc, NULL);
		return 1;
	}
	rep = canopy__v1__vmm_reply__unpack(NULL, len, body);
	if (!rep || rep->id != c->id) {
		if (rep)
			canopy__v1__vmm_reply__free_unpacked(rep, NULL);
		finish(c, -EBADMSG, NULL);
		return 1;
	}
	finish(c, 0, rep);
	canopy__v1__vmm_reply__free_unpacked(rep, NULL);
	return 1;
}

static void on_io(struct loop *l, int fd, unsigned mask, void *arg)
{
	struct vmmctl_call *c = arg;
	ssize_t n;

	if (mask & LOOP_WRITE) {
		n = frame_flush(&c->wr, fd);
		if (n < 0) {
			finish(c, (int)n, NULL);
			return;
		}
		if (n == 0)
			loop_fd_del(l, fd, LOOP_WRITE);
	}
	if (!(mask & (LOOP_READ | LOOP_ERROR)))
		return;
	n = frame_reader_fill(&c->rd, fd);
	if (n == -EAGAIN)
		return;
	if (n <= 0) {
		finish(c, n == 0 ? -ECONNRESET : (int)n, NULL);
		return;
	}
	(void)take_reply(c);
}

/* Connect to vm_dir/control.sock through /proc/self/fd/N (short path). */
static int connect_in(const char *vm_dir)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int dfd = sys_open(vm_dir, O_PATH | O_DIRECTORY, 0);
	int fd, rc = 0;

	if (dfd < 0)
		return dfd;
	snprintf(sa.sun_path, sizeof(sa.sun_path),
		 "/proc/self/fd/%d/control.sock", dfd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		rc = -errno;
	else if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
		 errno != EINPROGRESS)
		rc = -errno;
	sys_close(dfd);
	if (rc < 0) {
		sys_close(fd);
		return rc;
	}
	return fd;
}

int vmmctl_call_start(struct loop *l, const char *vm_dir,
		      Canopy__V1__VmmRequest *req, uint32_t timeout_ms,
		      vmmctl_done_fn cb, void *arg, struct vmmctl_call **out)
{
	struct vmmctl_call *c = calloc(1, sizeof(*c));
	int rc, err = 0;

	if (!c)
		return -ENOMEM;
	c->loop = l;
	c->cb = cb;
	c->arg = arg;
	c->id = req->id = next_id++;
	frame_reader_init(&c->rd, VMMCTL_REPLY_MAX);
	frame_writer_init(&c->wr);
	c->fd = connect_in(vm_dir);
	if (c->fd < 0) {
		rc = c->fd;
		goto err_free;
	}
	rc = frame_queue_pb(&c->wr, &req->base);
	if (rc < 0)
		goto err_close;
	rc = loop_fd_add(l, c->fd, LOOP_READ | LOOP_WRITE, on_io, c);
	if (rc < 0)
		goto err_close;
	c->timer = loop_timer_add(l, timeout_ms, on_timeout, c, &err);
	if (!c->timer) {
		rc = err ? err : -ENOMEM;
		goto err_fd;
	}
	*out = c;
	return 0;

err_fd:
	loop_fd_del(l, c->fd, LOOP_READ | LOOP_WRITE);
err_close:
	sys_close(c->fd);
err_free:
	frame_reader_free(&c->rd);
	frame_writer_free(&c->wr);
	free(c);
	return rc;
}
