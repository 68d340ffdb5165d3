#!/bin/sh
# Run every cmocka unit-test binary given as an argument, show each one's
# own output, and finish with one summary line over all of them:
#   unit: N passed, N failed
# Exits non-zero if any test failed or any binary did not finish cleanly
# (a crash or sanitizer report counts as a failure even without a cmocka
# FAILED line).
set -u

passed=0
failed=0
broken=""
for t in "$@"; do
	out=$("$t" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -n 1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -n 1)
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0}))
	if [ "$rc" -ne 0 ] && [ -z "$f" ]; then
		# Crashed or aborted before cmocka could report: count it.
		failed=$((failed + 1))
	fi
	[ "$rc" -ne 0 ] && broken="$broken $(basename "$t")"
done

echo
[ -n "$broken" ] && echo "unit: failing binaries:$broken"
echo "unit: $passed passed, $failed failed"
[ -z "$broken" ]
