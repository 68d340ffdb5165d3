# vMotion (vmotion/): the migration stream format and the orchestration's
# pure part, unit-tested, and the KVM_GET_SUPPORTED_CPUID query
# (kvm_cpuid.c); libvmotion.a (VMOTION_LIB, named in the Makefile) is
# linked into canopy-vmm, canopy-managerd and canopy-agent.
VMOTION_SRCS := $(wildcard vmotion/*.c)
VMOTION_OBJS := $(patsubst %.c,$(B)/%.o,$(VMOTION_SRCS))

$(VMOTION_LIB): $(VMOTION_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(wildcard tests/unit/test_mig_*.c)): $(VMOTION_LIB)
