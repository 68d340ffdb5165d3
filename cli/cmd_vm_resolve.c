/* canopy CLI: `vm resolve-migration NAME --resume-source | --power-off
 * [--no-wait]`: an operator ends an in-doubt migration. */
#include <stdbool.h>
#include <stdio.h>

#include "cli/cli.h"
#include "cli/cmd_vm.h"

#define M_RESOLVE "/canopy.v1.VmService/ResolveMigration"
#define M_GET_TASK "/canopy.v1.TaskService/GetTask"
#define CHOICE(x) CANOPY__V1__RESOLVE_MIGRATION_REQUEST__CHOICE__##x

const struct cli_optdef cli_vm_resolve_opts[] = {
	{ .name = "resume-source" },
	{ .name = "power-off" },
	{ .name = "no-wait" },
	{ 0 },
};

/* After success: the task's result sentence. */
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

int cli_vm_resolve(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__ResolveMigrationRequest req =
		CANOPY__V1__RESOLVE_MIGRATION_REQUEST__INIT;
	bool resume = cli_args_has(a, "resume-source");
	bool off = cli_args_has(a, "power-off");
	Canopy__V1__Task *t;
	char id[128];
	int rc;

	if (resume == off)
		return cli_fail(c, CLI_EXIT_USAGE,
				"give exactly one of --resume-source (run the "
				"paused source copy again: the destination "
				"does not run it) and --power-off (stop it; "
				"start the vm again later)");
	req.name = (char *)a->pos[0];
	req.choice = resume ? CHOICE(CHOICE_RESUME_SOURCE) :
			      CHOICE(CHOICE_POWER_OFF);
	rc = cli_call(c, M_RESOLVE, &req.base, &canopy__v1__task__descriptor,
		      (ProtobufCMessage **)&t);
	if (rc)
		return rc;
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
