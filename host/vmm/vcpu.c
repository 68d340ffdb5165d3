/* vCPU threads: KVM_RUN loop, exit handling, pause/resume, stop requests. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "host/vmm/vmm.h"
#include "lib/log.h"
#include "lib/sys.h"

/* Signal that kicks a vCPU thread out of KVM_RUN. */
#define VCPU_KICK_SIGNAL SIGUSR1

static const char *const exit_names[VMM_EXIT_KINDS] = {
	[VMM_EXIT_IO] = "io",
	[VMM_EXIT_MMIO] = "mmio",
	[VMM_EXIT_HLT] = "hlt",
	[VMM_EXIT_INTR] = "intr",
	[VMM_EXIT_SHUTDOWN] = "shutdown",
	[VMM_EXIT_SYSTEM_EVENT] = "system_event",
	[VMM_EXIT_OTHER] = "other",
};

const char *vmm_exit_kind_name(enum vmm_exit_kind k)
{
	return k < VMM_EXIT_KINDS ? exit_names[k] : "?";
}

static void kick_handler(int sig)
{
	(void)sig;
}

int vcpu_create_all(struct vm *vm, char *err, size_t errlen)
{
	struct sigaction sa = { .sa_handler = kick_handler };
	int rc;

	sigemptyset(&sa.sa_mask);
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return -errno;
	for (unsigned i = 0; i < vm->cfg.cpus; i++) {
		struct vcpu *c = &vm->vcpus[i];

		c->vm = vm;
		c->id = i;
		c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (c->fd < 0) {
			rc = -errno;
			snprintf(err, errlen, "KVM_CREATE_VCPU %u: %s", i,
				 strerror(-rc));
			return rc;
		}
		vm->ncpus = i + 1;
		c->run = mmap(NULL, (size_t)vm->vcpu_mmap_size,
			      PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
		if (c->run == MAP_FAILED) {
			c->run = NULL;
			snprintf(err, errlen, "vCPU %u mmap: %s", i,
				 strerror(errno));
			return -errno;
		}
		rc = vcpu_setup_cpuid(vm, c);
		if (rc < 0) {
			snprintf(err, errlen, "vCPU %u CPUID: %s", i,
				 strerror(-rc));
			return rc;
		}
	}
	return 0;
}

void vm_request(struct vm *vm, enum vm_request req, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&vm->lock);
	if (vm->req == VM_REQ_NONE) {
		vm->req = req;
		va_start(ap, fmt);
		vsnprintf(vm->reason, sizeof(vm->reason), fmt, ap);
		va_end(ap);
	}
	/* Everyone parks until the I/O thread has acted. */
	vm->pause_req = 1;
	pthread_mutex_unlock(&vm->lock);
	if (eventfd_write(vm->event_fd, 1) < 0)
		log_error("vmm", "eventfd write failed", "err=%s",
			  strerror(errno));
}

static void count_exit(struct vcpu *c, enum vmm_exit_kind k)
{
	atomic_fetch_add_explicit(&c->exits[k], 1, memory_order_relaxed);
}

static void handle_io(struct vcpu *c)
{
	struct kvm_run *r = c->run;
	uint8_t *p = (uint8_t *)r + r->io.data_offset;
	int wr = r->io.direction == KVM_EXIT_IO_OUT;

	/* data_offset/size/count come from KVM, not from the guest, but
	 * keep the access inside the run page all the same. */
	if (r->io.data_offset + (uint64_t)r->io.size * r->io.count >
	    (uint64_t)c->vm->vcpu_mmap_size)
		return;
	for (uint32_t i = 0; i < r->io.count; i++, p += r->io.size)
		io_bus_access(&c->vm->pio, r->io.port, p, r->io.size, wr);
}

static void handle_system_event(struct vcpu *c)
{
	switch (c->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_request(c->vm, VM_REQ_POWEROFF, "guest shut down");
		break;
	case KVM_SYSTEM_EVENT_RESET:
		vm_request(c->vm, VM_REQ_RESET, "guest reset");
		break;
	default:
		vm_request(c->vm, VM_REQ_FAIL,
			   "vCPU %u: system event %u (crash)", c->id,
			   c->run->system_event.type);
	}
}

/* One KVM exit. Returns 0 to keep running. */
static void handle_exit(struct vcpu *c)
{
	struct kvm_run *r = c->run;

	switch (r->exit_reason) {
	case KVM_EXIT_IO:
		count_exit(c, VMM_EXIT_IO);
		handle_io(c);
		break;
	case KVM_EXIT_MMIO:
		count_exit(c, VMM_EXIT_MMIO);
		if (r->mmio.len <= 8)
			io_bus_access(&c->vm->mmio, r->mmio.phys_addr,
				      r->mmio.data, r->mmio.len,
				      r->mmio.is_write);
		break;
	case KVM_EXIT_HLT:
		count_exit(c, VMM_EXIT_HLT);
		vm_request(c->vm, VM_REQ_POWEROFF, "vCPU %u halted", c->id);
		break;
	case KVM_EXIT_SHUTDOWN:
		count_exit(c, VMM_EXIT_SHUTDOWN);
		vm_request(c->vm, VM_REQ_FAIL,
			   "vCPU %u: triple fault (guest crashed)", c->id);
		break;
	case KVM_EXIT_SYSTEM_EVENT:
		count_exit(c, VMM_EXIT_SYSTEM_EVENT);
		handle_system_event(c);
		break;
	case KVM_EXIT_INTR:
		count_exit(c, VMM_EXIT_INTR);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		count_exit(c, VMM_EXIT_OTHER);
		vm_request(c->vm, VM_REQ_FAIL,
			   "vCPU %u: VM entry failed (reason 0x%llx)", c->id,
			   (unsigned long long)
				   r->fail_entry.hardware_entry_failure_reason);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		count_exit(c, VMM_EXIT_OTHER);
		vm_request(c->vm, VM_REQ_FAIL,
			   "vCPU %u: KVM internal error %u (emulation failed)",
			   c->id, r->internal.suberror);
		break;
	default:
		count_exit(c, VMM_EXIT_OTHER);
		vm_request(c->vm, VM_REQ_FAIL, "vCPU %u: unhandled exit %u",
			   c->id, r->exit_reason);
	}
}

