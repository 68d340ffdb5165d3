/*
 * canopy-agent: the host agent. One lib/loop epoll loop owns all state
 * (struct agent): the bus client to the manager, the VM table, the VMM
 * processes it supervises and the calls in flight on their control sockets.
 * Everything here runs on the loop's thread.
 */
#ifndef CANOPY_HOST_AGENT_AGENT_H
#define CANOPY_HOST_AGENT_AGENT_H

#include <stdint.h>
#include <sys/types.h>

#include "host/agent/spec.h"
#include "lib/bus_keys.h"
#include "lib/compiler.h"
#include "proto/canopy_agent.pb-c.h"
#include "proto/canopy_vmm.pb-c.h"

struct loop;
struct bus_client;
struct vmmctl_call;
struct agent_create_job;
struct agent_mig;
struct agent_image;
struct agent_ds_list;

/* The agent's version, reported at registration. */
#define AGENT_VERSION "0.1.0"
/* Defaults of options left unset. */
#define AGENT_STATS_INTERVAL_S_DEFAULT 5
#define AGENT_MANAGER_TIMEOUT_S_DEFAULT 10 /* as lib/bus's peer timeout */
#define AGENT_START_TIMEOUT_MS_DEFAULT 10000 /* START: VMM to RUNNING */
#define AGENT_STOP_TIMEOUT_MS_DEFAULT 30000 /* STOP: graceful, then hard */
#define AGENT_STOP_HARD_TIMEOUT_MS_DEFAULT 6000 /* STOP_HARD */
/* An answer is sent at most this long before the op's timeout. */
#define AGENT_ANSWER_MARGIN_MS 500
#define AGENT_OP_TIMEOUT_MS_MAX (10u * 60 * 1000) /* any command */
/* Status calls to a VMM (stats, start polling, adoption). */
#define AGENT_STATUS_TIMEOUT_MS 2000
/* How often START asks a starting VMM for its state: from the first to
 * the last interval, doubling. A VMM is up in 10-20 ms (a few more with
 * TLS files to load); with a 50 ms cap one that missed the 14 ms poll was
 * seen only at 30 ms, so the cap is 8 ms (a status call costs tens of
 * microseconds). */
#define AGENT_START_POLL_FIRST_MS 2
#define AGENT_START_POLL_MS 8
/* Exit counts kept per VM. */
#define AGENT_EXITS_MAX 24
/* Largest slice of a console log one ConsoleRead returns. */
#define AGENT_CONSOLE_READ_MAX (64u * 1024)
/* Largest ConsoleInput forwarded to a VMM (its console_input limit). */
#define AGENT_CONSOLE_INPUT_MAX 4096u
/* Datastores given with --datastore. */
#define AGENT_DATASTORES_MAX 16
/* Datastore heartbeat slots (ids 1..64 of a volume). */
#define AGENT_DS_SLOTS_MAX 64
/* Bad-input log lines per second (the rest are counted). */
#define AGENT_BAD_LOG_PER_S 10

struct agent_opts {
	const char *manager; /* tcp://HOST:PORT */
	const char *host_id;
	const char *run_dir;
	const char *vmm; /* canopy-vmm binary */
	const char *address; /* reported for migration; may be NULL */
	const char *datastores[AGENT_DATASTORES_MAX]; /* "NAME=DEV" */
	size_t n_datastores;
	uint32_t stats_interval_ms;
	uint32_t manager_timeout_ms; /* manager gone after this silence */
	/* Datastore heartbeat slots this host may use (0: none given). */
	uint32_t ds_slot_first, ds_slot_last;
	/* --pki-dir: this host's credentials from enrolment (bus.key: the
	 * CURVE pair and the manager's key; ca.pem, host.pem, host.key: the
	 * host's TLS certificate from the cluster CA). NULL: none. */
	const char *pki_dir;
	/* --join: a one-time token from 'canopy host add' to enrol with. */
	const char *join_token;
	/* CURVE: the manager's public key and our key pair file (both or
	 * neither). */
	const char *curve_server_key;
	const char *curve_keys;
	/* CA bundle for image downloads (NULL: the system's). */
	const char *image_ca_file;
	/* --vmm-uids: the uids VMMs of this host are jailed as, one per VM
	 * (0: none given; canopy-vmm then takes its own, base + pid). */
	uint32_t vmm_uid_first, vmm_uid_last;
};

