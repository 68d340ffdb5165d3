/* gRPC C core client calls with protobuf-c messages (etcd client and CLI). */
#include <errno.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/time.h>

#include "lib/grpc_call.h"

grpc_byte_buffer *cn_grpc_msg_encode(const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	grpc_slice s = grpc_slice_malloc(len);
	grpc_byte_buffer *bb;

	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
	bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

ProtobufCMessage *cn_grpc_msg_decode(const ProtobufCMessageDescriptor *desc,
				     grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader rd;
	ProtobufCMessage *m;
	grpc_slice s;

	if (!bb || !grpc_byte_buffer_reader_init(&rd, bb))
		return NULL;
	s = grpc_byte_buffer_reader_readall(&rd);
	m = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s),
				      GRPC_SLICE_START_PTR(s));
	grpc_slice_unref(s);
	grpc_byte_buffer_reader_destroy(&rd);
	return m;
}

void cn_grpc_slice_text(char *dst, size_t size, grpc_slice s)
{
	size_t n = GRPC_SLICE_LENGTH(s), i;
	const unsigned char *p = GRPC_SLICE_START_PTR(s);

	if (n > size - 1)
		n = size - 1;
	for (i = 0; i < n; i++)
		dst[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
	dst[n] = '\0';
}

int cn_grpc_batch(grpc_call *call, grpc_completion_queue *cq,
		  const grpc_op *ops, size_t n)
{
	grpc_event ev;

	if (grpc_call_start_batch(call, ops, n, call, NULL) != GRPC_CALL_OK)
		return -EIO;
	/* The call's deadline bounds this wait. */
	ev = grpc_completion_queue_pluck(
		cq, call, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (ev.type != GRPC_OP_COMPLETE || !ev.success)
		return -ECONNABORTED;
	return 0;
}

void cn_grpc_cq_destroy(grpc_completion_queue *cq)
{
	if (!cq)
		return;
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_pluck(
		       cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
		       .type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
}

/* The six ops of a unary call, receiving into res and the given arrays. */
static void unary_ops(grpc_op *ops, grpc_byte_buffer *req,
		      grpc_metadata_array *md_init,
		      grpc_metadata_array *md_trail, grpc_slice *details,
		      struct cn_grpc_unary *res)
{
	memset(ops, 0, 6 * sizeof(*ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = req;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = md_init;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &res->resp;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = md_trail;
	ops[5].data.recv_status_on_client.status = &res->status;
	ops[5].data.recv_status_on_client.status_details = details;
}

int cn_grpc_unary_run(grpc_channel *ch, grpc_completion_queue *cq,
		      const char *method, gpr_timespec deadline,
		      grpc_byte_buffer *req, struct cn_grpc_unary *res)
{
	grpc_metadata_array md_init, md_trail;
	grpc_slice details = grpc_empty_slice();
	grpc_op ops[6];
	grpc_call *call;
	int rc;

	memset(res, 0, sizeof(*res));
	res->status = GRPC_STATUS_UNKNOWN;
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
					grpc_slice_from_static_string(method),
					NULL, deadline, NULL);
	if (!call)
		return -EIO;
	grpc_metadata_array_init(&md_init);
	grpc_metadata_array_init(&md_trail);
	unary_ops(ops, req, &md_init, &md_trail, &details, res);
	rc = cn_grpc_batch(call, cq, ops, CN_ARRAY_SIZE(ops));
	if (rc == 0)
		cn_grpc_slice_text(res->detail, sizeof(res->detail), details);
	else
		res->status = GRPC_STATUS_UNKNOWN;
	if ((rc || res->status != GRPC_STATUS_OK) && res->resp) {
		grpc_byte_buffer_destroy(res->resp);
		res->resp = NULL;
	}
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&md_init);
	grpc_metadata_array_destroy(&md_trail);
	grpc_call_unref(call);
	return rc;
}