/* Park while a pause is requested. Returns 1 if the thread must exit. */
static int vcpu_park(struct vcpu *c)
{
	struct vm *vm = c->vm;
	int quit;

	pthread_mutex_lock(&vm->lock);
	if (vm->pause_req && !vm->quit) {
		vm->parked++;
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_req && !vm->quit)
			pthread_cond_wait(&vm->cond, &vm->lock);
		vm->parked--;
	}
	quit = vm->quit;
	pthread_mutex_unlock(&vm->lock);
	return quit;
}

/* Auto-converge (migrate_send.c): the migration kicks the vCPUs every
 * 10 ms / (1 - t) and each kick sleeps t / (1 - t) * 10 ms, so the vCPU
 * runs 10 ms of every period: a share t taken away. 1 ms steps, so a
 * pause or a stop is not held up. */
#define VCPU_THROTTLE_PERIOD_US 10000u

static void vcpu_throttle(struct vcpu *c)
{
	unsigned t = atomic_load(&c->vm->throttle_pct);
	uint64_t us;

	if (!t || t > 99)
		return;
	us = (uint64_t)VCPU_THROTTLE_PERIOD_US * t / (100 - t);
	for (uint64_t slept = 0; slept < us && !c->vm->pause_req &&
				 atomic_load(&c->vm->throttle_pct);
	     slept += 1000)
		usleep(1000);
	/* The kick that came while sleeping is served by the sleep; a pause
	 * request keeps its kick so KVM_RUN returns at once. */
	if (!c->vm->pause_req)
		c->run->immediate_exit = 0;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *c = arg;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", c->id);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		if (vcpu_park(c))
			break;
		if (ioctl(c->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				c->run->immediate_exit = 0;
				count_exit(c, VMM_EXIT_INTR);
				vcpu_throttle(c);
				continue;
			}
			vm_request(c->vm, VM_REQ_FAIL, "vCPU %u: KVM_RUN: %s",
				   c->id, strerror(errno));
			continue;
		}
		handle_exit(c);
	}
	return NULL;
}

int vcpu_start_all(struct vm *vm)
{
	sigset_t set, old;
	int rc = 0;

	/* Threads inherit the mask: only vCPU threads take the kick. */
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	for (unsigned i = 0; i < vm->ncpus && rc == 0; i++) {
		pthread_sigmask(SIG_UNBLOCK, &set, &old);
		rc = -pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread,
				     &vm->vcpus[i]);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (rc == 0)
			vm->vcpus[i].started = 1;
	}
	pthread_mutex_lock(&vm->lock);
	vm->state = VM_RUNNING;
	vm->start_ms = sys_mono_ms();
	pthread_mutex_unlock(&vm->lock);
	return rc;
}

static void kick_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];

		if (!c->started)
			continue;
		c->run->immediate_exit = 1;
		pthread_kill(c->thread, VCPU_KICK_SIGNAL);
	}
}

void vm_kick_all(struct vm *vm)
{
	kick_all(vm);
}

static unsigned started_count(struct vm *vm)
{
	unsigned n = 0;

	for (unsigned i = 0; i < vm->ncpus; i++)
		n += vm->vcpus[i].started ? 1u : 0u;
	return n;
}

void vm_pause_all(struct vm *vm)
{
	unsigned want = started_count(vm);

	pthread_mutex_lock(&vm->lock);
	vm->pause_req = 1;
	pthread_mutex_unlock(&vm->lock);
	kick_all(vm);
	pthread_mutex_lock(&vm->lock);
	while (vm->parked < want && !vm->quit) {
		struct timespec ts;

		/* A vCPU may be between the check and KVM_RUN: kick again. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) ==
		    ETIMEDOUT) {
			pthread_mutex_unlock(&vm->lock);
			kick_all(vm);
			pthread_mutex_lock(&vm->lock);
		}
	}
	pthread_mutex_unlock(&vm->lock);
	/* Then the devices' own threads, so nothing writes guest memory. */
	for (unsigned i = 0; i < vm->ndevs; i++)
		if (vm->devs[i].ops->pause)
			vm->devs[i].ops->pause(vm->devs[i].dev);
}

void vm_resume_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ndevs; i++)
		if (vm->devs[i].ops->resume)
			vm->devs[i].ops->resume(vm->devs[i].dev);
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i].run)
			vm->vcpus[i].run->immediate_exit = 0;
	pthread_mutex_lock(&vm->lock);
	vm->pause_req = 0;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

void vcpu_stop_all(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->quit = 1;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	kick_all(vm);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		if (!vm->vcpus[i].started)
			continue;
		pthread_join(vm->vcpus[i].thread, NULL);
		vm->vcpus[i].started = 0;
	}
}

void vm_exit_counts(struct vm *vm, uint64_t out[VMM_EXIT_KINDS])
{
	memset(out, 0, sizeof(uint64_t) * VMM_EXIT_KINDS);
	for (unsigned i = 0; i < vm->ncpus; i++)
		for (unsigned k = 0; k < VMM_EXIT_KINDS; k++)
			out[k] += atomic_load_explicit(&vm->vcpus[i].exits[k],
						       memory_order_relaxed);
}
