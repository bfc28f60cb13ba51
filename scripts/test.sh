#!/usr/bin/env bash
# The README's test command: build and run the whole xunit suite, printing a closing 'N passed, N failed' line.
# --fast: the inner loop's subset, without the tests that start processes (CLI children, mpirun, Python, the browser)
# or are slow (load, memory growth, fuzzing); docs/testing.md. Other arguments go to dotnet test.
set -uo pipefail
cd "$(dirname "$0")/.."
results="$(mktemp -d)"
args=()
for a in "$@"; do
  if [ "$a" = "--fast" ]; then
    export DDPM_FAST_TESTS=1 # the launcher of child processes refuses: an untagged test that starts one fails
    args+=(--filter "Category!=Process&Category!=Slow")
  else
    args+=("$a")
  fi
done
dotnet test tests/Ddpm.Tests -c Release --nologo --logger "trx;LogFileName=results.trx" --results-directory "$results" "${args[@]}"
rc=$?
trx="$results/results.trx"
if [ -f "$trx" ]; then
  passed=$(grep -o 'passed="[0-9]*"' "$trx" | head -1 | grep -o '[0-9]*')
  failed=$(grep -o 'failed="[0-9]*"' "$trx" | head -1 | grep -o '[0-9]*')
  total=$(grep -o 'total="[0-9]*"' "$trx" | head -1 | grep -o '[0-9]*')
  skipped=$(( total - passed - failed ))
  # The tests that run a real PyTorch (Interop/PyTorchCrossFrameworkTests): skipped where none is installed.
  outcomes=$(grep -o '<UnitTestResult [^>]*>' "$trx" | grep 'testName="[^"]*PyTorchCrossFramework' | grep -o 'outcome="[A-Za-z]*"' || true)
  x_passed=$(grep -c '"Passed"' <<<"$outcomes" || true)
  x_failed=$(grep -c '"Failed"' <<<"$outcomes" || true)
  x_skipped=$(grep -c '"NotExecuted"' <<<"$outcomes" || true)
  echo "cross-framework tests against real PyTorch: ${x_passed} passed, ${x_failed} failed, ${x_skipped} skipped"
  echo "${passed} passed, ${failed} failed, ${skipped} skipped"
fi
rm -rf "$results"
exit $rc
