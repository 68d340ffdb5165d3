/*
 * Any protobuf-c message as JSON, driven by its descriptor: every field
 * under its .proto name (defaults included, so a script sees a stable set
 * of keys), enums as their value names ("HOST_STATE_CONNECTED", a number
 * when the value is unknown), 64-bit integers as JSON numbers, bytes as
 * base64, nested messages as objects (null when absent), repeated fields
 * as arrays. Only the members of a oneof that are set are written.
 */
#ifndef CANOPY_CLI_PBJSON_H
#define CANOPY_CLI_PBJSON_H

#include <protobuf-c/protobuf-c.h>

#include "cli/out.h"

/* Write m as one JSON object value at the writer's position. */
void cli_pb_json(struct cli_json *j, const ProtobufCMessage *m);

/* Name of value v of an enum ("TASK_STATE_RUNNING"), NULL when unknown. */
const char *cli_pb_enum_name(const ProtobufCEnumDescriptor *d, int v);

#endif
