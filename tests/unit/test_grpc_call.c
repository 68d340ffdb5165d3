/* Unit tests for lib/grpc_call: message coding, detail cleaning, calls that fail. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

#include "lib/grpc_call.h"
#include "proto/etcd_rpc.pb-c.h"

static void test_encode_decode_round_trip(void **state)
{
	Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__RangeRequest *back;
	grpc_byte_buffer *bb;

	req.key.data = (uint8_t *)"/canopy/hosts/";
	req.key.len = strlen("/canopy/hosts/");
	req.limit = 42;
	req.keys_only = true;
	bb = cn_grpc_msg_encode(&req.base);
	assert_non_null(bb);
	back = (Etcdserverpb__RangeRequest *)cn_grpc_msg_decode(
		&etcdserverpb__range_request__descriptor, bb);
	assert_non_null(back);
	assert_int_equal(back->key.len, req.key.len);
	assert_memory_equal(back->key.data, req.key.data, req.key.len);
	assert_int_equal(back->limit, 42);
	assert_true(back->keys_only);
	protobuf_c_message_free_unpacked(&back->base, NULL);
	grpc_byte_buffer_destroy(bb);
}

static void test_decode_refuses_bad_input(void **state)
{
	/* A length-delimited field (key) claiming 127 bytes with 2 present. */
	static const char bad[] = { 0x0a, 0x7f, 'a', 'b' };
	grpc_slice s = grpc_slice_from_copied_buffer(bad, sizeof(bad));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);

	grpc_slice_unref(s);
	assert_null(cn_grpc_msg_decode(&etcdserverpb__range_request__descriptor,
				       bb));
	grpc_byte_buffer_destroy(bb);
	assert_null(cn_grpc_msg_decode(&etcdserverpb__range_request__descriptor,
				       NULL));
}

static void test_slice_text_cleans_and_cuts(void **state)
{
	char small[6], big[64];
	grpc_slice s = grpc_slice_from_static_string("ok\x1b[2J\xff\n.");

	cn_grpc_slice_text(big, sizeof(big), s);
	assert_string_equal(big, "ok?[2J??.");
	cn_grpc_slice_text(small, sizeof(small), s);
	assert_string_equal(small, "ok?[2");
	cn_grpc_slice_text(big, 1, s);
	assert_string_equal(big, "");
	cn_grpc_slice_text(big, sizeof(big), grpc_empty_slice());
	assert_string_equal(big, "");
}

/* A loopback socket on a free port; *port gets the port. */
static int loopback_socket(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* Run one unary call to port with a deadline ms from now. */
static int call_port(int port, unsigned ms, struct cn_grpc_unary *u)
{
	Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	grpc_completion_queue *cq =
		grpc_completion_queue_create_for_pluck(NULL);
	grpc_byte_buffer *bb = cn_grpc_msg_encode(&req.base);
	gpr_timespec deadline =
		gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
			     gpr_time_from_millis((int64_t)ms, GPR_TIMESPAN));
	grpc_channel *ch;
	char target[64];
	int rc;

	snprintf(target, sizeof(target), "127.0.0.1:%d", port);
	ch = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	assert_non_null(ch);
	rc = cn_grpc_unary_run(ch, cq, "/etcdserverpb.KV/Range", deadline, bb,
			       u);
	grpc_byte_buffer_destroy(bb);
	grpc_channel_destroy(ch);
	cn_grpc_cq_destroy(cq);
	return rc;
}

static void test_unary_refused(void **state)
{
	struct cn_grpc_unary u;
	int port;

	close(loopback_socket(&port));
	/* The call ends with a status of its own: no server, no response. */
	assert_int_equal(call_port(port, 5000, &u), 0);
	assert_int_equal(u.status, GRPC_STATUS_UNAVAILABLE);
	assert_null(u.resp);
	assert_true(strlen(u.detail) < sizeof(u.detail));
}

static void test_unary_deadline(void **state)
{
	struct cn_grpc_unary u;
	gpr_timespec t0 = gpr_now(GPR_CLOCK_MONOTONIC), took;
	int port, fd = loopback_socket(&port);

	/* Connections queue in the backlog; nothing ever answers them. */
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(call_port(port, 300, &u), 0);
	took = gpr_time_sub(gpr_now(GPR_CLOCK_MONOTONIC), t0);
	close(fd);
	assert_int_equal(u.status, GRPC_STATUS_DEADLINE_EXCEEDED);
	assert_null(u.resp);
	/* The deadline, not something else, ended the wait. */
	assert_true(gpr_time_to_millis(took) >= 250);
	assert_true(gpr_time_to_millis(took) < 5000);
}

static int setup(void **state)
{
	grpc_init();
	return 0;
}

static int teardown(void **state)
{
	grpc_shutdown();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_decode_round_trip),
		cmocka_unit_test(test_decode_refuses_bad_input),
		cmocka_unit_test(test_slice_text_cleans_and_cuts),
		cmocka_unit_test(test_unary_refused),
		cmocka_unit_test(test_unary_deadline),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
