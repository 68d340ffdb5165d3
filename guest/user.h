/* Test guest: the CPL3 side: runtime library, command line and workloads. */
#ifndef GUEST_USER_H
#define GUEST_USER_H

#include "guest/guest.h"

#define USER_STACK_SIZE 65536 /* the CPL3 stack, not in the image */
#define USER_MAX_PARAMS 8 /* key=value items after a workload name */
#define USER_LINE_MAX 256 /* longest line user_printf writes at once */

/* "name" or "name=primary,key=value,..." or "name,key=value,...". */
struct user_param {
	const char *key, *val;
	size_t klen, vlen;
};

struct user_args {
	const char *name, *primary; /* primary NULL when absent */
	size_t nlen, plen;
	unsigned nparams;
	struct user_param p[USER_MAX_PARAMS];
};

/* Everything a workload may use. */
struct user_ctx {
	const struct guest_boot *boot;
	uint64_t tsc_khz; /* 0 when unknown */
	const char *tsc_src; /* "cpuid", "cmdline", "pit" or "none" */
	unsigned cpus; /* enabled CPUs in the MADT, 0 without ACPI */
	uint64_t mem_mib; /* RAM in the memory map */
	struct user_args args;
};

/* Defined in user_main.c; the kernel drops to CPL3 there. */
extern char guest_user_stack[USER_STACK_SIZE];
__attribute__((noreturn)) void user_main(void);

/* user_lib.c: system calls, formatting, parsing. */
long user_syscall(long nr, long a1, long a2, long a3);
void user_write(const char *buf, size_t len);
/* COM1 input already received, at most len bytes; 0 when none. */
size_t user_read(char *buf, size_t len);
__attribute__((noreturn)) void user_exit(int code);
int user_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
__attribute__((format(printf, 3, 4))) int user_snprintf(char *buf, size_t size,
							const char *fmt, ...);
/* Formats one line (at most USER_LINE_MAX bytes) and writes it at once. */
__attribute__((format(printf, 1, 2))) void user_printf(const char *fmt, ...);
/* Decimal (or 0x hex) without sign; 0, or -1 if empty, bad or too big. */
int user_parse_u64(const char *s, size_t len, uint64_t *out);
/* Whether s[0..len) equals the NUL-terminated lit. */
int user_streq(const char *s, size_t len, const char *lit);

/* user_acpi.c: enabled processors in the MADT, 0 if there is no ACPI. */
unsigned user_acpi_cpus(const struct guest_boot *b);
/*
 * The ACPI table whose 4-byte signature is sig, found through the RSDP and
 * the XSDT (else the RSDT): whole, readable at CPL3 and with a good
 * checksum (its length is the header's, at offset 4). NULL if none.
 */
const uint8_t *user_acpi_find(const struct guest_boot *b, const char *sig);

/* user_main.c: workload parameters; each prints its error and fails -1. */
int user_args_check(const struct user_ctx *u, const char *const *keys,
		    int primary_ok);
int user_arg_primary(const struct user_ctx *u, uint64_t def, uint64_t *out);
int user_arg_u64(const struct user_ctx *u, const char *key, uint64_t def,
		 uint64_t *out);
/* A workload that needs the TSC rate: fails with a message when unknown. */
int user_need_tsc(const struct user_ctx *u);

/* Workloads: each returns the exit code. */
int work_hello(struct user_ctx *u);
int work_count(struct user_ctx *u);
int work_cpu(struct user_ctx *u);
int work_dirty(struct user_ctx *u);
int work_blk(struct user_ctx *u);
int work_balloon(struct user_ctx *u);
int work_net(struct user_ctx *u);
int work_rng(struct user_ctx *u);
int work_echo(struct user_ctx *u);

static inline void user_relax(void)
{
	__asm__ volatile("pause");
}

#endif
