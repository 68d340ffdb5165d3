/* Unit tests for lib/frame: splitting, limits, EOF handling, partial writes. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/frame.h"
#include "lib/sys.h"
#include "proto/canopy_vmm.pb-c.h"

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void socks(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
}

/* Three frames (sizes 0, 5, 300) fed in every possible two-piece split
 * come out whole and in order. */
static void test_split_at_every_byte(void **state)
{
	struct frame_writer w;
	uint8_t big[300];

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)i;
	frame_writer_init(&w);
	assert_int_equal(frame_queue(&w, "", 0), 0);
	assert_int_equal(frame_queue(&w, "hello", 5), 0);
	assert_int_equal(frame_queue(&w, big, sizeof(big)), 0);
	size_t total = frame_writer_pending(&w);
	assert_int_equal(total, 3 * FRAME_HDR + 305);
	const uint8_t *all = (const uint8_t *)buf_ptr(&w.out);

	for (size_t cut = 0; cut <= total; cut++) {
		struct frame_reader r;
		const uint8_t *body;
		uint32_t len;
		int got = 0, rc;

		frame_reader_init(&r, 0);
		assert_int_equal(frame_reader_feed(&r, all, cut), 0);
		while ((rc = frame_next(&r, &body, &len)) == 1)
			got++;
		assert_int_equal(rc, 0);
		assert_int_equal(frame_reader_feed(&r, all + cut, total - cut),
				 0);
		while ((rc = frame_next(&r, &body, &len)) == 1) {
			if (got == 0)
				assert_int_equal(len, 0);
			else if (got == 1)
				assert_memory_equal(body, "hello", 5);
			else
				assert_memory_equal(body, big, sizeof(big));
			got++;
		}
		assert_int_equal(rc, 0);
		assert_int_equal(got, 3);
		assert_int_equal(frame_reader_pending(&r), 0);
		frame_reader_free(&r);
	}
	frame_writer_free(&w);
}

/* An announced length above max is refused as soon as the header is
 * there, before any body byte is buffered. */
static void test_oversize_refused_from_header(void **state)
{
	struct frame_reader r;
	const uint8_t *body;
	uint32_t len;
	uint8_t hdr[FRAME_HDR];

	frame_reader_init(&r, 1000);
	be32(hdr, 1001);
	assert_int_equal(frame_reader_feed(&r, hdr, 3), 0);
	assert_int_equal(frame_next(&r, &body, &len), 0);
	assert_int_equal(frame_reader_feed(&r, hdr + 3, 1), 0);
	assert_int_equal(frame_next(&r, &body, &len), -EMSGSIZE);
	assert_int_equal(frame_reader_pending(&r), FRAME_HDR);
	frame_reader_free(&r);

	/* Exactly max is fine. */
	frame_reader_init(&r, 4);
	be32(hdr, 4);
	assert_int_equal(frame_reader_feed(&r, hdr, 4), 0);
	assert_int_equal(frame_reader_feed(&r, "abcd", 4), 0);
	assert_int_equal(frame_next(&r, &body, &len), 1);
	assert_int_equal(len, 4);
	frame_reader_free(&r);
}

static void test_max_clamped(void **state)
{
	struct frame_reader r;

	frame_reader_init(&r, 0);
	assert_int_equal(r.max, FRAME_DEFAULT_MAX);
	frame_reader_free(&r);
	frame_reader_init(&r, UINT32_MAX);
	assert_int_equal(r.max, FRAME_ABS_MAX);
	frame_reader_free(&r);
}

/* A reader that is fed without being drained hits its buffer limit. */
static void test_reader_buffer_bounded(void **state)
{
	struct frame_reader r;
	static uint8_t chunk[65536];
	int rc = 0;

	frame_reader_init(&r, 16);
	for (int i = 0; i < 10 && rc == 0; i++)
		rc = frame_reader_feed(&r, chunk, sizeof(chunk));
	assert_int_equal(rc, -EMSGSIZE);
	frame_reader_free(&r);
}

