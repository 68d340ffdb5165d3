/* canopy CLI: `vm list|show|start|stop|pause|resume|delete|console`. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd_vm.h"

#define M_LIST_VMS "/canopy.v1.VmService/ListVms"
#define M_GET_VM "/canopy.v1.VmService/GetVm"
#define M_DELETE_VM "/canopy.v1.VmService/DeleteVm"

/* The VM's desired power and its run state as words (buffers of size). */
static void vm_states(char *power, char *state, size_t size,
		      const Canopy__V1__Vm *vm)
{
	cli_enum_text(power, size, &canopy__v1__power_state__descriptor,
		      vm->desired, "POWER_STATE_");
	cli_enum_text(state, size, &canopy__v1__vm_run_state__descriptor,
		      vm->state, "VM_RUN_STATE_");
}

static int vm_row(struct cli_table *t, const ProtobufCMessage *m, uint64_t now)
{
	const Canopy__V1__Vm *vm = (const Canopy__V1__Vm *)m;
	char power[32], state[32], cpus[16], mem[32], age[32];
	const Canopy__V1__VmSpec *s = vm->spec;
	const char *row[] = { s ? s->name : vm->id,
			      power,
			      state,
			      vm->host[0] ? vm->host : "-",
			      cpus,
			      mem,
			      age };

	vm_states(power, state, sizeof(power), vm);
	snprintf(cpus, sizeof(cpus), "%u", s ? s->cpus : 0);
	cli_fmt_mib(mem, sizeof(mem), s ? s->memory_mib : 0);
	cli_fmt_age(age, sizeof(age), vm->created_unix_ms, now);
	return cli_table_add(t, row);
}

static int vm_list(struct cli *c, const struct cli_args *a)
{
	static const char *const hdr[] = { "NAME", "POWER",  "STATE",  "HOST",
					   "CPUS", "MEMORY", "CREATED" };
	static const struct cli_list l = {
		.method = M_LIST_VMS,
		.resp_desc = &canopy__v1__list_vms_response__descriptor,
		.field = "vms",
		.ncols = CN_ARRAY_SIZE(hdr),
		.hdr = hdr,
		.row = vm_row,
	};
	Canopy__V1__ListVmsRequest req = CANOPY__V1__LIST_VMS_REQUEST__INIT;

	if (cli_args_get(a, "host"))
		req.host = (char *)cli_args_get(a, "host");
	return cli_list_run(c, &l, &req.base);
}

/* "ds1:web1/disk0 10 GiB ro" for disk i. */
static void disk_text(char *buf, size_t size, const Canopy__V1__DiskSpec *d)
{
	char sz[32] = "";

	if (d->size_bytes)
		cli_fmt_bytes(sz, sizeof(sz), d->size_bytes);
	snprintf(buf, size, "%s%s%s%s%s", d->path[0] ? d->path : "(new)",
		 sz[0] ? " " : "", sz, d->readonly ? " readonly" : "",
		 d->direct ? " direct" : "");
}

/* The spec's lines (kernel, disks, NICs) as extra key/value pairs. */
static size_t spec_lines(const Canopy__V1__VmSpec *s, const char **keys,
			 const char **vals, char (*bufs)[160], size_t max)
{
	size_t n = 0, i;

	for (i = 0; i < s->n_disks && n < max; i++, n++) {
		disk_text(bufs[n], sizeof(bufs[n]), s->disks[i]);
		keys[n] = i ? "" : "Disks";
		vals[n] = bufs[n];
	}
	for (i = 0; i < s->n_nics && n < max; i++, n++) {
		snprintf(bufs[n], sizeof(bufs[n]), "%s on %s",
			 s->nics[i]->mac[0] ? s->nics[i]->mac : "(generated)",
			 s->nics[i]->network);
		keys[n] = i ? "" : "NICs";
		vals[n] = bufs[n];
	}
	return n;
}

