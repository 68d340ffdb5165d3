/* Fixture of the agent bus unit tests: callbacks, loop spinning, raw peers. */
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

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Run the loop until *flag reaches want or T_WAIT_MS passes. */
bool spin_until(struct fx *f, const int *flag, int want)
{
	uint64_t end = now_ms() + T_WAIT_MS;

	while (*flag < want && now_ms() < end)
		assert_true(loop_run_once(f->l, 5) >= 0);
	return *flag >= want;
}

/* Run the loop for ms milliseconds. */
void spin_for(struct fx *f, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (now_ms() < end)
		assert_true(loop_run_once(f->l, 5) >= 0);
}

void result_env(Canopy__V1__Envelope *e, Canopy__V1__CommandResult *r,
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

const struct bus_server_ops srv_ops = {
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

const struct bus_client_ops cli_ops = {
	.on_message = cli_message,
	.on_connected = cli_connected,
	.on_disconnected = cli_disconnected,
	.heartbeat_fill = cli_hb_fill,
};

void on_reply(void *arg, int status, const Canopy__V1__Envelope *reply)
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

int setup(void **state)
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

int teardown(void **state)
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

void start_server(struct fx *f)
{
	assert_int_equal(bus_server_create(f->l, f->ep, &f->opts, &srv_ops, f,
					   &f->srv),
			 0);
}

void start_client(struct fx *f, const char *host)
{
	assert_int_equal(bus_client_create(f->l, f->ep, host, &f->opts,
					   &cli_ops, f, &f->c1),
			 0);
}

/* Server and client h1 up and seeing each other. */
void start_pair(struct fx *f)
{
	start_server(f);
	start_client(f, "h1");
	assert_true(spin_until(f, &f->peer_up, 1));
	assert_true(spin_until(f, &f->connected, 1));
	assert_string_equal(f->last_up, "h1");
}

void register_env(Canopy__V1__Envelope *e, Canopy__V1__AgentRegister *r)
{
	r->hostname = (char *)"node1";
	r->cpus = 4;
	e->body_case = CANOPY__V1__ENVELOPE__BODY_REGISTER;
	e->register_ = r;
}

void vm_cmd_env(Canopy__V1__Envelope *e, Canopy__V1__VmCommand *c)
{
	c->action = CANOPY__V1__VM_ACTION__VM_ACTION_START;
	c->vm_id = (char *)"vm-1";
	e->body_case = CANOPY__V1__ENVELOPE__BODY_VM_COMMAND;
	e->vm_command = c;
}

void raw_open(struct raw *r, int type, const char *id, const char *connect,
	      const char *bind)
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

void raw_close(struct raw *r)
{
	zmq_close(r->sock);
	zmq_ctx_term(r->ctx);
}

/* Send one message of n frames (each given as data, len). */
void raw_send(struct raw *r, int n, ...)
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

void raw_send_env(struct raw *r, const char *route,
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
Canopy__V1__Envelope *raw_recv(struct fx *f, struct raw *r, int ms)
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
Canopy__V1__Envelope *raw_recv_nonhb(struct fx *f, struct raw *r, int ms)
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
uint64_t wait_rejected(struct fx *f, enum bus_reject why, uint64_t want,
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
void expect_error_reply(struct fx *f, struct raw *r, uint64_t id)
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

void bad_env(Canopy__V1__Envelope *e, Canopy__V1__AgentHeartbeat *hb,
	     uint32_t version, const char *host, uint64_t req)
{
	e->version = version;
	e->host_id = (char *)host;
	e->request_id = req;
	e->body_case = CANOPY__V1__ENVELOPE__BODY_HEARTBEAT;
	e->heartbeat = hb;
}

/* The server is alive: a valid request from host over r is served. */
void expect_served(struct fx *f, struct raw *r, const char *host, uint64_t id)
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
