/* Unit tests of host/vmm/control_req.c: decoding and checks of a control
 * request frame, with the refusals control.c answers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "host/vmm/control_req.h"

typedef Canopy__V1__VmmRequest Request;

/* Pack rq and decode it again; returns the decoder's result. */
static int roundtrip(const Request *rq, Request **out, char *msg, size_t n)
{
	size_t len = canopy__v1__vmm_request__get_packed_size(rq);
	uint8_t *buf = malloc(len ? len : 1);
	int rc;

	assert_non_null(buf);
	canopy__v1__vmm_request__pack(rq, buf);
	msg[0] = '\0';
	rc = vmm_control_req_decode(buf, len, out, msg, n);
	free(buf);
	return rc;
}

static void test_malformed(void **state)
{
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
	Request *rq = (Request *)1;
	char msg[128] = "";

	(void)state;
	assert_int_equal(vmm_control_req_decode(junk, sizeof(junk), &rq, msg,
						sizeof(msg)),
			 -EINVAL);
	assert_null(rq);
	assert_string_equal(msg, "malformed request: not a VmmRequest");
}

static void test_no_op(void **state)
{
	Request rq = CANOPY__V1__VMM_REQUEST__INIT, *out;
	char msg[128];

	(void)state;
	rq.id = 42;
	assert_int_equal(roundtrip(&rq, &out, msg, sizeof(msg)), -EINVAL);
	assert_non_null(out); /* the id answers the error */
	assert_int_equal(out->id, 42);
	assert_string_equal(msg, "request without a known operation");
	canopy__v1__vmm_request__free_unpacked(out, NULL);
}

static void test_save_needs_path(void **state)
{
	Request rq = CANOPY__V1__VMM_REQUEST__INIT, *out;
	Canopy__V1__VmmSaveRequest sv = CANOPY__V1__VMM_SAVE_REQUEST__INIT;
	char msg[128];

	(void)state;
	rq.id = 7;
	rq.op_case = CANOPY__V1__VMM_REQUEST__OP_SAVE;
	rq.save = &sv;
	assert_int_equal(roundtrip(&rq, &out, msg, sizeof(msg)), -EINVAL);
	assert_int_equal(out->id, 7);
	assert_string_equal(msg, "save: a snapshot path is required");
	canopy__v1__vmm_request__free_unpacked(out, NULL);
	sv.path = (char *)"/tmp/snap";
	assert_int_equal(roundtrip(&rq, &out, msg, sizeof(msg)), 0);
	assert_string_equal(out->save->path, "/tmp/snap");
	canopy__v1__vmm_request__free_unpacked(out, NULL);
}

static void test_dirty_op(void **state)
{
	Request rq = CANOPY__V1__VMM_REQUEST__INIT, *out;
	Canopy__V1__VmmDirtyLogRequest d =
		CANOPY__V1__VMM_DIRTY_LOG_REQUEST__INIT;
	char msg[128];

	(void)state;
	rq.op_case = CANOPY__V1__VMM_REQUEST__OP_DIRTY_LOG;
	rq.dirty_log = &d;
	d.op = (Canopy__V1__DirtyLogOp)99;
	assert_int_equal(roundtrip(&rq, &out, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg, "dirty_log: unknown op 99");
	canopy__v1__vmm_request__free_unpacked(out, NULL);
	d.op = CANOPY__V1__DIRTY_LOG_OP__DIRTY_LOG_OP_UNSPECIFIED;
	assert_int_equal(roundtrip(&rq, &out, msg, sizeof(msg)), -EINVAL);
	canopy__v1__vmm_request__free_unpacked(out, NULL);
	d.op = CANOPY__V1__DIRTY_LOG_OP__DIRTY_LOG_OP_FETCH;
	assert_int_equal(roundtrip(&rq, &out, msg, sizeof(msg)), 0);
	canopy__v1__vmm_request__free_unpacked(out, NULL);
}

static void test_console_bound(void **state)
{
	Request rq = CANOPY__V1__VMM_REQUEST__INIT, *out;
	Canopy__V1__VmmConsoleInputRequest ci =
		CANOPY__V1__VMM_CONSOLE_INPUT_REQUEST__INIT;
	static uint8_t bytes[CONTROL_CONSOLE_INPUT_MAX + 1];
	char msg[128];

	(void)state;
	rq.op_case = CANOPY__V1__VMM_REQUEST__OP_CONSOLE_INPUT;
	rq.console_input = &ci;
	ci.data.data = bytes;
	ci.data.len = CONTROL_CONSOLE_INPUT_MAX;
	assert_int_equal(roundtrip(&rq, &out, msg, sizeof(msg)), 0);
	assert_int_equal(out->console_input->data.len,
			 CONTROL_CONSOLE_INPUT_MAX);
	canopy__v1__vmm_request__free_unpacked(out, NULL);
	ci.data.len = CONTROL_CONSOLE_INPUT_MAX + 1;
	assert_int_equal(roundtrip(&rq, &out, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(
		msg, "console_input: 4097 bytes; at most 4096 per request");
	canopy__v1__vmm_request__free_unpacked(out, NULL);
}

static void test_plain_ops(void **state)
{
	Request rq = CANOPY__V1__VMM_REQUEST__INIT, *out;
	Canopy__V1__VmmStopRequest st = CANOPY__V1__VMM_STOP_REQUEST__INIT;
	Canopy__V1__VmmStatusRequest ss = CANOPY__V1__VMM_STATUS_REQUEST__INIT;
	char msg[128];

	(void)state;
	rq.op_case = CANOPY__V1__VMM_REQUEST__OP_STOP;
	rq.stop = &st;
	st.graceful = 1;
	assert_int_equal(roundtrip(&rq, &out, msg, sizeof(msg)), 0);
	assert_true(out->stop->graceful);
	canopy__v1__vmm_request__free_unpacked(out, NULL);
	rq.op_case = CANOPY__V1__VMM_REQUEST__OP_STATUS;
	rq.status = &ss;
	assert_int_equal(roundtrip(&rq, &out, msg, sizeof(msg)), 0);
	canopy__v1__vmm_request__free_unpacked(out, NULL);
}

/* migrate_resolve carries its flag through; a request built by hand with
 * the case and no message is refused. */
static void test_migrate_resolve(void **state)
{
	Request rq = CANOPY__V1__VMM_REQUEST__INIT, *out;
	Canopy__V1__VmmMigrateResolveRequest mr =
		CANOPY__V1__VMM_MIGRATE_RESOLVE_REQUEST__INIT;
	char msg[128];

	(void)state;
	rq.op_case = CANOPY__V1__VMM_REQUEST__OP_MIGRATE_RESOLVE;
	rq.migrate_resolve = &mr;
	mr.resume = 1;
	assert_int_equal(roundtrip(&rq, &out, msg, sizeof(msg)), 0);
	assert_int_equal(out->op_case,
			 CANOPY__V1__VMM_REQUEST__OP_MIGRATE_RESOLVE);
	assert_true(out->migrate_resolve->resume);
	canopy__v1__vmm_request__free_unpacked(out, NULL);
	mr.resume = 0;
	assert_int_equal(roundtrip(&rq, &out, msg, sizeof(msg)), 0);
	assert_false(out->migrate_resolve->resume);
	canopy__v1__vmm_request__free_unpacked(out, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_no_op),
		cmocka_unit_test(test_save_needs_path),
		cmocka_unit_test(test_dirty_op),
		cmocka_unit_test(test_console_bound),
		cmocka_unit_test(test_plain_ops),
		cmocka_unit_test(test_migrate_resolve),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
