# guest/: the freestanding test guest, a PVH ELF (docs/test-guest.md). Its own
# flags: no libc, no SSE, no red zone (it takes exceptions at CPL0), fixed
# addresses from guest/guest.ld. kern_*.{c,S} is the CPL0 kernel, the rest
# runs at CPL3.
GUEST_ELF := $(B)/guest/canopy-testguest.elf
GUEST_SRCS := $(wildcard guest/*.c guest/*.S)
GUEST_OBJS := $(patsubst %,$(B)/guest/%.o,$(notdir $(basename $(GUEST_SRCS))))
GUEST_CFLAGS := -std=gnu11 -ffreestanding -fno-pic -fno-pie -mno-red-zone \
	-mgeneral-regs-only -fno-stack-protector -fno-asynchronous-unwind-tables \
	-fno-tree-loop-distribute-patterns -O2 -g -MMD -MP -I. $(WARN)
GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,-T,guest/guest.ld \
	-Wl,--build-id=none -Wl,-z,max-page-size=4096 -Wl,-z,noexecstack \
	-Wl,--no-warn-rwx-segments

$(B)/guest/%.o: guest/%.c | $(DEPS_STAMP)
	$(call msg,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(GUEST_CFLAGS) -c -o $@ $<

$(B)/guest/%.o: guest/%.S | $(DEPS_STAMP)
	$(call msg,AS,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(GUEST_CFLAGS) -c -o $@ $<

$(GUEST_ELF): $(GUEST_OBJS) guest/guest.ld
	$(call msg,LD,$@)
	$(Q)$(CC) $(GUEST_LDFLAGS) -o $@ $(GUEST_OBJS)

EXTRA_TARGETS += $(GUEST_ELF)
