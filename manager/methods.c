/* canopy-managerd: the API method table {name, request type, handler}. */
#include <string.h>

#include "manager/manager.h"
#include "manager/migrate.h"

#define SVC "/canopy.v1."
/* Every method also has an access rule (auth_methods.c): one without is
 * refused by the gate, and a unit test checks that each has one. */
#define M(svc, name, req, fn)                                          \
	{                                                              \
		SVC svc "/" name, &canopy__v1__##req##__descriptor, fn \
	}

static const struct api_method methods[] = {
	M("ClusterService", "GetCluster", get_cluster_request, api_get_cluster),
	M("HostService", "ListHosts", list_hosts_request, api_list_hosts),
	M("HostService", "GetHost", get_host_request, api_get_host),
	M("HostService", "RemoveHost", remove_host_request, api_remove_host),
	M("HostService", "AddHost", add_host_request, api_add_host),
	M("VmService", "CreateVm", create_vm_request, api_create_vm),
	M("VmService", "ListVms", list_vms_request, api_list_vms),
	M("VmService", "GetVm", get_vm_request, api_get_vm),
	M("VmService", "StartVm", vm_power_request, api_start_vm),
	M("VmService", "StopVm", vm_power_request, api_stop_vm),
	M("VmService", "PauseVm", vm_power_request, api_pause_vm),
	M("VmService", "ResumeVm", vm_power_request, api_resume_vm),
	M("VmService", "DeleteVm", delete_vm_request, api_delete_vm),
	M("VmService", "ReadConsole", read_console_request, api_read_console),
	M("VmService", "WriteConsole", write_console_request,
	  api_write_console),
	M("VmService", "MigrateVm", migrate_vm_request, api_migrate_vm),
	M("VmService", "ResolveMigration", resolve_migration_request,
	  api_resolve_migration),
	M("DatastoreService", "ListDatastores", list_datastores_request,
	  api_list_datastores),
	M("ImageService", "ImportImage", import_image_request,
	  api_import_image),
	M("ImageService", "ListImages", list_images_request, api_list_images),
	M("TaskService", "ListTasks", list_tasks_request, api_list_tasks),
	M("TaskService", "GetTask", get_task_request, api_get_task),
	M("TaskService", "WaitTask", wait_task_request, api_wait_task),
	M("TaskService", "CancelTask", cancel_task_request, api_cancel_task),
	M("EventService", "ListEvents", list_events_request, api_list_events),
	M("EventService", "WatchEvents", watch_events_request,
	  api_watch_events),
	M("AuthService", "Login", login_request, api_login),
	M("AuthService", "WhoAmI", whoami_request, api_whoami),
	M("UserService", "AddUser", add_user_request, api_add_user),
	M("UserService", "ListUsers", list_users_request, api_list_users),
	M("UserService", "SetPassword", set_password_request, api_set_password),
	M("UserService", "DeleteUser", delete_user_request, api_delete_user),
	M("RoleService", "ListRoles", list_roles_request, api_list_roles),
	M("RoleService", "CreateRole", create_role_request, api_create_role),
	M("RoleService", "DeleteRole", delete_role_request, api_delete_role),
	M("RoleService", "Grant", grant_request, api_grant),
	M("RoleService", "Revoke", revoke_request, api_revoke),
	M("RoleService", "ListPermissions", list_permissions_request,
	  api_list_permissions),
	M("AuditService", "ListAudit", list_audit_request, api_list_audit),
	M("AuditService", "VerifyAudit", verify_audit_request,
	  api_verify_audit),
};

const struct api_method *api_method_find(const char *name, size_t len)
{
	size_t i;

	if (!name)
		return NULL;
	for (i = 0; i < CN_ARRAY_SIZE(methods); i++)
		if (strlen(methods[i].name) == len &&
		    memcmp(methods[i].name, name, len) == 0)
			return &methods[i];
	return NULL;
}

size_t api_method_count(void)
{
	return CN_ARRAY_SIZE(methods);
}

const struct api_method *api_method_at(size_t i)
{
	return i < CN_ARRAY_SIZE(methods) ? &methods[i] : NULL;
}
