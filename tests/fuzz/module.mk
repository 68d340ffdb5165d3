# tests/fuzz/: libFuzzer harnesses for every parser of untrusted input
# (docs/fuzzing.md): virtio rings and virtio-blk (virtq, blk), the
# migration stream (mig), the VMM control socket (ctl), the agent bus
# (bus), the datastore's on-disk records (ds) and the manager's API
# requests (api); built with clang (-fsanitize=fuzzer,address,undefined)
# into build-fuzz/, apart from every other build.
#   make fuzz            each harness for FUZZ_SECS seconds (default 60)
#   make fuzz-smoke      each for FUZZ_SMOKE_SECS (default 10; `make check`
#                        runs it after the integration tests)
# Each starts from its seed corpus tests/fuzz/corpus/<name>/ (read only);
# new inputs go to build-fuzz/corpus/<name>/, a crash to
# build-fuzz/crash-<name>-* (replay: build-fuzz/fuzz_<name> FILE).
FUZZ_B := build-fuzz
FUZZ_SECS ?= 60
FUZZ_SMOKE_SECS ?= 10
FUZZ_CC := clang
FUZZ_NAMES := virtq blk mig ctl bus ds api
FUZZ_BINS := $(patsubst %,$(FUZZ_B)/fuzz_%,$(FUZZ_NAMES))
# The warnings of the main build, not fatal here: the gcc build with -Werror
# is the gate, and a warning only clang gives in a device model must not
# stop `make check` at its last step. gcc's -Wcast-align is quiet on x86,
# clang's is not.
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-D_GNU_SOURCE -I. -I$(B)/gen $(filter-out -Werror,$(WARN)) \
	-Wno-cast-align
FUZZ_HDRS = $(wildcard tests/fuzz/*.h host/vmm/*.h lib/*.h vmotion/*.h \
	manager/*.h host/agent/*.h datastore/*.h) $(PROTO_H)
# The protobuf-c code generated in the main build dir, for the harnesses
# of protobuf messages.
FUZZ_PB = $(B)/gen/proto/canopy_common.pb-c.c $(B)/gen/proto/$(1).pb-c.c
FUZZ_LIBS_PB = $(LIBS_PROTO)

# fuzz_rule(NAME, OTHER SOURCES[, LIBS]): build-fuzz/fuzz_NAME.
define fuzz_rule
$(FUZZ_B)/fuzz_$(1): tests/fuzz/fuzz_$(1).c $(2) $$(FUZZ_HDRS) | $(DEPS_STAMP)
	$$(call msg,FUZZ-CC,$$@)
	$$(Q)mkdir -p $(FUZZ_B)
	$$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -o $$@ tests/fuzz/fuzz_$(1).c $(2) $(3)
endef
$(eval $(call fuzz_rule,virtq,host/vmm/virtq.c))
$(eval $(call fuzz_rule,blk,host/vmm/virtq.c host/vmm/blk_pool.c lib/log.c \
	lib/buf.c lib/sys.c))
$(eval $(call fuzz_rule,mig,vmotion/stream.c lib/buf.c))
$(eval $(call fuzz_rule,ctl,host/vmm/control_req.c lib/frame.c lib/buf.c \
	lib/sys.c $(call FUZZ_PB,canopy_vmm),$(FUZZ_LIBS_PB)))
$(eval $(call fuzz_rule,bus,lib/bus.c lib/bus_sock.c lib/loop.c lib/log.c \
	lib/sys.c lib/err.c lib/bus_enrol.c lib/bus_keys.c lib/hex.c \
	lib/config.c host/agent/spec.c host/agent/vmm_argv.c \
	$(call FUZZ_PB,canopy_agent),$(FUZZ_LIBS_PB) $(LIBS_ZMQ) \
	$(LIBS_CRYPTO)))
$(eval $(call fuzz_rule,api,manager/api_check.c manager/keys.c \
	manager/spec.c lib/url.c vmotion/orch.c vmotion/stream.c lib/buf.c \
	lib/err.c lib/hex.c \
	manager/auth_token.c manager/auth_pw.c manager/auth_priv.c \
	$(call FUZZ_PB,canopy_api) $(B)/gen/proto/canopy_agent.pb-c.c \
	$(B)/gen/proto/canopy_auth.pb-c.c, \
	$(FUZZ_LIBS_PB) $(LIBS_CRYPTO)))
$(eval $(call fuzz_rule,ds,$(wildcard datastore/ds_*.c) lib/crc32c.c \
	lib/sys.c))

# fuzz_run(SECONDS): run every harness; stop at the first crash with the
# end of its log.
define fuzz_run
	$(Q)for n in $(FUZZ_NAMES); do \
		mkdir -p $(FUZZ_B)/corpus/$$n; \
		printf '  %-8s %s\n' FUZZ "$$n for $(1) s"; \
		$(FUZZ_B)/fuzz_$$n -max_total_time=$(1) -timeout=10 \
			-artifact_prefix=$(FUZZ_B)/crash-$$n- \
			$(FUZZ_B)/corpus/$$n tests/fuzz/corpus/$$n \
			>$(FUZZ_B)/fuzz_$$n.log 2>&1 || { \
			tail -n 40 $(FUZZ_B)/fuzz_$$n.log; \
			echo "fuzz: $$n found a crash: see $(FUZZ_B)/fuzz_$$n.log" >&2; \
			exit 1; }; \
		echo "fuzz: $$n: no crash; $$(grep -o 'cov: [0-9]*' \
			$(FUZZ_B)/fuzz_$$n.log | tail -n 1), $$(grep '^Done' \
			$(FUZZ_B)/fuzz_$$n.log)"; \
	done
endef

.PHONY: fuzz fuzz-smoke check-fuzz-smoke
fuzz: $(FUZZ_BINS)
	$(call fuzz_run,$(FUZZ_SECS))

fuzz-smoke: $(FUZZ_BINS)
	$(call fuzz_run,$(FUZZ_SMOKE_SECS))

# The smoke as part of `make check`: after the integration tests, not beside
# them under -j (the fuzzers take a core each).
check-fuzz-smoke: $(FUZZ_BINS) | integration
	$(call fuzz_run,$(FUZZ_SMOKE_SECS))
