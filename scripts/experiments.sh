#!/usr/bin/env bash
# The measured-benefit experiments of the README (issue 5) on the CPU preset. Runs everything one after the other
# (timings are only comparable on an otherwise idle machine). Usage: scripts/experiments.sh [OUT]
# Needs the quick preset's checkpoint at runs/quick/checkpoint.ckpt (./scripts/quickstart.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/experiments}"
mkdir -p "$out"
dotnet build -c Release src/Ddpm.Cli -v quiet -nologo
ddpm() { dotnet src/Ddpm.Cli/bin/Release/net10.0/Ddpm.Cli.dll "$@"; }
n=500
base=runs/quick/checkpoint.ckpt
# Every evaluation samples with the predicted x_0 clipped to [-1, 1], as the README's grid.
ev() { local name=$1; shift; ddpm eval --num $n --seed 0 --nll none --clip-x0 --out "$out/$name" "$@" > "$out/$name.txt"; }

# Samplers on the same checkpoint (linear schedule, EMA weights); T = 200 for the quick preset.
ev ddpm-200 --checkpoint $base
ev ddpm-200-no-ema --checkpoint $base --no-ema
ev ddpm-respaced-100 --checkpoint $base --steps 100
ev ddpm-respaced-50 --checkpoint $base --steps 50
for s in 100 50 20 10; do ev ddim-$s --checkpoint $base --sampler ddim --steps $s; done
ddpm eval --checkpoint $base --num $n --seed 0 --clip-x0 --nll estimate --nll-images 100 --nll-timesteps 20 --out "$out/nll" > "$out/nll.txt"

# Cosine schedule: the same run with only the schedule changed (EMA weights), against ddpm-200 above.
ddpm train --config configs/experiments/quick-cosine-ema.yaml --out runs/quick-cosine-ema
ev cosine-ema --checkpoint runs/quick-cosine-ema/checkpoint.ckpt

# Class-conditional with label dropout: guided samples, class agreement at w = 0, 1, 3 (DDIM 50 steps).
ddpm train --config configs/experiments/quick-conditional.yaml --out runs/quick-conditional
for w in 0 1 3; do ev cond-w$w --checkpoint runs/quick-conditional/checkpoint.ckpt --sampler ddim --steps 50 --guidance $w; done
grep -H -E "classifier space|confident|class agreement|IS-style|sampling" "$out"/*.txt || true
