/*
 * canopy-vmm: one process per VM on /dev/kvm. This header holds the VM
 * context (struct vm) shared by the VMM's modules and the contracts between
 * them. Threads: one per vCPU (vcpu.c) and one I/O thread running the event
 * loop (control socket, serial input, lifecycle); the main thread sets up,
 * then becomes the I/O thread.
 */
#ifndef CANOPY_VMM_H
#define CANOPY_VMM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "host/vmm/virtq.h"
#include "lib/buf.h"
#include "lib/compiler.h"

/* Limits the VMM accepts. */
#define VMM_MAX_VCPUS 64
#define VMM_MIN_MEM_MIB 16
#define VMM_MAX_MEM_MIB (1024u * 1024u)
/* Guest-physical layout: RAM below the 32-bit hole, the hole, RAM above. */
#define VMM_HOLE_START 0xC0000000ull
#define VMM_HIGH_START 0x100000000ull
_Static_assert(VMM_HIGH_START == GMEM_HIGH_START, "one guest layout");
#define VMM_LAPIC_BASE 0xFEE00000ull
#define VMM_IOAPIC_BASE 0xFEC00000ull
/* KVM needs 3 pages for the TSS and one for the EPT identity map. */
#define VMM_TSS_ADDR 0xFFFBD000ull
#define VMM_IDMAP_ADDR 0xFFFBC000ull
/* Where boot code puts its structures (all below 1 MiB). */
#define VMM_BOOT_GDT 0x500ull
#define VMM_BOOT_INFO 0x6000ull /* PVH start info / Linux zero page */
#define VMM_BOOT_MEMMAP 0x7000ull /* PVH memory map */
#define VMM_BOOT_PML4 0x9000ull /* Linux 64-bit entry page tables */
#define VMM_BOOT_CMDLINE 0x20000ull
#define VMM_BOOT_CMDLINE_MAX 4096u
#define VMM_ACPI_BASE 0xE0000ull /* ACPI tables, BIOS area */
#define VMM_ACPI_SIZE 0x10000ull
#define VMM_MPTABLE_BASE 0xF0000ull /* MP floating pointer and table */
#define VMM_MPTABLE_SIZE 0x1000ull
/* I/O ports of our platform devices. */
#define VMM_PORT_COM1 0x3f8
#define VMM_PORT_PM1A_EVT 0x600 /* PM1a status/enable, 4 bytes */
#define VMM_PORT_PM1A_CNT 0x604 /* PM1a control, 2 bytes */
#define VMM_PORT_PM_TMR 0x608 /* ACPI PM timer, 4 bytes */
#define VMM_IRQ_COM1 4
#define VMM_IRQ_SCI 9

/* Process exit statuses. */
#define VMM_EXIT_OK 0
#define VMM_EXIT_USAGE 2
#define VMM_EXIT_NO_KVM 3
#define VMM_EXIT_CRASH 4

enum vm_state {
	VM_CREATED,
	VM_RUNNING,
	VM_PAUSED,
	VM_STOPPED,
};

/* What a vCPU thread asks the I/O thread to do about the whole VM. */
enum vm_request {
	VM_REQ_NONE,
	VM_REQ_POWEROFF, /* guest powered off: stop, reason given */
	VM_REQ_RESET, /* guest asked to reboot */
	VM_REQ_FAIL, /* unrecoverable vCPU exit: stop, reason given */
};

/* KVM exit reasons we count individually; the rest go to "other". */
enum vmm_exit_kind {
	VMM_EXIT_IO,
	VMM_EXIT_MMIO,
	VMM_EXIT_HLT,
	VMM_EXIT_INTR,
	VMM_EXIT_SHUTDOWN,
	VMM_EXIT_SYSTEM_EVENT,
	VMM_EXIT_OTHER,
	VMM_EXIT_KINDS,
};

struct vm;
struct vcpu;
struct pci;
struct virtio_dev;
struct balloon;

/* A range of I/O ports or MMIO addresses served by one device. Handlers are
 * called on vCPU threads; a device protects its own state. `data` is in
 * guest byte order (little endian), len is 1, 2, 4 or 8. */
