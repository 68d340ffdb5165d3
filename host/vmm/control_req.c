/* canopy-vmm control socket: decoding and checks of one request frame. */
#include <errno.h>
#include <stdio.h>

#include "host/vmm/control_req.h"

typedef Canopy__V1__VmmRequest Request;

/* Is the message of the chosen operation there? (protobuf-c sets it with
 * the case; a request built by hand in C might not.) */
static int op_present(const Request *rq)
{
	switch (rq->op_case) {
	case CANOPY__V1__VMM_REQUEST__OP_STATUS:
		return rq->status != NULL;
	case CANOPY__V1__VMM_REQUEST__OP_PAUSE:
		return rq->pause != NULL;
	case CANOPY__V1__VMM_REQUEST__OP_RESUME:
		return rq->resume != NULL;
	case CANOPY__V1__VMM_REQUEST__OP_STOP:
		return rq->stop != NULL;
	case CANOPY__V1__VMM_REQUEST__OP_SAVE:
		return rq->save != NULL;
	case CANOPY__V1__VMM_REQUEST__OP_DIRTY_LOG:
		return rq->dirty_log != NULL;
	case CANOPY__V1__VMM_REQUEST__OP_BALLOON:
		return rq->balloon != NULL;
	case CANOPY__V1__VMM_REQUEST__OP_MIGRATE_SEND:
		return rq->migrate_send != NULL;
	case CANOPY__V1__VMM_REQUEST__OP_CONSOLE_INPUT:
		return rq->console_input != NULL;
	case CANOPY__V1__VMM_REQUEST__OP_MIGRATE_RESOLVE:
		return rq->migrate_resolve != NULL;
	default:
		return 0;
	}
}

static int check(const Request *rq, char *msg, size_t msglen)
{
	if (!op_present(rq)) {
		snprintf(msg, msglen, "request without a known operation");
		return -EINVAL;
	}
	switch (rq->op_case) {
	case CANOPY__V1__VMM_REQUEST__OP_SAVE:
		if (!rq->save->path || !rq->save->path[0]) {
			snprintf(msg, msglen,
				 "save: a snapshot path is required");
			return -EINVAL;
		}
		return 0;
	case CANOPY__V1__VMM_REQUEST__OP_DIRTY_LOG:
		switch (rq->dirty_log->op) {
		case CANOPY__V1__DIRTY_LOG_OP__DIRTY_LOG_OP_START:
		case CANOPY__V1__DIRTY_LOG_OP__DIRTY_LOG_OP_STOP:
		case CANOPY__V1__DIRTY_LOG_OP__DIRTY_LOG_OP_FETCH:
			return 0;
		default:
			snprintf(msg, msglen, "dirty_log: unknown op %d",
				 (int)rq->dirty_log->op);
			return -EINVAL;
		}
	case CANOPY__V1__VMM_REQUEST__OP_CONSOLE_INPUT:
		if (rq->console_input->data.len > CONTROL_CONSOLE_INPUT_MAX) {
			snprintf(msg, msglen,
				 "console_input: %zu bytes; at most %u per "
				 "request",
				 rq->console_input->data.len,
				 CONTROL_CONSOLE_INPUT_MAX);
			return -EINVAL;
		}
		return 0;
	default:
		return 0;
	}
}

int vmm_control_req_decode(const uint8_t *body, size_t len, Request **out,
			   char *msg, size_t msglen)
{
	*out = canopy__v1__vmm_request__unpack(NULL, len, body);
	if (!*out) {
		snprintf(msg, msglen, "malformed request: not a VmmRequest");
		return -EINVAL;
	}
	return check(*out, msg, msglen);
}
