/* canopy CLI: protobuf-c messages written as JSON through their descriptors. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/pbjson.h"

const char *cli_pb_enum_name(const ProtobufCEnumDescriptor *d, int v)
{
	const ProtobufCEnumValue *ev =
		protobuf_c_enum_descriptor_get_value(d, v);

	return ev ? ev->name : NULL;
}

static void json_base64(struct cli_json *j, const ProtobufCBinaryData *b)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc(b->len / 3 * 4 + 5);
	size_t i, o = 0;
	uint32_t v;

	if (!out) {
		cli_json_null(j);
		return;
	}
	for (i = 0; i < b->len; i += 3) {
		v = (uint32_t)b->data[i] << 16;
		if (i + 1 < b->len)
			v |= (uint32_t)b->data[i + 1] << 8;
		if (i + 2 < b->len)
			v |= b->data[i + 2];
		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = i + 1 < b->len ? tab[v >> 6 & 63] : '=';
		out[o++] = i + 2 < b->len ? tab[v & 63] : '=';
	}
	cli_json_string_len(j, out, o);
	free(out);
}

/* Size of one element of a field of type t in a repeated array. */
static size_t elem_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	default:
		return 4; /* 32-bit integers, float, enum */
	}
}

/* One value of field f stored at p. */
static void json_value(struct cli_json *j, const ProtobufCFieldDescriptor *f,
		       const void *p)
{
	const char *name;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		cli_json_int(j, *(const int32_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		cli_json_int(j, *(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		cli_json_uint(j, *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		cli_json_uint(j, *(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		cli_json_double(j, *(const float *)p);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		cli_json_double(j, *(const double *)p);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		cli_json_bool(j, *(const protobuf_c_boolean *)p);
		break;
	case PROTOBUF_C_TYPE_ENUM:
		name = cli_pb_enum_name(f->descriptor, *(const int *)p);
		if (name)
			cli_json_string(j, name);
		else
			cli_json_int(j, *(const int *)p);
		break;
	case PROTOBUF_C_TYPE_STRING:
		cli_json_string(j, *(char *const *)p);
		break;
	case PROTOBUF_C_TYPE_BYTES:
		json_base64(j, p);
		break;
	case PROTOBUF_C_TYPE_MESSAGE:
		if (*(ProtobufCMessage *const *)p)
			cli_pb_json(j, *(ProtobufCMessage *const *)p);
		else
			cli_json_null(j);
		break;
	}
}

void cli_pb_json(struct cli_json *j, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	unsigned i;
	size_t k, n;

	cli_json_begin_object(j);
	for (i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *p = base + f->offset;

		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		cli_json_key(j, f->name);
		if (f->label != PROTOBUF_C_LABEL_REPEATED) {
			json_value(j, f, p);
			continue;
		}
		n = *(const size_t *)(base + f->quantifier_offset);
		cli_json_begin_array(j);
		for (k = 0; k < n; k++)
			json_value(j, f,
				   *(char *const *)p + k * elem_size(f->type));
		cli_json_end_array(j);
	}
	cli_json_end_object(j);
}