struct io_ops {
	const char *name;
	void (*read)(void *dev, uint64_t off, void *data, uint32_t len);
	void (*write)(void *dev, uint64_t off, const void *data, uint32_t len);
};

struct io_range {
	uint64_t base, len;
	const struct io_ops *ops;
	void *dev;
};

/* Up to this many ranges per bus. */
#define VMM_IO_RANGES 32

struct io_bus {
	struct io_range r[VMM_IO_RANGES];
	unsigned n;
};

/* Every device state that survives a snapshot or a migration: one ops
 * table per kind of device, registered once (vm_dev_register). */
struct dev_ops {
	const char *name; /* section name in snapshots, unique per VM */
	/* Append the device state to out. 0 or -errno. */
	int (*save)(void *dev, struct buf *out);
	/* Replace the state with a saved one; -EINVAL if p/len is not valid. */
	int (*load)(void *dev, const void *p, size_t len);
	/* Back to power-on state (guest reboot). */
	void (*reset)(void *dev);
	/* Stop and restart the device's own threads around a VM pause or a
	 * snapshot (called after the vCPUs are parked, before they run
	 * again); optional. No request may be in flight once pause returns. */
	void (*pause)(void *dev);
	void (*resume)(void *dev);
};

#define VMM_MAX_DEVS 16
/* Disks per VM (--disk), and virtio devices of all kinds. */
#define VMM_MAX_DISKS 8
/* NICs per VM (--net). */
#define VMM_MAX_NICS 4
#define VMM_MAX_VIRTIO 12

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	int started;
	_Atomic uint64_t exits[VMM_EXIT_KINDS];
};

struct vm_config {
	const char *name;
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	uint64_t mem_mib;
	unsigned cpus;
	const char *serial; /* "stdio", "none" or "file:PATH" */
	const char *control;
	const char *restore;
	int hugepages;
	/* --disk options as given (parsed by virtio_blk.h's blk_spec_parse). */
	const char *disk[VMM_MAX_DISKS];
	unsigned ndisks;
	/* --net options as given (parsed by virtio_net.h's net_spec_parse). */
	const char *net[VMM_MAX_NICS];
	unsigned nnets;
	int balloon; /* --balloon: add a virtio-balloon device */
	int rng; /* --rng on: add a virtio-rng device */
	const char *incoming; /* --incoming tcp:HOST:PORT (migrate.h) */
	/* --tls-ca, --tls-cert, --tls-key: the migration stream's TLS
	 * credentials (migrate_tls.h), all three or none. */
	const char *tls_ca, *tls_cert, *tls_key;
	/* The jail (jail.h): --no-jail, --jail-uid N, --jail-dir DIR. */
	int no_jail;
	const char *jail_uid;
	const char *jail_dir;
};

struct serial;

struct vm {
	struct vm_config cfg;
	int kvm_fd, vm_fd;
	int kvm_unusable; /* set when /dev/kvm itself failed us */
	int vcpu_mmap_size;
	/* Guest RAM: one memfd of ram_size bytes mapped at ram; the first
	 * low_size bytes at GPA 0, the rest at VMM_HIGH_START. */
	int mem_fd;
	pthread_t mem_register_thread; /* registers the memory slots (kvm.c) */
	int mem_registering; /* that thread is yet to be joined */
	int mem_register_rc;
	uint8_t *ram;
	uint64_t ram_size, low_size;
	struct gmem gmem; /* the same, for gpa_to_hva and virtqueues */
	/* Boot: where the kernel entered (for reset). */
	int boot_kind; /* VMM_BOOT_PVH or VMM_BOOT_LINUX */
	uint64_t entry;
	struct vcpu vcpus[VMM_MAX_VCPUS];
	unsigned ncpus;
	struct io_bus pio, mmio;
	struct {
		const struct dev_ops *ops;
		void *dev;
	} devs[VMM_MAX_DEVS];
	unsigned ndevs;
	struct serial *serial;
	struct pci *pci; /* bus 0 (pci.h) */
	struct balloon *balloon; /* virtio_balloon.h; NULL without one */
	struct virtio_dev *virtio[VMM_MAX_VIRTIO];
	unsigned nvirtio;
	_Atomic uint32_t pm1_sts, pm1_en; /* ACPI PM1a event block */

