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

/* ---- ZAP: who may connect, and what each key may say -------------------- */

static char zap_host_key[41]; /* h1's key */
static char zap_enrol_key[41]; /* h3's one-time key */
static int zap_enrols;

static int zap_authorize(void *arg, const char *host, const char *key)
{
	(void)arg;
	if (!strcmp(key, zap_host_key) && (!host || !strcmp(host, "h1")))
		return BUS_KEY_HOST;
	if (!strcmp(key, zap_enrol_key) && (!host || !strcmp(host, "h3")))
		return BUS_KEY_ENROL;
	return -EACCES;
}

static void zap_enrol(void *arg, const char *host, const char *key,
		      const Canopy__V1__Envelope *env)
{
	struct fx *f = arg;
	Canopy__V1__Envelope r = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__CommandResult res = CANOPY__V1__COMMAND_RESULT__INIT;
	Canopy__V1__Status st = CANOPY__V1__STATUS__INIT;

	assert_string_equal(host, "h3");
	assert_string_equal(key, zap_enrol_key);
	assert_string_equal(env->enrol->public_key, "new-key");
	zap_enrols++;
	result_env(&r, &res, &st, CN_OK);
	assert_int_equal(bus_server_reply(f->srv, host, env, &r), 0);
}

/* The fixture's server callbacks plus ZAP's (set in test_zap). */
static struct bus_server_ops zap_ops;

static struct bus_client *zap_client(struct fx *f, const char *host,
				     const char *pub, const char *sec,
				     const char *spub, struct fx *events)
{
	struct bus_options co = f->opts;
	struct bus_client *c = NULL;

	co.curve_public_key = pub;
	co.curve_secret_key = sec;
	co.curve_server_key = spub;
	assert_int_equal(bus_client_create(f->l, f->ep, host, &co, &cli_ops,
					   events, &c),
			 0);
	return c;
}

static void test_zap(void **state)
{
	struct fx *f = *state;
	char spub[41], ssec[41], epub[41], esec[41], upub[41], usec[41];
	char hsec[41];
	Canopy__V1__Envelope e = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__EnrolRequest er = CANOPY__V1__ENROL_REQUEST__INIT;
	Canopy__V1__AgentRegister reg = CANOPY__V1__AGENT_REGISTER__INIT;
	struct bus_options so = f->opts;
	Canopy__V1__AgentHeartbeat hb = CANOPY__V1__AGENT_HEARTBEAT__INIT;
	Canopy__V1__Envelope *got;
	struct bus_client *unknown, *thief;
	struct fx ev_u = { 0 }, ev_t = { 0 };
	struct raw r;
	uint64_t before;

	if (!zmq_has("curve")) {
		print_message("SKIP: libzmq has no CURVE support\n");
		skip();
	}
	assert_int_equal(zmq_curve_keypair(spub, ssec), 0);
	assert_int_equal(zmq_curve_keypair(zap_host_key, hsec), 0);
	assert_int_equal(zmq_curve_keypair(epub, esec), 0);
	assert_int_equal(zmq_curve_keypair(upub, usec), 0);
	memcpy(zap_enrol_key, epub, sizeof(epub));
	zap_ops = srv_ops;
	zap_ops.authorize = zap_authorize;
	zap_ops.on_enrol = zap_enrol;
	so.curve_secret_key = ssec;
	assert_int_equal(
		bus_server_create(f->l, f->ep, &so, &zap_ops, f, &f->srv), 0);
	/* A known host key: through. */
	f->c1 = zap_client(f, "h1", zap_host_key, hsec, spub, f);
	assert_true(spin_until(f, &f->connected, 1));
	/* An unknown key: refused at the handshake; nothing arrives. */
	unknown = zap_client(f, "h2", upub, usec, spub, &ev_u);
	/* h1's key used as h4: the handshake passes (the key is known), but
	 * every message is refused: a key speaks only for its host. */
	thief = zap_client(f, "h4", zap_host_key, hsec, spub, &ev_t);
	assert_true(wait_rejected(f, BUS_REJECT_KEY, 1, true) >= 1);
	assert_false(bus_server_peer_up(f->srv, "h2"));
	assert_false(bus_server_peer_up(f->srv, "h4"));
	assert_int_equal(ev_u.connected + ev_t.connected, 0);
	/* An enrolment key: its heartbeats make no peer, its enrol request
	 * reaches on_enrol, anything else is refused with a reply. */
	raw_open(&r, ZMQ_DEALER, "h3", NULL, NULL);
	assert_int_equal(zmq_setsockopt(r.sock, ZMQ_CURVE_SERVERKEY, spub, 40),
			 0);
	assert_int_equal(zmq_setsockopt(r.sock, ZMQ_CURVE_PUBLICKEY, epub, 40),
			 0);
	assert_int_equal(zmq_setsockopt(r.sock, ZMQ_CURVE_SECRETKEY, esec, 40),
			 0);
	assert_int_equal(zmq_connect(r.sock, f->ep), 0);
	bad_env(&e, &hb, BUS_VERSION, "h3", 0);
	raw_send_env(&r, NULL, &e); /* a heartbeat: ignored */
	er.public_key = (char *)"new-key";
	e.body_case = CANOPY__V1__ENVELOPE__BODY_ENROL;
	e.enrol = &er;
	e.request_id = 5;
	raw_send_env(&r, NULL, &e);
	got = raw_recv_nonhb(f, &r, T_WAIT_MS);
	assert_non_null(got);
	assert_int_equal(got->reply_to, 5);
	assert_int_equal(got->result->status->code, CN_OK);
	canopy__v1__envelope__free_unpacked(got, NULL);
	assert_int_equal(zap_enrols, 1);
	register_env(&e, &reg);
	e.version = BUS_VERSION;
	e.host_id = (char *)"h3";
	e.request_id = 6;
	raw_send_env(&r, NULL, &e);
	expect_error_reply(f, &r, 6);
	assert_false(bus_server_peer_up(f->srv, "h3"));
	/* The host key is revoked: h1's very next message is refused. */
	before = wait_rejected(f, BUS_REJECT_KEY, 0, true);
	zap_host_key[0] = zap_host_key[0] == 'a' ? 'b' : 'a';
	assert_true(wait_rejected(f, BUS_REJECT_KEY, before + 1, true) >
		    before);
	assert_true(spin_until(f, &f->peer_down, 1));
	bus_client_destroy(unknown);
	bus_client_destroy(thief);
	raw_close(&r);
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
		cmocka_unit_test_setup_teardown(test_zap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_queue_full, setup,
						teardown),
	};

	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
