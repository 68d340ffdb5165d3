/* canopy CLI: `vm resolve-migration NAME --resume-source | --power-off
 * [--no-wait]`: an operator ends an in-doubt migration. */
#include <stdbool.h>

#include "cli/cli.h"
#include "cli/cmd_vm.h"

#define M_RESOLVE "/canopy.v1.VmService/ResolveMigration"
#define CHOICE(x) CANOPY__V1__RESOLVE_MIGRATION_REQUEST__CHOICE__##x

const struct cli_optdef cli_vm_resolve_opts[] = {
	{ .name = "resume-source" },
	{ .name = "power-off" },
	{ .name = "no-wait" },
	{ 0 },
};

int cli_vm_resolve(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__ResolveMigrationRequest req =
		CANOPY__V1__RESOLVE_MIGRATION_REQUEST__INIT;
	bool resume = cli_args_has(a, "resume-source");
	bool off = cli_args_has(a, "power-off");
	Canopy__V1__Task *t;
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
	return rc ? rc : cli_vm_task_follow(c, a, t);
}
