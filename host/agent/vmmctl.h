/*
 * canopy-agent: an asynchronous client of a VMM's control socket
 * (proto/canopy_vmm.proto, 4-byte big-endian length + protobuf), driven by
 * the agent's lib/loop. One call = one connection: connect, send one
 * VmmRequest, read its VmmReply, close.
 *
 * Loop thread only. The callback runs exactly once after a successful
 * vmmctl_call_start (never from inside it): with status 0 and the reply
 * (owned by the call, valid during the callback), or a negative errno and
 * NULL (-ETIMEDOUT, -ECONNRESET, -EBADMSG for a reply that is not a
 * VmmReply or has another id, ...). vmmctl_call_cancel frees a call
 * without running the callback.
 */
#ifndef CANOPY_HOST_AGENT_VMMCTL_H
#define CANOPY_HOST_AGENT_VMMCTL_H

#include <stdint.h>

#include "lib/compiler.h"
#include "proto/canopy_vmm.pb-c.h"

struct loop;
struct vmmctl_call;

/* Largest reply accepted (a dirty bitmap could be big; status is small). */
#define VMMCTL_REPLY_MAX (1u << 20)

typedef void (*vmmctl_done_fn)(void *arg, int status,
			       const Canopy__V1__VmmReply *rep);

/*
 * Connect to the control socket "control.sock" in directory vm_dir and
 * send req (its id is set by the call). The directory is reached through
 * /proc/self/fd so that long run directories work. 0 with *out set, or
 * -errno from the connect (-ENOENT: no socket yet, -ECONNREFUSED: nobody
 * listens) and cb never runs.
 */
CN_MUST_CHECK int vmmctl_call_start(struct loop *l, const char *vm_dir,
				    Canopy__V1__VmmRequest *req,
				    uint32_t timeout_ms, vmmctl_done_fn cb,
				    void *arg, struct vmmctl_call **out);
/* The status code and message of a reply (an absent Status means OK). */
static inline int vmmctl_code(const Canopy__V1__VmmReply *r)
{
	return r->status ? r->status->code : 0;
}

static inline const char *vmmctl_message(const Canopy__V1__VmmReply *r)
{
	return r->status && r->status->message ? r->status->message : "";
}

/* Abandon a call: its callback never runs. NULL is a no-op. */
void vmmctl_call_cancel(struct vmmctl_call *c);

#endif