/* A command being carried out for the manager; one per VM at a time. */
struct agent_op {
	Canopy__V1__VmAction action;
	uint64_t reply_id; /* the manager's request id to answer */
	uint64_t deadline_ms; /* loop time when the op gives up / kills */
	uint32_t timeout_ms; /* as given or defaulted */
	int killed; /* SIGKILL already sent */
	uint32_t poll_ms; /* START: the next status poll interval */
};

struct agent_exit_count {
	char reason[32];
	uint64_t count;
};

/* A VM this host knows: a directory under <run-dir>/vms/. */
struct agent_vm {
	struct agent_vm *next;
	struct agent *ag;
	char id[AGENT_VM_ID_MAX + 1];
	char dir[AGENT_PATH_MAX];
	Canopy__V1__VmSpec *spec; /* as stored in spec.pb */
	Canopy__V1__VmRunState state;
	char reason[512]; /* why it stopped */
	pid_t pid; /* VMM process, 0 when none */
	int pidfd; /* -1 when none */
	int is_child; /* started by this agent process (we reap it) */
	int exit_status; /* of the last VMM we reaped; -1 unknown */
	uint64_t log_mark; /* vmm.log size when its VMM was started/adopted */
	uint64_t rss_bytes, cpu_ns, uptime_ms;
	struct agent_exit_count exits[AGENT_EXITS_MAX];
	size_t n_exits;
	/* Datastore disks of the running VMM: volume and slot (0: none). */
	struct agent_ds_disk ds[AGENT_DISKS_MAX];
	struct agent_op *op; /* command in flight, or NULL */
	uint64_t op_timer; /* polling / deadline timer of op */
	struct vmmctl_call *op_call; /* control call of op */
	struct vmmctl_call *stats_call; /* status call of a stats round */
	struct agent_mig *mig; /* a migration in or out (migrate.c), or NULL */
	uint32_t jail_uid; /* its VMM's --jail-uid (vm_uid.c), 0: none */
};

/* The exit of a receiving VMM that left without the VM (migrate_doubt.c:
 * MigrateProbe tells "exited without running it" from "may have run"). */
#define AGENT_MIG_EXITS 16
struct agent_mig_exit {
	char vm_id[AGENT_VM_ID_MAX + 1]; /* "" = free */
	int status; /* exit status; 2: nothing ran; -1: unknown */
	int ran; /* its run marker (migrate-ran) was in the VM's directory */
};

struct agent {
	struct agent_opts opts;
	struct loop *loop;
	struct bus_client *bus;
	char vms_dir[AGENT_PATH_MAX];
	struct agent_vm *vms;
	struct agent_create_job *jobs; /* CREATEs in worker threads */
	struct agent_image *images; /* image imports (image_import.c) */
	struct agent_ds_list *ds_lists; /* DatastoreList workers (ds_list.c) */
	int sigfd;
	uint64_t stats_timer;
	unsigned stats_outstanding; /* status calls of the current round */
	int stats_round; /* a round is collecting */
	uint64_t ds_slots_used; /* bit s-1: slot s given out */
	uint32_t ds_slot_next; /* next-fit position in the slot range */
	struct bus_keys curve; /* kept: the bus options point into it */
	uint64_t bad_window_ms; /* start of the current log second */
	unsigned bad_logged; /* bad-input lines logged in that second */
	uint64_t bad_dropped; /* bad-input lines not logged */
	struct agent_mig_exit mig_exits[AGENT_MIG_EXITS]; /* a ring */
	unsigned mig_exits_next;
};

/* ---- vm.c: the VM table, reports -------------------------------------- */

/* The VM with this id, or NULL. */
struct agent_vm *agent_vm_find(struct agent *ag, const char *id);
/* Add a VM (state STOPPED, no process) owning spec; -ENOMEM. */
CN_MUST_CHECK int agent_vm_add(struct agent *ag, const char *id,
			       Canopy__V1__VmSpec *spec, struct agent_vm **out);
/* Unlink and free a VM: cancels its calls and timers, closes its pidfd
 * (the process, if any, is left alone), frees a pending op unanswered. */
void agent_vm_free(struct agent *ag, struct agent_vm *vm);
/* Whether a VMM process is up for vm. */
int agent_vm_active(const struct agent_vm *vm);
/* Load <run-dir>/vms/ at start: every valid VM directory is added; those
 * with a control socket are adopted (asynchronously). 0 or -errno. */
CN_MUST_CHECK int agent_vms_scan(struct agent *ag);
/* Fill r from vm (strings point into vm; exits into the arrays given). */
void agent_vm_report_fill(const struct agent_vm *vm,
			  Canopy__V1__VmStateReport *r,
			  Canopy__V1__ExitCount *exits,
			  Canopy__V1__ExitCount **exitp);
