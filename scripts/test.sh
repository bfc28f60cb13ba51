#!/usr/bin/env bash
# The README's test command: build and run the whole xunit suite, printing a closing 'N passed, N failed' line.
set -uo pipefail
cd "$(dirname "$0")/.."
results="$(mktemp -d)"
dotnet test tests/Ddpm.Tests -c Release --nologo --logger "trx;LogFileName=results.trx" --results-directory "$results" "$@"
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