	/* Run state, guarded by lock; cond signals every change. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_state state;
	int pause_req; /* vCPUs must park */
	unsigned parked; /* vCPUs parked */
	int quit; /* vCPU threads must exit */
	enum vm_request req; /* first request wins */
	char reason[160]; /* stop reason or request detail */
	uint64_t start_ms;
	int event_fd; /* vCPU -> I/O thread: a request is pending */
	int dirty_logging;

	/* I/O thread only. */
	struct loop *loop;
	int exit_status; /* process exit status once stopped */
	uint64_t stop_timer; /* graceful stop deadline timer, 0 = none */
	struct control *ctl; /* control socket server, NULL without one */

	/* Live migration (migrate.h): the outgoing one (kept after it ends
	 * for status), the incoming one until the vCPUs run, and the share
	 * of vCPU time auto-converge takes away (0..99, any thread). */
	struct migrate *mig;
	struct mig_in *mig_in;
	struct mig_tls *mig_tls; /* loaded at start; NULL: plain TCP */
	_Atomic unsigned throttle_pct;

	/* The jail (jail.h): still to be entered; files kept open because
	 * the jail hides their paths (-1 when not open; only meaningful when
	 * files_kept, which vmm_jail_init sets). */
	int jail_pending;
	int files_kept;
	int kernel_fd, initrd_fd, statm_fd;
	int ctl_lfd; /* the control socket, bound before the jail */
};

#define VMM_BOOT_PVH 1
#define VMM_BOOT_LINUX 2

/* run.c: build the VM from vm->cfg (KVM, devices, vCPUs, kernel or
 * snapshot); -errno with a one-line message in err. */
CN_MUST_CHECK int vmm_setup(struct vm *vm, char *err, size_t errlen);
/* Start the vCPUs and run the I/O loop until the VM stops; returns the
 * process exit status. */
int vmm_run(struct vm *vm);
void vmm_teardown(struct vm *vm);
/* Lifecycle, I/O thread only. 0 or -errno (-EBUSY when the state does not
 * allow it: pausing a stopped VM and so on). */
CN_MUST_CHECK int vmm_pause(struct vm *vm);
CN_MUST_CHECK int vmm_resume(struct vm *vm);
/* Graceful: press the power button and stop hard after timeout_ms if the
 * guest has not powered off; otherwise stop now. */
CN_MUST_CHECK int vmm_stop(struct vm *vm, int graceful, uint32_t timeout_ms);
/* Stop for good with a reason and an exit status (I/O thread). */
void vmm_finish(struct vm *vm, int status, const char *reason);

const char *vm_state_name(enum vm_state s);

/* dirty.c: KVM dirty-page logging over all of guest RAM. Bit i of a
 * fetched bitmap is RAM page i in memfd order (GPA order: low RAM, then
 * RAM above 4 GiB). fetch returns the pages written since the previous
 * fetch (or start) and -EBUSY when logging is off. I/O thread only. */
struct Canopy__V1__VmmDirtyBitmap;
CN_MUST_CHECK int dirty_log_start(struct vm *vm);
CN_MUST_CHECK int dirty_log_stop(struct vm *vm);
CN_MUST_CHECK int dirty_log_fetch(struct vm *vm,
				  struct Canopy__V1__VmmDirtyBitmap *out);
/* The raw bitmap (words of 64 pages), caller frees; for migration. */
CN_MUST_CHECK int dirty_log_get(struct vm *vm, uint64_t **bitmap,
				uint64_t *pages);

/* snapshot.c: save the paused-or-running VM (paused for the duration) to
 * path; restore one into a VM whose KVM objects exist. Messages in err. */
CN_MUST_CHECK int snapshot_save(struct vm *vm, const char *path,
				uint64_t *bytes, uint64_t *us, char *err,
				size_t errlen);
/* Read only the snapshot's header: memory size and vCPU count, so the VM
 * can be created to match. */