/* Send one VmStateReport for vm (dropped with a debug line when the
 * manager is not connected). */
void agent_vm_report(struct agent *ag, const struct agent_vm *vm);
/* Update vm's cached figures from a VMM status. */
void agent_vm_status_apply(struct agent_vm *vm,
			   const Canopy__V1__VmmStatus *st);

/* ---- vm_proc.c: VMM processes --------------------------------------- */

/* vm_uid.c: --vmm-uids FIRST-LAST (0 or -EINVAL); a VM's uid from its
 * directory (at load); the uid for its next VMM: the one it had if still
 * in the range and free, else the lowest free one, kept in its directory
 * (0, nothing to do without --vmm-uids; -ENOSPC or -errno with msg). */
CN_MUST_CHECK int agent_vmm_uids_parse(const char *s, uint32_t *first,
				       uint32_t *last);
void agent_vm_uid_load(struct agent_vm *vm);
CN_MUST_CHECK int agent_vm_uid_pick(struct agent *ag, struct agent_vm *vm,
				    char *msg, size_t len);

/* fork+exec canopy-vmm for vm (setsid, log to vmm.log), watch its pidfd.
 * 0 or -errno with msg (size len) saying why. */
CN_MUST_CHECK int agent_vmm_spawn(struct agent *ag, struct agent_vm *vm,
				  char *msg, size_t len);
/* Watch an existing VMM process (adoption). 0 or -errno (-ESRCH: gone). */
CN_MUST_CHECK int agent_vmm_watch(struct agent *ag, struct agent_vm *vm,
				  pid_t pid, int is_child);
/* SIGKILL the VMM (through its pidfd; no-op without one). */
void agent_vmm_kill(struct agent_vm *vm);
/* Remember where vmm.log ends: what the current VMM writes comes after,
 * and tails and stop reasons read nothing before it. */
void agent_vmm_log_mark(struct agent_vm *vm);

/* ---- command.c / command_power.c: VmCommand ------------------------- */

/* Carry out a VmCommand request from the manager (env->request_id != 0)
 * and answer it, now or when the work is done. */
void agent_command_handle(struct agent *ag, const Canopy__V1__Envelope *env);
/* Answer the manager's request reply_id with code (cn_code) and text. */
void agent_reply(struct agent *ag, uint64_t reply_id, int code,
		 const char *text);
/* Finish vm's op: answer it with code/text, drop its timer and call. */
void agent_op_finish(struct agent *ag, struct agent_vm *vm, int code,
		     const char *text);
/* CREATE (create.c): check, claim the directory, then a worker thread
 * makes the disks and the spec file and the loop answers. */
void agent_create_start(struct agent *ag, uint64_t rid,
			const Canopy__V1__VmCommand *cmd);
/* Loop thread: a worker's result (posted by it). */
void agent_create_done(void *arg);
/* At exit: wait for the workers still running and drop their jobs. */
void agent_create_join_all(struct agent *ag);
/* Remove a VM directory: its files, then it. 0 or the first -errno. */
CN_MUST_CHECK int agent_dir_remove(const char *dir);
/* Power commands (command_power.c); each answers or leaves vm->op set. */
void agent_power_start(struct agent *ag, struct agent_vm *vm);
void agent_power_stop(struct agent *ag, struct agent_vm *vm, int hard);
void agent_power_pause(struct agent *ag, struct agent_vm *vm, int pause);
/* The VMM of vm exited (vm->reason set): finish an op that waited for it. */
void agent_power_exited(struct agent *ag, struct agent_vm *vm);
/* Ask vm's VMM for its status to adopt it (start-up scan). */
void agent_power_adopt(struct agent *ag, struct agent_vm *vm);

/* ---- migrate.c: vMotion (docs/migration-protocol.md, "Orchestration") */

/* Destination: MigrateIncoming (request): make the VM from its spec
 * (datastore disks only), start canopy-vmm --incoming on our --address
 * (port 0: the VMM picks; read back from its log) and answer MigrateReady
 * once it listens, or a CommandResult with the error (nothing left). The
 * VM becomes an ordinary VM of this host once its VMM runs it; if the VMM
 * exits before that, its directory is removed without a report. */
void agent_migrate_incoming(struct agent *ag, const Canopy__V1__Envelope *env);
/* Destination: MigrateAbort: kill the receiving VMM unless the VM runs
 * (its control socket exists: committed, FAILED_PRECONDITION). */
