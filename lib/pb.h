/* Small protobuf-c helpers shared by the daemons and the CLI. */
#ifndef CANOPY_LIB_PB_H
#define CANOPY_LIB_PB_H

#include <protobuf-c/protobuf-c.h>

/*
 * A heap copy of msg (packed, then unpacked: every string and sub-message
 * its own), to free with protobuf_c_message_free_unpacked(copy, NULL).
 * NULL when out of memory.
 */
ProtobufCMessage *cn_pb_copy(const ProtobufCMessage *msg);

#endif