CN_MUST_CHECK int snapshot_peek(const char *path, uint64_t *mem_mib,
				unsigned *cpus, char *err, size_t errlen);
CN_MUST_CHECK int snapshot_restore(struct vm *vm, const char *path, char *err,
				   size_t errlen);

/* seccomp.c: allow only what the running VMM needs (all threads); a
 * blocked call prints its number and exits with VMM_EXIT_CRASH. */
CN_MUST_CHECK int vmm_seccomp_install(void);

/* control.c: the control socket (proto/canopy_vmm.proto). */
struct control;
CN_MUST_CHECK int control_start(struct vm *vm, const char *path, char *err,
				size_t errlen);
void control_stop(struct vm *vm);

/* kvm.c: open /dev/kvm, create the VM, irqchip, PIT, guest RAM. Errors are
 * -errno with a one-line message in err. */
CN_MUST_CHECK int vm_create(struct vm *vm, char *err, size_t errlen);
void vm_destroy(struct vm *vm);
/* Join the thread vm_create started to register the memory slots; its
 * result (0 or -errno, with err set). Before any vCPU runs. */
CN_MUST_CHECK int vm_mem_wait(struct vm *vm, char *err, size_t errlen);
/* For a guest reboot: a new KVM VM (irqchip, PIT) over the same, zeroed
 * RAM; vCPUs must be stopped and are gone afterwards. */
CN_MUST_CHECK int vm_recreate(struct vm *vm, char *err, size_t errlen);
/* (Re)register the RAM slots, with or without dirty logging. */
CN_MUST_CHECK int vm_mem_set_logging(struct vm *vm, int on);
/* Host address of guest range [gpa, gpa+len), or NULL when any byte of it
 * is outside guest RAM. Overflow-safe; the only way to reach guest memory. */
void *gpa_to_hva(struct vm *vm, uint64_t gpa, uint64_t len);

/* cpuid.c: set the CPUID a vCPU shows (filtered KVM supported set). */
CN_MUST_CHECK int vcpu_setup_cpuid(struct vm *vm, struct vcpu *c);

/* vcpu.c */
CN_MUST_CHECK int vcpu_create_all(struct vm *vm, char *err, size_t errlen);
CN_MUST_CHECK int vcpu_start_all(struct vm *vm);
/* Park every vCPU outside KVM_RUN; returns when all are parked. Caller
 * holds no lock. Idempotent. */
void vm_pause_all(struct vm *vm);
void vm_resume_all(struct vm *vm);
/* Kick every running vCPU out of KVM_RUN once (a throttled vCPU then
 * sleeps its share). Any thread. */
void vm_kick_all(struct vm *vm);
/* Ask all vCPU threads to exit and join them. */
void vcpu_stop_all(struct vm *vm);
/* From a vCPU thread: ask the I/O thread to act on the VM. */
void vm_request(struct vm *vm, enum vm_request req, const char *fmt, ...)
	CN_PRINTF(3, 4);
/* Snapshot of the exit counters summed over vCPUs. */
void vm_exit_counts(struct vm *vm, uint64_t out[VMM_EXIT_KINDS]);
const char *vmm_exit_kind_name(enum vmm_exit_kind k);

/* io.c */
CN_MUST_CHECK int io_bus_add(struct io_bus *bus, uint64_t base, uint64_t len,
			     const struct io_ops *ops, void *dev);
/* Dispatch an access; 0 if a device took it, -ENOENT if none. Unclaimed
 * reads return all ones. */
int io_bus_access(struct io_bus *bus, uint64_t addr, void *data, uint32_t len,
		  int is_write);
CN_MUST_CHECK int vm_dev_register(struct vm *vm, const struct dev_ops *ops,
				  void *dev);

struct boot_e820 {
	uint64_t addr, size;
	uint32_t type;
} __attribute__((packed));

#define E820_RAM 1
#define E820_RESERVED 2
#define E820_ACPI 3

/* boot_pvh.c / boot_linux.c: load the kernel into guest RAM and set the
 * boot vCPU's registers. -errno with a message in err. */