static void vm_print(struct cli *c, const ProtobufCMessage *m)
{
	const Canopy__V1__Vm *vm = (const Canopy__V1__Vm *)m;
	static const Canopy__V1__VmSpec empty = CANOPY__V1__VM_SPEC__INIT;
	const Canopy__V1__VmSpec *s = vm->spec ? vm->spec : &empty;
	char power[32], state[32], cpus[16], mem[32], age[32], rss[32];
	char bufs[16][160];
	const char *keys[32] = { "Name",   "ID",     "Power",
				 "State",  "Host",   "Stop reason",
				 "CPUs",   "Memory", "Memory used",
				 "Kernel", "Initrd", "Cmdline",
				 "Created" };
	const char *vals[32] = { s->name,
				 vm->id,
				 power,
				 state,
				 vm->host[0] ? vm->host : "-",
				 vm->stop_reason[0] ? vm->stop_reason : "-",
				 cpus,
				 mem,
				 rss,
				 s->kernel,
				 s->initrd[0] ? s->initrd : "-",
				 s->cmdline[0] ? s->cmdline : "-",
				 age };
	size_t n = 13;

	vm_states(power, state, sizeof(power), vm);
	snprintf(cpus, sizeof(cpus), "%u", s->cpus);
	cli_fmt_mib(mem, sizeof(mem), s->memory_mib);
	if (vm->rss_bytes)
		cli_fmt_bytes(rss, sizeof(rss), vm->rss_bytes);
	else
		snprintf(rss, sizeof(rss), "-");
	cli_fmt_age(age, sizeof(age), vm->created_unix_ms, cli_now_ms());
	n += spec_lines(s, keys + n, vals + n, bufs, CN_ARRAY_SIZE(bufs));
	cli_kv_print(c->out, n, keys, vals);
}

static int vm_show(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__GetVmRequest req = CANOPY__V1__GET_VM_REQUEST__INIT;

	req.name = (char *)a->pos[0];
	return cli_show_run(c, M_GET_VM, &req.base, &canopy__v1__vm__descriptor,
			    vm_print);
}

int cli_vm_task_call(struct cli *c, const struct cli_args *a,
		     const char *method, const ProtobufCMessage *req)
{
	Canopy__V1__Task *t;
	int rc;

	rc = cli_call(c, method, req, &canopy__v1__task__descriptor,
		      (ProtobufCMessage **)&t);
	if (rc)
		return rc;
	rc = cli_task_after(c, t, cli_args_has(a, "no-wait"));
	protobuf_c_message_free_unpacked(&t->base, NULL);
	return rc;
}

#define POWER_FN(fn, rpc)                                                  \
	static int fn(struct cli *c, const struct cli_args *a)             \
	{                                                                  \
		Canopy__V1__VmPowerRequest req =                           \
			CANOPY__V1__VM_POWER_REQUEST__INIT;                \
                                                                           \
		req.name = (char *)a->pos[0];                              \
		req.hard = cli_args_has(a, "hard");                        \
		return cli_vm_task_call(c, a, "/canopy.v1.VmService/" rpc, \
					&req.base);                        \
	}

POWER_FN(vm_start, "StartVm")
POWER_FN(vm_stop, "StopVm")
POWER_FN(vm_pause, "PauseVm")
POWER_FN(vm_resume, "ResumeVm")

static int vm_delete(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__DeleteVmRequest req = CANOPY__V1__DELETE_VM_REQUEST__INIT;

	req.name = (char *)a->pos[0];
	return cli_vm_task_call(c, a, M_DELETE_VM, &req.base);
}

static const struct cli_optdef list_opts[] = {
	{ .name = "host", .has_arg = true },
	{ 0 },
};
static const struct cli_optdef wait_opts[] = {
	{ .name = "no-wait" },
	{ 0 },
};
static const struct cli_optdef stop_opts[] = {
	{ .name = "no-wait" },
	{ .name = "hard" },
	{ 0 },
};

#define WAIT_HELP                                                          \
	"  --no-wait           print the task id and return at once (the " \
	"default\n"                                                        \
	"                      waits for the task, showing its progress)\n"

