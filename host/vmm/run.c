/* VM lifecycle: set-up, the I/O thread's loop, pause/resume/stop, reboot. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "host/vmm/jail.h"
#include "host/vmm/migrate.h"
#include "host/vmm/vmm.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"

/* Console output is flushed at least this often (ms). */
#define VMM_FLUSH_MS 50
/* Graceful stop: time the guest gets after the power button by default. */
#define VMM_STOP_TIMEOUT_MS 30000

static int check_vcpus(struct vm *vm, char *err, size_t errlen)
{
	int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);

	if (max <= 0)
		max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max > 0 && vm->cfg.cpus > (unsigned)max) {
		snprintf(err, errlen, "cpus: %u is more than KVM allows (%d)",
			 vm->cfg.cpus, max);
		return -EINVAL;
	}
	return 0;
}

int vmm_setup(struct vm *vm, char *err, size_t errlen)
{
	int rc;

	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	vm->state = VM_CREATED;
	if (vm->cfg.restore) {
		/* The snapshot decides the VM's shape. */
		rc = snapshot_peek(vm->cfg.restore, &vm->cfg.mem_mib,
				   &vm->cfg.cpus, err, errlen);
		if (rc < 0)
			return rc;
	}
	rc = vm_create(vm, err, errlen);
	if (rc == 0)
		rc = check_vcpus(vm, err, errlen);
	if (rc < 0)
		return rc;
	vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->event_fd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		return -errno;
	}
	rc = serial_create(vm, vm->cfg.serial, err, errlen);
	if (rc < 0)
		return rc;
	rc = platform_create(vm);
	if (rc < 0) {
		snprintf(err, errlen, "platform devices: %s", strerror(-rc));
		return rc;
	}
	rc = devices_create(vm, err, errlen);
	if (rc < 0)
		return rc;
	rc = vcpu_create_all(vm, err, errlen);
	if (rc < 0)
		return rc;
	/* Restored MSRs (kvmclock, async PF) name guest pages: KVM needs the
	 * memory slots before they are set. The same for a VM arriving by
	 * live migration, which is received in the jail already: its stream
	 * comes from the network. A boot loads while the slots register. */
	if (vm->cfg.restore || vm->cfg.incoming)
		rc = vm_mem_wait(vm, err, errlen);
	else
		rc = boot_load(vm, err, errlen) ?: vm_mem_wait(vm, err, errlen);
	if (rc == 0 && vm->cfg.restore)
		rc = snapshot_restore(vm, vm->cfg.restore, err, errlen);
	else if (rc == 0 && vm->cfg.incoming)
		rc = vmm_jail_enter(vm, err, errlen) ?:
			     migrate_recv(vm, err, errlen);
	/* Nothing is opened by path after this but what the jail holds. */
	return rc ?: vmm_jail_enter(vm, err, errlen);
}

const char *vm_state_name(enum vm_state s)
{
	static const char *const names[] = {
		[VM_CREATED] = "created",
		[VM_RUNNING] = "running",
		[VM_PAUSED] = "paused",
		[VM_STOPPED] = "stopped",
	};

	return s <= VM_STOPPED ? names[s] : "?";
}

void vmm_teardown(struct vm *vm)
{
	migrate_send_abort(vm);
	vcpu_stop_all(vm);
	control_stop(vm);
	devices_destroy(vm);
	serial_destroy(vm);
	platform_destroy(vm);
	vm_destroy(vm);
	if (vm->loop)
		loop_destroy(vm->loop);
	vm->loop = NULL;
}

static void log_exit_counts(struct vm *vm)
{
	uint64_t n[VMM_EXIT_KINDS];

	vm_exit_counts(vm, n);
	log_info("vmm", "exits",
		 "io=%llu mmio=%llu hlt=%llu intr=%llu shutdown=%llu "
		 "system_event=%llu other=%llu",
		 (unsigned long long)n[VMM_EXIT_IO],
		 (unsigned long long)n[VMM_EXIT_MMIO],
		 (unsigned long long)n[VMM_EXIT_HLT],
		 (unsigned long long)n[VMM_EXIT_INTR],
		 (unsigned long long)n[VMM_EXIT_SHUTDOWN],
		 (unsigned long long)n[VMM_EXIT_SYSTEM_EVENT],
		 (unsigned long long)n[VMM_EXIT_OTHER]);
}

