# canopy-managerd (manager/): the cluster manager on etcd with the gRPC API.
MGR_SRCS := $(wildcard manager/*.c)
MGR_OBJS := $(patsubst %.c,$(B)/%.o,$(MGR_SRCS))
# Everything but main.o, for the unit tests.
MGR_LIB := $(B)/manager/libmanager.a
MGR_LIBS = $(LIBS_GRPC) $(LIBS_ZMQ) $(LIBS_PROTO) $(call PC,libssl libcrypto)

$(MGR_LIB): $(filter-out $(B)/manager/main.o,$(MGR_OBJS))
	$(call msg,AR,$@)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(B)/bin/canopy-managerd: $(B)/manager/main.o $(MGR_LIB) $(VMOTION_LIB) $(LIBCANOPY)
	$(call link,$@,$^,$(MGR_LIBS))

BINS += $(B)/bin/canopy-managerd

# Unit tests of the manager's pure parts (tests/unit/test_mgr_*.c).
MGR_TESTS := $(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(wildcard tests/unit/test_mgr_*.c))
$(MGR_TESTS): $(B)/tests/unit/%: $(B)/tests/unit/%.o $(MGR_LIB) $(VMOTION_LIB) $(LIBCANOPY)
	$(call link,$@,$(call unit_objs,$^),$(LIBS_CMOCKA) $(MGR_LIBS))

# The fake agent of the manager's integration tests links ZeroMQ.
$(B)/tests/helpers/mgr_fake_agent: $(B)/tests/helpers/mgr_fake_agent.o $(LIBCANOPY)
	$(call link,$@,$(call unit_objs,$^),$(LIBS_PROTO) $(LIBS_ZMQ) $(LIBS_CRYPTO))
