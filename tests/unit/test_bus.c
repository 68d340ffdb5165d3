/* Unit tests for lib/bus*.c: the agent bus over ZeroMQ on ipc:// sockets. */
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

/* Short intervals keep every test well under a second. */
#define T_HEARTBEAT_MS 20
#define T_TIMEOUT_MS 150
/* Longest a test waits for something that should happen. */
#define T_WAIT_MS 2000

struct fx {
	struct loop *l;
	char dir[64];
	char ep[128];
	struct bus_options opts;
	struct bus_server *srv;
	struct bus_client *c1;
	/* server events */
	int peer_up;
	int peer_down;
	char last_up[BUS_HOST_ID_MAX + 1];
	char last_down[BUS_HOST_ID_MAX + 1];
	int srv_msgs;
	int srv_hb;
	char last_from[BUS_HOST_ID_MAX + 1];
	Canopy__V1__Envelope__BodyCase last_body;
	uint64_t last_req_id;
	bool srv_answer; /* server replies to requests at once */
	/* client events */
	int connected;
	int disconnected;
	int cli_msgs;
	uint64_t cli_req_id;
	bool cli_answer;
	bool cli_then_srv_send; /* after answering, the server sends too */
	/* reply callbacks */
	int replies;
	int reply_status;
	uint64_t reply_to;
	int32_t reply_code;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Run the loop until *flag reaches want or T_WAIT_MS passes. */
static bool spin_until(struct fx *f, const int *flag, int want)
{
	uint64_t end = now_ms() + T_WAIT_MS;

	while (*flag < want && now_ms() < end)
		assert_true(loop_run_once(f->l, 5) >= 0);
	return *flag >= want;
}

/* Run the loop for ms milliseconds. */
static void spin_for(struct fx *f, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (now_ms() < end)
		assert_true(loop_run_once(f->l, 5) >= 0);
}

static void result_env(Canopy__V1__Envelope *e, Canopy__V1__CommandResult *r,
		       Canopy__V1__Status *st, int32_t code)
{
	st->code = code;
	st->message = (char *)(code ? "failed" : "ok");
	r->status = st;
	e->body_case = CANOPY__V1__ENVELOPE__BODY_RESULT;
	e->result = r;
}

/* ---- callbacks ----------------------------------------------------------- */

static void srv_message(void *arg, const char *host,
			const Canopy__V1__Envelope *env)
{
	struct fx *f = arg;
	Canopy__V1__Envelope r = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__CommandResult res = CANOPY__V1__COMMAND_RESULT__INIT;
	Canopy__V1__Status st = CANOPY__V1__STATUS__INIT;

	f->srv_msgs++;
	snprintf(f->last_from, sizeof(f->last_from), "%s", host);
	f->last_body = env->body_case;
	f->last_req_id = env->request_id;
	assert_string_equal(env->host_id, host);
	if (f->srv_answer && env->request_id) {
		result_env(&r, &res, &st, CN_OK);
		assert_int_equal(bus_server_reply(f->srv, host, env, &r), 0);
	}
}

static void srv_heartbeat(void *arg, const char *host,
			  const Canopy__V1__AgentHeartbeat *hb)
{
	struct fx *f = arg;

	assert_true(hb->seq > 0);
	f->srv_hb++;
}

static void srv_up(void *arg, const char *host)
{
	struct fx *f = arg;

	f->peer_up++;
	snprintf(f->last_up, sizeof(f->last_up), "%s", host);
}

static void srv_down(void *arg, const char *host)
{
	struct fx *f = arg;

	f->peer_down++;
	snprintf(f->last_down, sizeof(f->last_down), "%s", host);
}

static const struct bus_server_ops srv_ops = {
	.on_message = srv_message,
	.on_heartbeat = srv_heartbeat,
	.on_peer_up = srv_up,
	.on_peer_down = srv_down,
};

static void cli_message(void *arg, const Canopy__V1__Envelope *env)
{
	struct fx *f = arg;
	Canopy__V1__Envelope r = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__CommandResult res = CANOPY__V1__COMMAND_RESULT__INIT;
	Canopy__V1__Status st = CANOPY__V1__STATUS__INIT;

	f->cli_msgs++;
	f->cli_req_id = env->request_id;
	if (f->cli_answer && env->request_id) {
		result_env(&r, &res, &st, CN_OK);
		assert_int_equal(bus_client_reply(f->c1, env, &r), 0);
	}
	if (f->cli_then_srv_send) {
		/* Let the reply reach the server's queue, then send from the
		 * server outside its drain: that send eats the ZMQ_FD wake-up
		 * of the reply. */
		usleep(30000);
		assert_int_equal(bus_server_send(f->srv, "h1", env), 0);
	}
}

static void cli_connected(void *arg)
{
	((struct fx *)arg)->connected++;
}

static void cli_disconnected(void *arg)
{
	((struct fx *)arg)->disconnected++;
}

static void cli_hb_fill(void *arg, Canopy__V1__AgentHeartbeat *hb)
{
	hb->running_vms = 3;
}

static const struct bus_client_ops cli_ops = {
	.on_message = cli_message,
	.on_connected = cli_connected,
	.on_disconnected = cli_disconnected,
	.heartbeat_fill = cli_hb_fill,
};

static void on_reply(void *arg, int status, const Canopy__V1__Envelope *reply)
{
	struct fx *f = arg;

	f->replies++;
	f->reply_status = status;
	f->reply_to = reply ? reply->reply_to : 0;
	f->reply_code = -1;
	if (reply && reply->body_case == CANOPY__V1__ENVELOPE__BODY_RESULT &&
	    reply->result->status)
		f->reply_code = reply->result->status->code;
	if (status)
		assert_null(reply);
}

/* ---- fixture ------------------------------------------------------------- */

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f || loop_create(&f->l))
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_bus.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->ep, sizeof(f->ep), "ipc://%s/bus.sock", f->dir);
	f->opts.heartbeat_ms = T_HEARTBEAT_MS;
	f->opts.peer_timeout_ms = T_TIMEOUT_MS;
	f->opts.reconnect_ms = 10;
	f->opts.reconnect_max_ms = 50;
	f->srv_answer = true;
	f->cli_answer = true;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char path[160];

	bus_client_destroy(f->c1);
	bus_server_destroy(f->srv);
	loop_destroy(f->l);
	snprintf(path, sizeof(path), "%s/bus.sock", f->dir);
	unlink(path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void start_server(struct fx *f)
{
	assert_int_equal(bus_server_create(f->l, f->ep, &f->opts, &srv_ops, f,
					   &f->srv),
			 0);
}

static void start_client(struct fx *f, const char *host)
{
	assert_int_equal(bus_client_create(f->l, f->ep, host, &f->opts,
					   &cli_ops, f, &f->c1),
			 0);
}

/* Server and client h1 up and seeing each other. */
static void start_pair(struct fx *f)
{
	start_server(f);
	start_client(f, "h1");
	assert_true(spin_until(f, &f->peer_up, 1));
	assert_true(spin_until(f, &f->connected, 1));
	assert_string_equal(f->last_up, "h1");
}

static void register_env(Canopy__V1__Envelope *e, Canopy__V1__AgentRegister *r)
{
	r->hostname = (char *)"node1";
	r->cpus = 4;
	e->body_case = CANOPY__V1__ENVELOPE__BODY_REGISTER;
	e->register_ = r;
}

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

static void vm_cmd_env(Canopy__V1__Envelope *e, Canopy__V1__VmCommand *c)
{
	c->action = CANOPY__V1__VM_ACTION__VM_ACTION_START;
	c->vm_id = (char *)"vm-1";
	e->body_case = CANOPY__V1__ENVELOPE__BODY_VM_COMMAND;
	e->vm_command = c;
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

/* ---- hostile input: a raw DEALER talks to the server ------------------------ */

struct raw {
	void *ctx;
	void *sock;
};

static void raw_open(struct raw *r, int type, const char *id,
		     const char *connect, const char *bind)
{
	int zero = 0;

	r->ctx = zmq_ctx_new();
	assert_non_null(r->ctx);
	r->sock = zmq_socket(r->ctx, type);
	assert_non_null(r->sock);
	assert_int_equal(
		zmq_setsockopt(r->sock, ZMQ_LINGER, &zero, sizeof(zero)), 0);
	if (id)
		assert_int_equal(zmq_setsockopt(r->sock, ZMQ_ROUTING_ID, id,
						strlen(id)),
				 0);
	if (connect)
		assert_int_equal(zmq_connect(r->sock, connect), 0);
	if (bind)
		assert_int_equal(zmq_bind(r->sock, bind), 0);
}

static void raw_close(struct raw *r)
{
	zmq_close(r->sock);
	zmq_ctx_term(r->ctx);
}

/* Send one message of n frames (each given as data, len). */
static void raw_send(struct raw *r, int n, ...)
{
	va_list ap;
	int i;

	va_start(ap, n);
	for (i = 0; i < n; i++) {
		const void *d = va_arg(ap, const void *);
		size_t len = va_arg(ap, size_t);

		assert_true(zmq_send(r->sock, d, len,
				     i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
	}
	va_end(ap);
}

static void raw_send_env(struct raw *r, const char *route,
			 const Canopy__V1__Envelope *e)
{
	uint8_t buf[512];
	size_t len = canopy__v1__envelope__get_packed_size(e);

	assert_true(len <= sizeof(buf));
	canopy__v1__envelope__pack(e, buf);
	if (route)
		raw_send(r, 2, route, strlen(route), buf, len);
	else
		raw_send(r, 1, buf, len);
}

/* The next message the raw socket gets (last frame), running the loop
 * meanwhile; NULL if none within ms. */
static Canopy__V1__Envelope *raw_recv(struct fx *f, struct raw *r, int ms)
{
	uint8_t buf[4096];
	uint64_t end = now_ms() + (uint64_t)ms;
	int more = 0, n;
	size_t ml = sizeof(more);

	while (now_ms() < end) {
		assert_true(loop_run_once(f->l, 2) >= 0);
		n = zmq_recv(r->sock, buf, sizeof(buf), ZMQ_DONTWAIT);
		if (n < 0)
			continue;
		assert_int_equal(
			zmq_getsockopt(r->sock, ZMQ_RCVMORE, &more, &ml), 0);
		while (more) {
			n = zmq_recv(r->sock, buf, sizeof(buf), 0);
			assert_true(n >= 0);
			assert_int_equal(zmq_getsockopt(r->sock, ZMQ_RCVMORE,
							&more, &ml),
					 0);
		}
		assert_true((size_t)n <= sizeof(buf));
		return canopy__v1__envelope__unpack(NULL, (size_t)n, buf);
	}
	return NULL;
}

/* The next message that is not a heartbeat, or NULL. */
static Canopy__V1__Envelope *raw_recv_nonhb(struct fx *f, struct raw *r, int ms)
{
	Canopy__V1__Envelope *e;

	while ((e = raw_recv(f, r, ms))) {
		if (e->body_case != CANOPY__V1__ENVELOPE__BODY_HEARTBEAT)
			return e;
		canopy__v1__envelope__free_unpacked(e, NULL);
	}
	return NULL;
}

/* Run until the reject counter of why reaches want. */
static uint64_t wait_rejected(struct fx *f, enum bus_reject why, uint64_t want,
			      bool server)
{
	uint64_t end = now_ms() + T_WAIT_MS;
	struct bus_stats st;

	for (;;) {
		if (server)
			bus_server_stats(f->srv, &st);
		else
			bus_client_stats(f->c1, &st);
		if (st.rejected[why] >= want || now_ms() >= end)
			return st.rejected[why];
		assert_true(loop_run_once(f->l, 2) >= 0);
	}
}

/* An error reply: answers request id, INVALID_ARGUMENT, a sentence. */
static void expect_error_reply(struct fx *f, struct raw *r, uint64_t id)
{
	Canopy__V1__Envelope *e = raw_recv_nonhb(f, r, 500);

	assert_non_null(e);
	assert_int_equal(e->reply_to, id);
	assert_int_equal(e->request_id, 0);
	assert_int_equal(e->version, BUS_VERSION);
	assert_int_equal(e->body_case, CANOPY__V1__ENVELOPE__BODY_RESULT);
	assert_non_null(e->result->status);
	assert_int_equal(e->result->status->code, CN_INVALID_ARGUMENT);
	assert_true(strlen(e->result->status->message) > 10);
	canopy__v1__envelope__free_unpacked(e, NULL);
}

static void bad_env(Canopy__V1__Envelope *e, Canopy__V1__AgentHeartbeat *hb,
		    uint32_t version, const char *host, uint64_t req)
{
	e->version = version;
	e->host_id = (char *)host;
	e->request_id = req;
	e->body_case = CANOPY__V1__ENVELOPE__BODY_HEARTBEAT;
	e->heartbeat = hb;
}

/* The server is alive: a valid request from host over r is served. */
static void expect_served(struct fx *f, struct raw *r, const char *host,
			  uint64_t id)
{
	Canopy__V1__Envelope e = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__AgentRegister reg = CANOPY__V1__AGENT_REGISTER__INIT;
	Canopy__V1__Envelope *got;
	int before = f->srv_msgs;

	register_env(&e, &reg);
	e.version = BUS_VERSION;
	e.host_id = (char *)host;
	e.request_id = id;
	raw_send_env(r, NULL, &e);
	assert_true(spin_until(f, &f->srv_msgs, before + 1));
	assert_string_equal(f->last_from, host);
	got = raw_recv_nonhb(f, r, 500);
	assert_non_null(got);
	assert_int_equal(got->reply_to, id);
	assert_int_equal(got->result->status->code, CN_OK);
	assert_string_equal(got->host_id, host);
	canopy__v1__envelope__free_unpacked(got, NULL);
}

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
