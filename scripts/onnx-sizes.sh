#!/usr/bin/env bash
# The published size of examples/OnnxQuickstart (Ddpm.Onnx on ONNX Runtime) next to examples/Quickstart (Ddpm on
# TorchSharp and libtorch), both self-contained for linux-x64, as a markdown table (docs/onnx.md). Needs the packages in
# artifacts/: run scripts/example.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/sizes}"
rm -rf "$out"
for app in Quickstart OnnxQuickstart; do
  dotnet publish "examples/$app" -c Release -r linux-x64 --self-contained -o "$out/$app" --nologo -v quiet >/dev/null
done
# The ORT app also trims (IL trimming of the .NET libraries); the TorchSharp app's size is libtorch's.
dotnet publish examples/OnnxQuickstart -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true \
  -o "$out/OnnxQuickstart-trimmed" --nologo -v quiet >/dev/null
printf '| app (self-contained linux-x64) | files | MB on disk | largest native library |\n|---|---:|---:|---|\n'
for app in Quickstart OnnxQuickstart OnnxQuickstart-trimmed; do
  files=$(find "$out/$app" -type f | wc -l)
  mb=$(du -sm "$out/$app" | cut -f1)
  largest=$(find "$out/$app" -name '*.so*' -printf '%s %f\n' | sort -n | tail -1 | awk '{printf "%s (%.0f MB)", $2, $1 / 1048576}')
  printf '| %s | %s | %s | %s |\n' "$app" "$files" "$mb" "$largest"
done
