#!/usr/bin/env bash
# usage: scripts/distill-table.sh TEACHER OUT_DIR [-- extra 'ddpm distill' options]
#
# Issue 28's measurement on one teacher: progressive distillation from DDIM-16 down to 1 step (students of 8, 4, 2 and
# 1 steps from one run), then `ddpm eval` (500 samples, seed 0, guidance 3, clipped x_0, no bound) of every student, of
# the teacher with the same N steps of DDIM, DPM-Solver++(2M), UniPC and DPM-Solver++(2M) SDE, of its DDIM-16 (the grid
# the students start from) and of its 20-step default; and the time `ddpm sample` takes for 100 guided images of each.
# Prints a Markdown table, with each row's RMSE to the teacher's DDIM-16 images from the same noise (how closely it
# follows the ODE map the students learn). Teacher rows go to $DDPM_TEACHER_ROWS (default OUT_DIR), so several runs on
# one teacher share them; the data folder is $DDPM_DATA (default data/mnist). Finished steps are not rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { sed -n 2p "$0" >&2; exit 2; }
teacher=$1 out=$2
shift 2
[[ "${1:-}" == -- ]] && shift
extra=("$@")
data=${DDPM_DATA:-data/mnist}
rowsdir=${DDPM_TEACHER_ROWS:-$out}
[[ -f "$teacher" ]] || { echo "error: teacher '$teacher' does not exist" >&2; exit 2; }
command -v python3 >/dev/null || { echo "error: python3 is needed to read eval.json" >&2; exit 2; }
cli=${DDPM_CLI:-}
if [[ -z $cli ]]; then
  dotnet build -c Release src/Ddpm.Cli -v quiet -nologo >/dev/null
  cli=src/Ddpm.Cli/bin/Release/net10.0/Ddpm.Cli.dll
fi
ddpm() { dotnet "$cli" "$@"; }
mkdir -p "$out" "$rowsdir"

if [[ ! -f "$out/run/student-1.ckpt" ]]; then
  args=(--teacher "$teacher" --to-steps 1 --data-dir "$data" "${extra[@]}")
  [[ -f "$out/run/checkpoint.ckpt" ]] && args=(--resume)
  echo "== ddpm distill ${args[*]} --out $out/run" >&2
  start=$(date +%s.%N)
  ddpm distill "${args[@]}" --out "$out/run" 2> "$out/distill.log" >/dev/null || { echo "error: distill failed, see $out/distill.log" >&2; exit 1; }
  python3 -c "print($(date +%s.%N) - $start)" >> "$out/distill.seconds"
fi

rows=("ddim-16:$teacher:--sampler ddim --steps 16" "default-20:$teacher:--sampler dpmpp-2m-sde --steps 20")
for n in 8 4 2 1; do
  rows+=("student-$n:$out/run/student-$n.ckpt:")
  for s in ddim dpmpp-2m unipc dpmpp-2m-sde; do
    [[ $s == unipc && $n == 1 ]] && continue # UniPC needs two steps
    rows+=("$s-$n:$teacher:--sampler $s --steps $n")
  done
done
dirs=()
for row in "${rows[@]}"; do
  IFS=: read -r name ckpt options <<< "$row"
  dir=$rowsdir; [[ $name == student-* ]] && dir=$out
  dirs+=("$dir/$name")
  if [[ ! -f "$dir/$name/eval.json" ]]; then
    echo "== $name: ddpm eval --checkpoint $ckpt --num 500 --seed 0 --clip-x0 --guidance 3 --nll none $options" >&2
    # shellcheck disable=SC2086 # the row's options are words
    ddpm eval --checkpoint "$ckpt" --num 500 --seed 0 --clip-x0 --guidance 3 --nll none $options --data-dir "$data" --out "$dir/$name" \
      > "$dir/$name.log" 2>&1 || { echo "error: row $name failed, see $dir/$name.log" >&2; exit 1; }
  fi
  if [[ ! -f "$dir/$name.sample" ]]; then
    # shellcheck disable=SC2086
    ddpm sample --checkpoint "$ckpt" --num 100 --seed 0 --clip-x0 --guidance 3 --frames 0 $options --out "$dir/$name-sample" \
      2>&1 >/dev/null | grep '^sampled' > "$dir/$name.sample" || { echo "error: sampling $name failed" >&2; exit 1; }
  fi
done

python3 - "$out" "${dirs[@]}" <<'PY'
import json, os, re, sys, zipfile
out, dirs = sys.argv[1], sys.argv[2:]
names = [os.path.basename(d) for d in dirs]
evals = {n: json.load(open(os.path.join(d, "eval.json"))) for n, d in zip(names, dirs)}
def ms(d):  # total sampling time of 100 images: ms per step × steps
    m = re.search(r"in ([0-9]+) steps .*\(([0-9.]+) ms/step", open(d + ".sample").read())
    return int(m.group(1)) * float(m.group(2)) / 1000
def images(d):
    b = open(os.path.join(d, "samples-idx3-ubyte"), "rb").read()
    return b[16:]
ref = images(dirs[names.index("ddim-16")])
def rmse(d):
    x = images(d)
    return (sum(((a - b) / 127.5) ** 2 for a, b in zip(x, ref)) / len(ref)) ** 0.5
# train_log.csv has a row per round (the epoch column); each student's manifest says its round.
log = [l.split(",") for l in open(os.path.join(out, "run", "train_log.csv")).read().split("\n")[1:] if l]
by_round, total = {}, 0.0
for r in log:
    total += float(r[3]); by_round[int(r[0])] = total
cumulative = {}
for n in (8, 4, 2, 1):
    manifest = json.loads(zipfile.ZipFile(os.path.join(out, "run", f"student-{n}.ckpt")).read("manifest.json"))
    cumulative[n] = by_round[manifest["distillation"]["round"]]
base = evals["default-20"]["quality"]["frechet_distance"]
d20 = evals["default-20"]
print(f"teacher {d20['checkpoint']} (step {d20['checkpoint_step']}); N = 500, seed 0, guidance 3, clipped x0; same-N real-image floor "
      f"FD {d20['real_at_same_n']['frechet_distance']:.1f}; FD relative to the teacher's 20-step default (DPM-Solver++(2M) SDE)")
print()
print("| calls | sampler | distilled in (min) | FD | vs default-20 | conf ≥ 0.9 | class KL | agreement | RMSE to DDIM-16 | 100 images (s) |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for n, d in zip(names, dirs):
    e = evals[n]; q = e["quality"]; fd = q["frechet_distance"]; steps = e["sampler"]["steps"]
    kind = "**student**" if n.startswith("student") else n.rsplit("-", 1)[0]
    took = f"{cumulative[steps] / 60:.1f}" if n.startswith("student") else ""
    print(f"| {steps} | {kind} | {took} | {fd:.1f} | {100 * (fd / base - 1):+.0f} % | {100 * q['confidence']:.1f} % | "
          f"{q['class_kl_from_uniform']:.4f} | {100 * e['class_agreement']:.1f} % | {rmse(d):.3f} | {ms(d):.2f} |")
PY