#define POWER_CMD(v, fn, what)                                         \
	{                                                              \
		.object = "vm", .verb = v, .args = "NAME [--no-wait]", \
		.summary = what, .help = WAIT_HELP, .opts = wait_opts, \
		.min_pos = 1, .max_pos = 1, .run = fn                  \
	}

const struct cli_cmd cli_vm_cmds[] = {
	{ .object = "vm",
	  .verb = "create",
	  .args = "NAME --memory MiB --cpus N --kernel PATH [options]",
	  .summary = "Create a VM (powered off); waits for the task.",
	  .help = CLI_VM_CREATE_HELP WAIT_HELP,
	  .opts = cli_vm_create_opts,
	  .min_pos = 1,
	  .max_pos = 1,
	  .run = cli_vm_create },
	{ .object = "vm",
	  .verb = "list",
	  .args = "[--host H]",
	  .summary = "List VMs, all or those on one host.",
	  .help = "  --host H            only VMs on host H\n",
	  .opts = list_opts,
	  .run = vm_list },
	CLI_CMD_1("vm", "show", "NAME", "Show one VM: state, host, spec.",
		  vm_show),
	POWER_CMD("start", vm_start, "Power a VM on."),
	{ .object = "vm",
	  .verb = "stop",
	  .args = "NAME [--hard] [--no-wait]",
	  .summary = "Power a VM off (graceful first unless --hard).",
	  .help = "  --hard              stop at once, no graceful shutdown\n" WAIT_HELP,
	  .opts = stop_opts,
	  .min_pos = 1,
	  .max_pos = 1,
	  .run = vm_stop },
	POWER_CMD("pause", vm_pause, "Pause a running VM."),
	POWER_CMD("resume", vm_resume, "Resume a paused VM."),
	POWER_CMD("delete", vm_delete, "Delete a VM (it must be off)."),
	{ .object = "vm",
	  .verb = "migrate",
	  .args = "NAME --to HOST [--max-downtime MS] [--bandwidth MIB/S] "
		  "[--no-wait]",
	  .summary = "Live-migrate a running VM to another host.",
	  .help = "  --to HOST           the destination host\n"
		  "  --max-downtime MS   pause target (default 100)\n"
		  "  --bandwidth MIB/S   limit the stream (default none)\n" WAIT_HELP,
	  .opts = cli_vm_migrate_opts,
	  .min_pos = 1,
	  .max_pos = 1,
	  .run = cli_vm_migrate },
	{ .object = "vm",
	  .verb = "resolve-migration",
	  .args = "NAME --resume-source | --power-off [--no-wait]",
	  .summary = "End a migration in doubt (the VM paused on its "
		     "source).",
	  .help = "  --resume-source     run the paused source copy again "
		  "(you have checked\n"
		  "                      that the destination does not run "
		  "it; refused if\n"
		  "                      the destination says it does)\n"
		  "  --power-off         stop the paused source copy (the "
		  "destination ran\n"
		  "                      it and died: its old memory must not "
		  "run); start\n"
		  "                      it again with 'canopy vm start'\n"
		  "  exactly one of the two; needs vm.migrate.resolve on the "
		  "cluster\n" WAIT_HELP,
	  .opts = cli_vm_resolve_opts,
	  .min_pos = 1,
	  .max_pos = 1,
	  .run = cli_vm_resolve },
	{ .object = "vm",
	  .verb = "console",
	  .args = "NAME [--follow] [--from-start] [--input FILE|-]",
	  .summary = "A VM's serial console: interactive on a terminal "
		     "(Ctrl-] quits), else printed.",
	  .help = "  --follow            keep printing new output until the "
		  "VM stops\n"
		  "                      (or Ctrl-C); read-only when stdin "
		  "is no terminal\n"
		  "  --from-start        everything, not only the last 16 KiB\n"
		  "  --input FILE|-      type FILE (- stdin) into the console, "
		  "printing\n"
		  "                      the output; piped stdin does the "
		  "same\n",
	  .opts = cli_vm_console_opts,
	  .min_pos = 1,
	  .max_pos = 1,
	  .run = cli_vm_console },
	{ 0 },
};