static void test_fill_from_socket(void **state)
{
	struct frame_reader r;
	const uint8_t *body;
	uint32_t len;
	int sv[2];

	socks(sv);
	assert_int_equal(sys_set_nonblock(sv[1], 1), 0);
	frame_reader_init(&r, 0);
	assert_int_equal(frame_reader_fill(&r, sv[1]), -EAGAIN);
	assert_int_equal(frame_send(sv[0], "ping", 4), 0);
	assert_int_equal(frame_reader_fill(&r, sv[1]), FRAME_HDR + 4);
	assert_int_equal(frame_next(&r, &body, &len), 1);
	assert_memory_equal(body, "ping", 4);
	assert_int_equal(frame_next(&r, &body, &len), 0);
	close(sv[0]);
	assert_int_equal(frame_reader_fill(&r, sv[1]), 0);
	assert_int_equal(frame_reader_pending(&r), 0);
	close(sv[1]);
	frame_reader_free(&r);
}

/* The writer keeps what a full socket did not take and finishes later. */
static void test_partial_writes(void **state)
{
	struct frame_writer w;
	struct frame_reader r;
	size_t big = 4u << 20;
	uint8_t *payload = malloc(big);
	const uint8_t *body;
	uint32_t len;
	ssize_t left;
	int sv[2];

	assert_non_null(payload);
	for (size_t i = 0; i < big; i++)
		payload[i] = (uint8_t)(i * 7);
	socks(sv);
	assert_int_equal(sys_set_nonblock(sv[0], 1), 0);
	assert_int_equal(sys_set_nonblock(sv[1], 1), 0);
	frame_writer_init(&w);
	frame_reader_init(&r, 0);
	assert_int_equal(frame_queue(&w, payload, big), 0);
	left = frame_flush(&w, sv[0]);
	assert_true(left > 0); /* a socket buffer is far below 4 MiB */
	while (left > 0) {
		ssize_t n = frame_reader_fill(&r, sv[1]);

		assert_true(n > 0 || n == -EAGAIN);
		left = frame_flush(&w, sv[0]);
		assert_true(left >= 0);
	}
	while (frame_next(&r, &body, &len) != 1) {
		assert_true(frame_reader_fill(&r, sv[1]) > 0);
	}
	assert_int_equal(len, big);
	assert_memory_equal(body, payload, big);
	frame_writer_free(&w);
	frame_reader_free(&r);
	close(sv[0]);
	close(sv[1]);
	free(payload);
}

static void test_flush_to_closed_peer(void **state)
{
	struct frame_writer w;
	int sv[2];

	socks(sv);
	close(sv[1]);
	frame_writer_init(&w);
	assert_int_equal(frame_queue(&w, "x", 1), 0);
	/* No SIGPIPE: the error comes back as a value. */
	assert_int_equal(frame_flush(&w, sv[0]), -EPIPE);
	assert_int_equal(frame_writer_pending(&w), FRAME_HDR + 1);
	assert_int_equal(frame_send(sv[0], "x", 1), -EPIPE);
	frame_writer_free(&w);
	close(sv[0]);
}

