/* libFuzzer harness for the manager's API request decoding and checks:
 * the input's first byte picks a method of manager/methods.c, its second
 * byte the state the checks run against, the rest is the request message,
 * decoded with protobuf-c as manager/api_server.c does and passed through
 * the same checks the handlers make before they touch etcd: names and
 * keys (manager/keys.c), VM specs and power-state preconditions
 * (manager/spec.c), image URL, file name and checksum (lib/url.c,
 * manager/api_check.c), migration admission (vmotion/orch.c), page sizes
 * and tokens. An accepted request is packed again, as the manager stores
 * it. A crash, a leak, a read past the input or an accepted request that
 * breaks a check's promise is a bug. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/url.h"
#include "manager/auth.h"
#include "manager/api_check.h"
#include "manager/keys.h"
#include "manager/spec.h"
#include "proto/canopy_auth.pb-c.h"
#include "vmotion/orch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The manager's page bounds (manager/manager.h, mgr_page_size). */
#define PAGE_DEFAULT 100
#define PAGE_MAX 1000
/* WriteConsole's bound (manager/manager.h MGR_CONSOLE_WRITE_MAX). */
#define CONSOLE_WRITE_MAX 4096u

typedef void (*check_fn)(const ProtobufCMessage *req, uint8_t state);

/* A key built from a name must be the prefix and the name, and fit. */
static int key(const char *prefix, enum mgr_name_kind kind, const char *name)
{
	char k[MGR_KEY_MAX];

	if (mgr_key_join(k, sizeof(k), prefix, kind, name))
		return -1;
	if (!mgr_name_valid(kind, name) || strlen(k) >= sizeof(k) ||
	    strcmp(mgr_key_name(k, prefix) ?: "", name) != 0)
		abort();
	return 0;
}

/* As mgr_list_page: a page token is a name of the listed kind. */
static void page(const char *prefix, enum mgr_name_kind kind, const char *token,
		 uint32_t size)
{
	size_t n = size == 0 ? PAGE_DEFAULT : size > PAGE_MAX ? PAGE_MAX : size;

	if (n == 0 || n > PAGE_MAX)
		abort();
	if (token && *token)
		(void)key(prefix, kind, token);
}

static void c_none(const ProtobufCMessage *r, uint8_t st)
{
	(void)r;
	(void)st;
}

static void c_list_hosts(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__ListHostsRequest *q = (const void *)r;

	(void)st;
	page(MGR_PREFIX_HOSTS, MGR_NAME_HOST, q->page_token, q->page_size);
}

static void c_host_id(const ProtobufCMessage *r, uint8_t st)
{
	/* GetHostRequest and RemoveHostRequest: string id = 1. */
	const Canopy__V1__GetHostRequest *q = (const void *)r;

	(void)st;
	(void)key(MGR_PREFIX_HOSTS, MGR_NAME_HOST, q->id);
}

static void c_create_vm(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__CreateVmRequest *q = (const void *)r;
	Canopy__V1__Vm vm = CANOPY__V1__VM__INIT;
	char why[256];
	uint8_t *buf;
	size_t n;

	(void)st;
	why[0] = '\0';
	if (mgr_spec_check(q->spec, why, sizeof(why))) {
		if (!why[0])
			abort(); /* a refusal must say why */
		return;
	}
	if (key(MGR_PREFIX_VMS, MGR_NAME_VM, q->spec->name))
		abort(); /* the spec check let a bad name through */
	if (q->host && *q->host && !mgr_name_valid(MGR_NAME_HOST, q->host))
		return;
	vm.id = q->spec->name;
	vm.spec = q->spec;
	vm.host = q->host && *q->host ? q->host : (char *)"h1";
	n = canopy__v1__vm__get_packed_size(&vm);
	buf = malloc(n ? n : 1);
	if (!buf || canopy__v1__vm__pack(&vm, buf) != n)
		abort();
	free(buf);
}

static void c_list_vms(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__ListVmsRequest *q = (const void *)r;
	char k[MGR_KEY_MAX];

	(void)st;
	if (q->host && *q->host) {
		if (!mgr_name_valid(MGR_NAME_HOST, q->host))
			return;
		if (mgr_key_placement(k, sizeof(k), q->host, NULL))
			abort(); /* a valid host id must make a prefix */
		page(k, MGR_NAME_VM, q->page_token, q->page_size);
		return;
	}
	page(MGR_PREFIX_VMS, MGR_NAME_VM, q->page_token, q->page_size);
}

/* A VM named by the request, in a state picked by st. */
static void vm_op(const char *name, enum mgr_op op, uint8_t st)
{
	char why[256];

	if (key(MGR_PREFIX_VMS, MGR_NAME_VM, name))
		return;
	why[0] = '\0';
	if (mgr_op_check(op, name, (Canopy__V1__PowerState)(st & 3),
			 (Canopy__V1__VmRunState)(st >> 2 & 7), why,
			 sizeof(why)) != CN_OK &&
	    !why[0])
		abort();
	(void)mgr_op_kind(op);
	(void)mgr_op_event(op);
	(void)mgr_op_action(op, st >> 5 & 1);
}

