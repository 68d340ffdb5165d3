/* canopy-managerd: what each API method needs: privilege, object, audit. */
#include <string.h>

#include "manager/auth_mgr.h"

#define R(meth, p, o, f, label, mut)                        \
	{                                                   \
		meth, p, AUTH_OBJ_##o, f, label, mut, false \
	}
#define READ(meth) R(meth, AUTH_SYSTEM_READ, CLUSTER, NULL, NULL, false)

static const struct auth_rule rules[] = {
	READ("ClusterService/GetCluster"),
	READ("HostService/ListHosts"),
	R("HostService/GetHost", AUTH_SYSTEM_READ, HOST, "id", "host", false),
	R("HostService/RemoveHost", AUTH_HOST_REMOVE, HOST, "id", "host", true),
	R("HostService/AddHost", AUTH_HOST_ADD, CLUSTER, "id", "host", true),
	R("VmService/CreateVm", AUTH_VM_CREATE, CLUSTER, "spec.name", "vm",
	  true),
	READ("VmService/ListVms"),
	R("VmService/GetVm", AUTH_SYSTEM_READ, VM, "name", "vm", false),
	R("VmService/StartVm", AUTH_VM_POWER, VM, "name", "vm", true),
	R("VmService/StopVm", AUTH_VM_POWER, VM, "name", "vm", true),
	R("VmService/PauseVm", AUTH_VM_POWER, VM, "name", "vm", true),
	R("VmService/ResumeVm", AUTH_VM_POWER, VM, "name", "vm", true),
	R("VmService/DeleteVm", AUTH_VM_DELETE, VM, "name", "vm", true),
	R("VmService/ReadConsole", AUTH_VM_CONSOLE, VM, "name", "vm", false),
	R("VmService/WriteConsole", AUTH_VM_CONSOLE, VM, "name", "vm", true),
	R("VmService/MigrateVm", AUTH_VM_MIGRATE, VM, "name", "vm", true),
	/* Ends an in-doubt migration (may resume or power off a VM after
	 * a partition): on the cluster, Administrator only by default. */
	R("VmService/ResolveMigration", AUTH_VM_MIGRATE_RESOLVE, CLUSTER,
	  "name", "vm", true),
	READ("DatastoreService/ListDatastores"),
	R("ImageService/ImportImage", AUTH_IMAGE_IMPORT, CLUSTER, "name",
	  "image", true),
	READ("ImageService/ListImages"),
	READ("TaskService/ListTasks"),
	READ("TaskService/GetTask"),
	READ("TaskService/WaitTask"),
	R("TaskService/CancelTask", AUTH_TASK_CANCEL, CLUSTER, "id", "task",
	  true),
	READ("EventService/ListEvents"),
	READ("EventService/WatchEvents"),
	{ "AuthService/Login", 0, AUTH_OBJ_CLUSTER, "user", "user", true,
	  true },
	R("AuthService/WhoAmI", 0, CLUSTER, NULL, NULL, false),
	R("UserService/AddUser", AUTH_USER_MANAGE, CLUSTER, "name", "user",
	  true),
	R("UserService/ListUsers", AUTH_USER_MANAGE, CLUSTER, NULL, NULL,
	  false),
	/* Own password: the handler asks for the old one; others' need
	 * user.manage (checked there). */
	R("UserService/SetPassword", 0, CLUSTER, "name", "user", true),
	R("UserService/DeleteUser", AUTH_USER_MANAGE, CLUSTER, "name", "user",
	  true),
	R("RoleService/ListRoles", AUTH_SYSTEM_READ, CLUSTER, NULL, NULL,
	  false),
	R("RoleService/CreateRole", AUTH_USER_MANAGE, CLUSTER, "role.name",
	  "role", true),
	R("RoleService/DeleteRole", AUTH_USER_MANAGE, CLUSTER, "name", "role",
	  true),
	R("RoleService/Grant", AUTH_USER_MANAGE, CLUSTER, "permission.object",
	  NULL, true),
	R("RoleService/Revoke", AUTH_USER_MANAGE, CLUSTER, "object", NULL,
	  true),
	R("RoleService/ListPermissions", AUTH_USER_MANAGE, CLUSTER, NULL, NULL,
	  false),
	R("AuditService/ListAudit", AUTH_AUDIT_READ, CLUSTER, NULL, NULL,
	  false),
	R("AuditService/VerifyAudit", AUTH_AUDIT_READ, CLUSTER, NULL, NULL,
	  false),
};

const struct auth_rule *auth_rule_find(const char *method)
{
	static const char svc[] = "/canopy.v1.";
	size_t i;

	if (!method || strncmp(method, svc, sizeof(svc) - 1) != 0)
		return NULL;
	method += sizeof(svc) - 1;
	for (i = 0; i < CN_ARRAY_SIZE(rules); i++)
		if (strcmp(rules[i].method, method) == 0)
			return &rules[i];
	return NULL;
}

const struct auth_rule *auth_rule_at(size_t i)
{
	return i < CN_ARRAY_SIZE(rules) ? &rules[i] : NULL;
}

/* The field `name` (len bytes) of msg's type, or NULL; never a repeated
 * one. */
static const ProtobufCFieldDescriptor *field(const ProtobufCMessage *msg,
					     const char *name, size_t len)
{
	const ProtobufCFieldDescriptor *f;
	char n[32];

	if (!msg || len == 0 || len >= sizeof(n))
		return NULL;
	memcpy(n, name, len);
	n[len] = '\0';
	f = protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, n);
	return f && f->label != PROTOBUF_C_LABEL_REPEATED ? f : NULL;
}

/* The string field `name` of msg, or NULL (absent, not a string). */
static const char *str_field(const ProtobufCMessage *msg, const char *name,
			     size_t len)
{
	const ProtobufCFieldDescriptor *f = field(msg, name, len);

	if (!f || f->type != PROTOBUF_C_TYPE_STRING)
		return NULL;
	return *(const char *const *)((const char *)msg + f->offset);
}

/* The message field `name` of msg, or NULL. */
static const ProtobufCMessage *msg_field(const ProtobufCMessage *msg,
					 const char *name, size_t len)
{
	const ProtobufCFieldDescriptor *f = field(msg, name, len);

	if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE)
		return NULL;
	return *(const ProtobufCMessage *const *)((const char *)msg +
						  f->offset);
}

const char *auth_rule_object(const struct auth_rule *r,
			     const ProtobufCMessage *req)
{
	const char *dot, *s;

	if (!r || !r->field || !req)
		return "";
	dot = strchr(r->field, '.');
	if (dot) {
		req = msg_field(req, r->field, (size_t)(dot - r->field));
		s = str_field(req, dot + 1, strlen(dot + 1));
	} else {
		s = str_field(req, r->field, strlen(r->field));
	}
	return s ? s : "";
}
