/* Unit tests for lib/bus*.c: requests, heartbeats, liveness, CURVE. */
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

/* ---- happy paths ----------------------------------------------------------- */

static void test_register_heartbeat(void **state)
{
	struct fx *f = *state;
	Canopy__V1__Envelope e = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__AgentRegister reg = CANOPY__V1__AGENT_REGISTER__INIT;
	struct bus_stats st;
	uint64_t id = 0;

	start_pair(f);
	assert_true(bus_server_peer_up(f->srv, "h1"));
	assert_false(bus_server_peer_up(f->srv, "h2"));
	assert_true(bus_client_connected(f->c1));
	register_env(&e, &reg);
	assert_int_equal(bus_client_request(f->c1, &e, 1000, on_reply, f, &id),
			 0);
	assert_true(id != 0);
	assert_true(spin_until(f, &f->replies, 1));
	assert_int_equal(f->srv_msgs, 1);
	assert_string_equal(f->last_from, "h1");
	assert_int_equal(f->last_body, CANOPY__V1__ENVELOPE__BODY_REGISTER);
	assert_int_equal(f->last_req_id, id);
	assert_int_equal(f->reply_status, 0);
	assert_int_equal(f->reply_to, id);
	assert_int_equal(f->reply_code, CN_OK);
	/* Heartbeats keep flowing both ways without reaching on_message. */
	assert_true(spin_until(f, &f->srv_hb, 3));
	assert_int_equal(f->srv_msgs, 1);
	assert_int_equal(f->cli_msgs, 0);
	assert_int_equal(f->peer_up, 1);
	assert_int_equal(f->connected, 1);
	bus_server_stats(f->srv, &st);
	assert_int_equal(st.rejected_total, 0);
	assert_true(st.received >= 4);
	bus_client_stats(f->c1, &st);
	assert_int_equal(st.rejected_total, 0);
}

static void test_server_request_ids(void **state)
{
	struct fx *f = *state;
	Canopy__V1__Envelope e = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__VmCommand cmd = CANOPY__V1__VM_COMMAND__INIT;
	uint64_t id1 = 0, id2 = 0;

	start_pair(f);
	vm_cmd_env(&e, &cmd);
	assert_int_equal(bus_server_request(f->srv, "h1", &e, 1000, on_reply, f,
					    &id1),
			 0);
	assert_int_equal(bus_server_request(f->srv, "h1", &e, 1000, on_reply, f,
					    &id2),
			 0);
	assert_true(id1 != 0 && id2 != 0 && id1 != id2);
	/* The caller's envelope is left as it was. */
	assert_int_equal(e.request_id, 0);
	assert_int_equal(e.version, 0);
	assert_true(spin_until(f, &f->replies, 2));
	assert_int_equal(f->cli_msgs, 2);
	assert_int_equal(f->reply_status, 0);
	assert_int_equal(f->reply_to, id2);
	/* One-way message: request id 0, no reply expected. */
	assert_int_equal(bus_server_send(f->srv, "h1", &e), 0);
	assert_true(spin_until(f, &f->cli_msgs, 3));
	assert_int_equal(f->cli_req_id, 0);
	spin_for(f, 50);
	assert_int_equal(f->replies, 2);
}

/* More messages than one drain handles: none may stay stuck. */
static void test_burst_not_stuck(void **state)
{
	struct fx *f = *state;
	Canopy__V1__Envelope e = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__VmStateReport vs = CANOPY__V1__VM_STATE_REPORT__INIT;
	int i;

	/* Ticks far away: only the drain itself may pick the rest up. */
	f->opts.heartbeat_ms = 5000;
	f->opts.peer_timeout_ms = 20000;
	start_pair(f);
	vs.vm_id = (char *)"vm-1";
	e.body_case = CANOPY__V1__ENVELOPE__BODY_VM_STATE;
	e.vm_state = &vs;
	for (i = 0; i < 600; i++)
		assert_int_equal(bus_client_send(f->c1, &e), 0);
	assert_true(spin_until(f, &f->srv_msgs, 600));
	assert_int_equal(f->srv_msgs, 600);
}

/* A message that arrives while we send must not wait for the next tick
 * (ZMQ_FD is edge-triggered: the send consumed its wake-up). */
static void test_reply_not_stuck_behind_send(void **state)
{
	struct fx *f = *state;
	Canopy__V1__Envelope e = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__VmCommand cmd = CANOPY__V1__VM_COMMAND__INIT;

	/* Ticks far away: only the bus's own check can find the reply. */
	f->opts.heartbeat_ms = 5000;
	f->opts.peer_timeout_ms = 20000;
	start_server(f);
	start_client(f, "h1");
	assert_true(spin_until(f, &f->peer_up, 1));
	f->cli_then_srv_send = true;
	vm_cmd_env(&e, &cmd);
	assert_int_equal(bus_server_request(f->srv, "h1", &e, 3000, on_reply, f,
					    NULL),
			 0);
	assert_true(spin_until(f, &f->replies, 1));
	assert_int_equal(f->reply_status, 0);
}

