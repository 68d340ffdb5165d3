/*
 * canopy-managerd: the process context and the functions its modules
 * share. Everything runs on the loop thread (lib/loop) unless a comment
 * says otherwise; etcd calls are synchronous on that thread, bounded by
 * the client's request timeout (MGR_ETCD_TIMEOUT_MS).
 *
 * Modules: main.c (options, start-up), leader.c (election), store.c (etcd
 * values, fenced writes), hosts.c (agent bus), tasks.c (task engine),
 * events.c (event log), index.c and index_sync.c (inventory counts kept
 * from an etcd watch), api_*.c (handlers), methods.c (method table).
 */
#ifndef CANOPY_MANAGER_MANAGER_H
#define CANOPY_MANAGER_MANAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/compiler.h"
#include "lib/err.h"
#include "manager/api.h"
#include "manager/keys.h"
#include "manager/spec.h"
#include "proto/canopy_agent.pb-c.h"
#include "proto/canopy_api.pb-c.h"
#include "proto/canopy_auth.pb-c.h"

struct loop;
struct etcd_client;
struct bus_server;

#define MGR_VERSION "0.1.0"
/* Overall deadline of one etcd call made by the manager. */
#define MGR_ETCD_TIMEOUT_MS 2000
/* Leader lease TTL (s) and how often it is renewed / standbys retry. */
#define MGR_LEASE_TTL_S 3
#define MGR_LEASE_RENEW_MS 1000
#define MGR_ELECT_RETRY_MS 300
/* Default and largest page of a list call. */
#define MGR_PAGE_DEFAULT 100
#define MGR_PAGE_MAX 1000
/* Most concurrent WaitTask and WatchEvents streams (each). */
#define MGR_STREAMS_MAX 256
/* Least interval between last_seen writes of one host (ms). */
#define MGR_LAST_SEEN_WRITE_MS 5000

struct mgr_options {
	const char *etcd; /* comma-separated endpoints */
	const char *listen; /* API host:port */
	const char *bus; /* bus endpoint to bind */
	const char *state_dir; /* pki/: CA, certificates, bus key */
	char id[MGR_ID_MAX + 1];
	unsigned host_timeout_s;
	unsigned command_timeout_ms; /* default agent command timeout */
	unsigned lease_ttl_s;
	unsigned task_retention_s; /* finished tasks older are deleted */
	uint64_t event_retention; /* events kept (the newest) */
	unsigned migrations_per_host; /* vMotion: source or destination */
	uint64_t image_max_bytes; /* largest image import */
	bool image_allow_http; /* image import URLs may be http:// */
	/* users and audit (auth_mgr.h) */
	const char *admin_password_file; /* the first user's password */
	const char *audit_file; /* this manager's hash-chained audit log */
	unsigned token_ttl_s;
	unsigned lockout_failures; /* failed logins in a row that lock */
	unsigned lockout_s;
};

/* A host the leader knows (loaded from etcd or registered over the bus). */
struct mgr_host {
	struct mgr_host *next;
	Canopy__V1__Host *rec; /* heap message as unpacked (malloc/strdup) */
	bool up; /* the bus hears it */
	uint64_t last_write_ms; /* monotonic time of the last etcd write */
};

struct mgr_task; /* tasks.c */
struct mgr_waiter; /* tasks.c: WaitTask streams */
struct mgr_watcher; /* events.c: WatchEvents streams */
struct mgr_index_sync; /* index_sync.c: the inventory index */
struct mgr_image; /* api_images.c: image imports */
struct mgr_auth; /* auth_mgr.h: users, roles, grants, audit */
struct mgr_hostkey; /* hosts.h: the hosts' bus keys */

/* An in-doubt migration whose task has ended, as its source last said
 * (migrate_orphan.c; ResolveMigration finds it there). */
#define MGR_DOUBTS_SEEN 8
struct mgr_doubt_seen {
	char vm[MGR_KEY_MAX], src[MGR_KEY_MAX], dst[MGR_KEY_MAX];
	uint64_t seen_ms; /* monotonic; 0: free */
};

/* A VM a host reported RUNNING while its record places it on another
 * host: warned once per MGR_ELSEWHERE_WARN_MS (hosts_bus.c). */
#define MGR_ELSEWHERE_SEEN 8
#define MGR_ELSEWHERE_WARN_MS 60000
struct mgr_elsewhere {
	char vm[MGR_KEY_MAX];
	uint64_t warned_ms; /* monotonic; 0: free */
};

