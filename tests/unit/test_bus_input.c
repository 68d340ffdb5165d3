/* Unit tests for lib/bus*.c: hostile and broken peers (decode, validate). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "lib/bus.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"

#include "tests/unit/bus_fixture.h"

/* Frames that are no envelope: counted, never answered (no request id). */
static void test_server_rejects_frames(void **state)
{
	struct fx *f = *state;
	uint8_t junk[64];
	uint8_t *big;
	struct bus_stats st;
	struct raw r;
	size_t i;

	start_server(f);
	raw_open(&r, ZMQ_DEALER, "raw1", f->ep, NULL);
	/* Random bytes (fixed seed; checked to be no Envelope). */
	srand(7);
	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)rand();
	junk[0] = 0xff; /* field 31, wire type 7: invalid */
	assert_null(canopy__v1__envelope__unpack(NULL, sizeof(junk), junk));
	raw_send(&r, 1, junk, sizeof(junk));
	assert_int_equal(wait_rejected(f, BUS_REJECT_PARSE, 1, true), 1);
	raw_send(&r, 1, "", (size_t)0);
	assert_int_equal(wait_rejected(f, BUS_REJECT_EMPTY, 1, true), 1);
	big = calloc(1, BUS_MSG_MAX + 1);
	assert_non_null(big);
	raw_send(&r, 1, big, (size_t)BUS_MSG_MAX + 1);
	free(big);
	assert_int_equal(wait_rejected(f, BUS_REJECT_SIZE, 1, true), 1);
	raw_send(&r, 3, "a", (size_t)1, "b", (size_t)1, "c", (size_t)1);
	assert_int_equal(wait_rejected(f, BUS_REJECT_SHAPE, 1, true), 1);
	assert_null(raw_recv(f, &r, 30));
	assert_int_equal(f->peer_up, 0);
	bus_server_stats(f->srv, &st);
	assert_int_equal(st.rejected_total, 4);
	assert_int_equal(st.received, 0);
	expect_served(f, &r, "raw1", 81);
	assert_int_equal(f->peer_up, 1);
	raw_close(&r);
}

/* Envelopes with a bad header: counted and answered with an error. */
static void test_server_rejects_headers(void **state)
{
	struct fx *f = *state;
	Canopy__V1__Envelope e = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__AgentHeartbeat hb = CANOPY__V1__AGENT_HEARTBEAT__INIT;
	struct bus_stats st;
	struct raw r;

	start_server(f);
	raw_open(&r, ZMQ_DEALER, "raw1", f->ep, NULL);
	bad_env(&e, &hb, 2, "raw1", 77);
	raw_send_env(&r, NULL, &e);
	assert_int_equal(wait_rejected(f, BUS_REJECT_VERSION, 1, true), 1);
	expect_error_reply(f, &r, 77);
	bad_env(&e, &hb, 1, "raw1", 78);
	e.body_case = CANOPY__V1__ENVELOPE__BODY__NOT_SET;
	raw_send_env(&r, NULL, &e);
	assert_int_equal(wait_rejected(f, BUS_REJECT_NO_BODY, 1, true), 1);
	expect_error_reply(f, &r, 78);
	/* host_id that is not the routing id. */
	bad_env(&e, &hb, 1, "h9", 79);
	raw_send_env(&r, NULL, &e);
	assert_int_equal(wait_rejected(f, BUS_REJECT_HOST_ID, 1, true), 1);
	expect_error_reply(f, &r, 79);
	/* reply_to that matches no request. */
	bad_env(&e, &hb, 1, "raw1", 80);
	e.reply_to = 12345;
	raw_send_env(&r, NULL, &e);
	assert_int_equal(wait_rejected(f, BUS_REJECT_REPLY_TO, 1, true), 1);
	expect_error_reply(f, &r, 80);
	/* Nothing rejected made raw1 a peer. */
	assert_int_equal(f->peer_up, 0);
	bus_server_stats(f->srv, &st);
	assert_int_equal(st.rejected_total, 4);
	assert_int_equal(st.received, 0);
	expect_served(f, &r, "raw1", 81);
	assert_int_equal(f->peer_up, 1);
	raw_close(&r);
}

/* A peer without a valid routing id (ZeroMQ's generated one) is refused. */
static void test_server_rejects_anonymous(void **state)
{
	struct fx *f = *state;
	Canopy__V1__Envelope e = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__AgentHeartbeat hb = CANOPY__V1__AGENT_HEARTBEAT__INIT;
	struct raw r;

	start_server(f);
	raw_open(&r, ZMQ_DEALER, NULL, f->ep, NULL);
	bad_env(&e, &hb, 1, "", 5);
	raw_send_env(&r, NULL, &e);
	assert_int_equal(wait_rejected(f, BUS_REJECT_HOST_ID, 1, true), 1);
	expect_error_reply(f, &r, 5);
	assert_int_equal(f->peer_up, 0);
	raw_close(&r);
}