CN_MUST_CHECK int boot_load(struct vm *vm, char *err, size_t errlen);
CN_MUST_CHECK int boot_pvh_load(struct vm *vm, const uint8_t *img, size_t len,
				char *err, size_t errlen);
CN_MUST_CHECK int boot_linux_load(struct vm *vm, const uint8_t *img, size_t len,
				  char *err, size_t errlen);
/* Is img a PVH ELF (1), a bzImage (2) or neither (0)? */
int boot_probe(const uint8_t *img, size_t len);
/* Registers of the boot vCPU for a flat 32-bit protected-mode entry. */
CN_MUST_CHECK int boot_set_regs32(struct vm *vm, uint64_t entry, uint64_t ebx,
				  uint64_t esi);
CN_MUST_CHECK int boot_set_regs64(struct vm *vm, uint64_t entry, uint64_t rsi,
				  uint64_t cr3);
/* Read a kernel or initrd file into a malloc'd buffer. */
CN_MUST_CHECK int boot_read_file(const char *what, const char *path,
				 uint8_t **out, size_t *len, char *err,
				 size_t errlen);
/* The same from fd when it is >= 0 (a file the jail keeps open; path only
 * names it in messages). */
CN_MUST_CHECK int boot_read_image(const char *what, const char *path, int fd,
				  uint8_t **out, size_t *len, char *err,
				  size_t errlen);
/* Copy cfg.cmdline to VMM_BOOT_CMDLINE: its GPA or -E2BIG. */
CN_MUST_CHECK int64_t boot_put_cmdline(struct vm *vm, char *err, size_t errlen);
/* Load cfg.initrd at the top of RAM below max_addr (0/0 without one). */
CN_MUST_CHECK int boot_put_initrd(struct vm *vm, uint64_t max_addr,
				  uint64_t *gpa, uint64_t *size, char *err,
				  size_t errlen);
/* Write the e820 map (RAM as the VM lays it out) into out (max entries);
 * returns the count. */
unsigned boot_e820(struct vm *vm, struct boot_e820 *out, unsigned max);

/* acpi.c: RSDP at VMM_ACPI_BASE, XSDT, FADT, DSDT, MADT, and the MP table
 * at VMM_MPTABLE_BASE. Returns the RSDP's GPA or -errno. */
CN_MUST_CHECK int64_t acpi_build(struct vm *vm);

/* devices.c: the PCI bus and the virtio devices the options ask for
 * (disks, ...); -errno with a one-line message in err. */
CN_MUST_CHECK int devices_create(struct vm *vm, char *err, size_t errlen);
void devices_destroy(struct vm *vm);

/* dev_serial.c: COM1 with output to the configured sink. */
CN_MUST_CHECK int serial_create(struct vm *vm, const char *sink, char *err,
				size_t errlen);
void serial_destroy(struct vm *vm);
/* Write out buffered console output (I/O thread, at exit). */
void serial_flush(struct vm *vm);
/* Bytes typed on the console (serial=stdio); dropped when the queue is
 * full. */
void serial_input(struct vm *vm, const void *p, size_t n);
/*
 * Queue n bytes of input for the guest (control console_input): the RX
 * FIFO takes what fits, the rest waits in a bounded queue
 * (SERIAL_INPUT_QUEUE_MAX, 64 KiB) and enters the FIFO as the guest reads
 * RBR. All or nothing: 0, -ENOSPC when the queue lacks room for n bytes,
 * -ENODEV without a serial port, -ENOMEM. Any thread. The queue is not
 * part of saved state (a snapshot or migration drops it).
 */
CN_MUST_CHECK int serial_input_queue(struct vm *vm, const void *p, size_t n);

/* dev_platform.c: ACPI PM1 block (power off, power button), i8042 reset
 * line, CMOS RTC, PM timer, port 0x80 and other legacy ports. */
CN_MUST_CHECK int platform_create(struct vm *vm);
/* Press the ACPI power button (SCI). */
void platform_power_button(struct vm *vm);
void platform_destroy(struct vm *vm);
/* Raise (level 1) or lower an interrupt line of the in-kernel irqchip. */
void vm_irq_line(struct vm *vm, unsigned irq, int level);

#endif
