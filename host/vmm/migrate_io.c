/* Migration plumbing both ends share: the stream socket, header, state. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "host/vmm/migrate.h"
#include "host/vmm/snapshot.h"
#include "host/vmm/vmm.h"
#include "lib/crc32c.h"
#include "lib/sys.h"

void mig_conn_init(struct mig_conn *c, int fd)
{
	struct timeval tv = { .tv_sec = MIG_IO_TIMEOUT_MS / 1000 };
	int one = 1;

	/* Records end in small writes (END, ACK, COMMIT): without this,
	 * Nagle and the peer's delayed ACK add 40 ms to the switchover. */
	(void)!setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* A peer that stops reading fails a write after the I/O timeout. */
	(void)!setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->t0_ns = sys_mono_ns();
	buf_init(&c->in, MIG_REC_HEAD + MIG_NAME_LEN + MIG_MAX_STATE);
}

void mig_conn_close(struct mig_conn *c)
{
	if (c->fd >= 0)
		sys_close(c->fd);
	c->fd = -1;
	buf_free(&c->in);
}

/* Sleep as long as the bandwidth limit asks after n more bytes. */
static void pace(struct mig_conn *c, size_t n)
{
	uint64_t due_ns, now;

	if (!c->limit_bps)
		return;
	c->sent_since_t0 += n;
	due_ns = c->t0_ns + c->sent_since_t0 * 1000000000ull / c->limit_bps;
	now = sys_mono_ns();
	if (due_ns > now) {
		struct timespec ts = {
			.tv_sec = (time_t)((due_ns - now) / 1000000000ull),
			.tv_nsec = (long)((due_ns - now) % 1000000000ull)
		};

		nanosleep(&ts, NULL);
	}
}

int mig_conn_send(struct mig_conn *c, const void *p1, size_t n1, const void *p2,
		  size_t n2)
{
	struct iovec iov[2] = { { (void *)p1, n1 }, { (void *)p2, n2 } };
	struct iovec *v = iov;
	int cnt = n2 ? 2 : 1;

	c->crc = crc32c(c->crc, p1, n1);
	if (n2)
		c->crc = crc32c(c->crc, p2, n2);
	c->bytes += n1 + n2;
	while (cnt > 0) {
		ssize_t w = writev(c->fd, v, cnt);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		while (cnt > 0 && (size_t)w >= v->iov_len) {
			w -= (ssize_t)v->iov_len;
			v++;
			cnt--;
		}
		if (cnt > 0) {
			v->iov_base = (uint8_t *)v->iov_base + w;
			v->iov_len -= (size_t)w;
		}
	}
	pace(c, n1 + n2);
	return 0;
}

int mig_conn_send_buf(struct mig_conn *c, struct buf *b)
{
	int rc = mig_conn_send(c, buf_ptr(b), buf_len(b), NULL, 0);

	buf_reset(b);
	return rc;
}

/* Read exactly n bytes, each wait bounded by timeout_ms. */
static int read_exact(int fd, void *p, size_t n, int timeout_ms)
{
	uint8_t *q = p;

	while (n) {
		int rc = sys_wait_fd(fd, POLLIN, timeout_ms);
		ssize_t r;

		if (rc == 0)
			return -ETIMEDOUT;
		if (rc < 0)
			return rc;
		r = sys_read(fd, q, n);
		if (r == -EAGAIN || r == -EINTR)
			continue;
		if (r < 0)
			return (int)r;
		if (r == 0)
			return -ECONNRESET;
		q += r;
		n -= (size_t)r;
	}
	return 0;
}

int mig_conn_recv(struct mig_conn *c, struct mig_rec *r, int timeout_ms)
{
	uint8_t *p;
	int err = 0, rc;

	buf_reset(&c->in);
	p = (uint8_t *)buf_reserve(&c->in, MIG_REC_HEAD, &err);
	if (!p)
		return err;
	rc = read_exact(c->fd, p, MIG_REC_HEAD, timeout_ms);
	if (rc == 0)
		rc = mig_rec_head_decode(p, MIG_REC_HEAD, r);
	if (rc < 0)
		return rc;
	buf_commit(&c->in, MIG_REC_HEAD);
	p = (uint8_t *)buf_reserve(&c->in, r->len ? r->len : 1, &err);
	if (!p)
		return err;
	rc = read_exact(c->fd, p, r->len, timeout_ms);
	if (rc < 0)
		return rc;
	buf_commit(&c->in, r->len);
	p = (uint8_t *)buf_ptr(&c->in);
	r->body = p + MIG_REC_HEAD;
	if (r->type != MIG_REC_END) {
		c->crc = crc32c(c->crc, p, MIG_REC_HEAD + (size_t)r->len);
		c->bytes += MIG_REC_HEAD + (uint64_t)r->len;
	}
	return 0;
}