/* Past max_peers a new host is refused (and told why); known ones go on. */
static void test_server_peers_full(void **state)
{
	struct fx *f = *state;
	Canopy__V1__Envelope e = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__AgentHeartbeat hb = CANOPY__V1__AGENT_HEARTBEAT__INIT;
	struct raw r;

	f->opts.max_peers = 1;
	start_pair(f);
	raw_open(&r, ZMQ_DEALER, "raw3", f->ep, NULL);
	bad_env(&e, &hb, 1, "raw3", 6);
	raw_send_env(&r, NULL, &e);
	assert_int_equal(wait_rejected(f, BUS_REJECT_PEERS_FULL, 1, true), 1);
	expect_error_reply(f, &r, 6);
	assert_false(bus_server_peer_up(f->srv, "raw3"));
	assert_int_equal(f->peer_up, 1);
	assert_true(bus_server_peer_up(f->srv, "h1"));
	raw_close(&r);
}

/* A flood of junk is counted in full but logged only BUS_LOG_BURST times. */
static void test_reject_log_rate_limited(void **state)
{
	struct fx *f = *state;
	char text[65536];
	int fd = memfd_create("buslog", 0);
	int lines = 0, i;
	ssize_t n;
	char *p;
	struct raw r;

	assert_true(fd >= 0);
	start_server(f);
	raw_open(&r, ZMQ_DEALER, "raw2", f->ep, NULL);
	log_set_fd(fd);
	log_set_level(LOG_WARN);
	for (i = 0; i < 50; i++)
		raw_send(&r, 1, "", (size_t)0);
	assert_int_equal(wait_rejected(f, BUS_REJECT_EMPTY, 50, true), 50);
	log_set_level(LOG_ERROR);
	log_set_fd(2);
	n = pread(fd, text, sizeof(text) - 1, 0);
	assert_true(n > 0);
	text[n] = '\0';
	for (p = text; (p = strstr(p, "message rejected")); p++)
		lines++;
	assert_true(lines >= 1);
	assert_true(lines <= 10);
	close(fd);
	raw_close(&r);
}

/* ---- hostile input: a raw ROUTER plays the server for a client -------------- */

static void test_client_rejects_garbage(void **state)
{
	struct fx *f = *state;
	Canopy__V1__Envelope e = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__AgentHeartbeat hb = CANOPY__V1__AGENT_HEARTBEAT__INIT;
	Canopy__V1__Envelope *got;
	struct raw r;

	raw_open(&r, ZMQ_ROUTER, NULL, NULL, f->ep);
	start_client(f, "h1");
	/* Wait for the client's first heartbeat: then the route exists. */
	got = raw_recv(f, &r, 1000);
	assert_non_null(got);
	assert_string_equal(got->host_id, "h1");
	assert_int_equal(got->heartbeat->running_vms, 3);
	canopy__v1__envelope__free_unpacked(got, NULL);
	raw_send(&r, 3, "h1", (size_t)2, "x", (size_t)1, "y", (size_t)1);
	assert_int_equal(wait_rejected(f, BUS_REJECT_SHAPE, 1, false), 1);
	raw_send(&r, 2, "h1", (size_t)2, "\xff\xff", (size_t)2);
	assert_int_equal(wait_rejected(f, BUS_REJECT_PARSE, 1, false), 1);
	/* Addressed to another host. */
	bad_env(&e, &hb, 1, "h2", 90);
	raw_send_env(&r, "h1", &e);
	assert_int_equal(wait_rejected(f, BUS_REJECT_HOST_ID, 1, false), 1);
	expect_error_reply(f, &r, 90);
	bad_env(&e, &hb, 3, "h1", 91);
	raw_send_env(&r, "h1", &e);
	assert_int_equal(wait_rejected(f, BUS_REJECT_VERSION, 1, false), 1);
	expect_error_reply(f, &r, 91);
	bad_env(&e, &hb, 1, "h1", 92);
	e.reply_to = 4242;
	raw_send_env(&r, "h1", &e);
	assert_int_equal(wait_rejected(f, BUS_REJECT_REPLY_TO, 1, false), 1);
	expect_error_reply(f, &r, 92);
	assert_int_equal(f->connected, 0);
	/* A valid heartbeat still connects it. */
	bad_env(&e, &hb, 1, "h1", 0);
	e.reply_to = 0;
	raw_send_env(&r, "h1", &e);
	assert_true(spin_until(f, &f->connected, 1));
	raw_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_server_rejects_frames,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_rejects_headers,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_rejects_anonymous,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_peers_full, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reject_log_rate_limited,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_rejects_garbage,
						setup, teardown),
	};

	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