/* ---- timeouts, cancellation, liveness -------------------------------------- */

static void test_request_timeout_then_late_reply(void **state)
{
	struct fx *f = *state;
	Canopy__V1__Envelope e = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__VmCommand cmd = CANOPY__V1__VM_COMMAND__INIT;
	Canopy__V1__Envelope req = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__Envelope r = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__CommandResult res = CANOPY__V1__COMMAND_RESULT__INIT;
	Canopy__V1__Status st = CANOPY__V1__STATUS__INIT;
	struct bus_stats s;
	uint64_t id = 0;

	start_pair(f);
	f->cli_answer = false;
	vm_cmd_env(&e, &cmd);
	assert_int_equal(
		bus_server_request(f->srv, "h1", &e, 40, on_reply, f, &id), 0);
	assert_true(spin_until(f, &f->replies, 1));
	assert_int_equal(f->reply_status, -ETIMEDOUT);
	assert_int_equal(f->cli_req_id, id);
	spin_for(f, 60);
	assert_int_equal(f->replies, 1);
	bus_server_stats(f->srv, &s);
	assert_int_equal(s.timeouts, 1);
	/* The late reply is dropped and counted; the callback stays at one. */
	req.request_id = id;
	result_env(&r, &res, &st, CN_OK);
	assert_int_equal(bus_client_reply(f->c1, &req, &r), 0);
	spin_for(f, 60);
	assert_int_equal(f->replies, 1);
	bus_server_stats(f->srv, &s);
	assert_int_equal(s.rejected[BUS_REJECT_REPLY_TO], 1);
	assert_int_equal(s.rejected_total, 1);
}

static void test_destroy_cancels(void **state)
{
	struct fx *f = *state;
	Canopy__V1__Envelope e = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__AgentRegister reg = CANOPY__V1__AGENT_REGISTER__INIT;

	start_pair(f);
	f->srv_answer = false;
	register_env(&e, &reg);
	assert_int_equal(bus_client_request(f->c1, &e, 5000, on_reply, f, NULL),
			 0);
	assert_true(spin_until(f, &f->srv_msgs, 1));
	assert_int_equal(f->replies, 0);
	bus_client_destroy(f->c1);
	f->c1 = NULL;
	assert_int_equal(f->replies, 1);
	assert_int_equal(f->reply_status, -ECANCELED);
}

static void test_peer_down_and_back(void **state)
{
	struct fx *f = *state;

	start_pair(f);
	bus_client_destroy(f->c1);
	f->c1 = NULL;
	assert_true(spin_until(f, &f->peer_down, 1));
	assert_string_equal(f->last_down, "h1");
	assert_false(bus_server_peer_up(f->srv, "h1"));
	start_client(f, "h1");
	assert_true(spin_until(f, &f->peer_up, 2));
	assert_string_equal(f->last_up, "h1");
	assert_true(bus_server_peer_up(f->srv, "h1"));
	assert_int_equal(f->peer_down, 1);
}

static void test_client_sees_server_loss(void **state)
{
	struct fx *f = *state;

	start_pair(f);
	bus_server_destroy(f->srv);
	f->srv = NULL;
	assert_true(spin_until(f, &f->disconnected, 1));
	assert_false(bus_client_connected(f->c1));
	start_server(f);
	assert_true(spin_until(f, &f->connected, 2));
	assert_true(bus_client_connected(f->c1));
	assert_int_equal(f->disconnected, 1);
}

static void test_send_errors(void **state)
{
	struct fx *f = *state;
	Canopy__V1__Envelope e = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__Envelope empty = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__VmCommand cmd = CANOPY__V1__VM_COMMAND__INIT;

	start_pair(f);
	vm_cmd_env(&e, &cmd);
	/* ROUTER_MANDATORY: an unknown host is an error, not a silent drop. */
	assert_int_equal(bus_server_send(f->srv, "nohost", &e), -EHOSTUNREACH);
	assert_int_equal(bus_server_request(f->srv, "nohost", &e, 100, on_reply,
					    f, NULL),
			 -EHOSTUNREACH);
	assert_int_equal(bus_server_send(f->srv, "", &e), -EINVAL);
	assert_int_equal(bus_server_send(f->srv, "bad host", &e), -EINVAL);
	assert_int_equal(bus_server_send(f->srv, "h1", &empty), -EINVAL);
	assert_int_equal(bus_client_send(f->c1, &empty), -EINVAL);
	assert_int_equal(bus_client_request(f->c1, &e, 0, on_reply, f, NULL),
			 -EINVAL);
	assert_int_equal(bus_server_reply(f->srv, "h1", &empty, &e), -EINVAL);
	/* The failed request never calls back. */
	spin_for(f, 150);
	assert_int_equal(f->replies, 0);
}

