/* NIC backends: the --net option parser, default MACs, and the TAP and unix
 * datagram backends (one Ethernet frame per read/write or datagram). */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "host/vmm/virtio_net.h"
#include "lib/hex.h"
#include "lib/sys.h"

/* The TAP clone device. */
#define NET_TUN_PATH "/dev/net/tun"

struct net_file {
	struct net_backend b;
	int is_unix;
	int connected; /* unix: out_fd is connected to remote */
	struct sockaddr_un remote;
	char local[NET_PATH_MAX + 1]; /* removed at close; "" autobound */
};

int net_mac_parse(const char *s, uint8_t mac[NET_MAC_LEN])
{
	unsigned any = 0;

	if (strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < NET_MAC_LEN; i++) {
		if (cn_hex_decode(s + 3 * i, &mac[i], 1) ||
		    (i < 5 && s[3 * i + 2] != ':'))
			return -EINVAL;
		any |= mac[i];
	}
	/* A NIC's own address is unicast (bit 0 of the first byte clear). */
	return (mac[0] & 1) || !any ? -EINVAL : 0;
}

void net_mac_default(const char *name, unsigned index, uint8_t mac[NET_MAC_LEN])
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (const char *p = name ? name : ""; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	for (int i = 0; i < 4; i++)
		h = (h ^ ((index >> (8 * i)) & 0xff)) * 16777619u;
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}

static int ifname_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > NET_IFNAME_MAX)
		return 0;
	for (; *s; s++)
		if (*s <= ' ' || *s == '/' || *s == ':' || *s > '~')
			return 0;
	return 1;
}

static int path_ok(const char *s)
{
	return s[0] && strlen(s) <= NET_PATH_MAX;
}

#define NET_USAGE "tap=NAME[,mac=M] or unix=PATH[,local=PATH][,mac=M]"

/* One key=value item of the option; 0 or -EINVAL with err set. */
static int spec_item(struct net_spec *o, char *tok, char *err, size_t errlen)
{
	char *v = strchr(tok, '=');

	if (!v)
		goto unknown;
	*v++ = 0;
	if (strcmp(tok, "tap") == 0 && !o->tap && !o->remote) {
		o->tap = v;
		if (!ifname_ok(v)) {
			snprintf(err, errlen,
				 "--net: tap=NAME needs an interface name of "
				 "1 to %u characters without '/', ':' or "
				 "spaces",
				 NET_IFNAME_MAX);
			return -EINVAL;
		}
	} else if ((strcmp(tok, "unix") == 0 && !o->remote && !o->tap) ||
		   (strcmp(tok, "local") == 0 && !o->local)) {
		if (!path_ok(v)) {
			snprintf(err, errlen,
				 "--net: %s=PATH needs a path of 1 to %u bytes",
				 tok, NET_PATH_MAX);
			return -EINVAL;
		}
		*(tok[0] == 'u' ? &o->remote : &o->local) = v;
	} else if (strcmp(tok, "mac") == 0 && !o->has_mac) {
		if (net_mac_parse(v, o->mac) < 0) {
			snprintf(err, errlen,
				 "--net: mac=%s is not a unicast address like "
				 "52:54:00:12:34:56",
				 v);
			return -EINVAL;
		}
		o->has_mac = 1;
	} else {
		v[-1] = '=';
		goto unknown;
	}
	return 0;
unknown:
	snprintf(err, errlen,
		 "--net: '%s' not understood (or given twice); expected "
		 "%s",
		 tok, NET_USAGE);
	return -EINVAL;
}

