# canopy-vmm (host/vmm/): one process per VM on /dev/kvm.
VMM_SRCS := $(wildcard host/vmm/*.c)
VMM_OBJS := $(patsubst %.c,$(B)/%.o,$(VMM_SRCS))
# Everything but main.o, for unit tests of the device models.
VMM_LIB := $(B)/host/vmm/libvmm.a

$(VMM_LIB): $(filter-out $(B)/host/vmm/main.o,$(VMM_OBJS))
	$(call msg,AR,$@)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

# The migration stream (vmotion/module.mk) after the VMM archive that uses it.
# The migration stream's TLS (migrate_tls.c) links OpenSSL.
$(B)/bin/canopy-vmm: $(B)/host/vmm/main.o $(VMM_LIB) $(VMOTION_LIB) $(DS_LIB) $(LIBCANOPY)
	$(call link,$@,$^,$(LIBS_PROTO) $(LIBS_SSL))

BINS += $(B)/bin/canopy-vmm

# Unit tests of the VMM's pure parts link its archive.
$(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(wildcard tests/unit/test_vmm_*.c)): $(VMM_LIB) $(VMOTION_LIB) $(DS_LIB)

# The virtqueue and virtio device-model tests share a fake guest (guard-paged
# RAM and a tiny split-ring driver).
VQ_TESTS := $(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(wildcard tests/unit/test_vmm_virtq*.c))
$(VQ_TESTS): $(B)/tests/unit/vq_fake.o
