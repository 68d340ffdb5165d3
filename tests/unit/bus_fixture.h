/* Shared fixture of the agent bus unit tests (test_bus, test_bus_input):
 * one loop, a server and a client on an ipc:// socket in a temp dir, event
 * counters, and raw ZeroMQ sockets that play a hostile peer. */
#ifndef CANOPY_TESTS_UNIT_BUS_FIXTURE_H
#define CANOPY_TESTS_UNIT_BUS_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>

#include <zmq.h>

#include "lib/bus.h"

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

/* A raw ZeroMQ socket with its own context. */
struct raw {
	void *ctx;
	void *sock;
};

extern const struct bus_server_ops srv_ops;
extern const struct bus_client_ops cli_ops;

/* Monotonic time in ms. */
uint64_t now_ms(void);
/* Run the loop until *flag >= want (true) or T_WAIT_MS passes (false). */
bool spin_until(struct fx *f, const int *flag, int want);
/* Run the loop for ms milliseconds. */
void spin_for(struct fx *f, int ms);
/* Make e a CommandResult with status code (r and st are its storage). */
void result_env(Canopy__V1__Envelope *e, Canopy__V1__CommandResult *r,
		Canopy__V1__Status *st, int32_t code);
/* Reply callback: records status, reply_to and code in the fx (arg). */
void on_reply(void *arg, int status, const Canopy__V1__Envelope *reply);
/* cmocka setup/teardown: a loop, a temp dir for the socket, options. */
int setup(void **state);
int teardown(void **state);
/* Create f->srv / f->c1 (as host) on f->ep; assert success. */
void start_server(struct fx *f);
void start_client(struct fx *f, const char *host);
/* Server and client "h1" up and seeing each other. */
void start_pair(struct fx *f);
/* Bodies for test envelopes (r / c are their storage). */
void register_env(Canopy__V1__Envelope *e, Canopy__V1__AgentRegister *r);
void vm_cmd_env(Canopy__V1__Envelope *e, Canopy__V1__VmCommand *c);
/* A raw socket of type with an optional routing id, connected or bound. */
void raw_open(struct raw *r, int type, const char *id, const char *connect,
	      const char *bind);
/* Close a raw socket and its context. */
void raw_close(struct raw *r);
/* Send one message of n frames, each given as (const void *, size_t). */
void raw_send(struct raw *r, int n, ...);
/* Send e packed, after a routing frame when route is not NULL. */
void raw_send_env(struct raw *r, const char *route,
		  const Canopy__V1__Envelope *e);
/* The next message on r (last frame, unpacked; NULL if none or not an
 * envelope within ms), running the loop meanwhile; raw_recv_nonhb skips
 * heartbeats. Free with canopy__v1__envelope__free_unpacked. */
Canopy__V1__Envelope *raw_recv(struct fx *f, struct raw *r, int ms);
Canopy__V1__Envelope *raw_recv_nonhb(struct fx *f, struct raw *r, int ms);
/* Run until the server's (or client's) reject counter why reaches want;
 * returns its value. */
uint64_t wait_rejected(struct fx *f, enum bus_reject why, uint64_t want,
		       bool server);
/* Assert r receives an INVALID_ARGUMENT CommandResult answering id. */
void expect_error_reply(struct fx *f, struct raw *r, uint64_t id);
/* Make e a heartbeat envelope with the given header fields. */
void bad_env(Canopy__V1__Envelope *e, Canopy__V1__AgentHeartbeat *hb,
	     uint32_t version, const char *host, uint64_t req);
/* Assert a valid request id from host over r is served with status OK. */
void expect_served(struct fx *f, struct raw *r, const char *host, uint64_t id);

#endif
