#!/usr/bin/env bash
# usage: scripts/solver-table.sh CHECKPOINT OUT_DIR [NUM] [-- extra eval options, e.g. --guidance 3]
#
# Issue 14's comparison on one checkpoint: ancestral DDPM with all T steps (and respaced to 100) against DDIM (η = 0),
# DPM-Solver++(2M), UniPC and DPM-Solver++(2M) SDE at 10, 20 and 50 steps — the same seed, the
# same N, clipped x_0, EMA weights, `ddpm eval` for every row. Prints a Markdown table (FD relative to the all-T
# ancestral row) and leaves each row's eval folder (eval.json, samples.png) under OUT_DIR. Rows already evaluated
# (OUT_DIR/ROW/eval.json present) are not run again, so an interrupted table can be resumed.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { sed -n 2p "$0" >&2; exit 2; }
checkpoint=$1 out=$2 num=${3:-500}
shift $(( $# >= 3 ? 3 : 2 ))
[[ "${1:-}" == -- ]] && shift
extra=("$@")
[[ -f "$checkpoint" ]] || { echo "error: checkpoint '$checkpoint' does not exist" >&2; exit 2; }
command -v python3 >/dev/null || { echo "error: python3 is needed to read eval.json" >&2; exit 2; }
dotnet build -c Release src/Ddpm.Cli -v quiet -nologo >/dev/null
ddpm() { dotnet src/Ddpm.Cli/bin/Release/net10.0/Ddpm.Cli.dll "$@"; }
mkdir -p "$out"

rows=(
  "ddpm-all:--sampler ddpm"
  "ddpm-100:--sampler ddpm --steps 100"
  "ddim-10:--sampler ddim --steps 10"  "ddim-20:--sampler ddim --steps 20"  "ddim-50:--sampler ddim --steps 50"
  "dpmpp-2m-10:--sampler dpmpp-2m --steps 10"  "dpmpp-2m-20:--sampler dpmpp-2m --steps 20"  "dpmpp-2m-50:--sampler dpmpp-2m --steps 50"
  "unipc-10:--sampler unipc --steps 10"  "unipc-20:--sampler unipc --steps 20"  "unipc-50:--sampler unipc --steps 50"
  "dpmpp-2m-sde-10:--sampler dpmpp-2m-sde --steps 10"  "dpmpp-2m-sde-20:--sampler dpmpp-2m-sde --steps 20"  "dpmpp-2m-sde-50:--sampler dpmpp-2m-sde --steps 50"
)
for row in "${rows[@]}"; do
  name=${row%%:*} options=${row#*:}
  [[ -f "$out/$name/eval.json" ]] && continue
  echo "== $name: ddpm eval --checkpoint $checkpoint --num $num --seed 0 --clip-x0 --nll none $options ${extra[*]}" >&2
  # shellcheck disable=SC2086 # the row's options are words
  ddpm eval --checkpoint "$checkpoint" --num "$num" --seed 0 --clip-x0 --nll none $options "${extra[@]}" --out "$out/$name" > "$out/$name.log" 2>&1 \
    || { echo "error: row $name failed, see $out/$name.log" >&2; exit 1; }
done

python3 - "$out" "${rows[@]}" <<'EOF'
import json, sys, os
out, rows = sys.argv[1], [r.split(":", 1)[0] for r in sys.argv[2:]]
evals = {name: json.load(open(os.path.join(out, name, "eval.json"))) for name in rows}
base = evals["ddpm-all"]["quality"]["frechet_distance"]
first = evals["ddpm-all"]
# The request's guidance ("…, guidance w = 3, classes i mod 10") is the same on every row: said once, above the table.
names = {n: e["sampler"]["name"].split(", guidance", 1) for n, e in evals.items()}
guidance = names["ddpm-all"][1] if len(names["ddpm-all"]) > 1 else None
print(f"checkpoint {first['checkpoint']} (step {first['checkpoint_step']}), N = {first['num']}, seed {first['seed']}, "
      f"{'guidance' + guidance if guidance else 'unguided'}, same-N real-image floor FD {first['real_at_same_n']['frechet_distance']:.1f}")
print()
print("| sampler | steps | FD (classifier) | vs all-T ancestral | conf ≥ 0.9 | class KL | sampling (s) |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for name in rows:
    e = evals[name]; q = e["quality"]; fd = q["frechet_distance"]
    print(f"| {names[name][0]} | {e['sampler']['steps']} | {fd:.1f} | {100 * (fd / base - 1):+.1f} % | "
          f"{100 * q['confidence']:.1f} % | {q['class_kl_from_uniform']:.4f} | {e['timings']['sampling']:.1f} |")
EOF
