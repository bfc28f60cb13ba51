#!/usr/bin/env bash
# The measured-benefit experiments of the README (issue 5) on the CPU preset. Runs everything one after the other
# (timings are only comparable on an otherwise idle machine). Usage: scripts/experiments.sh [OUT]
# The sampler rows use the CPU preset as it was before issue 15 (configs/experiments/quick-before-15.yaml, trained here).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/experiments}"
mkdir -p "$out"
dotnet build -c Release src/Ddpm.Cli -v quiet -nologo
ddpm() { dotnet src/Ddpm.Cli/bin/Release/net10.0/Ddpm.Cli.dll "$@"; }
n=500
base=runs/quick-before-15/checkpoint.ckpt
[[ -f $base ]] || ddpm train --config configs/experiments/quick-before-15.yaml --out runs/quick-before-15
# Every evaluation samples with the predicted x_0 clipped to [-1, 1], as the README's grid.
ev() { local name=$1; shift; ddpm eval --num $n --seed 0 --nll none --clip-x0 --out "$out/$name" "$@" > "$out/$name.txt"; }

# Samplers on the same checkpoint (linear schedule, EMA weights); T = 200 for the quick preset.
# (--sampler ddpm spelled out: ddpm eval's default became DPM-Solver++(2M) SDE after these runs.)
ev ddpm-200 --checkpoint $base --sampler ddpm
ev ddpm-200-no-ema --checkpoint $base --sampler ddpm --no-ema
ev ddpm-respaced-100 --checkpoint $base --sampler ddpm --steps 100
ev ddpm-respaced-50 --checkpoint $base --sampler ddpm --steps 50
for s in 100 50 20 10; do ev ddim-$s --checkpoint $base --sampler ddim --steps $s; done
ddpm eval --checkpoint $base --num $n --seed 0 --clip-x0 --sampler ddpm --nll estimate --nll-images 100 --nll-timesteps 20 --out "$out/nll" > "$out/nll.txt"

# Cosine schedule: the same run with only the schedule changed (EMA weights), against ddpm-200 above.
ddpm train --config configs/experiments/quick-cosine-ema.yaml --out runs/quick-cosine-ema
ev cosine-ema --checkpoint runs/quick-cosine-ema/checkpoint.ckpt --sampler ddpm

# Class-conditional with label dropout: guided samples, class agreement at w = 0, 1, 3 (DDIM 50 steps).
ddpm train --config configs/experiments/quick-conditional.yaml --out runs/quick-conditional
for w in 0 1 3; do ev cond-w$w --checkpoint runs/quick-conditional/checkpoint.ckpt --sampler ddim --steps 50 --guidance $w; done
# Issue 15, the CPU preset: each variant trained for its step count, then evaluated on 100 samples exactly as
# ./scripts/quickstart.sh sampled then (respaced DDPM 100 steps, clipped x_0; guidance 3 and classes i mod 10 where the
# model is class-conditional). Training speed on a shared machine says nothing; compare steps, not seconds.
q=(--sampler ddpm --steps 100 --nll none)
for v in quick cpu-a-const cpu-c-cosine cpu-d-uncond; do
  cfg=configs/experiments/$v.yaml; [[ $v == quick ]] && cfg=configs/quick.yaml
  ddpm train --config "$cfg" --out "runs/issue15-$v"
  g=(--guidance 3); [[ $v == cpu-d-uncond ]] && g=()
  ddpm eval --checkpoint "runs/issue15-$v/checkpoint.ckpt" --num 100 --seed 0 --clip-x0 "${q[@]}" "${g[@]}" --out "$out/issue15-$v" > "$out/issue15-$v.txt"
done
grep -H -E "classifier space|confident|class agreement|IS-style|sampling" "$out"/*.txt || true
