/* canopy CLI: `vm create`: the spec from options, checked before sending. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd_vm.h"

#define M_CREATE_VM "/canopy.v1.VmService/CreateVm"
/* Longest kernel or initrd path sent. */
#define CLI_PATH_MAX 4096

const struct cli_optdef cli_vm_create_opts[] = {
	{ .name = "memory", .has_arg = true },
	{ .name = "cpus", .has_arg = true },
	{ .name = "kernel", .has_arg = true },
	{ .name = "initrd", .has_arg = true },
	{ .name = "cmdline", .has_arg = true },
	{ .name = "disk", .has_arg = true, .repeat = true },
	{ .name = "host", .has_arg = true },
	{ .name = "no-wait" },
	{ 0 },
};

/* --memory: plain numbers are MiB, a unit makes it a size. */
static int parse_memory(struct cli *c, const char *s, uint64_t *mib)
{
	char err[CLI_ERR_MAX];
	uint64_t bytes;
	size_t n = strlen(s);

	if (n && s[n - 1] >= '0' && s[n - 1] <= '9')
		return cli_parse_uint("--memory", s, 1, CLI_VM_MEMORY_MAX, mib,
				      err, sizeof(err)) ?
			       cli_fail(c, CLI_EXIT_USAGE, "%s", err) :
			       0;
	if (cli_parse_size(s, &bytes, err, sizeof(err)))
		return cli_fail(c, CLI_EXIT_USAGE, "--memory: %s", err);
	if (bytes % (1u << 20) || !bytes || bytes >> 20 > CLI_VM_MEMORY_MAX)
		return cli_fail(c, CLI_EXIT_USAGE,
				"--memory: %s is not a whole number of MiB "
				"between 1 MiB and 16 TiB",
				s);
	*mib = bytes >> 20;
	return 0;
}

/* Fill disks[] and dptr[] from the --disk options. */
static int parse_disks(struct cli *c, const struct cli_args *a,
		       struct cli_disk *cd, Canopy__V1__DiskSpec *ds,
		       Canopy__V1__DiskSpec **dptr, size_t *n)
{
	const char *const *v;
	char err[CLI_ERR_MAX];
	unsigned cnt, i;

	v = cli_args_all(a, "disk", &cnt);
	for (i = 0; i < cnt && i < CLI_VM_DISKS_MAX; i++) {
		if (cli_parse_disk(v[i], &cd[i], err, sizeof(err)))
			return cli_fail(c, CLI_EXIT_USAGE, "%s", err);
		canopy__v1__disk_spec__init(&ds[i]);
		ds[i].path = cd[i].path;
		ds[i].size_bytes = cd[i].size_bytes;
		ds[i].readonly = cd[i].readonly;
		ds[i].direct = cd[i].direct;
		ds[i].serial = cd[i].serial;
		dptr[i] = &ds[i];
	}
	*n = i;
	return 0;
}

/* A relative host path made absolute against the current directory (the
 * server runs elsewhere, so "guest.elf" would mean nothing to it); paths
 * with a ':' are datastore paths ("ds1:web1/disk0") and stay as given. */
static int host_path(struct cli *c, const char *opt, const char *p, char *buf,
		     size_t size, char **out)
{
	char cwd[CLI_PATH_MAX];
	int n;

	if (p[0] == '/' || strchr(p, ':')) {
		*out = (char *)p;
		return 0;
	}
	if (!p[0])
		return cli_fail(c, CLI_EXIT_USAGE, "--%s: empty path", opt);
	if (!getcwd(cwd, sizeof(cwd)))
		return cli_fail(c, CLI_EXIT_FAIL,
				"--%s %s: cannot read the current directory: "
				"%s; give an absolute path",
				opt, p, strerror(errno));
	n = snprintf(buf, size, "%s/%s", cwd, p);
	if (n < 0 || (size_t)n >= size)
		return cli_fail(c, CLI_EXIT_USAGE, "--%s: path too long", opt);
	*out = buf;
	return 0;
}

/* Local checks of what the server would refuse anyway, with a clearer
 * message and no round trip. */
static int check_spec(struct cli *c, const struct cli_args *a)
{
	static const char *const need[] = { "memory", "cpus", "kernel" };
	size_t i;

	for (i = 0; i < CN_ARRAY_SIZE(need); i++)
		if (!cli_args_has(a, need[i]))
			return cli_fail(c, CLI_EXIT_USAGE,
					"vm create: --%s is required", need[i]);
	if (!a->pos[0][0] || strlen(a->pos[0]) > 63)
		return cli_fail(c, CLI_EXIT_USAGE,
				"vm create: the name must be 1 to 63 "
				"characters");
	return 0;
}

int cli_vm_create(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__CreateVmRequest req = CANOPY__V1__CREATE_VM_REQUEST__INIT;
	Canopy__V1__VmSpec spec = CANOPY__V1__VM_SPEC__INIT;
	struct cli_disk cd[CLI_VM_DISKS_MAX];
	Canopy__V1__DiskSpec ds[CLI_VM_DISKS_MAX];
	Canopy__V1__DiskSpec *dptr[CLI_VM_DISKS_MAX];
	char err[CLI_ERR_MAX], kernel[CLI_PATH_MAX], initrd[CLI_PATH_MAX];
	uint64_t cpus;
	int rc;

	rc = check_spec(c, a);
	if (rc)
		return rc;
	spec.name = (char *)a->pos[0];
	rc = parse_memory(c, cli_args_get(a, "memory"), &spec.memory_mib);
	if (rc)
		return rc;
	if (cli_parse_uint("--cpus", cli_args_get(a, "cpus"), 1,
			   CLI_VM_CPUS_MAX, &cpus, err, sizeof(err)))
		return cli_fail(c, CLI_EXIT_USAGE, "%s", err);
	spec.cpus = (uint32_t)cpus;
	rc = host_path(c, "kernel", cli_args_get(a, "kernel"), kernel,
		       sizeof(kernel), &spec.kernel);
	if (!rc && cli_args_has(a, "initrd"))
		rc = host_path(c, "initrd", cli_args_get(a, "initrd"), initrd,
			       sizeof(initrd), &spec.initrd);
	if (rc)
		return rc;
	if (cli_args_has(a, "cmdline"))
		spec.cmdline = (char *)cli_args_get(a, "cmdline");
	rc = parse_disks(c, a, cd, ds, dptr, &spec.n_disks);
	if (rc)
		return rc;
	spec.disks = dptr;
	req.spec = &spec;
	if (cli_args_has(a, "host"))
		req.host = (char *)cli_args_get(a, "host");
	return cli_vm_task_call(c, a, M_CREATE_VM, &req.base);
}