void agent_migrate_abort(struct agent *ag, const Canopy__V1__Envelope *env);
/* Source: MigrateSend: answer at once, run migrate_send on the VMM, relay
 * MigrateProgress and end with one MigrateDone. After a commit the VMM's
 * exit removes the VM from this host (not a crash: no report). */
void agent_migrate_send(struct agent *ag, const Canopy__V1__Envelope *env);
/* The VMM of vm exited: 1 when migrate.c handled it (vm may be freed),
 * 0 when vm has no migration. */
int agent_migrate_exited(struct agent *ag, struct agent_vm *vm);
/* Source: MigrateResolve after an in-doubt MigrateDone: migrate_resolve
 * {resume} to the VMM, answered once it is done (resume: the VM runs here
 * again and is reported; else the VMM stops as migrated and the VM is
 * forgotten). FAILED_PRECONDITION when nothing is in doubt here. */
void agent_migrate_resolve(struct agent *ag, const Canopy__V1__Envelope *env);
/* Destination: MigrateProbe: OK (the VM runs or ran here), NOT_FOUND (no
 * receiver and no such VM: a receiver exits without running the VM once
 * its wait for COMMIT is over, or without its run marker), UNAVAILABLE
 * (the receiver still waits), ABORTED (it died after its run marker). */
void agent_migrate_probe(struct agent *ag, const Canopy__V1__Envelope *env);
/* Destination: note that vm_id's receiving VMM exited with status
 * (-1: unknown) without the VM, and whether it had made its run marker
 * (ran: it may have run a vCPU); status 0 forgets the note (a new
 * MigrateIncoming). */
void agent_migrate_exit_note(struct agent *ag, const char *vm_id, int status,
			     int ran);
/* A VMM adopted at start-up reports a migration in doubt: the VM is
 * MIGRATING here until a MigrateResolve (migrate_doubt.c). */
void agent_migrate_adopt_doubt(struct agent *ag, struct agent_vm *vm,
			       const Canopy__V1__VmmStatus *st);
/* Hand a migration message (a request) to the functions above: 1 when it
 * was one (answered), 0 when env is something else. */
int agent_migrate_dispatch(struct agent *ag, const Canopy__V1__Envelope *env);
/* At start-up, for a VM without a control socket: a receiving VMM left by
 * the previous agent process (its marker names a live canopy-vmm in the
 * VM's directory) is watched again until it runs the VM; a dead one's
 * directory is removed (vm freed). 1 when it was an incoming VM, else 0. */
int agent_migrate_reattach(struct agent *ag, struct agent_vm *vm);
/* Whether vm has a migration in or out. */
int agent_migrate_busy(const struct agent_vm *vm);
/* Free vm's migration state (agent_vm_free). */
void agent_migrate_forget(struct agent *ag, struct agent_vm *vm);
/* Append --incoming tcp:ADDR:0 to a receiving VMM's argv. 0 or -ENOMEM. */
CN_MUST_CHECK int agent_migrate_argv(const struct agent_vm *vm,
				     struct agent_argv *av);

/* ---- console.c: ConsoleRead ------------------------------------------ */

/* Answer a ConsoleRead request (env->request_id != 0) with ConsoleData, or
 * a CommandResult for a bad id (INVALID_ARGUMENT), an unknown VM
 * (NOT_FOUND), a VM that never ran here (no console.log:
 * FAILED_PRECONDITION) or a read error. The log is opened with O_NOFOLLOW; one
 * pread of at most AGENT_CONSOLE_READ_MAX bytes on the loop thread. */
void agent_console_handle(struct agent *ag, const Canopy__V1__Envelope *env);

/* ---- console_input.c: ConsoleInput ------------------------------------ */

/* Answer a ConsoleInput request (env->request_id != 0): INVALID_ARGUMENT
 * (bad id, over AGENT_CONSOLE_INPUT_MAX), NOT_FOUND (unknown VM),
 * FAILED_PRECONDITION (no VMM running it); else forward the bytes to its
 * VMM (console_input) and answer with the VMM's code once it replied
 * (RESOURCE_EXHAUSTED: its queue is full). Loop thread. */
void agent_console_input_handle(struct agent *ag,
				const Canopy__V1__Envelope *env);

/* ---- datastore.c: datastores and their heartbeat slots ------------- */

/* The volume of datastore name (from --datastore), or NULL. */
const char *agent_ds_dev(const struct agent *ag, const char *name);
/* Give out a free slot of --ds-slots (next fit). 0, -EOPNOTSUPP (no
 * --ds-slots) or -ENOSPC (all in use). Loop thread. */
