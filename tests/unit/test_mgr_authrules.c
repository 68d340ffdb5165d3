/* Unit tests for manager/auth_methods: every API method has an access rule, and each built-in role may call exactly what it should. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "manager/api.h"
#include "manager/auth_mgr.h"
#include "proto/canopy_api.pb-c.h"

/* Which built-in roles may call each method (A: Administrator, O:
 * Operator, R: ReadOnly; NoAccess may call only Login and WhoAmI). */
static const struct {
	const char *method;
	const char *roles;
} expect[] = {
	{ "ClusterService/GetCluster", "AOR" },
	{ "HostService/ListHosts", "AOR" },
	{ "HostService/GetHost", "AOR" },
	{ "HostService/RemoveHost", "A" },
	{ "HostService/AddHost", "A" },
	{ "VmService/CreateVm", "A" },
	{ "VmService/ListVms", "AOR" },
	{ "VmService/GetVm", "AOR" },
	{ "VmService/StartVm", "AO" },
	{ "VmService/StopVm", "AO" },
	{ "VmService/PauseVm", "AO" },
	{ "VmService/ResumeVm", "AO" },
	{ "VmService/DeleteVm", "A" },
	{ "VmService/ReadConsole", "AO" },
	{ "VmService/WriteConsole", "AO" },
	{ "VmService/MigrateVm", "AO" },
	{ "VmService/ResolveMigration", "A" },
	{ "DatastoreService/ListDatastores", "AOR" },
	{ "ImageService/ImportImage", "A" },
	{ "ImageService/ListImages", "AOR" },
	{ "TaskService/ListTasks", "AOR" },
	{ "TaskService/GetTask", "AOR" },
	{ "TaskService/WaitTask", "AOR" },
	{ "TaskService/CancelTask", "AO" },
	{ "EventService/ListEvents", "AOR" },
	{ "EventService/WatchEvents", "AOR" },
	{ "AuthService/Login", "AORN" },
	{ "AuthService/WhoAmI", "AORN" },
	{ "UserService/AddUser", "A" },
	{ "UserService/ListUsers", "A" },
	/* one's own password with the old one; others': the handler checks
	 * user.manage */
	{ "UserService/SetPassword", "AORN" },
	{ "UserService/DeleteUser", "A" },
	{ "RoleService/ListRoles", "AOR" },
	{ "RoleService/CreateRole", "A" },
	{ "RoleService/DeleteRole", "A" },
	{ "RoleService/Grant", "A" },
	{ "RoleService/Revoke", "A" },
	{ "RoleService/ListPermissions", "A" },
	{ "AuditService/ListAudit", "A" },
	{ "AuditService/VerifyAudit", "A" },
};

static const char *expected(const char *full)
{
	size_t i;

	for (i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
		if (strcmp(full + strlen("/canopy.v1."), expect[i].method) == 0)
			return expect[i].roles;
	return NULL;
}

static bool allowed(const struct auth_rule *r, uint32_t privs)
{
	return r->public_ || r->priv == 0 || (privs & r->priv) == r->priv;
}

static void test_every_method_has_a_rule(void **state)
{
	const struct api_method *m;
	const struct auth_rule *r;
	size_t i, rules = 0;
	char full[128];

	for (i = 0; (m = api_method_at(i)); i++) {
		r = auth_rule_find(m->name);
		if (!r)
			fail_msg("method %s has no access rule", m->name);
		if (!expected(m->name))
			fail_msg("method %s is not in this test's table",
				 m->name);
	}
	/* and no rule names a method that does not exist */
	for (i = 0; (r = auth_rule_at(i)); i++, rules++) {
		snprintf(full, sizeof(full), "/canopy.v1.%s", r->method);
		assert_non_null(api_method_find(full, strlen(full)));
	}
	assert_int_equal(rules, api_method_count());
	assert_null(auth_rule_find("/canopy.v1.VmService/FlyVm"));
	assert_null(auth_rule_find("VmService/StartVm"));
}

static void test_roles_table(void **state)
{
	static const char codes[] = "AORN";
	const struct api_method *m;
	const struct auth_rule *r;
	size_t i, k;

	for (i = 0; (m = api_method_at(i)); i++) {
		const char *want = expected(m->name);

		r = auth_rule_find(m->name);
		assert_non_null(want);
		assert_non_null(r);
		for (k = 0; k < 4; k++) {
			const char *role = k == 0 ? "Administrator" :
					   k == 1 ? "Operator" :
					   k == 2 ? "ReadOnly" :
						    "NoAccess";
			bool ok = allowed(r, auth_builtin_role(role)->privs);

			if (ok != (strchr(want, codes[k]) != NULL))
				fail_msg("%s: role %s %s", m->name, role,
					 ok ? "may call it but should not" :
					      "may not call it but should");
		}
	}
}

/* The object a rule names is read from the request. */
static void test_rule_object(void **state)
{
	Canopy__V1__VmPowerRequest p = CANOPY__V1__VM_POWER_REQUEST__INIT;
	Canopy__V1__CreateVmRequest cr = CANOPY__V1__CREATE_VM_REQUEST__INIT;
	Canopy__V1__VmSpec spec = CANOPY__V1__VM_SPEC__INIT;
	const struct auth_rule *r;

	p.name = (char *)"web1";
	r = auth_rule_find("/canopy.v1.VmService/StartVm");
	assert_string_equal(auth_rule_object(r, &p.base), "web1");
	assert_int_equal(r->obj, AUTH_OBJ_VM);
	r = auth_rule_find("/canopy.v1.VmService/CreateVm");
	assert_string_equal(auth_rule_object(r, &cr.base), "");
	spec.name = (char *)"db";
	cr.spec = &spec;
	assert_string_equal(auth_rule_object(r, &cr.base), "db");
	r = auth_rule_find("/canopy.v1.ClusterService/GetCluster");
	assert_string_equal(auth_rule_object(r, &p.base), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_method_has_a_rule),
		cmocka_unit_test(test_roles_table),
		cmocka_unit_test(test_rule_object),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
