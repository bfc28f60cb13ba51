#!/usr/bin/env bash
# Packs the library into artifacts/ and builds and runs examples/Quickstart against that package (not the project):
# proves the package restores, carries its native patches (buildTransitive/Ddpm.targets), samples the shipped model,
# trains and samples. Then exports the shipped model to ONNX with the CLI and runs examples/OnnxQuickstart on it against
# the Ddpm.Onnx package, with no libtorch in that app.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/quickstart}"
dotnet pack src/Ddpm -c Release -o artifacts --nologo -v quiet
dotnet pack src/Ddpm.Onnx -c Release -o artifacts --nologo -v quiet
# The example restores Ddpm into examples/.packages (see examples/Directory.Build.props): drop the old copy so a
# re-pack of the same version is what gets used.
rm -rf examples/.packages/ddpm examples/.packages/ddpm.onnx
dotnet build examples/Quickstart -c Release --nologo -v quiet
dotnet examples/Quickstart/bin/Release/net10.0/Quickstart.dll "$out"
test -s "$out/samples.png"
test -s "$out/digits.png"
dotnet build src/Ddpm.Cli -c Release --nologo -v quiet
dotnet src/Ddpm.Cli/bin/Release/net10.0/Ddpm.Cli.dll export --checkpoint models/mnist-quick.ckpt --to "$out/model.onnx"
dotnet build examples/OnnxQuickstart -c Release --nologo -v quiet
ort_app=examples/OnnxQuickstart/bin/Release/net10.0
if find "$ort_app" -name 'libtorch*' -o -name 'TorchSharp*' | grep -q .; then
  echo "error: $ort_app holds libtorch or TorchSharp" >&2
  exit 1
fi
dotnet "$ort_app/OnnxQuickstart.dll" "$out/model.onnx" "$out/onnx"
test -s "$out/onnx/samples.png"
