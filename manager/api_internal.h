/*
 * canopy-managerd: private parts of the gRPC server (api_server.c: server,
 * queue thread and dispatch; api_call.c: ending calls and streams).
 * Everything here runs on the loop thread except api_tag.ok, written by the
 * queue thread before it posts the tag.
 */
#ifndef CANOPY_MANAGER_API_INTERNAL_H
#define CANOPY_MANAGER_API_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>

#include "manager/api.h"
#include "manager/auth_mgr.h"

enum api_tag_kind {
	API_TAG_NEW = 0, /* grpc_server_request_call completed */
	API_TAG_RECV, /* the request message arrived */
	API_TAG_SEND, /* one stream message was sent */
	API_TAG_STATUS, /* the final status (and message) was sent */
	API_TAG_CLOSE, /* the client closed or cancelled */
	API_TAG_SHUTDOWN, /* the server finished shutting down */
};

/* One outstanding batch (each kind at most once per call at a time). */
struct api_tag {
	enum api_tag_kind kind;
	struct api_call *call; /* NULL for API_TAG_SHUTDOWN */
	struct api_server *srv;
	int ok; /* the queue's success flag */
};

/* A queued stream message. */
struct api_msg {
	struct api_msg *next;
	grpc_byte_buffer *bb;
};

struct api_call {
	struct api_server *srv;
	struct api_call *prev, *next; /* the server's live calls */
	grpc_call *call;
	grpc_call_details details;
	grpc_metadata_array md;
	char method[128]; /* printable copy of the method name */
	grpc_byte_buffer *recv_bb;
	grpc_byte_buffer *send_bb; /* in flight on t_send or t_status */
	grpc_slice status_msg; /* in flight on t_status */
	int cancelled; /* filled by RECV_CLOSE_ON_SERVER */
	int pending; /* batches outstanding */
	bool md_sent; /* initial metadata went out */
	bool sending; /* a SEND_MESSAGE batch is outstanding */
	bool ended; /* api_fail/api_reply was called */
	bool status_started; /* the status batch was started */
	bool gone; /* the client cancelled or a send failed */
	enum cn_code end_code;
	char *end_msg;
	struct api_msg *q_head, *q_tail;
	size_t q_len;
	api_cancel_fn on_cancel;
	void *cancel_arg;
	struct auth_call auth; /* who calls, on what (auth_gate.c) */
	struct api_tag t_new, t_recv, t_send, t_status, t_close;
};

/* Called as each call ends (its status is decided), with the code and
 * message: the audit log (audit.c). */
typedef void (*api_end_fn)(void *arg, struct api_call *c, int code,
			   const char *msg);

struct api_server {
	struct loop *l;
	grpc_server *server;
	grpc_completion_queue *cq;
	pthread_t thread;
	bool thread_started;
	api_gate_fn gate;
	api_end_fn on_end;
	void *arg;
	struct api_call *calls; /* live calls (including the one waiting) */
	size_t n_calls;
	bool shutting_down;
	bool shutdown_done;
	struct api_tag t_shutdown;
};

/* Create a call record and ask gRPC for the next incoming call. 0 or
 * -errno. */
CN_MUST_CHECK int api_call_request(struct api_server *s);
/* Start a batch of ops with tag t (counts it as pending). 0 or -EIO. */
CN_MUST_CHECK int api_call_batch(struct api_call *c, const grpc_op *ops,
				 size_t n, struct api_tag *t);
/* Completion of a SEND or STATUS tag (api_call.c). */
void api_call_sent(struct api_call *c, struct api_tag *t);
/* Free c if nothing is outstanding and it has ended (or never began). */
void api_call_maybe_free(struct api_call *c);
/* Encode msg into a new byte buffer; NULL on failure. */
grpc_byte_buffer *api_encode(const ProtobufCMessage *msg);

/* Set the end hook (NULL: none). Loop thread. */
void api_server_set_on_end(struct api_server *s, api_end_fn fn);

#endif