struct manager {
	struct mgr_options opt;
	struct loop *l;
	struct etcd_client *etcd;
	struct api_server *api;
	struct bus_server *bus; /* only while leader */
	/* election */
	bool leader;
	int64_t lease; /* our lease id, 0: none */
	uint64_t lease_ok_ms; /* monotonic time of the last renewal */
	uint64_t elect_timer, renew_timer;
	struct mgr_leader_info current; /* who leads (id "" if unknown) */
	char leader_value[512]; /* our leader key value */
	bool stepping; /* a step-down cleanup is posted */
	/* leader state */
	struct mgr_host *hosts;
	struct mgr_task *tasks; /* active (queued or running) */
	struct mgr_waiter *waiters;
	size_t n_waiters;
	struct mgr_watcher *watchers;
	size_t n_watchers;
	uint64_t event_seq; /* last event seq written (leader) */
	uint32_t task_counter;
	uint64_t sweep_timer; /* disconnect hosts not heard after takeover */
	uint64_t retention_timer; /* retention.c */
	/* every manager, leader or standby */
	struct mgr_index_sync *index; /* index_sync.c */
	struct mgr_image *images; /* image imports the leader runs */
	uint64_t image_timer; /* api_images.c: silent imports fail */
	struct mgr_auth *auth; /* leader only */
	/* the bus's CURVE keys: ours, and the hosts' (hosts.h; leader) */
	char bus_secret[41];
	char bus_public[41];
	struct mgr_hostkey *hostkeys;
	size_t n_hostkeys, cap_hostkeys;
	int kdf_inflight; /* password hashing threads running (atomic) */
	struct mgr_doubt_seen doubts[MGR_DOUBTS_SEEN]; /* leader */
	struct mgr_elsewhere elsewhere[MGR_ELSEWHERE_SEEN]; /* leader */
};

/* ---- store.c: etcd values and fenced writes ------------------------------ */

/* Read key and unpack it as desc. 0 with *out, -ENOENT, -EBADMSG (value
 * not a valid message) or an etcd error. */
CN_MUST_CHECK int mgr_get_msg(struct manager *m, const char *key,
			      const ProtobufCMessageDescriptor *desc,
			      ProtobufCMessage **out);
/* mgr_get_msg that also gives the store revision of the read in *rev (if
 * not NULL). */
CN_MUST_CHECK int mgr_get_msg_rev(struct manager *m, const char *key,
				  const ProtobufCMessageDescriptor *desc,
				  ProtobufCMessage **out, int64_t *rev);
/* Write msg at key if we still hold the leader key (a txn comparing its
 * lease with ours), with up to 4 extra ops (NULL/0 for none) and an
 * optional compare (NULL). 0, -ESTALE when the extra compare failed,
 * -EPERM when we are no longer leader (the caller stops acting), or an
 * etcd error. */
struct etcd_op;
struct etcd_cmp;
CN_MUST_CHECK int mgr_put_msg(struct manager *m, const char *key,
			      const ProtobufCMessage *msg,
			      const struct etcd_cmp *cmp,
			      const struct etcd_op *extra, size_t n_extra);
/* Every value under prefix, unpacked as desc, through cache(m, name,
 * msg), name being the key after the prefix. A value that does not
 * unpack, or that cache() finds invalid (-EINVAL), is logged and
 * skipped; another error stops the load. 0 or -errno. */
typedef int (*mgr_load_fn)(struct manager *m, const char *name,
			   const ProtobufCMessage *msg);
CN_MUST_CHECK int mgr_load_prefix(struct manager *m, const char *prefix,
				  const ProtobufCMessageDescriptor *desc,
				  mgr_load_fn cache);
/* Fenced delete of n keys (at most 64). Errors as mgr_put_msg. */
CN_MUST_CHECK int mgr_delete_many(struct manager *m, const char *const *keys,
				  size_t n);
/* Fenced delete of key plus extra ops. Errors as mgr_put_msg. */
CN_MUST_CHECK int mgr_delete(struct manager *m, const char *key,
			     const struct etcd_op *extra, size_t n_extra);
/* Store vm and its index keys (placement under its host, running). */
CN_MUST_CHECK int mgr_vm_save(struct manager *m, const Canopy__V1__Vm *vm,
			      const struct etcd_cmp *cmp);
/* Delete vm and its index keys. */
CN_MUST_CHECK int mgr_vm_remove(struct manager *m, const Canopy__V1__Vm *vm);
/* The index ops of vm (at most 2, into ops) with their keys in place and
 * run (MGR_KEY_MAX bytes each): placement under its host and the running
 * key, put or deleted. 0 or -EINVAL. */
