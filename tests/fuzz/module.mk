# tests/fuzz/: libFuzzer harnesses for the VMM's guest-facing parsers, built
# with clang (-fsanitize=fuzzer,address,undefined) into build-fuzz/, apart
# from every other build.
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
FUZZ_NAMES := virtq blk mig
FUZZ_BINS := $(patsubst %,$(FUZZ_B)/fuzz_%,$(FUZZ_NAMES))
# The warnings of the main build, not fatal here: the gcc build with -Werror
# is the gate, and a warning only clang gives in a device model must not
# stop `make check` at its last step. gcc's -Wcast-align is quiet on x86,
# clang's is not.
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-D_GNU_SOURCE -I. $(filter-out -Werror,$(WARN)) -Wno-cast-align
FUZZ_HDRS = $(wildcard tests/fuzz/*.h host/vmm/*.h lib/*.h vmotion/*.h)

# fuzz_rule(NAME, OTHER SOURCES): build-fuzz/fuzz_NAME.
define fuzz_rule
$(FUZZ_B)/fuzz_$(1): tests/fuzz/fuzz_$(1).c $(2) $$(FUZZ_HDRS) | $(DEPS_STAMP)
	$$(call msg,FUZZ-CC,$$@)
	$$(Q)mkdir -p $(FUZZ_B)
	$$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -o $$@ tests/fuzz/fuzz_$(1).c $(2)
endef
$(eval $(call fuzz_rule,virtq,host/vmm/virtq.c))
$(eval $(call fuzz_rule,blk,host/vmm/virtq.c host/vmm/blk_pool.c lib/log.c \
	lib/buf.c lib/sys.c))
$(eval $(call fuzz_rule,mig,vmotion/stream.c lib/buf.c))

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