static void c_get_vm(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__GetVmRequest *q = (const void *)r;

	vm_op(q->name, MGR_OP_COUNT, st);
}

static void c_power(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__VmPowerRequest *q = (const void *)r;

	vm_op(q->name, (enum mgr_op)(MGR_OP_START + st % 4), st);
}

static void c_delete_vm(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__DeleteVmRequest *q = (const void *)r;

	vm_op(q->name, MGR_OP_DELETE, st);
}

static void c_migrate_vm(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__MigrateVmRequest *q = (const void *)r;
	static const char *const dss[] = { "ds1", "ds2" };
	struct vmo_admit a = { 0 };
	char why[512];

	if (key(MGR_PREFIX_VMS, MGR_NAME_VM, q->name))
		return;
	a.vm = q->name;
	a.vm_running = st & 1;
	a.vm_busy = st >> 1 & 1;
	a.n_local_disks = st >> 2 & 1;
	a.datastores[0] = "ds1";
	a.n_datastores = st >> 3 & 1;
	a.vm_memory_mib = 1024;
	a.src = "h1";
	a.src_connected = 1;
	a.dst = q->to_host ? q->to_host : "";
	a.dst_valid_name = mgr_name_valid(MGR_NAME_HOST, a.dst);
	a.dst_known = a.dst_valid_name && (st >> 4 & 1);
	a.dst_connected = st >> 5 & 1;
	a.dst_maintenance = st >> 6 & 1;
	a.dst_free_mib = st >> 7 ? 4096 : 512;
	a.dst_datastores = dss;
	a.n_dst_datastores = 2;
	a.max_downtime_ms = q->max_downtime_ms;
	why[0] = '\0';
	if (vmo_admit_check(&a, why, sizeof(why)) != CN_OK) {
		if (!why[0])
			abort();
	} else if (!a.dst_valid_name ||
		   q->max_downtime_ms > VMO_MAX_DOWNTIME_MS_MAX) {
		abort(); /* admitted what it promised to refuse */
	}
}

static void c_read_console(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__ReadConsoleRequest *q = (const void *)r;

	(void)st;
	(void)key(MGR_PREFIX_VMS, MGR_NAME_VM, q->name);
}

static void c_write_console(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__WriteConsoleRequest *q = (const void *)r;

	(void)st;
	if (!q->data.len || q->data.len > CONSOLE_WRITE_MAX)
		return;
	if (!q->data.data)
		abort();
	(void)key(MGR_PREFIX_VMS, MGR_NAME_VM, q->name);
}

static void c_import_image(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__ImportImageRequest *q = (const void *)r;
	char why[256], safe[CN_URL_MAX + 1], sha[65], scheme[16];

	why[0] = '\0';
	cn_url_redact(q->url, safe, sizeof(safe));
	if (strlen(safe) >= sizeof(safe))
		abort();
	if (cn_url_check(q->url, st & 1, why, sizeof(why))) {
		if (!why[0])
			abort();
		return;
	}
	if (cn_url_scheme(q->url, scheme, sizeof(scheme)) < 0 ||
	    (strcmp(scheme, "https") != 0 &&
	     !((st & 1) && strcmp(scheme, "http") == 0)))
		abort(); /* a URL accepted with a scheme it may not have */
	if (!mgr_name_valid(MGR_NAME_VM, q->datastore) ||
	    !mgr_image_name_valid(q->name))
		return;
	if (strlen(q->name) > MGR_IMAGE_NAME_MAX || strstr(q->name, "//") ||
	    q->name[0] == '/')
		abort();
	if (mgr_sha256_parse(q->sha256, sha) &&
	    strlen(sha) != strlen(q->sha256))
		abort();
}

static void c_list_images(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__ListImagesRequest *q = (const void *)r;

	(void)st;
	(void)mgr_name_valid(MGR_NAME_VM, q->datastore);
}

static void c_list_tasks(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__ListTasksRequest *q = (const void *)r;

	(void)st;
	page(q->active_only ? MGR_PREFIX_ACTIVE : MGR_PREFIX_TASKS,
	     MGR_NAME_TASK, q->page_token, q->page_size);
}

static void c_task_id(const ProtobufCMessage *r, uint8_t st)
{
	/* Get-, Wait- and CancelTaskRequest: string id = 1. */
	const Canopy__V1__GetTaskRequest *q = (const void *)r;

	(void)st;
	(void)key(MGR_PREFIX_TASKS, MGR_NAME_TASK, q->id);
}

static void c_add_host(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__AddHostRequest *q = (const void *)r;

	(void)st;
	(void)key(MGR_PREFIX_HOSTKEYS, MGR_NAME_HOST, q->id);
}

