/* Small protobuf-c helpers: a deep copy of a message. */
#include <stdint.h>
#include <stdlib.h>

#include "lib/pb.h"

ProtobufCMessage *cn_pb_copy(const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(n ? n : 1);
	ProtobufCMessage *out;

	if (!buf)
		return NULL;
	protobuf_c_message_pack(msg, buf);
	out = protobuf_c_message_unpack(msg->descriptor, NULL, n, buf);
	free(buf);
	return out;
}
