# vMotion (vmotion/): the migration stream format, pure and unit-tested;
# libvmotion.a is linked into canopy-vmm (host/vmm/module.mk names it).
VMOTION_SRCS := $(wildcard vmotion/*.c)
VMOTION_OBJS := $(patsubst %.c,$(B)/%.o,$(VMOTION_SRCS))
VMOTION_LIB := $(B)/vmotion/libvmotion.a

$(VMOTION_LIB): $(VMOTION_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(wildcard tests/unit/test_mig_*.c)): $(VMOTION_LIB)