void vmm_finish(struct vm *vm, int status, const char *reason)
{
	if (vm->state == VM_STOPPED)
		return;
	vcpu_stop_all(vm);
	pthread_mutex_lock(&vm->lock);
	vm->state = VM_STOPPED;
	if (reason != vm->reason)
		snprintf(vm->reason, sizeof(vm->reason), "%s", reason);
	pthread_mutex_unlock(&vm->lock);
	vm->exit_status = status;
	serial_flush(vm);
	log_exit_counts(vm);
	if (status == VMM_EXIT_OK)
		log_info("vmm", "vm stopped", "vm=%s reason=\"%s\"",
			 vm->cfg.name, vm->reason);
	else
		log_error("vmm", "vm stopped", "vm=%s reason=\"%s\"",
			  vm->cfg.name, vm->reason);
	loop_stop(vm->loop);
}

int vmm_pause(struct vm *vm)
{
	if (vm->state == VM_PAUSED)
		return 0;
	if (vm->state != VM_RUNNING)
		return -EBUSY;
	vm_pause_all(vm);
	vm->state = VM_PAUSED;
	log_info("vmm", "vm paused", "vm=%s", vm->cfg.name);
	return 0;
}

int vmm_resume(struct vm *vm)
{
	int pending;

	if (vm->state == VM_RUNNING)
		return 0;
	pthread_mutex_lock(&vm->lock);
	pending = vm->req != VM_REQ_NONE;
	pthread_mutex_unlock(&vm->lock);
	if (vm->state != VM_PAUSED || pending)
		return -EBUSY;
	vm->state = VM_RUNNING;
	vm_resume_all(vm);
	log_info("vmm", "vm resumed", "vm=%s", vm->cfg.name);
	return 0;
}

static int on_stop_timeout(struct loop *l, uint64_t id, void *arg)
{
	struct vm *vm = arg;

	vm->stop_timer = 0;
	vmm_finish(vm, VMM_EXIT_OK,
		   "stopped hard: the guest did not power off in time after "
		   "the power button");
	return LOOP_TIMER_STOP;
}

int vmm_stop(struct vm *vm, int graceful, uint32_t timeout_ms)
{
	int err = 0;

	if (vm->state == VM_STOPPED)
		return 0;
	if (!graceful || vm->state == VM_PAUSED) {
		vmm_finish(vm, VMM_EXIT_OK, "stopped on request");
		return 0;
	}
	platform_power_button(vm);
	if (vm->stop_timer)
		return 0;
	vm->stop_timer = loop_timer_add(
		vm->loop, timeout_ms ? timeout_ms : VMM_STOP_TIMEOUT_MS,
		on_stop_timeout, vm, &err);
	return vm->stop_timer ? 0 : err;
}

/* A guest reboot: power-on state in the same process (same pid, control
 * socket and console): a new KVM VM over zeroed RAM, devices reset, the
 * kernel loaded again. */
static void reboot(struct vm *vm)
{
	char err[256];
	int rc;

	log_info("vmm", "guest reboot", "vm=%s", vm->cfg.name);
	serial_flush(vm);
	vcpu_stop_all(vm);
	pthread_mutex_lock(&vm->lock);
	vm->quit = 0;
	vm->pause_req = 0;
	vm->req = VM_REQ_NONE;
	vm->reason[0] = 0;
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->ndevs; i++)
		if (vm->devs[i].ops->reset)
			vm->devs[i].ops->reset(vm->devs[i].dev);
	rc = vm_recreate(vm, err, sizeof(err));
	if (rc == 0)
		rc = vcpu_create_all(vm, err, sizeof(err));
	if (rc == 0 && !vm->cfg.kernel) {
		snprintf(err, sizeof(err),
			 "no --kernel to boot (the VM was restored from a "
			 "snapshot)");
		rc = -ENOENT;
	}
	if (rc == 0)
		rc = boot_load(vm, err, sizeof(err));
	if (rc == 0)
		rc = vcpu_start_all(vm);
	if (rc < 0) {
		char why[320];

		snprintf(why, sizeof(why), "reboot failed: %s", err);
		vmm_finish(vm, VMM_EXIT_CRASH, why);
	}
}