/* The token key of these runs (any fixed 32 bytes). */
static const uint8_t tok_key[AUTH_KEY_LEN] = "canopy-fuzz-token-key-0123456789";

/* Login: the password bytes as a bearer token must never verify (that
 * would be a forged MAC); a real token for the user verifies, and the
 * same token with one byte changed does not. */
static void c_login(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__LoginRequest *q = (const void *)r;
	char tok[AUTH_TOKEN_MAX];
	struct auth_token t;
	size_t n;

	if (auth_token_check(tok_key, q->password, 1, &t) == 0)
		abort();
	if (!auth_user_valid(q->user))
		return;
	if (strlen(q->user) > AUTH_USER_MAX)
		abort();
	if (auth_token_make(tok_key, q->user, st, 2000000000, tok,
			    sizeof(tok)) != 0)
		abort();
	if (auth_token_check(tok_key, tok, 1, &t) != 0 ||
	    strcmp(t.user, q->user) != 0 || t.gen != st)
		abort();
	if (auth_token_check(tok_key, tok, 2000000001, &t) != -EKEYEXPIRED)
		abort();
	n = strlen(tok);
	tok[st % n] ^= 1;
	if (auth_token_check(tok_key, tok, 1, &t) == 0)
		abort();
}

static void c_add_user(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__AddUserRequest *q = (const void *)r;

	(void)st;
	if (auth_user_valid(q->name) &&
	    (strlen(q->name) > AUTH_USER_MAX || !q->name[0]))
		abort();
}

/* A privilege name parses to one bit whose name is the same text. */
static void c_create_role(const ProtobufCMessage *r, uint8_t st)
{
	const Canopy__V1__CreateRoleRequest *q = (const void *)r;
	uint32_t bit;

	(void)st;
	if (!q->role)
		return;
	for (size_t i = 0; i < q->role->n_privileges; i++) {
		bit = auth_priv_parse(q->role->privileges[i]);
		if (bit &&
		    (bit & (bit - 1) || bit & ~(uint32_t)AUTH_PRIV_ALL ||
		     strcmp(auth_priv_name(bit), q->role->privileges[i]) != 0))
			abort();
	}
}

#define D(x) &canopy__v1__##x##__descriptor
/* In the order of manager/methods.c. */
static const struct {
	const ProtobufCMessageDescriptor *desc;
	check_fn check;
} methods[] = {
	{ D(get_cluster_request), c_none },
	{ D(list_hosts_request), c_list_hosts },
	{ D(get_host_request), c_host_id },
	{ D(remove_host_request), c_host_id },
	{ D(add_host_request), c_add_host },
	{ D(create_vm_request), c_create_vm },
	{ D(list_vms_request), c_list_vms },
	{ D(get_vm_request), c_get_vm },
	{ D(vm_power_request), c_power },
	{ D(delete_vm_request), c_delete_vm },
	{ D(read_console_request), c_read_console },
	{ D(write_console_request), c_write_console },
	{ D(migrate_vm_request), c_migrate_vm },
	{ D(list_datastores_request), c_none },
	{ D(import_image_request), c_import_image },
	{ D(list_images_request), c_list_images },
	{ D(list_tasks_request), c_list_tasks },
	{ D(get_task_request), c_task_id },
	{ D(wait_task_request), c_task_id },
	{ D(cancel_task_request), c_task_id },
	{ D(list_events_request), c_none },
	{ D(watch_events_request), c_none },
	/* Users, roles and audit (proto/canopy_auth.proto): the user name,
	 * token and privilege checks (manager/auth*.c); the others are
	 * decoded and packed again. */
	{ D(login_request), c_login },
	{ D(whoami_request), c_none },
	{ D(add_user_request), c_add_user },
	{ D(list_users_request), c_none },
	{ D(set_password_request), c_none },
	{ D(delete_user_request), c_none },
	{ D(list_roles_request), c_none },
	{ D(create_role_request), c_create_role },
	{ D(delete_role_request), c_none },
	{ D(grant_request), c_none },
	{ D(revoke_request), c_none },
	{ D(list_permissions_request), c_none },
	{ D(list_audit_request), c_none },
	{ D(verify_audit_request), c_none },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t i = 0, n = sizeof(methods) / sizeof(methods[0]);
	ProtobufCMessage *req;
	uint8_t *buf;
	size_t len;

	if (size < 2)
		return 0;
	i = data[0] % n;
	req = protobuf_c_message_unpack(methods[i].desc, NULL, size - 2,
					data + 2);
	if (!req)
		return 0;
	methods[i].check(req, data[1]);
	/* What was decoded packs again (replies and records are packed the
	 * same way). */
	len = protobuf_c_message_get_packed_size(req);
	buf = malloc(len ? len : 1);
	if (!buf || protobuf_c_message_pack(req, buf) != len)
		abort();
	free(buf);
	protobuf_c_message_free_unpacked(req, NULL);
	return 0;
}
