/*
 * canopy-vmm control socket: decoding and validation of one request frame
 * (proto/canopy_vmm.proto VmmRequest), apart from the socket and the VM so
 * that the control server and the fuzz harness (tests/fuzz/fuzz_ctl.c) run
 * the same code. Pure; any thread.
 */
#ifndef CANOPY_HOST_VMM_CONTROL_REQ_H
#define CANOPY_HOST_VMM_CONTROL_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "lib/compiler.h"
#include "proto/canopy_vmm.pb-c.h"

/* Largest request frame accepted; requests are tiny. */
#define CONTROL_MAX_REQUEST (64u << 10)
/* Largest console_input accepted in one request. */
#define CONTROL_CONSOLE_INPUT_MAX 4096u

/*
 * Decode the frame body (len bytes) into *out and check what can be
 * checked without the VM: a known operation with its message, a snapshot
 * path for save, a known dirty-log op, console input of at most
 * CONTROL_CONSOLE_INPUT_MAX bytes. 0 with *out set (the caller frees it
 * with canopy__v1__vmm_request__free_unpacked); -EINVAL with a sentence
 * in msg (size msglen) and *out NULL when the body is not a VmmRequest,
 * or with *out set (its id answers the error; free it too) when it is
 * one that fails a check.
 */
CN_MUST_CHECK int vmm_control_req_decode(const uint8_t *body, size_t len,
					 Canopy__V1__VmmRequest **out,
					 char *msg, size_t msglen);

#endif
