/* Test guest: CPL3 entry: TSC rate, banner, command line, workload dispatch. */
#include "guest/user.h"

#define TSC_OPT "tsc_khz="

/* Filled by the kernel before it drops to CPL3 (guest.h). */
struct guest_boot guest_boot;
/* The CPL3 stack: in no file, zeroed by nobody. */
char guest_user_stack[USER_STACK_SIZE]
	__attribute__((section(".unoinit"), aligned(16)));

struct workload {
	const char *name;
	int (*run)(struct user_ctx *u);
};

static const struct workload workloads[] = {
	{ .name = "hello", .run = work_hello },
	{ .name = "count", .run = work_count },
	{ .name = "dirty", .run = work_dirty },
	{ .name = "cpu", .run = work_cpu },
	{ .name = "blk", .run = work_blk },
	{ .name = "balloon", .run = work_balloon },
	{ .name = "net", .run = work_net },
	{ .name = "rng", .run = work_rng },
	{ .name = "echo", .run = work_echo },
};

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The next blank-separated word at or after *pos; its length, 0 at end. */
static size_t next_word(const char *s, size_t *pos, const char **w)
{
	size_t i = *pos, n = 0;

	while (s[i] && is_space(s[i]))
		i++;
	*w = s + i;
	while (s[i + n] && !is_space(s[i + n]))
		n++;
	*pos = i + n;
	return n;
}

static int is_tsc_opt(const char *w, size_t n)
{
	size_t k = strlen(TSC_OPT);

	return n >= k && memcmp(w, TSC_OPT, k) == 0;
}

/* CPUID (read by the kernel), else tsc_khz=, else the PIT (CPL0). */
static void tsc_init(struct user_ctx *u)
{
	const char *cl = u->boot->cmdline, *w;
	size_t pos = 0, n, k = strlen(TSC_OPT);
	uint64_t khz;

	u->tsc_khz = u->boot->cpuid_tsc_khz;
	u->tsc_src = "cpuid";
	if (u->tsc_khz)
		return;
	while ((n = next_word(cl, &pos, &w)) != 0) {
		if (is_tsc_opt(w, n) && !user_parse_u64(w + k, n - k, &khz) &&
		    khz) {
			u->tsc_khz = khz;
			u->tsc_src = "cmdline";
			return;
		}
	}
	u->tsc_khz = (uint64_t)user_syscall(SYS_PIT_TSC, 0, 0, 0);
	u->tsc_src = u->tsc_khz ? "pit" : "none";
}

static uint64_t ram_mib(const struct guest_boot *b)
{
	uint64_t sum = 0;

	for (uint32_t i = 0; i < b->nmem; i++)
		if (b->mem[i].type == GUEST_MEM_RAM)
			sum += b->mem[i].size;
	return sum >> 20;
}

static void banner(const struct user_ctx *u)
{
	uint32_t f = u->boot->flags;

	user_printf("canopy-testguest: hello cpus=%u mem=%lu tsc_khz=%lu(%s)\n",
		    u->cpus, u->mem_mib, u->tsc_khz, u->tsc_src);
	if (!(f & GUEST_BOOT_START_INFO))
		user_printf("canopy-testguest: no PVH start info; assuming "
			    "16 MiB of RAM and an empty command line\n");
	else if (f & GUEST_BOOT_MEM_ASSUMED)
		user_printf("canopy-testguest: no memory map in the start "
			    "info; assuming 16 MiB of RAM\n");
	if (f & GUEST_BOOT_CMDLINE_CUT)
		user_printf("canopy-testguest: command line longer than %d "
			    "bytes, cut\n",
			    GUEST_CMDLINE_MAX - 1);
}

/* "name", "name=primary[,key=value]..." or "name[=|,]key=value[,...]". */
static int split_workload(const char *w, size_t n, struct user_args *a)
{
	size_t i = 0;
	int first;

	a->name = w;
	while (i < n && w[i] != '=' && w[i] != ',')
		i++;
	a->nlen = i;
	first = i < n && w[i] == '=';
	while (i++ < n) {
		const char *item = w + i;
		size_t len = 0, eq = 0;

		while (i < n && w[i] != ',')
			i++, len++;
		while (eq < len && item[eq] != '=')
			eq++;
		if (eq == len && first) {
			a->primary = item;
			a->plen = len;
		} else if (eq == len || a->nparams == USER_MAX_PARAMS) {
			user_printf("canopy-testguest: workload '%.*s': bad "
				    "option '%.*s'\n",
				    (int)a->nlen, a->name, (int)len, item);
			return -1;
		} else {
			a->p[a->nparams++] =
				(struct user_param){ item, item + eq + 1, eq,
						     len - eq - 1 };
		}
		first = 0;
	}
	return 0;
}

