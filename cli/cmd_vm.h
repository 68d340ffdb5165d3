/*
 * Shared between the vm commands (cmd_vm.c) and `vm create`
 * (cmd_vm_create.c). Main's thread only.
 */
#ifndef CANOPY_CLI_CMD_VM_H
#define CANOPY_CLI_CMD_VM_H

#include "cli/cli.h"

/* Most --disk options of one create. */
#define CLI_VM_DISKS_MAX CLI_OPT_VALUES_MAX
/* Largest --memory (MiB) and --cpus the CLI sends; the server decides
 * what a host can hold. */
#define CLI_VM_MEMORY_MAX (UINT64_C(16) << 20)
#define CLI_VM_CPUS_MAX 1024

/* The options and --help lines of `vm create`. */
extern const struct cli_optdef cli_vm_create_opts[];
#define CLI_VM_CREATE_HELP                                                        \
	"  --memory MiB        guest memory in MiB (or with a unit: 512M, 2G)\n"  \
	"  --cpus N            virtual CPUs\n"                                    \
	"  --kernel PATH       kernel on the host (PVH ELF or bzImage)\n"         \
	"  --initrd PATH       initramfs\n"                                       \
	"  --cmdline S         kernel command line\n"                             \
	"  --disk SPEC         size=SIZE (a new disk) or path=P (a file), then\n" \
	"                      ,readonly ,direct ,serial=S; repeatable\n"         \
	"  --host H            place the VM on host H (default: the server "      \
	"picks)\n"

/* `vm create NAME ...`. */
CN_MUST_CHECK int cli_vm_create(struct cli *c, const struct cli_args *a);

/* `vm console`: the default view is the last CLI_CONSOLE_TAIL bytes;
 * --follow polls every CLI_CONSOLE_POLL_MS. */
#define CLI_CONSOLE_TAIL (16u * 1024)
#define CLI_CONSOLE_POLL_MS 200
extern const struct cli_optdef cli_vm_console_opts[];
/* `vm console NAME [--follow] [--from-start]`: print the VM's serial
 * console (control bytes escaped); with --follow keep printing new output
 * until the VM stops. */
CN_MUST_CHECK int cli_vm_console(struct cli *c, const struct cli_args *a);

/* `vm migrate NAME --to HOST [--max-downtime MS] [--bandwidth MIB/S]
 * [--no-wait]` (cmd_vm_migrate.c): MigrateVm, then follow the task and
 * print its result (downtime and total time). */
extern const struct cli_optdef cli_vm_migrate_opts[];
CN_MUST_CHECK int cli_vm_migrate(struct cli *c, const struct cli_args *a);

/* `vm resolve-migration NAME --resume-source | --power-off [--no-wait]`
 * (cmd_vm_resolve.c): ResolveMigration (exactly one choice, else a usage
 * error), then follow the task and print its result. */
/* After a call that started task t (freed here): with --no-wait say so
 * (cli_task_after), else follow it to its end and print its result
 * sentence (cmd_vm_migrate.c). 0 or the CLI exit code. */
CN_MUST_CHECK int cli_vm_task_follow(struct cli *c, const struct cli_args *a,
				     Canopy__V1__Task *t);
extern const struct cli_optdef cli_vm_resolve_opts[];
CN_MUST_CHECK int cli_vm_resolve(struct cli *c, const struct cli_args *a);

/* Call a VmService method that returns a task, then follow it unless
 * --no-wait was given (cli_task_after). */
CN_MUST_CHECK int cli_vm_task_call(struct cli *c, const struct cli_args *a,
				   const char *method,
				   const ProtobufCMessage *req);

#endif
