#!/usr/bin/env bash
# Packs the library into artifacts/ and builds and runs examples/Quickstart against that package (not the project):
# proves the package restores, carries its native patch (buildTransitive/Ddpm.targets), trains and samples.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/quickstart}"
dotnet pack src/Ddpm -c Release -o artifacts --nologo -v quiet
# The example restores Ddpm into examples/.packages (see examples/Directory.Build.props): drop the old copy so a
# re-pack of the same version is what gets used.
rm -rf examples/.packages/ddpm
dotnet build examples/Quickstart -c Release --nologo -v quiet
dotnet examples/Quickstart/bin/Release/net10.0/Quickstart.dll "$out"
test -s "$out/samples.png"
