/* Test guest: the `count` and `cpu` workloads (all at CPL3). */
#include "guest/user.h"

#define COUNT_DEFAULT_MS 100
#define COUNT_MAX_MS 86400000ull /* a day */
#define CPU_CHUNK 65536 /* xorshift steps between clock reads */

/*
 * `count[=MS][,limit=K]`: "count N" every MS ms. A late tick (the VM was
 * paused, saved or migrated) restarts the period instead of catching up,
 * so the lines never come in a burst.
 */
int work_count(struct user_ctx *u)
{
	static const char *const keys[] = { "limit", NULL };
	uint64_t ms, limit, period, next, n = 0;

	if (user_args_check(u, keys, 1) ||
	    user_arg_primary(u, COUNT_DEFAULT_MS, &ms) ||
	    user_arg_u64(u, "limit", 0, &limit) || user_need_tsc(u))
		return GUEST_EXIT_USAGE;
	if (!ms || ms > COUNT_MAX_MS) {
		user_printf("canopy-testguest: workload 'count': period %lu ms "
			    "is not in 1..%lu\n",
			    ms, (uint64_t)COUNT_MAX_MS);
		return GUEST_EXIT_USAGE;
	}
	period = ms * u->tsc_khz;
	next = guest_rdtsc() + period;
	for (;;) {
		uint64_t now;

		while ((now = guest_rdtsc()) < next)
			user_relax();
		user_printf("count %lu\n", ++n);
		if (limit && n >= limit)
			return GUEST_EXIT_OK;
		next += period;
		if (now >= next)
			next = now + period;
	}
}

/*
 * `cpu[=limit=K]`: xorshift64 steps as fast as the CPU goes; every second
 * "cpu: N Mops/s" (one op = one step).
 */
int work_cpu(struct user_ctx *u)
{
	static const char *const keys[] = { "limit", NULL };
	uint64_t limit, second, t0, x, ops = 0, n = 0;

	if (user_args_check(u, keys, 0) ||
	    user_arg_u64(u, "limit", 0, &limit) || user_need_tsc(u))
		return GUEST_EXIT_USAGE;
	second = u->tsc_khz * 1000;
	t0 = guest_rdtsc();
	x = t0 | 1;
	for (;;) {
		uint64_t now;

		for (unsigned i = 0; i < CPU_CHUNK; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		__asm__ volatile("" : "+r"(x));
		ops += CPU_CHUNK;
		now = guest_rdtsc();
		if (now - t0 < second)
			continue;
		user_printf("cpu: %lu Mops/s\n",
			    ops * u->tsc_khz / ((now - t0) * 1000));
		if (limit && ++n >= limit)
			return GUEST_EXIT_OK;
		ops = 0;
		t0 = now;
	}
}
