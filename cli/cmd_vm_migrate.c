/* canopy CLI: `vm migrate NAME --to HOST [--max-downtime MS]
 * [--bandwidth MIB/S] [--no-wait]`: live migration as a task. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd_vm.h"

#define M_MIGRATE_VM "/canopy.v1.VmService/MigrateVm"
#define M_GET_TASK "/canopy.v1.TaskService/GetTask"

const struct cli_optdef cli_vm_migrate_opts[] = {
	{ .name = "to", .has_arg = true },
	{ .name = "max-downtime", .has_arg = true },
	{ .name = "bandwidth", .has_arg = true },
	{ .name = "no-wait" },
	{ 0 },
};

/* An optional number option into *out (untouched when absent). */
static int opt_uint(struct cli *c, const struct cli_args *a, const char *name,
		    uint64_t max, uint64_t *out)
{
	const char *s = cli_args_get(a, name);
	char what[32], err[CLI_ERR_MAX];

	if (!s)
		return 0;
	snprintf(what, sizeof(what), "--%s", name);
	if (cli_parse_uint(what, s, 1, max, out, err, sizeof(err)))
		return cli_fail(c, CLI_EXIT_USAGE, "%s", err);
	return 0;
}

/* After success: the task's result sentence (for a migration, its
 * downtime and total time). */
static int print_result(struct cli *c, const char *id)
{
	Canopy__V1__GetTaskRequest req = CANOPY__V1__GET_TASK_REQUEST__INIT;
	Canopy__V1__Task *t;
	char text[CLI_CELL_MAX * 8];
	int rc;

	req.id = (char *)id;
	rc = cli_call(c, M_GET_TASK, &req.base, &canopy__v1__task__descriptor,
		      (ProtobufCMessage **)&t);
	if (rc)
		return rc;
	cli_text_clean(text, sizeof(text), t->result, CLI_CELL_MAX * 2);
	fprintf(c->out, "%s\n", text);
	protobuf_c_message_free_unpacked(&t->base, NULL);
	return 0;
}

int cli_vm_task_follow(struct cli *c, const struct cli_args *a,
		       Canopy__V1__Task *t)
{
	char id[128];
	int rc;

	snprintf(id, sizeof(id), "%s", t->id);
	if (cli_args_has(a, "no-wait")) {
		rc = cli_task_after(c, t, true);
		protobuf_c_message_free_unpacked(&t->base, NULL);
		return rc;
	}
	protobuf_c_message_free_unpacked(&t->base, NULL);
	rc = cli_task_wait(c, id);
	if (rc == 0 && !c->json)
		rc = print_result(c, id);
	return rc;
}

int cli_vm_migrate(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__MigrateVmRequest req = CANOPY__V1__MIGRATE_VM_REQUEST__INIT;
	Canopy__V1__Task *t;
	uint64_t ms = 0, bw = 0;
	int rc;

	req.name = (char *)a->pos[0];
	req.to_host = (char *)cli_args_get(a, "to");
	if (!req.to_host)
		return cli_fail(c, CLI_EXIT_USAGE,
				"give the destination with --to HOST; list "
				"hosts with 'canopy host list'");
	rc = opt_uint(c, a, "max-downtime", 60000, &ms);
	rc = rc ?: opt_uint(c, a, "bandwidth", 1u << 20, &bw);
	if (rc)
		return rc;
	req.max_downtime_ms = (uint32_t)ms;
	req.bandwidth_limit_mib_s = bw;
	rc = cli_call(c, M_MIGRATE_VM, &req.base, &canopy__v1__task__descriptor,
		      (ProtobufCMessage **)&t);
	return rc ? rc : cli_vm_task_follow(c, a, t);
}
