/*
 * Safe system-call wrappers. Every function returns 0 (or a documented
 * non-negative count) on success and a negative errno on failure; EINTR is
 * retried and short reads/writes are completed where the name says "full".
 * All functions are thread-safe (they keep no state).
 */
#ifndef CANOPY_LIB_SYS_H
#define CANOPY_LIB_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/compiler.h"

/* Read exactly len bytes. Returns len, or the number read before EOF
 * (0..len-1) when the peer closed early, or -errno. Blocking fds only. */
CN_MUST_CHECK ssize_t sys_read_full(int fd, void *buf, size_t len);
/* Write all len bytes (blocking fds). Returns 0 or -errno (-EPIPE when the
 * peer is gone; SIGPIPE is avoided for sockets by MSG_NOSIGNAL). */
CN_MUST_CHECK int sys_write_full(int fd, const void *buf, size_t len);
/* Positional variants of the above. */
CN_MUST_CHECK ssize_t sys_pread_full(int fd, void *buf, size_t len, off_t off);
CN_MUST_CHECK int sys_pwrite_full(int fd, const void *buf, size_t len,
				  off_t off);
/* One read()/write() with EINTR retried: returns bytes (>= 0) or -errno;
 * -EAGAIN on a non-blocking fd with nothing to do. */
CN_MUST_CHECK ssize_t sys_read(int fd, void *buf, size_t len);
CN_MUST_CHECK ssize_t sys_write(int fd, const void *buf, size_t len);

/* open(2) with O_CLOEXEC added; returns the fd or -errno. */
CN_MUST_CHECK int sys_open(const char *path, int flags, mode_t mode);
/* close(2) that keeps errno out of it; -1 is a no-op. Never retries. */
void sys_close(int fd);
CN_MUST_CHECK int sys_set_nonblock(int fd, int on);
CN_MUST_CHECK int sys_set_cloexec(int fd, int on);

/* Read a whole regular file of at most max bytes into a malloc'd buffer
 * (NUL-terminated for convenience; *len excludes the NUL). -EFBIG when the
 * file is larger than max. The caller frees *out. */
CN_MUST_CHECK int sys_read_file(const char *path, size_t max, char **out,
				size_t *len);
/* Replace path atomically: write a temporary file beside it, fsync, rename,
 * fsync the directory. The file gets mode `mode`. */
CN_MUST_CHECK int sys_write_file_atomic(const char *path, const void *data,
					size_t len, mode_t mode);

/* Clocks: monotonic milliseconds / nanoseconds, realtime milliseconds. */
uint64_t sys_mono_ms(void);
uint64_t sys_mono_ns(void);
uint64_t sys_real_ms(void);
/* Sleep at least us microseconds, resuming after signals. */
void sys_sleep_us(uint64_t us);

/* Unix stream sockets. Listen unlinks a stale socket file first; both return
 * a CLOEXEC fd or -errno (-ENAMETOOLONG for paths that do not fit). */
CN_MUST_CHECK int sys_unix_listen(const char *path, int backlog);
CN_MUST_CHECK int sys_unix_connect(const char *path);
/* TCP: listen on host:port (port 0 picks a free one; see sys_sock_port),
 * connect with a timeout in ms (0 = blocking). Numeric addresses or names. */
CN_MUST_CHECK int sys_tcp_listen(const char *host, uint16_t port, int backlog);
CN_MUST_CHECK int sys_tcp_connect(const char *host, uint16_t port,
				  int timeout_ms);
/* The local port a bound socket has, or -errno. */
CN_MUST_CHECK int sys_sock_port(int fd);
/* accept4 with CLOEXEC|NONBLOCK as asked; returns fd or -errno. */
CN_MUST_CHECK int sys_accept(int lfd, int nonblock);

/* Wait until fd is readable (events=POLLIN) or writable (POLLOUT) for at
 * most timeout_ms (-1 = forever). Returns 1 when ready, 0 on time-out,
 * -errno on error. */
CN_MUST_CHECK int sys_wait_fd(int fd, short events, int timeout_ms);

#endif