int net_spec_parse(const char *opt, struct net_spec *out, char *err,
		   size_t errlen)
{
	char *save = NULL, *tok;
	int rc;

	memset(out, 0, sizeof(*out));
	if (strlen(opt) >= sizeof(out->text)) {
		snprintf(err, errlen, "--net: option too long");
		return -EINVAL;
	}
	strcpy(out->text, opt);
	for (tok = strtok_r(out->text, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		rc = spec_item(out, tok, err, errlen);
		if (rc < 0)
			return rc;
	}
	if (!out->tap && !out->remote) {
		snprintf(err, errlen, "--net: a backend is required: %s",
			 NET_USAGE);
		return -EINVAL;
	}
	if (out->local && !out->remote) {
		snprintf(err, errlen, "--net: local=PATH goes with unix=PATH");
		return -EINVAL;
	}
	return 0;
}

/* ---- the backends -------------------------------------------------------- */

/*
 * unix: frames are sent from a second socket, out_fd, connected to the
 * peer: poll's POLLOUT on it waits for room in the peer's queue (an
 * unconnected datagram socket is always "writable" and the device would
 * spin). The bound socket, fd, stays unconnected, so it takes frames from
 * anyone, also from a peer that restarted (a new socket at the same path);
 * a connected one would refuse those, and disconnecting drops its queue.
 * The peer sees out_fd's (abstract, autobound) address as the source;
 * whatever comes to that address is read too.
 */
static ssize_t unix_send(struct net_file *f, const struct iovec *iov, int n)
{
	struct msghdr m = { .msg_iov = (struct iovec *)iov,
			    .msg_iovlen = (size_t)n };

	/* Twice at most: a peer that restarted is connected to again. */
	for (int tries = 0; tries < 2; tries++) {
		ssize_t r;

		if (!f->connected) {
			if (connect(f->b.out_fd, (struct sockaddr *)&f->remote,
				    sizeof(f->remote)) < 0)
				return -errno; /* no peer (yet): frame lost */
			f->connected = 1;
		}
		r = sendmsg(f->b.out_fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r >= 0)
			return r;
		if (errno != ECONNREFUSED && errno != ENOTCONN)
			return -errno;
		f->connected = 0; /* the peer went away */
	}
	return -ECONNREFUSED;
}

static ssize_t file_send(struct net_backend *b, const struct iovec *iov, int n)
{
	struct net_file *f = (struct net_file *)b;
	ssize_t r;

	if (f->is_unix)
		return unix_send(f, iov, n);
	r = writev(b->fd, iov, n);
	return r < 0 ? -errno : r;
}

static ssize_t file_recv(struct net_backend *b, const struct iovec *iov, int n)
{
	struct net_file *f = (struct net_file *)b;
	struct msghdr m = { .msg_iov = (struct iovec *)iov,
			    .msg_iovlen = (size_t)n };
	ssize_t r;

	if (!f->is_unix) {
		r = readv(b->fd, iov, n);
		return r < 0 ? -errno : r;
	}
	/* MSG_TRUNC: the datagram's real length, even when cut. */
	r = recvmsg(b->fd, &m, MSG_DONTWAIT | MSG_TRUNC);
	if (r < 0 && errno == EAGAIN)
		r = recvmsg(b->out_fd, &m, MSG_DONTWAIT | MSG_TRUNC);
	return r < 0 ? -errno : r;
}

/* A socket's pending error (e.g. ECONNRESET) is read and so cleared;
 * a TAP fd that reports an error has lost its interface. */
static int file_error(struct net_backend *b)
{
	struct net_file *f = (struct net_file *)b;
	int fds[2] = { b->fd, b->out_fd };

	if (!f->is_unix)
		return -EIO;
	for (int i = 0; i < 2; i++) {
		struct pollfd p = { .fd = fds[i] };
		int e = 0;
		socklen_t l = sizeof(e);

		if (getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &e, &l) < 0)
			return -errno;
		if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLNVAL)))
			return -EPIPE; /* shut down: it stays so */
	}
	return 0;
}

static void file_close(struct net_backend *b)
{
	struct net_file *f = (struct net_file *)b;

	if (b->out_fd >= 0 && b->out_fd != b->fd)
		sys_close(b->out_fd);
	if (b->fd >= 0)
		sys_close(b->fd);
	if (f->local[0])
		(void)unlink(f->local);
	free(f);
}

static const struct net_backend_ops file_ops = {
	.send = file_send,
	.recv = file_recv,
	.error = file_error,
	.close = file_close,
};