CN_MUST_CHECK int mgr_vm_index_ops(const Canopy__V1__Vm *vm, bool removing,
				   struct etcd_op *ops, size_t *n, char *place,
				   char *run);
/* Answer c with the code and a sentence for an etcd failure rc. */
void mgr_fail_store(struct manager *m, struct api_call *c, int rc,
		    const char *what);
/* If env is an agent's error Result with a code the API passes on, end c
 * with it ("host HOST: message") and return 1; else 0. */
int mgr_fail_agent(struct api_call *c, const char *host,
		   const Canopy__V1__Envelope *env);
/* Wall-clock milliseconds. */
uint64_t mgr_unix_ms(void);
/* A malloc'd copy of s ("" for NULL); NULL only when out of memory. */
char *mgr_strdup(const char *s);
/* Replace *field (a string of an unpacked message) with a copy of s.
 * 0, or -ENOMEM with *field unchanged (callers that only label records
 * may ignore it). */
int mgr_set_str(char **field, const char *s);
/* A sequence counter (decimal) at key into *seq (0 when absent). 0,
 * -EBADMSG or an etcd error. */
CN_MUST_CHECK int mgr_seq_load(struct manager *m, const char *key,
			       uint64_t *seq);
/* Store msg as record cur+1 under prefix ("%020" digits) and move the
 * counter at seq_key from cur to cur+1, in one fenced txn. 0, -ESTALE when
 * the counter was not cur, or as mgr_put_msg. */
CN_MUST_CHECK int mgr_seq_put(struct manager *m, const char *seq_key,
			      const char *prefix, uint64_t cur,
			      const ProtobufCMessage *msg);
/* Page size from a request (0: default, capped at MGR_PAGE_MAX). */
size_t mgr_page_size(uint32_t asked);

/* ---- leader.c ------------------------------------------------------------ */

/* Start the election (timers on the loop). 0 or -errno. */
CN_MUST_CHECK int mgr_leader_start(struct manager *m);
/* Give up leadership (on shutdown or when a fenced write found us
 * deposed): stop the bus, end streams, drop leader state. */
void mgr_leader_step_down(struct manager *m, const char *why);
/* At shutdown: stop the election timers, drop leader state and release
 * the leader key and lease (best effort). */
void mgr_leader_stop(struct manager *m);
/* api gate: 0 on the leader; else answers UNAVAILABLE naming the leader. */
int mgr_api_gate(void *arg, struct api_call *c);

/* ---- hosts.c: agent bus ---------------------------------------------------- */

/* Bind the bus and load host records (on becoming leader). 0 or -errno. */
CN_MUST_CHECK int mgr_hosts_start(struct manager *m);
/* Close the bus and forget hosts (stepping down, shutdown). */
void mgr_hosts_stop(struct manager *m);
/* The host record the leader has for id, or NULL. */
struct mgr_host *mgr_host_find(struct manager *m, const char *id);
/* The connected host with the most free memory, or NULL. */
struct mgr_host *mgr_host_pick(struct manager *m);
/* Send cmd to host and call cb with the agent's reply (lib/bus contract).
 * 0, -EHOSTUNREACH, -ENOTCONN (no bus) or a bus error. */
CN_MUST_CHECK int
mgr_host_command(struct manager *m, const char *host,
		 const Canopy__V1__VmCommand *cmd, uint32_t timeout_ms,
		 void (*cb)(void *, int, const Canopy__V1__Envelope *),
		 void *arg);

/* ---- tasks.c: the task engine ---------------------------------------------- */

/* Create a task for op on vm (record QUEUED in etcd) and queue it behind
 * the VM's other active tasks. The Vm record is written in the same txn
 * (vm may be NULL for none; for create the txn also checks that the VM
 * did not exist: -EEXIST). prev_desired is restored if the task fails.
 * *out gets a heap copy of the task record (free with
 * protobuf_c_message_free_unpacked). 0 or -errno. */
CN_MUST_CHECK int mgr_task_submit(struct manager *m, enum mgr_op op,
				  const Canopy__V1__Vm *vm, int hard,
				  uint32_t timeout_ms,
				  Canopy__V1__PowerState prev_desired,
				  Canopy__V1__Task **out);
/* Fail every task left QUEUED or RUNNING by a previous leader (on becoming
 * leader). 0 or -errno. */
CN_MUST_CHECK int mgr_tasks_recover(struct manager *m);
/* Forget active tasks and end WaitTask streams (stepping down). */
void mgr_tasks_stop(struct manager *m);
/* Whether vm has an active task (1) or not (0). */
int mgr_vm_busy(struct manager *m, const char *vm);
/* Handlers (api_tasks.c uses them). */
void mgr_task_cancel(struct manager *m, struct api_call *c, const char *id);
void mgr_task_wait(struct manager *m, struct api_call *c, const char *id);