CN_MUST_CHECK int agent_ds_slot_get(struct agent *ag, uint32_t *out);
/* Mark a slot used (an adopted VMM holds it) / give it back. */
void agent_ds_slot_mark(struct agent *ag, uint32_t slot);
void agent_ds_slot_put(struct agent *ag, uint32_t slot);
/*
 * Create (thin, size bytes) or remove file on the datastore volume dev,
 * joined as host slot for the duration. Blocking: worker threads only.
 * 0 or -errno with msg naming the volume and file.
 */
CN_MUST_CHECK int agent_ds_file_change(const char *dev, uint32_t slot,
				       const char *file, uint64_t size,
				       int remove, char *msg, size_t len);

/* The same session for longer work (image import, worker threads only):
 * open joins the volume dev as host slot and renews its heartbeat from a
 * thread until close, which leaves cleanly. open: 0 or -errno with err. */
struct agent_ds_sess;
struct ds_host;
struct ds_hb_watch;
CN_MUST_CHECK int agent_ds_sess_open(const char *dev, uint32_t slot,
				     struct agent_ds_sess **out, char *err,
				     size_t len);
struct ds_host *agent_ds_sess_host(struct agent_ds_sess *s);
struct ds_hb_watch *agent_ds_sess_watch(struct agent_ds_sess *s);
/* 1 once the session missed its heartbeat: stop writing (self-fence). */
int agent_ds_sess_fenced(struct agent_ds_sess *s);
void agent_ds_sess_close(struct agent_ds_sess *s);

/* Give each datastore disk of vm a volume and a slot for its VMM, and
 * record them in the VM's directory. 0, -EBADFD (no such datastore or no
 * --ds-slots), -ENOSPC, or -errno; msg says what to do. */
CN_MUST_CHECK int agent_vm_ds_assign(struct agent *ag, struct agent_vm *vm,
				     char *msg, size_t len);
/* The VMM is gone: its slots are free again. */
void agent_vm_ds_release(struct agent *ag, struct agent_vm *vm);
/* An adopted VMM: take back the slots it recorded. */
void agent_vm_ds_restore(struct agent *ag, struct agent_vm *vm);

/* ---- image_import.c: ImageImport, ImageCancel (host/agent/image.h) -- */

/* Validate an ImageImport request, start its worker; the answer (accepted
 * or refused) is sent when the worker has looked at the datastore. */
void agent_image_handle(struct agent *ag, const Canopy__V1__Envelope *env);
/* Cancel the import of a task (its partial file is deleted). */
void agent_image_cancel(struct agent *ag, const Canopy__V1__Envelope *env);
/* At start-up, before any thread (image_fetch.c): libcurl's global
 * set-up and a readable --image-ca-file. 0, or -errno after printing why. */
CN_MUST_CHECK int agent_images_init(struct agent *ag);
/* At exit, after the loop stopped: cancel every import and wait. */
void agent_images_stop_all(struct agent *ag);

/* ---- ds_list.c: DatastoreList ---------------------------------------- */

/* Answer a DatastoreList request with DatastoreFiles (NOT_FOUND for a
 * datastore this host does not have), read by a worker thread. */
void agent_ds_list_handle(struct agent *ag, const Canopy__V1__Envelope *env);
/* At exit, after the loop stopped: wait for the workers, drop the jobs. */
void agent_ds_list_join_all(struct agent *ag);

/* ---- curve.c: CURVE keys for the bus -------------------------------- */

/*
 * The bus keys of this agent into *bo (and ag->curve): --curve-keys FILE
 * with --curve-server-key, or --pki-dir DIR/bus.key, enrolling first with
 * --join. Neither: plain text, with a warning. 0, or -errno with msg.
 */
CN_MUST_CHECK int agent_curve_setup(struct agent *ag, struct bus_options *bo,
				    char *msg, size_t len);

/* ---- host.c: registration and host stats ---------------------------- */

/* Send AgentRegister, then every VM's state and a stats round. */
void agent_host_register(struct agent *ag);
/* Start a stats round: status of every VMM, then HostStats. */
void agent_stats_round(struct agent *ag);
/* One status call of the round finished or was dropped; the last one
 * sends HostStats. */
void agent_stats_call_done(struct agent *ag);
/* Whether to log one more bad-input line now (rate limit). */
int agent_bad_log_ok(struct agent *ag);

#endif
