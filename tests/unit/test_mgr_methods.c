/* Unit tests for the manager's API method table: every method of every
 * service in proto/canopy_api.proto and canopy_auth.proto is served with its own request type,
 * names are unique and lookups are exact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "manager/api.h"
#include "proto/canopy_api.pb-c.h"
#include "proto/canopy_auth.pb-c.h"

static const ProtobufCServiceDescriptor *const services[] = {
	&canopy__v1__cluster_service__descriptor,
	&canopy__v1__host_service__descriptor,
	&canopy__v1__vm_service__descriptor,
	&canopy__v1__datastore_service__descriptor,
	&canopy__v1__task_service__descriptor,
	&canopy__v1__event_service__descriptor,
	&canopy__v1__image_service__descriptor,
	&canopy__v1__auth_service__descriptor,
	&canopy__v1__user_service__descriptor,
	&canopy__v1__role_service__descriptor,
	&canopy__v1__audit_service__descriptor,
};

static void test_every_proto_method_served(void **state)
{
	const ProtobufCServiceDescriptor *sd;
	const struct api_method *m;
	size_t i, j, total = 0;
	char name[256];

	for (i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
		sd = services[i];
		for (j = 0; j < sd->n_methods; j++, total++) {
			snprintf(name, sizeof(name), "/%s/%s", sd->name,
				 sd->methods[j].name);
			m = api_method_find(name, strlen(name));
			if (!m)
				fail_msg("%s is not in the table", name);
			assert_ptr_equal(m->req, sd->methods[j].input);
			assert_non_null(m->fn);
		}
	}
	assert_int_equal(api_method_count(), total);
}

static void test_unique_and_exact(void **state)
{
	const char *n = "/canopy.v1.VmService/CreateVm";
	size_t i, j;

	for (i = 0; i < api_method_count(); i++)
		for (j = i + 1; j < api_method_count(); j++)
			assert_string_not_equal(api_method_at(i)->name,
						api_method_at(j)->name);
	assert_null(api_method_at(api_method_count()));
	assert_non_null(api_method_find(n, strlen(n)));
	assert_null(api_method_find(n, strlen(n) - 1)); /* prefix */
	assert_null(api_method_find("/canopy.v1.VmService/CreateVmX", 30));
	assert_null(api_method_find("", 0));
	assert_null(api_method_find(NULL, 0));
	assert_null(
		api_method_find("/canopy.v1.VmService/createvm", strlen(n)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_proto_method_served),
		cmocka_unit_test(test_unique_and_exact),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
