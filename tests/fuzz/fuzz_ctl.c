/* libFuzzer harness for the VMM control socket's request parser: the input
 * is what a client writes on the socket (4-byte big-endian lengths and
 * VmmRequest bodies), fed to the same frame reader as the control server
 * in pieces whose sizes the first byte picks; every whole frame goes
 * through vmm_control_req_decode (host/vmm/control_req.c), as in
 * host/vmm/control.c. A crash, a leak, a read past the input or an
 * accepted request that breaks the decoder's promises is a bug. */
#include <stdint.h>
#include <stdlib.h>

#include "host/vmm/control_req.h"
#include "lib/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What an accepted request promises handle() in control.c. */
static void check_accepted(const Canopy__V1__VmmRequest *rq)
{
	switch (rq->op_case) {
	case CANOPY__V1__VMM_REQUEST__OP_SAVE:
		if (!rq->save || !rq->save->path || !rq->save->path[0])
			abort();
		break;
	case CANOPY__V1__VMM_REQUEST__OP_CONSOLE_INPUT:
		if (!rq->console_input ||
		    rq->console_input->data.len > CONTROL_CONSOLE_INPUT_MAX ||
		    (rq->console_input->data.len &&
		     !rq->console_input->data.data))
			abort();
		break;
	case CANOPY__V1__VMM_REQUEST__OP_STOP:
		if (!rq->stop)
			abort();
		break;
	case CANOPY__V1__VMM_REQUEST__OP_DIRTY_LOG:
		if (!rq->dirty_log)
			abort();
		break;
	case CANOPY__V1__VMM_REQUEST__OP_BALLOON:
		if (!rq->balloon)
			abort();
		break;
	case CANOPY__V1__VMM_REQUEST__OP_MIGRATE_SEND:
		if (!rq->migrate_send)
			abort();
		break;
	default:
		break;
	}
}

/* Decode every whole frame the reader holds; 1 when the stream is dead
 * (oversized frame: the server closes it). */
static int drain(struct frame_reader *rd)
{
	Canopy__V1__VmmRequest *rq;
	const uint8_t *body;
	char msg[128];
	uint32_t len;
	int rc;

	while ((rc = frame_next(rd, &body, &len)) == 1) {
		if (len > CONTROL_MAX_REQUEST)
			abort(); /* the reader let an oversized frame by */
		if (vmm_control_req_decode(body, len, &rq, msg, sizeof(msg))) {
			if (!msg[0])
				abort(); /* a refusal must say why */
		} else {
			check_accepted(rq);
		}
		if (rq)
			canopy__v1__vmm_request__free_unpacked(rq, NULL);
	}
	return rc < 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct frame_reader rd;
	size_t chunk, off = 1;

	if (size < 1)
		return 0;
	chunk = data[0] ? data[0] : size; /* 0: everything at once */
	frame_reader_init(&rd, CONTROL_MAX_REQUEST);
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;

		if (frame_reader_feed(&rd, data + off, n) < 0)
			break; /* out of memory: not the parser's fault */
		off += n;
		if (drain(&rd))
			break;
	}
	frame_reader_free(&rd);
	return 0;
}