int mig_address_parse(const char *address, char *host, size_t hostlen,
		      uint16_t *port)
{
	const char *colon;
	char *end;
	unsigned long v;

	if (strncmp(address, "tcp:", 4) == 0)
		address += 4;
	colon = strrchr(address, ':');
	if (!colon || colon == address || (size_t)(colon - address) >= hostlen)
		return -EINVAL;
	errno = 0;
	v = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || v > 65535 || colon[1] == '-')
		return -EINVAL;
	memcpy(host, address, (size_t)(colon - address));
	host[colon - address] = 0;
	*port = (uint16_t)v;
	return 0;
}

int mig_connect(const char *address, int timeout_ms)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char host[64];
	uint16_t port;
	socklen_t sl = sizeof(int);
	int fd, rc, soerr = 0;

	if (mig_address_parse(address, host, sizeof(host), &port) < 0 ||
	    port == 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -EINVAL;
	sa.sin_port = htons(port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = sys_set_nonblock(fd, 1);
	if (rc == 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		if (rc == -EINPROGRESS) {
			rc = sys_wait_fd(fd, POLLOUT, timeout_ms);
			rc = rc == 0 ? -ETIMEDOUT : rc < 0 ? rc : 0;
			if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR,
						  &soerr, &sl) < 0)
				soerr = errno;
			if (rc == 0)
				rc = -soerr;
		}
	}
	if (rc == 0)
		rc = sys_set_nonblock(fd, 0);
	if (rc < 0) {
		sys_close(fd);
		return rc;
	}
	return fd;
}

static int supported_cpuid(struct vm *vm, struct mig_header *h)
{
	struct kvm_cpuid2 *cp;
	int rc = 0;

	cp = calloc(1, sizeof(*cp) + MIG_MAX_CPUID * sizeof(cp->entries[0]));
	if (!cp)
		return -ENOMEM;
	cp->nent = MIG_MAX_CPUID;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cp) < 0)
		rc = -errno;
	h->ncpuid = rc == 0 ? cp->nent : 0;
	for (uint32_t i = 0; i < h->ncpuid; i++) {
		const struct kvm_cpuid_entry2 *e = &cp->entries[i];

		h->cpuid[i] = (struct mig_cpuid){ .function = e->function,
						  .index = e->index,
						  .eax = e->eax,
						  .ebx = e->ebx,
						  .ecx = e->ecx,
						  .edx = e->edx };
	}
	free(cp);
	return rc;
}

int mig_header_local(struct vm *vm, struct mig_header *h, char *devices,
		     size_t devlen)
{
	size_t off = 0;

	h->version = MIG_VERSION;
	h->page_size = MIG_PAGE_SIZE;
	h->mem_bytes = vm->ram_size;
	h->cpus = vm->ncpus;
	devices[0] = 0;
	for (unsigned i = 0; i < vm->ndevs; i++) {
		int n = snprintf(devices + off, devlen - off, "%s%s",
				 i ? "," : "", vm->devs[i].ops->name);

		if (n < 0 || (size_t)n >= devlen - off)
			return -E2BIG;
		off += (size_t)n;
	}
	h->devices = devices;
	return supported_cpuid(vm, h);
}

/* Send b's contents as the STATE record name, then empty b. */
static int send_state(struct mig_conn *c, const char *name, struct buf *b)
{
	struct buf h;
	int rc;

	buf_init(&h, 0);
	rc = mig_state_put(&h, name, (uint32_t)buf_len(b));
	if (rc == 0)
		rc = mig_conn_send(c, buf_ptr(&h), buf_len(&h), buf_ptr(b),
				   buf_len(b));
	buf_free(&h);
	buf_reset(b);
	return rc;
}

int mig_state_send(struct vm *vm, struct mig_conn *c)
{
	char name[MIG_NAME_LEN];
	struct buf b;
	int rc = 0;

	buf_init(&b, MIG_MAX_STATE);
	for (unsigned i = 0; i < vm->ncpus && rc == 0; i++) {
		snprintf(name, sizeof(name), "cpu.%u", i);
		rc = vcpu_state_save(&vm->vcpus[i], &b) ?:
							  send_state(c, name, &b);
	}
	if (rc == 0)
		rc = vm_kvm_state_save(vm, &b) ?: send_state(c, "kvm", &b);
	for (unsigned i = 0; i < vm->ndevs && rc == 0; i++) {
		snprintf(name, sizeof(name), "dev.%s", vm->devs[i].ops->name);
		rc = vm->devs[i].ops->save(vm->devs[i].dev, &b) ?:
			     send_state(c, name, &b);
	}
	buf_free(&b);
	return rc;
}

int mig_state_apply(struct vm *vm, const char *name, const uint8_t *p,
		    uint32_t len)
{
	return snap_section_load(vm, name, p, len);
}