static void test_bad_options(void **state)
{
	struct fx *f = *state;
	struct bus_options o = f->opts;
	struct bus_client *c = NULL;
	struct bus_server *s = NULL;

	assert_int_equal(bus_client_create(f->l, f->ep, "has space", &o,
					   &cli_ops, f, &c),
			 -EINVAL);
	assert_int_equal(bus_client_create(f->l, f->ep, "", &o, &cli_ops, f,
					   &c),
			 -EINVAL);
	o.curve_secret_key = "short";
	assert_int_equal(bus_server_create(f->l, f->ep, &o, &srv_ops, f, &s),
			 -EINVAL);
	/* A client needs all three keys. */
	o.curve_secret_key = "0123456789012345678901234567890123456789";
	assert_int_equal(bus_client_create(f->l, f->ep, "h1", &o, &cli_ops, f,
					   &c),
			 -EINVAL);
	assert_true(bus_server_create(f->l, "nonsense://x", &f->opts, &srv_ops,
				      f, &s) < 0);
	assert_null(s);
	assert_null(c);
}

/* ---- CURVE ------------------------------------------------------------------- */

static void test_curve(void **state)
{
	struct fx *f = *state;
	char spub[41], ssec[41], cpub[41], csec[41], opub[41], osec[41];
	struct bus_options so = f->opts, co = f->opts;
	struct bus_client *bad = NULL;
	struct fx other;

	if (!zmq_has("curve")) {
		print_message("SKIP: libzmq has no CURVE support\n");
		skip();
	}
	assert_int_equal(zmq_curve_keypair(spub, ssec), 0);
	assert_int_equal(zmq_curve_keypair(cpub, csec), 0);
	assert_int_equal(zmq_curve_keypair(opub, osec), 0);
	so.curve_secret_key = ssec;
	co.curve_secret_key = csec;
	co.curve_public_key = cpub;
	co.curve_server_key = spub;
	assert_int_equal(
		bus_server_create(f->l, f->ep, &so, &srv_ops, f, &f->srv), 0);
	assert_int_equal(bus_client_create(f->l, f->ep, "h1", &co, &cli_ops, f,
					   &f->c1),
			 0);
	assert_true(spin_until(f, &f->connected, 1));
	assert_int_equal(f->peer_up, 1);
	/* A client that expects another server key never gets through. */
	memset(&other, 0, sizeof(other));
	co.curve_server_key = opub;
	assert_int_equal(bus_client_create(f->l, f->ep, "h2", &co, &cli_ops,
					   &other, &bad),
			 0);
	spin_for(f, 200);
	assert_int_equal(other.connected, 0);
	assert_false(bus_server_peer_up(f->srv, "h2"));
	assert_int_equal(f->peer_up, 1);
	bus_client_destroy(bad);
}

/* A peer that does not read: sends fail with -EAGAIN, never block. */
static void test_send_queue_full(void **state)
{
	struct fx *f = *state;
	Canopy__V1__Envelope e = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__AgentHeartbeat hb = CANOPY__V1__AGENT_HEARTBEAT__INIT;
	Canopy__V1__VmCommand cmd = CANOPY__V1__VM_COMMAND__INIT;
	static char blob[64 * 1024];
	struct bus_stats st;
	struct raw r;
	int i, ret = 0, one = 1;

	f->opts.hwm = 1;
	start_server(f);
	raw_open(&r, ZMQ_DEALER, "slow", f->ep, NULL);
	assert_int_equal(zmq_setsockopt(r.sock, ZMQ_RCVHWM, &one, sizeof(one)),
			 0);
	hb.seq = 1;
	bad_env(&e, &hb, 1, "slow", 0);
	raw_send_env(&r, NULL, &e);
	assert_true(spin_until(f, &f->peer_up, 1));
	memset(blob, 'x', sizeof(blob) - 1);
	memset(&e, 0, sizeof(e));
	canopy__v1__envelope__init(&e);
	vm_cmd_env(&e, &cmd);
	cmd.vm_id = blob;
	for (i = 0; i < 10000 && ret == 0; i++)
		ret = bus_server_send(f->srv, "slow", &e);
	assert_int_equal(ret, -EAGAIN);
	bus_server_stats(f->srv, &st);
	assert_int_equal(st.send_failed, 1);
	raw_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_register_heartbeat, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_server_request_ids, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_burst_not_stuck, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_reply_not_stuck_behind_send, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_request_timeout_then_late_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_destroy_cancels, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_peer_down_and_back, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_client_sees_server_loss,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_options, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_curve, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_queue_full, setup,
						teardown),
	};

	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
