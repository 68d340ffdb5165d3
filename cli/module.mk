# The canopy CLI (cli/): libcli.a (everything but main, so unit tests can
# link the pure parts) and build/bin/canopy, a gRPC client of
# canopy-managerd on the gRPC C core.
CLI_SRCS := $(filter-out cli/main.c,$(wildcard cli/*.c))
CLI_OBJS := $(patsubst %.c,$(B)/%.o,$(CLI_SRCS))
CLI_LIB := $(B)/cli/libcli.a

$(CLI_LIB): $(CLI_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(B)/bin/canopy: $(B)/cli/main.o $(CLI_LIB) $(LIBCANOPY)
	$(call link,$@,$^,$(LIBS_PROTO) $(LIBS_GRPC) $(LIBS_SSL) $(LIBS_ZMQ) -lm)

BINS += $(B)/bin/canopy

# Unit tests of the CLI's pure parts (tests/unit/test_cli_*.c).
CLI_TESTS := $(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(wildcard tests/unit/test_cli_*.c))
$(CLI_TESTS): $(B)/tests/unit/%: $(B)/tests/unit/%.o $(CLI_LIB) $(LIBCANOPY)
	$(call link,$@,$(call unit_objs,$^),$(LIBS_CMOCKA) $(LIBS_PROTO) $(LIBS_GRPC) $(LIBS_SSL) $(LIBS_ZMQ) -lm)
