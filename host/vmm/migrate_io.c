/* Migration plumbing both ends share: the stream socket, header, state. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "host/vmm/migrate.h"
#include "host/vmm/migrate_tls.h"
#include "host/vmm/snapshot.h"
#include "host/vmm/vmm.h"
#include "lib/crc32c.h"
#include "lib/log.h"
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

void mig_conn_set_timeout(struct mig_conn *c, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000,
			      .tv_usec = (ms % 1000) * 1000 };

	(void)!setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* Reads poll first; only a TLS read inside a record can block. */
	(void)!setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

int mig_conn_readable(struct mig_conn *c)
{
	if (c->rpos < c->rlen || (c->tls && mig_tls_pending(c->tls)))
		return 1;
	return sys_wait_fd(c->fd, POLLIN, 0);
}

void mig_conn_close(struct mig_conn *c)
{
	mig_tls_close(c->tls);
	c->tls = NULL;
	free(c->wbuf);
	free(c->rbuf);
	c->wbuf = c->rbuf = NULL;
	c->wlen = c->rpos = c->rlen = 0;
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

/* Write n bytes from p: all of them or an error. */
static int write_all(struct mig_conn *c, const uint8_t *p, size_t n)
{
	if (c->tls)
		return mig_tls_write(c->tls, p, n);
	while (n) {
		ssize_t w = write(c->fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int mig_conn_flush(struct mig_conn *c)
{
	size_t n = c->wlen;
	int rc;

	if (!n)
		return 0;
	c->wlen = 0;
	rc = write_all(c, c->wbuf, n);
	if (rc == 0) {
		atomic_store_explicit(&c->written, c->bytes,
				      memory_order_relaxed);
		pace(c, n);
	}
	return rc;
}

int mig_conn_put(struct mig_conn *c, const void *p, size_t n)
{
	const uint8_t *q = p;

	if (!c->wbuf && !(c->wbuf = malloc(MIG_CONN_BUF)))
		return -ENOMEM;
	while (n) {
		size_t k = MIG_CONN_BUF - c->wlen;
		int rc;

		if (k == 0) {
			rc = mig_conn_flush(c);
			if (rc < 0)
				return rc;
			continue;
		}
		if (k > n)
			k = n;
		/* The checksum covers the copy: what goes on the wire even
		 * if the guest writes the page meanwhile. */
		memcpy(c->wbuf + c->wlen, q, k);
		c->crc = crc32c(c->crc, c->wbuf + c->wlen, k);
		c->bytes += k;
		c->wlen += k;
		q += k;
		n -= k;
	}
	return 0;
}

int mig_conn_send(struct mig_conn *c, const void *p1, size_t n1, const void *p2,
		  size_t n2)
{
	return mig_conn_put(c, p1, n1)	       ?:
		       mig_conn_put(c, p2, n2) ?:
						 mig_conn_flush(c);
}

int mig_conn_send_buf(struct mig_conn *c, struct buf *b)
{
	int rc = mig_conn_send(c, buf_ptr(b), buf_len(b), NULL, 0);

	buf_reset(b);
	return rc;
}

/* Read what is there, up to n bytes, into p, waiting at most timeout_ms
 * for the first: > 0 bytes or -errno (-ETIMEDOUT, -ECONNRESET on EOF). */
static long read_some(struct mig_conn *c, void *p, size_t n, int timeout_ms)
{
	for (;;) {
		int rc = c->tls && mig_tls_pending(c->tls) ?
				 1 :
				 sys_wait_fd(c->fd, POLLIN, timeout_ms);
		long r;

		if (rc == 0)
			return -ETIMEDOUT;
		if (rc < 0)
			return rc;
		r = c->tls ? mig_tls_read(c->tls, p, n) : sys_read(c->fd, p, n);
		if (r == -EAGAIN && c->tls)
			return -ETIMEDOUT; /* SO_RCVTIMEO inside a record */
		if (r == -EAGAIN || r == -EINTR)
			continue;
		if (r == 0)
			return -ECONNRESET;
		return r;
	}
}

/* Read exactly n bytes, each wait bounded by timeout_ms; through the read
 * buffer, so a run of small records costs one read. */
static int read_exact(struct mig_conn *c, void *p, size_t n, int timeout_ms)
{
	uint8_t *q = p;

	while (n) {
		size_t k = c->rlen - c->rpos;
		long r;

		if (k) {
			k = k < n ? k : n;
			memcpy(q, c->rbuf + c->rpos, k);
			c->rpos += k;
			q += k;
			n -= k;
			continue;
		}
		if (n >= MIG_CONN_BUF) { /* large: straight in */
			r = read_some(c, q, n, timeout_ms);
			if (r < 0)
				return (int)r;
			q += r;
			n -= (size_t)r;
			continue;
		}
		if (!c->rbuf && !(c->rbuf = malloc(MIG_CONN_BUF)))
			return -ENOMEM;
		r = read_some(c, c->rbuf, MIG_CONN_BUF, timeout_ms);
		if (r < 0)
			return (int)r;
		c->rpos = 0;
		c->rlen = (size_t)r;
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
	rc = read_exact(c, p, MIG_REC_HEAD, timeout_ms);
	if (rc == 0)
		rc = mig_rec_head_decode(p, MIG_REC_HEAD, r);
	if (rc < 0)
		return rc;
	buf_commit(&c->in, MIG_REC_HEAD);
	p = (uint8_t *)buf_reserve(&c->in, r->len ? r->len : 1, &err);
	if (!p)
		return err;
	rc = read_exact(c, p, r->len, timeout_ms);
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
	return mig_kvm_cpuid(vm->kvm_fd, h->cpuid, MIG_MAX_CPUID, &h->ncpuid);
}

/* Append section `name`, saved by save(arg, out), as a STATE record. */
static int put_state(struct buf *out, const char *name,
		     int (*save)(void *arg, struct buf *b), void *arg,
		     struct mig_timeline *tl)
{
	size_t at = buf_len(out), len;
	uint8_t *h;
	int rc = mig_state_put(out, name, 0);

	if (rc == 0)
		rc = save(arg, out);
	if (rc < 0)
		return rc;
	/* The body went after the head: the head's len (little endian)
	 * counts the name and the body. */
	len = buf_len(out) - at - MIG_REC_HEAD;
	if (len > MIG_NAME_LEN + MIG_MAX_STATE)
		return -E2BIG;
	h = (uint8_t *)buf_ptr(out) + at + 4;
	for (unsigned i = 0; i < 4; i++)
		h[i] = (uint8_t)(len >> (8 * i));
	if (tl)
		mig_tl_mark(tl, name);
	return 0;
}

static int save_cpu(void *arg, struct buf *b)
{
	return vcpu_state_save(arg, b);
}

static int save_kvm(void *arg, struct buf *b)
{
	return vm_kvm_state_save(arg, b);
}

int mig_state_save(struct vm *vm, struct buf *out, struct mig_timeline *tl)
{
	char name[MIG_NAME_LEN];
	int rc = 0;

	for (unsigned i = 0; i < vm->ncpus && rc == 0; i++) {
		snprintf(name, sizeof(name), "cpu.%u", i);
		rc = put_state(out, name, save_cpu, &vm->vcpus[i], tl);
	}
	if (rc == 0)
		rc = put_state(out, "kvm", save_kvm, vm, tl);
	for (unsigned i = 0; i < vm->ndevs && rc == 0; i++) {
		snprintf(name, sizeof(name), "dev.%s", vm->devs[i].ops->name);
		rc = put_state(out, name, vm->devs[i].ops->save,
			       vm->devs[i].dev, tl);
	}
	return rc;
}

int mig_final_send(struct mig_conn *c, struct buf *recs)
{
	uint32_t crc = crc32c(c->crc, buf_ptr(recs), buf_len(recs));
	int rc;

	/* END right after the records, queued behind the last pages and
	 * written out with them. The connection's own CRC then covers END
	 * too; nothing reads it after END. */
	rc = mig_end_encode(recs, crc, c->bytes + buf_len(recs));
	if (rc == 0)
		rc = mig_conn_send(c, buf_ptr(recs), buf_len(recs), NULL, 0);
	buf_reset(recs);
	return rc;
}

void mig_tl_start(struct mig_timeline *tl)
{
	tl->n = 0;
	tl->t0 = sys_mono_ns();
}

void mig_tl_mark(struct mig_timeline *tl, const char *name)
{
	if (tl->n >= MIG_TL_MAX)
		return;
	tl->ns[tl->n] = sys_mono_ns();
	snprintf(tl->name[tl->n], sizeof(tl->name[0]), "%s", name);
	tl->n++;
}

void mig_tl_format(const struct mig_timeline *tl, char *out, size_t outlen)
{
	size_t off = 0;

	out[0] = 0;
	for (unsigned i = 0; i < tl->n && off < outlen; i++) {
		uint64_t prev = i ? tl->ns[i - 1] : tl->t0;
		int n = snprintf(out + off, outlen - off, "%s%s=%llu",
				 i ? " " : "", tl->name[i],
				 (unsigned long long)(tl->ns[i] - prev) / 1000);

		if (n < 0)
			break;
		off += (size_t)n;
	}
}

uint64_t mig_tl_at_us(const struct mig_timeline *tl, const char *name)
{
	for (unsigned i = 0; i < tl->n; i++)
		if (strcmp(tl->name[i], name) == 0)
			return (tl->ns[i] - tl->t0) / 1000;
	return 0;
}

/* CANOPY_MIG_TEST_PAUSE, parsed once. */
static char test_point[32];
static unsigned test_ms;
static pthread_once_t test_once = PTHREAD_ONCE_INIT;

static void test_env(void)
{
	const char *v = getenv("CANOPY_MIG_TEST_PAUSE");
	const char *colon = v ? strrchr(v, ':') : NULL;

	if (!colon || (size_t)(colon - v) >= sizeof(test_point))
		return;
	memcpy(test_point, v, (size_t)(colon - v));
	test_point[colon - v] = 0;
	test_ms = (unsigned)strtoul(colon + 1, NULL, 10);
	if (test_ms > 60000)
		test_ms = 60000;
}

/* CANOPY_MIG_TEST_IO_TIMEOUT_MS, parsed once; 0 = unset. */
static int test_io_ms;
static pthread_once_t test_io_once = PTHREAD_ONCE_INIT;

static void test_io_env(void)
{
	const char *v = getenv("CANOPY_MIG_TEST_IO_TIMEOUT_MS");
	unsigned long ms = v ? strtoul(v, NULL, 10) : 0;

	test_io_ms = ms >= 100 && ms < MIG_IO_TIMEOUT_MS ? (int)ms : 0;
}

int mig_io_timeout_ms(void)
{
	pthread_once(&test_io_once, test_io_env);
	return test_io_ms ? test_io_ms : MIG_IO_TIMEOUT_MS;
}

void mig_test_pause(const char *point)
{
	struct timespec ts;

	pthread_once(&test_once, test_env);
	if (!test_ms || strcmp(point, test_point) != 0)
		return;
	log_warn("vmm", "migration test pause point", "point=%s ms=%u", point,
		 test_ms);
	ts.tv_sec = test_ms / 1000;
	ts.tv_nsec = (long)(test_ms % 1000) * 1000000;
	nanosleep(&ts, NULL);
}