static void test_recv_results(void **state)
{
	uint8_t *body = NULL, hdr[FRAME_HDR];
	uint32_t len = 0;
	int sv[2];

	/* Whole frame. */
	socks(sv);
	assert_int_equal(frame_send(sv[0], "abc", 3), 0);
	assert_int_equal(frame_recv(sv[1], 0, 1000, &body, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(body, "abc", 3);
	free(body);
	/* Nothing arrives: time-out, on a blocking socket. */
	assert_int_equal(frame_recv(sv[1], 0, 50, &body, &len), -ETIMEDOUT);
	/* Oversize. */
	be32(hdr, 100);
	assert_int_equal(write(sv[0], hdr, 4), 4);
	assert_int_equal(frame_recv(sv[1], 99, 1000, &body, &len), -EMSGSIZE);
	close(sv[0]);
	close(sv[1]);

	/* Header then EOF halfway through the body: truncated. */
	socks(sv);
	be32(hdr, 10);
	assert_int_equal(write(sv[0], hdr, 4), 4);
	assert_int_equal(write(sv[0], "12345", 5), 5);
	close(sv[0]);
	assert_int_equal(frame_recv(sv[1], 0, 1000, &body, &len), -ECONNRESET);
	close(sv[1]);

	/* Half a header then EOF: truncated too. */
	socks(sv);
	assert_int_equal(write(sv[0], hdr, 2), 2);
	close(sv[0]);
	assert_int_equal(frame_recv(sv[1], 0, 1000, &body, &len), -ECONNRESET);
	close(sv[1]);

	/* Clean EOF before any frame. */
	socks(sv);
	close(sv[0]);
	assert_int_equal(frame_recv(sv[1], 0, 1000, &body, &len), -ENODATA);
	close(sv[1]);
}

/* The body stalls after the header: the time-out still applies. */
static void test_recv_timeout_mid_frame(void **state)
{
	uint8_t *body = NULL, hdr[FRAME_HDR];
	uint32_t len;
	uint64_t t0;
	int sv[2];

	socks(sv);
	be32(hdr, 8);
	assert_int_equal(write(sv[0], hdr, 4), 4);
	assert_int_equal(write(sv[0], "abc", 3), 3);
	t0 = sys_mono_ms();
	assert_int_equal(frame_recv(sv[1], 0, 100, &body, &len), -ETIMEDOUT);
	assert_true(sys_mono_ms() - t0 >= 100);
	assert_true(sys_mono_ms() - t0 < 2000);
	close(sv[0]);
	close(sv[1]);
}

static void test_queue_too_big(void **state)
{
	struct frame_writer w;

	frame_writer_init(&w);
	assert_int_equal(frame_queue(&w, "", (size_t)FRAME_ABS_MAX + 1),
			 -EMSGSIZE);
	assert_int_equal(frame_writer_pending(&w), 0);
	assert_int_equal(frame_send(-1, "", (size_t)FRAME_ABS_MAX + 1),
			 -EMSGSIZE);
	frame_writer_free(&w);
}

/* A protobuf message goes through the queue and back intact. */
static void test_protobuf_round_trip(void **state)
{
	Canopy__V1__VmmRequest req = CANOPY__V1__VMM_REQUEST__INIT;
	Canopy__V1__VmmRequest *back;
	uint8_t *body;
	uint32_t len;
	int sv[2];

	req.id = 42;
	socks(sv);
	assert_int_equal(frame_send_pb(sv[0], &req.base), 0);
	assert_int_equal(frame_recv(sv[1], 0, 1000, &body, &len), 0);
	back = canopy__v1__vmm_request__unpack(NULL, len, body);
	assert_non_null(back);
	assert_int_equal(back->id, 42);
	canopy__v1__vmm_request__free_unpacked(back, NULL);
	free(body);

	/* Garbage of the right length does not unpack. */
	assert_int_equal(frame_send(sv[0], "\xff\xff\xff", 3), 0);
	assert_int_equal(frame_recv(sv[1], 0, 1000, &body, &len), 0);
	assert_null(canopy__v1__vmm_request__unpack(NULL, len, body));
	free(body);
	close(sv[0]);
	close(sv[1]);
}

static void test_queue_pb_matches_send_pb(void **state)
{
	Canopy__V1__VmmRequest req = CANOPY__V1__VMM_REQUEST__INIT;
	struct frame_writer w;
	struct frame_reader r;
	const uint8_t *body;
	uint32_t len;

	req.id = 7;
	frame_writer_init(&w);
	frame_reader_init(&r, 0);
	assert_int_equal(frame_queue_pb(&w, &req.base), 0);
	assert_int_equal(frame_reader_feed(&r, buf_ptr(&w.out),
					   frame_writer_pending(&w)),
			 0);
	assert_int_equal(frame_next(&r, &body, &len), 1);
	assert_int_equal(len, protobuf_c_message_get_packed_size(&req.base));
	frame_reader_free(&r);
	frame_writer_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_at_every_byte),
		cmocka_unit_test(test_oversize_refused_from_header),
		cmocka_unit_test(test_max_clamped),
		cmocka_unit_test(test_reader_buffer_bounded),
		cmocka_unit_test(test_fill_from_socket),
		cmocka_unit_test(test_partial_writes),
		cmocka_unit_test(test_flush_to_closed_peer),
		cmocka_unit_test(test_recv_results),
		cmocka_unit_test(test_recv_timeout_mid_frame),
		cmocka_unit_test(test_queue_too_big),
		cmocka_unit_test(test_protobuf_round_trip),
		cmocka_unit_test(test_queue_pb_matches_send_pb),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
