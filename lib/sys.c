/* Safe system-call wrappers: EINTR retried, short I/O completed, -errno. */
#include "lib/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

ssize_t sys_read(int fd, void *buf, size_t len)
{
	ssize_t n;

	do {
		n = read(fd, buf, len);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

ssize_t sys_write(int fd, const void *buf, size_t len)
{
	ssize_t n;

	do {
		n = send(fd, buf, len, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0 && errno == ENOTSOCK) {
		do {
			n = write(fd, buf, len);
		} while (n < 0 && errno == EINTR);
	}
	return n < 0 ? -errno : n;
}

ssize_t sys_read_full(int fd, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = sys_read(fd, (char *)buf + done, len - done);

		if (n < 0)
			return n;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int sys_write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = sys_write(fd, (const char *)buf + done, len - done);

		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

ssize_t sys_pread_full(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done,
				  off + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int sys_pwrite_full(int fd, const void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done,
				   off + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

int sys_open(const char *path, int flags, mode_t mode)
{
	int fd;

	do {
		fd = open(path, flags | O_CLOEXEC, mode);
	} while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

void sys_close(int fd)
{
	int saved = errno;

	/* Linux releases the fd even when close fails: never retry. */
	if (fd >= 0)
		(void)close(fd);
	errno = saved;
}

static int set_fl(int fd, int get, int set, int flag, int on)
{
	int fl = fcntl(fd, get);

	if (fl < 0)
		return -errno;
	fl = on ? (fl | flag) : (fl & ~flag);
	return fcntl(fd, set, fl) < 0 ? -errno : 0;
}

int sys_set_nonblock(int fd, int on)
{
	return set_fl(fd, F_GETFL, F_SETFL, O_NONBLOCK, on);
}

int sys_set_cloexec(int fd, int on)
{
	return set_fl(fd, F_GETFD, F_SETFD, FD_CLOEXEC, on);
}

int sys_read_file(const char *path, size_t max, char **out, size_t *len)
{
	struct stat st;
	char *data = NULL;
	ssize_t n;
	int fd, err;

	fd = sys_open(path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out_close;
	}
	err = -EINVAL;
	if (!S_ISREG(st.st_mode))
		goto out_close;
	err = -EFBIG;
	if ((uint64_t)st.st_size > max)
		goto out_close;
	/* Read one byte past the limit to notice a file that grew. */
	err = -ENOMEM;
	data = malloc(max + 1);
	if (!data)
		goto out_close;
	n = sys_read_full(fd, data, max + 1);
	if (n < 0) {
		err = (int)n;
		goto out_free;
	}
	err = -EFBIG;
	if ((size_t)n > max)
		goto out_free;
	data[n] = '\0';
	*out = data;
	*len = (size_t)n;
	sys_close(fd);
	return 0;

out_free:
	free(data);
out_close:
	sys_close(fd);
	return err;
}

static int fsync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t n;
	int fd, err = 0;

	if (!slash) {
		strcpy(dir, ".");
	} else {
		n = slash == path ? 1 : (size_t)(slash - path);
		if (n >= sizeof(dir))
			return -ENAMETOOLONG;
		memcpy(dir, path, n);
		dir[n] = '\0';
	}
	fd = sys_open(dir, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	if (fsync(fd) < 0)
		err = -errno;
	sys_close(fd);
	return err;
}

int sys_write_file_atomic(const char *path, const void *data, size_t len,
			  mode_t mode)
{
	char tmp[PATH_MAX];
	int fd, err;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >=
	    (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = sys_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0)
		return fd;
	err = sys_write_full(fd, data, len);
	if (!err && fchmod(fd, mode) < 0)
		err = -errno;
	if (!err && fsync(fd) < 0)
		err = -errno;
	sys_close(fd);
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (err) {
		(void)unlink(tmp);
		return err;
	}
	return fsync_dir_of(path);
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	/* Cannot fail for these clock ids on Linux. */
	(void)clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t sys_mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

void sys_sleep_us(uint64_t us)
{
	struct timespec ts = { (time_t)(us / 1000000),
			       (long)(us % 1000000) * 1000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

uint64_t sys_mono_ms(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000000ull;
}

uint64_t sys_real_ms(void)
{
	return clock_ns(CLOCK_REALTIME) / 1000000ull;
}

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
	size_t n = strlen(path);

	if (n == 0)
		return -EINVAL;
	if (n >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, n + 1);
	return 0;
}

int sys_unix_listen(const char *path, int backlog)
{
	struct sockaddr_un sa;
	int fd, err;

	err = unix_addr(path, &sa);
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (unlink(path) < 0 && errno != ENOENT)
		goto fail;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail;
	if (listen(fd, backlog) < 0)
		goto fail;
	return fd;
fail:
	err = -errno;
	sys_close(fd);
	return err;
}

int sys_unix_connect(const char *path)
{
	struct sockaddr_un sa;
	int fd, err;

	err = unix_addr(path, &sa);
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		sys_close(fd);
		return err;
	}
	return fd;
}

/* getaddrinfo errors are not errnos; map the ones that matter. */
static int gai_errno(int rc)
{
	switch (rc) {
	case EAI_SYSTEM:
		return errno ? -errno : -EIO;
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_AGAIN:
		return -EAGAIN;
	default:
		return -EHOSTUNREACH;
	}
}

static int resolve(const char *host, uint16_t port, int passive,
		   struct addrinfo **res)
{
	struct addrinfo hints = { 0 };
	char service[8];
	int rc;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	snprintf(service, sizeof(service), "%u", port);
	rc = getaddrinfo(host, service, &hints, res);
	return rc ? gai_errno(rc) : 0;
}

int sys_tcp_listen(const char *host, uint16_t port, int backlog)
{
	struct addrinfo *res, *ai;
	int fd = -1, err, one = 1;

	err = resolve(host, port, 1, &res);
	if (err)
		return err;
	err = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
				 sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, backlog) == 0)
			break;
		err = -errno;
		sys_close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd >= 0 ? fd : err;
}

static int connect_one(const struct addrinfo *ai, int timeout_ms)
{
	socklen_t sl = sizeof(int);
	int fd, err, soerr = 0;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (timeout_ms > 0 && (err = sys_set_nonblock(fd, 1)))
		goto fail;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		goto done;
	err = -errno;
	if (err != -EINPROGRESS || timeout_ms <= 0)
		goto fail;
	err = sys_wait_fd(fd, POLLOUT, timeout_ms);
	if (err == 0)
		err = -ETIMEDOUT;
	if (err < 0)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		soerr = errno;
	err = -soerr;
	if (err)
		goto fail;
done:
	if (timeout_ms > 0 && (err = sys_set_nonblock(fd, 0)))
		goto fail;
	return fd;
fail:
	sys_close(fd);
	return err;
}

int sys_tcp_connect(const char *host, uint16_t port, int timeout_ms)
{
	struct addrinfo *res, *ai;
	int fd = -EHOSTUNREACH, err;

	err = resolve(host, port, 0, &res);
	if (err)
		return err;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = connect_one(ai, timeout_ms);
		if (fd >= 0)
			break;
	}
	freeaddrinfo(res);
	return fd;
}

int sys_sock_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EAFNOSUPPORT;
}

int sys_accept(int lfd, int nonblock)
{
	int fd;

	do {
		fd = accept4(lfd, NULL, NULL,
			     SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0));
	} while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

int sys_wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	uint64_t deadline = 0;
	int n;

	if (timeout_ms >= 0)
		deadline = sys_mono_ms() + (uint64_t)timeout_ms;
	for (;;) {
		n = poll(&p, 1, timeout_ms);
		if (n >= 0)
			break;
		if (errno != EINTR)
			return -errno;
		if (timeout_ms >= 0) {
			uint64_t now = sys_mono_ms();

			timeout_ms = now >= deadline ? 0 :
						       (int)(deadline - now);
		}
	}
	if (n == 0)
		return 0;
	if (p.revents & POLLNVAL)
		return -EBADF;
	/* POLLERR/POLLHUP count as ready: the next read/write tells why. */
	return 1;
}