/* ---- events.c -------------------------------------------------------------- */

/* Append an event (fenced; failures are logged, not returned). */
void mgr_event(struct manager *m, Canopy__V1__EventSeverity sev,
	       const char *kind, const char *object, const char *task,
	       const char *fmt, ...) CN_PRINTF(6, 7);
/* Load the event counter (on becoming leader). 0 or -errno. */
CN_MUST_CHECK int mgr_events_start(struct manager *m);
/* End WatchEvents streams (stepping down, shutdown). */
void mgr_events_stop(struct manager *m);

/* ---- retention.c ------------------------------------------------------------ */

/* Start / stop the retention timer (runs only while leader). */
CN_MUST_CHECK int mgr_retention_start(struct manager *m);
void mgr_retention_stop(struct manager *m);

/* ---- api_vms.c, api_console.c -------------------------------------------- */

/* Read vm name into *out (free with canopy__v1__vm__free_unpacked); answers
 * c (INVALID_ARGUMENT, NOT_FOUND, store errors) and returns nonzero on
 * failure. */
CN_MUST_CHECK int mgr_vm_read(struct manager *m, struct api_call *c,
			      const char *name, Canopy__V1__Vm **out);
/* Largest slice of a console one ReadConsole returns, and how long the
 * manager waits for the agent's answer. */
#define MGR_CONSOLE_READ_MAX (64u * 1024)
#define MGR_CONSOLE_TIMEOUT_MS 5000
/* Most bytes one WriteConsole takes (the VMM's console_input limit). */
#define MGR_CONSOLE_WRITE_MAX 4096u

/* ---- api_images.c: image import (docs/images.md) ------------------------ */

/* An import whose host sent no progress (the agent sends it every
 * second) for this long fails: the agent restarted or lost it. */
#define MGR_IMAGE_SILENCE_MS 10000
/* Default of --image-max-bytes: 64 GiB. */
#define MGR_IMAGE_MAX_BYTES_DEFAULT (64ull << 30)
/* Parse a byte count with an optional K/M/G/T (binary) suffix, 1 or more.
 * 0 or -EINVAL. */
CN_MUST_CHECK int mgr_image_size_parse(const char *s, uint64_t *out);
/* A connected host with datastore ds; else answers c (NOT_FOUND: no host
 * reports it; FAILED_PRECONDITION: none of them is connected) and
 * returns NULL. */
struct mgr_host *mgr_ds_host_pick(struct manager *m, struct api_call *c,
				  const char *ds);
/* Bus messages from host: ImageProgress and ImageDone. */
void mgr_image_progress(struct manager *m, const char *host,
			const Canopy__V1__ImageProgress *p);
void mgr_image_done(struct manager *m, const char *host,
		    const Canopy__V1__ImageDone *d);
/* Cancel the import of task id: 1 when id is an image task (c answered),
 * 0 when it is not one. */
int mgr_image_cancel(struct manager *m, struct api_call *c, const char *id);
/* Fail the imports running on host hid (it disconnected). */
void mgr_images_host_down(struct manager *m, const char *hid);
/* Forget imports (stepping down); their tasks are failed by the next
 * leader's recovery. */
void mgr_images_stop(struct manager *m);

/* ---- handlers (api_*.c), referenced by methods.c ---------------------------- */

void api_get_cluster(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_list_hosts(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_get_host(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_remove_host(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_add_host(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_list_datastores(void *arg, struct api_call *c,
			 const ProtobufCMessage *r);
void api_create_vm(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_list_vms(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_get_vm(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_start_vm(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_stop_vm(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_pause_vm(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_resume_vm(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_delete_vm(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_read_console(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_write_console(void *arg, struct api_call *c,
		       const ProtobufCMessage *r);
void api_import_image(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_list_images(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_list_tasks(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_get_task(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_wait_task(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_cancel_task(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_list_events(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_watch_events(void *arg, struct api_call *c, const ProtobufCMessage *r);
/* users, roles, audit (api_users.c, api_roles.c, api_audit.c) */
void api_login(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_whoami(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_add_user(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_list_users(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_set_password(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_delete_user(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_list_roles(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_create_role(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_delete_role(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_grant(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_revoke(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_list_permissions(void *arg, struct api_call *c,
			  const ProtobufCMessage *r);
void api_list_audit(void *arg, struct api_call *c, const ProtobufCMessage *r);
void api_verify_audit(void *arg, struct api_call *c, const ProtobufCMessage *r);

#endif