static void on_request(struct loop *l, int fd, unsigned mask, void *arg)
{
	struct vm *vm = arg;
	enum vm_request req;
	eventfd_t v;

	if (eventfd_read(fd, &v) < 0)
		return;
	pthread_mutex_lock(&vm->lock);
	req = vm->req;
	pthread_mutex_unlock(&vm->lock);
	/* Not while a migration reads the VM: it stops first (migrate.h). */
	if (req != VM_REQ_NONE && migrate_busy(vm)) {
		migrate_send_cancel(vm);
		return;
	}
	switch (req) {
	case VM_REQ_POWEROFF:
		vmm_finish(vm, VMM_EXIT_OK, vm->reason);
		break;
	case VM_REQ_FAIL:
		vmm_finish(vm, VMM_EXIT_CRASH, vm->reason);
		break;
	case VM_REQ_RESET:
		reboot(vm);
		break;
	default:
		break;
	}
}

static void on_signal(struct loop *l, int fd, unsigned mask, void *arg)
{
	struct vm *vm = arg;
	struct signalfd_siginfo si;
	char why[64];

	if (sys_read(fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
		return;
	snprintf(why, sizeof(why), "stopped by signal %s",
		 si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
	vmm_finish(vm, VMM_EXIT_OK, why);
}

static void on_stdin(struct loop *l, int fd, unsigned mask, void *arg)
{
	char b[256];
	ssize_t n = sys_read(fd, b, sizeof(b));

	if (n > 0)
		serial_input(arg, b, (size_t)n);
	else if (n == 0 || n != -EAGAIN)
		loop_fd_del(l, fd, LOOP_READ);
}

static int on_flush(struct loop *l, uint64_t id, void *arg)
{
	serial_flush(arg);
	return VMM_FLUSH_MS;
}

static int loop_setup(struct vm *vm, int *sfd)
{
	sigset_t set;
	int err = 0, rc;

	rc = loop_create(&vm->loop);
	if (rc < 0)
		return rc;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	*sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (*sfd < 0)
		return -errno;
	rc = loop_fd_add(vm->loop, *sfd, LOOP_READ, on_signal, vm);
	if (rc == 0)
		rc = loop_fd_add(vm->loop, vm->event_fd, LOOP_READ, on_request,
				 vm);
	if (rc == 0 &&
	    !loop_timer_add(vm->loop, VMM_FLUSH_MS, on_flush, vm, &err))
		rc = err;
	if (rc == 0 && (!vm->cfg.serial || !strcmp(vm->cfg.serial, "stdio")) &&
	    sys_set_nonblock(STDIN_FILENO, 1) == 0)
		(void)!loop_fd_add(vm->loop, STDIN_FILENO, LOOP_READ, on_stdin,
				   vm);
	return rc;
}

int vmm_run(struct vm *vm)
{
	char err[256];
	int sfd = -1, rc;

	rc = loop_setup(vm, &sfd);
	if (rc < 0) {
		log_error("vmm", "event loop set-up failed", "err=%s",
			  strerror(-rc));
		vmm_teardown(vm);
		return VMM_EXIT_CRASH;
	}
	if (vm->cfg.control &&
	    control_start(vm, vm->cfg.control, err, sizeof(err)) < 0) {
		fprintf(stderr, "canopy-vmm: %s\n", err);
		sys_close(sfd);
		vmm_teardown(vm);
		return VMM_EXIT_USAGE;
	}
	rc = vmm_seccomp_install();
	/* Test hook: prove a forbidden call is stopped and reported. */
	if (rc == 0 && getenv("CANOPY_VMM_SECCOMP_SELFTEST"))
		(void)!socket(AF_INET, SOCK_STREAM, 0);
	if (rc < 0) {
		log_error("vmm", "seccomp filter not installed", "err=%s",
			  strerror(-rc));
		sys_close(sfd);
		vmm_teardown(vm);
		return VMM_EXIT_CRASH;
	}
	/* Device threads start parked (a restored device must not touch
	 * guest RAM before all of it is loaded): let them go now. */
	for (unsigned i = 0; i < vm->ndevs; i++)
		if (vm->devs[i].ops->resume)
			vm->devs[i].ops->resume(vm->devs[i].dev);
	rc = vcpu_start_all(vm);
	if (rc < 0) {
		vmm_finish(vm, VMM_EXIT_CRASH, "cannot start vCPU threads");
	} else {
		migrate_recv_started(vm);
		log_info("vmm", "vm started", "vm=%s cpus=%u mem_mib=%llu",
			 vm->cfg.name, vm->ncpus,
			 (unsigned long long)vm->cfg.mem_mib);
		rc = loop_run(vm->loop);
		if (rc < 0 && vm->state != VM_STOPPED)
			vmm_finish(vm, VMM_EXIT_CRASH, "event loop failed");
	}
	rc = vm->exit_status;
	sys_close(sfd);
	vmm_teardown(vm);
	return rc;
}