static int parse_cmdline(struct user_ctx *u)
{
	const char *cl = u->boot->cmdline, *w;
	size_t pos = 0, n, k = strlen(TSC_OPT);
	uint64_t khz;

	while ((n = next_word(cl, &pos, &w)) != 0) {
		if (is_tsc_opt(w, n)) {
			if (user_parse_u64(w + k, n - k, &khz) || !khz) {
				user_printf("canopy-testguest: bad number "
					    "'%.*s' for tsc_khz\n",
					    (int)(n - k), w + k);
				return -1;
			}
			continue;
		}
		if (u->args.name) {
			user_printf("canopy-testguest: more than one workload "
				    "('%.*s' and '%.*s')\n",
				    (int)u->args.nlen, u->args.name, (int)n, w);
			return -1;
		}
		if (split_workload(w, n, &u->args) < 0)
			return -1;
	}
	return 0;
}

static int run(struct user_ctx *u)
{
	const struct user_args *a = &u->args;

	tsc_init(u);
	u->cpus = user_acpi_cpus(u->boot);
	u->mem_mib = ram_mib(u->boot);
	banner(u);
	if (parse_cmdline(u) < 0)
		return GUEST_EXIT_USAGE;
	if (!a->name)
		return work_hello(u);
	for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
		if (user_streq(a->name, a->nlen, workloads[i].name))
			return workloads[i].run(u);
	user_printf("canopy-testguest: unknown workload '%.*s'\n", (int)a->nlen,
		    a->name);
	return GUEST_EXIT_USAGE;
}

void user_main(void)
{
	struct user_ctx u = { .boot = &guest_boot };

	user_exit(run(&u));
}

int user_args_check(const struct user_ctx *u, const char *const *keys,
		    int primary_ok)
{
	const struct user_args *a = &u->args;

	if (a->primary && !primary_ok) {
		user_printf("canopy-testguest: workload '%.*s' takes no value "
			    "('%.*s')\n",
			    (int)a->nlen, a->name, (int)a->plen, a->primary);
		return -1;
	}
	for (unsigned i = 0; i < a->nparams; i++) {
		const struct user_param *p = &a->p[i];
		const char *const *k = keys;

		while (*k && !user_streq(p->key, p->klen, *k))
			k++;
		if (!*k) {
			user_printf(
				"canopy-testguest: workload '%.*s': unknown "
				"option '%.*s'\n",
				(int)a->nlen, a->name, (int)p->klen, p->key);
			return -1;
		}
	}
	return 0;
}

static int parse_value(const struct user_ctx *u, const char *what,
		       const char *s, size_t n, uint64_t *out)
{
	if (!user_parse_u64(s, n, out))
		return 0;
	user_printf("canopy-testguest: workload '%.*s': bad number '%.*s' "
		    "for %s\n",
		    (int)u->args.nlen, u->args.name, (int)n, s, what);
	return -1;
}

int user_arg_primary(const struct user_ctx *u, uint64_t def, uint64_t *out)
{
	const struct user_args *a = &u->args;

	*out = def;
	if (!a->primary)
		return 0;
	return parse_value(u, "its value", a->primary, a->plen, out);
}

int user_arg_u64(const struct user_ctx *u, const char *key, uint64_t def,
		 uint64_t *out)
{
	const struct user_args *a = &u->args;

	*out = def;
	for (unsigned i = 0; i < a->nparams; i++)
		if (user_streq(a->p[i].key, a->p[i].klen, key))
			return parse_value(u, key, a->p[i].val, a->p[i].vlen,
					   out);
	return 0;
}

int user_need_tsc(const struct user_ctx *u)
{
	if (u->tsc_khz)
		return 0;
	user_printf("canopy-testguest: workload '%.*s' needs the TSC rate; "
		    "pass tsc_khz=N\n",
		    (int)u->args.nlen, u->args.name);
	return -1;
}

int work_hello(struct user_ctx *u)
{
	static const char *const keys[] = { NULL };

	return user_args_check(u, keys, 0) ? GUEST_EXIT_USAGE : GUEST_EXIT_OK;
}