static int tap_open(struct net_file *f, const char *name, char *err,
		    size_t errlen)
{
	struct ifreq ifr;

	f->b.fd = sys_open(NET_TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
	if (f->b.fd < 0) {
		snprintf(err, errlen, "--net tap=%s: %s: %s", name,
			 NET_TUN_PATH, strerror(-f->b.fd));
		return f->b.fd;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(f->b.fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;

		snprintf(err, errlen, "--net tap=%s: cannot attach: %s%s", name,
			 strerror(e),
			 e == EPERM ? " (creating or attaching a TAP "
				      "interface needs CAP_NET_ADMIN or "
				      "its owner)" :
			 e == EBUSY ? " (another process holds it, or it is "
				      "not a TAP interface)" :
				      "");
		return -e;
	}
	f->b.out_fd = f->b.fd;
	snprintf(f->b.desc, sizeof(f->b.desc), "tap %s", name);
	return 0;
}

/* Is a socket file at path alive (someone bound to it)? */
static int unix_alive(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc;

	if (s < 0)
		return 1; /* cannot tell: do not remove it */
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	rc = connect(s, (struct sockaddr *)&a, sizeof(a)) == 0 ||
	     errno != ECONNREFUSED;
	close(s);
	return rc;
}

static int unix_bind(struct net_file *f, const char *path, char *err,
		     size_t errlen)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct stat st;
	int e;

	if (!path) /* autobind: an abstract name the peer sees as source */
		return bind(f->b.fd, (struct sockaddr *)&a,
			    sizeof(sa_family_t)) < 0 ?
			       -errno :
			       0;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (bind(f->b.fd, (struct sockaddr *)&a, sizeof(a)) == 0)
		goto bound;
	e = errno;
	if (e != EADDRINUSE || lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode) ||
	    unix_alive(path)) {
		snprintf(err, errlen, "--net local=%s: %s%s", path, strerror(e),
			 e == EADDRINUSE ? " (another process is bound "
					   "there, or it is not a socket)" :
					   "");
		return -e;
	}
	(void)unlink(path); /* a stale socket of a dead process */
	if (bind(f->b.fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		snprintf(err, errlen, "--net local=%s: %s", path,
			 strerror(errno));
		return -errno;
	}
bound:
	snprintf(f->local, sizeof(f->local), "%s", path);
	return 0;
}

static int unix_open(struct net_file *f, const struct net_spec *s, char *err,
		     size_t errlen)
{
	int rc;

	f->is_unix = 1;
	f->remote.sun_family = AF_UNIX;
	snprintf(f->remote.sun_path, sizeof(f->remote.sun_path), "%s",
		 s->remote);
	f->b.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f->b.fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "--net unix=%s: socket: %s", s->remote,
			 strerror(-rc));
		return rc;
	}
	rc = unix_bind(f, s->local, err, errlen);
	if (rc < 0 && !err[0])
		snprintf(err, errlen, "--net unix=%s: bind: %s", s->remote,
			 strerror(-rc));
	if (rc == 0) {
		/* The sending socket, autobound so the peer can answer it. */
		struct sockaddr_un a = { .sun_family = AF_UNIX };

		f->b.out_fd = socket(
			AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (f->b.out_fd < 0 || bind(f->b.out_fd, (struct sockaddr *)&a,
					    sizeof(sa_family_t)) < 0) {
			rc = -errno;
			snprintf(err, errlen, "--net unix=%s: socket: %s",
				 s->remote, strerror(-rc));
		}
	}
	snprintf(f->b.desc, sizeof(f->b.desc), "unix %s local %s", s->remote,
		 s->local ? s->local : "(autobind)");
	return rc;
}

int net_backend_open(const struct net_spec *spec, struct net_backend **out,
		     char *err, size_t errlen)
{
	struct net_file *f = calloc(1, sizeof(*f));
	int rc;

	if (!f)
		return -ENOMEM;
	f->b.ops = &file_ops;
	f->b.fd = f->b.out_fd = -1;
	err[0] = 0;
	rc = spec->tap ? tap_open(f, spec->tap, err, errlen) :
			 unix_open(f, spec, err, errlen);
	if (rc < 0) {
		file_close(&f->b);
		return rc;
	}
	*out = &f->b;
	return 0;
}
