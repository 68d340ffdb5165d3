/* Unit tests for lib/sys: full I/O, files, sockets, clocks, waits. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/sys.h"

static char tmpdir[64];

static int setup(void **state)
{
	strcpy(tmpdir, "/tmp/canopy-test-sys-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd);
}

struct writer {
	int fd;
	size_t len;
};

static void *write_slowly(void *arg)
{
	struct writer *w = arg;
	char *data = malloc(w->len);

	for (size_t i = 0; i < w->len; i++)
		data[i] = (char)(i * 7);
	/* Many small writes so the reader sees short reads. */
	for (size_t off = 0; off < w->len; off += 1000) {
		size_t n = w->len - off < 1000 ? w->len - off : 1000;

		if (sys_write_full(w->fd, data + off, n))
			break;
	}
	close(w->fd);
	free(data);
	return NULL;
}

static void test_read_full_across_short_reads(void **state)
{
	int sv[2];
	struct writer w;
	pthread_t th;
	char *buf = malloc(300000);
	ssize_t n;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	w.fd = sv[1];
	w.len = 250000;
	assert_int_equal(pthread_create(&th, NULL, write_slowly, &w), 0);
	/* Ask for more than is sent: returns what came before EOF. */
	n = sys_read_full(sv[0], buf, 300000);
	pthread_join(th, NULL);
	assert_int_equal(n, 250000);
	for (size_t i = 0; i < 250000; i++)
		assert_int_equal(buf[i], (char)(i * 7));
	close(sv[0]);
	free(buf);
}

static void test_write_to_closed_peer_is_epipe(void **state)
{
	int sv[2];
	char data[100] = { 0 };

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	/* No SIGPIPE: the process would die here otherwise. */
	assert_int_equal(sys_write_full(sv[0], data, sizeof(data)), -EPIPE);
	close(sv[0]);
}

static void test_errors_are_negative_errno(void **state)
{
	char b[4];

	assert_int_equal(sys_open("/nonexistent/x", O_RDONLY, 0), -ENOENT);
	assert_int_equal(sys_read(-1, b, sizeof(b)), -EBADF);
	assert_int_equal(sys_write(-1, b, sizeof(b)), -EBADF);
	assert_int_equal(sys_set_nonblock(-1, 1), -EBADF);
	sys_close(-1); /* a no-op, never a crash */
}

static void test_atomic_write_and_read_file(void **state)
{
	char path[128], *data;
	struct stat st;
	size_t len;

	snprintf(path, sizeof(path), "%s/f.conf", tmpdir);
	assert_int_equal(sys_write_file_atomic(path, "a = 1\n", 6, 0600), 0);
	assert_int_equal(sys_write_file_atomic(path, "b = 22\n", 7, 0640), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	assert_int_equal(sys_read_file(path, 100, &data, &len), 0);
	assert_int_equal(len, 7);
	assert_string_equal(data, "b = 22\n");
	free(data);
	/* Larger than the caller's limit: refused. */
	assert_int_equal(sys_read_file(path, 6, &data, &len), -EFBIG);
	/* A directory is not a file to read. */
	assert_int_equal(sys_read_file(tmpdir, 100, &data, &len), -EINVAL);
	assert_int_equal(sys_read_file("/nonexistent", 100, &data, &len),
			 -ENOENT);
	/* Into a missing directory: error, and no temporary left behind. */
	snprintf(path, sizeof(path), "%s/no/such", tmpdir);
	assert_int_equal(sys_write_file_atomic(path, "x", 1, 0600), -ENOENT);
}

static void test_positional_io(void **state)
{
	char path[128], out[8] = { 0 };
	int fd;

	snprintf(path, sizeof(path), "%s/p.bin", tmpdir);
	fd = sys_open(path, O_RDWR | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(sys_pwrite_full(fd, "WXYZ", 4, 4096), 0);
	assert_int_equal(sys_pread_full(fd, out, 4, 4096), 4);
	assert_memory_equal(out, "WXYZ", 4);
	/* Past EOF: short count, not an error. */
	assert_int_equal(sys_pread_full(fd, out, 8, 4098), 2);
	assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	close(fd);
}

static void test_unix_sockets(void **state)
{
	char path[128], b[8];
	int l, c, a;

	snprintf(path, sizeof(path), "%s/s.sock", tmpdir);
	l = sys_unix_listen(path, 4);
	assert_true(l >= 0);
	/* A stale socket file is replaced, not an error. */
	close(l);
	l = sys_unix_listen(path, 4);
	assert_true(l >= 0);
	c = sys_unix_connect(path);
	assert_true(c >= 0);
	a = sys_accept(l, 1);
	assert_true(a >= 0);
	assert_int_equal(sys_read(a, b, sizeof(b)), -EAGAIN);
	assert_int_equal(sys_write_full(c, "ping", 4), 0);
	assert_int_equal(sys_wait_fd(a, POLLIN, 1000), 1);
	assert_int_equal(sys_read(a, b, sizeof(b)), 4);
	close(a);
	close(c);
	close(l);
	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(sys_unix_listen(path, 1), -ENAMETOOLONG);
	assert_int_equal(sys_unix_connect(""), -EINVAL);
}

static void test_tcp_loopback(void **state)
{
	int l, port, c, a;

	l = sys_tcp_listen("127.0.0.1", 0, 4);
	assert_true(l >= 0);
	port = sys_sock_port(l);
	assert_true(port > 0);
	c = sys_tcp_connect("127.0.0.1", (uint16_t)port, 2000);
	assert_true(c >= 0);
	a = sys_accept(l, 0);
	assert_true(a >= 0);
	assert_int_equal(sys_write_full(a, "ok", 2), 0);
	close(a);
	close(c);
	close(l);
	/* Nothing listens on the port now. */
	assert_int_equal(sys_tcp_connect("127.0.0.1", (uint16_t)port, 2000),
			 -ECONNREFUSED);
}

static void test_wait_and_clocks(void **state)
{
	int p[2];
	uint64_t t0, t1, r0;

	assert_int_equal(pipe(p), 0);
	t0 = sys_mono_ms();
	assert_int_equal(sys_wait_fd(p[0], POLLIN, 50), 0);
	t1 = sys_mono_ms();
	assert_true(t1 - t0 >= 49 && t1 - t0 < 1000);
	assert_true(sys_mono_ns() / 1000000 >= t1);
	t0 = sys_mono_ns();
	sys_sleep_us(20000);
	assert_true(sys_mono_ns() - t0 >= 20000000ull);
	r0 = sys_real_ms();
	assert_true(r0 > 1700000000000ull); /* after 2023 */
	close(p[1]);
	/* A closed writer makes the reader ready (EOF). */
	assert_int_equal(sys_wait_fd(p[0], POLLIN, 1000), 1);
	close(p[0]);
	assert_int_equal(sys_wait_fd(p[0], POLLIN, 0), -EBADF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_full_across_short_reads),
		cmocka_unit_test(test_write_to_closed_peer_is_epipe),
		cmocka_unit_test(test_errors_are_negative_errno),
		cmocka_unit_test(test_atomic_write_and_read_file),
		cmocka_unit_test(test_positional_io),
		cmocka_unit_test(test_unix_sockets),
		cmocka_unit_test(test_tcp_loopback),
		cmocka_unit_test(test_wait_and_clocks),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
