#!/usr/bin/env bash
# The GPU check of issue 18 on a CUDA machine that has PyTorch but no .NET; builds nothing there.
#   PART=bench: CUDA graphs vs eager (`ddpm bench`: training img/s at batch 64 and 256, sampling ms/step for 100 images
#               and one whole 1000-step run, graphed-vs-eager differences), bf16 with and without attention head
#               padding, and PyTorch on the same card (scripts/pytorch_baseline.py, SDPA=1 GRAPH=1)      ≈ 4-5 min
#   PART=mnist: the seed's experiment (configs/mnist.yaml) for as many epochs as the budget leaves, stopped by SIGTERM
#               (ddpm train saves a checkpoint), then `ddpm eval` on 1,000 samples                      = the budget
#   PART=all:   both, in that order (the default).
# Prepare here:  scripts/bundle.sh --mnist data/mnist
#   (.bundle/ddpm-linux-x64.tar.xz with the CUDA-graph shim; .bundle/mnist: gzipped MNIST + the eval classifier)
# Run there:     OUT=<results dir> PART=bench BUDGET_S=300 bash scripts/device-check.sh
#   with carry [".bundle/ddpm-linux-x64.tar.xz", ".bundle/mnist"]; give the device call BUDGET_S + 60 s.
# Dry run here:  DEVICE=cpu OUT=/tmp/dc scripts/device-check.sh   (no GPU: the local build, tiny settings, the same
#   steps, data handling, SIGTERM stop, eval and packing; PyTorch steps are skipped without torch)
# Every step has its own time limit and skips itself when the budget (BUDGET_S, default 540 s) is spent; $OUT receives
# summary.log and results.tar.gz, re-packed after every step (the device tool returns few files per run).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-device-results}"
PART="${PART:-all}"
BUDGET_S="${BUDGET_S:-540}"
DEVICE="${DEVICE:-cuda}"
EVAL_RESERVE_S="${EVAL_RESERVE_S:-210}" # ddpm eval of 1,000 images × 1000 steps: ≈ 130 s of GPU-bound sampling on an H200, plus setup
case "$PART" in all|bench|mnist) ;; *) echo "PART must be all, bench or mnist, got '$PART'" >&2; exit 2 ;; esac
START=$SECONDS
R="$PWD/.bundle/results"
rm -rf "$R" && mkdir -p "$OUT" "$R"
exec > >(tee -a "$OUT/summary.log") 2>&1

if [ "$DEVICE" = cpu ]; then
  # Dry run: the local build and settings small enough for a 2-core machine.
  DDPM="${DDPM:-dotnet $PWD/src/Ddpm.Cli/bin/Release/net10.0/Ddpm.Cli.dll}"
  BENCH_CONFIG=configs/quick.yaml; TRAIN_CONFIG=configs/quick.yaml; BATCHES=4; BATCH_BF16=4; SMOKE_CONFIG=configs/quick.yaml
  BENCH_ARGS="--repeats 1 --steps 1 --warmup 1 --sample-batch 4"; FULL=""; EVAL_ARGS="--num 100 --batch-size 100 --sampler ddpm --steps 5 --nll none"
  SMOKE_ARGS="--batch-sizes 4 $BENCH_ARGS"; PAD_ARGS="$BENCH_ARGS"; PT_BATCHES=4
else
  BENCH_CONFIG=configs/mnist.yaml; TRAIN_CONFIG=configs/mnist.yaml; BATCHES=64,256; BATCH_BF16=256; SMOKE_CONFIG=configs/quick.yaml
  BENCH_ARGS=""; FULL="--sample-full"; EVAL_ARGS="--num 1000 --batch-size 500 --sampler ddpm"
  SMOKE_ARGS="--batch-sizes 16 --repeats 1 --steps 3 --warmup 3 --sample-batch 16"; PAD_ARGS="--repeats 3"; PT_BATCHES=64,256
fi

left() { echo $(( BUDGET_S - (SECONDS - START) )); }
pack() { tar -C "$R/.." --exclude=results/data --exclude='*.ckpt' -czf "$OUT/results.tar.gz" results; }
step() { # name, seconds, command... : runs with min(limit, budget left), skipped under 15 s
  local name="$1" limit="$2"; shift 2
  local budget; budget=$(left)
  if (( budget < 15 )); then echo "== $name: skipped ($budget s of the budget left)"; return 0; fi
  (( limit > budget )) && limit=$budget
  local t0=$SECONDS
  timeout -k 20 "$limit" "$@" > "$R/$name.txt" 2>&1
  local rc=$?
  echo "== $name: rc $rc in $((SECONDS - t0)) s (limit $limit s)"
  grep -E "^device|^\| |img/s|ms/step|graphs vs eager|forward \(|training step \(|cuda graphs|CUDA graphs|CUDAGraph|cuda_stream|^--|=>|warning|error|epoch [0-9]+:|evaluated images|real training|anchor|histogram|bits/dim|^time:|wrote" \
    "$R/$name.txt" | grep -v -- "---" | tail -n 24
  pack
  return 0
}

echo "device check: PART=$PART DEVICE=$DEVICE BUDGET_S=$BUDGET_S"
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$R/gpu.txt"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  ldd --version | head -n 1
  mkdir -p .bundle/run && tar -C .bundle/run -xJf .bundle/ddpm-linux-x64.tar.xz
  DDPM="${DDPM:-$PWD/.bundle/run/ddpm/ddpm}"
  ls -l .bundle/run/ddpm/libddpm_cuda_graph.so || echo "error: the bundle has no libddpm_cuda_graph.so: CUDA graphs will report unavailable"
  graph_symbols() { # what the shim binds to, as this libtorch exports it
    local lib
    lib="$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
    ldd "$PWD/.bundle/run/ddpm/libddpm_cuda_graph.so"
    for so in libtorch_cuda.so libtorch_cpu.so libc10_cuda.so; do
      echo "-- $so"
      nm -D --defined-only "$lib/$so" | c++filt | grep -E 'at::cuda::CUDAGraph::(CUDAGraph|~CUDAGraph|capture_begin|capture_end|replay)\(|torch_(set_current|get)_cuda_stream|aoti_torch_get_current_cuda_stream|torch_cuda_stream_synchronize'
      nm -D --defined-only "$lib/$so" | grep -E '_ZN2at4cuda9CUDAGraph(C1|D1|13capture_begin|11capture_end|6replay)'
    done
  }
  export -f graph_symbols
  step cudagraph-symbols 30 bash -c graph_symbols
fi
M="$PWD/$BENCH_CONFIG"
# shellcheck disable=SC2086 # BENCH_ARGS, FULL, EVAL_ARGS are word lists
if [ "$PART" != mnist ]; then
  # 1. Does the capture work at all (small model, fast): graphed training and sampling, compared with eager.
  step graphs-smoke 60 env DDPM_CUDA_GRAPHS=1 $DDPM bench --device "$DEVICE" --config "$PWD/$SMOKE_CONFIG" $SMOKE_ARGS --verify-graphs --out "$R/graphs-smoke.json"
  # 2. The seed config, fp32 with TF32: graphed (opt-in: DDPM_CUDA_GRAPHS=1) then eager, in the same call.
  step fp32-graphs 110 env DDPM_CUDA_GRAPHS=1 $DDPM bench --device "$DEVICE" --config "$M" --batch-sizes $BATCHES $FULL --verify-graphs $BENCH_ARGS --out "$R/fp32-graphs.json"
  step fp32-eager 100 env DDPM_CUDA_GRAPHS=0 $DDPM bench --device "$DEVICE" --config "$M" --batch-sizes $BATCHES $FULL $BENCH_ARGS --out "$R/fp32-eager.json"
  # 3. PyTorch on the same card: eager with SDPA, and the same kernels replayed from CUDA graphs (the floor).
  if python3 -c "import torch" 2> /dev/null; then
    step pytorch-sdpa-graphs 100 env SDPA=1 GRAPH=1 python3 scripts/pytorch_baseline.py "$DEVICE" $PT_BATCHES "$R/pytorch-sdpa-graphs.json"
  else
    echo "== pytorch-sdpa-graphs: skipped (python3 has no torch)"
  fi
  # 4. bf16 (fp32 master weights): graphed; then eager with and without zero-padded attention heads (the last up
  #    block's head size 4 keeps PyTorch's bf16 SDPA on its math kernel unless padded to 8).
  step bf16-graphs 100 env DDPM_CUDA_GRAPHS=1 $DDPM bench --device "$DEVICE" --config "$M" --precision bf16 --batch-sizes $BATCHES $FULL $BENCH_ARGS --out "$R/bf16-graphs.json"
  step bf16-eager-pad 50 env DDPM_CUDA_GRAPHS=0 $DDPM bench --device "$DEVICE" --config "$M" --precision bf16 --batch-sizes $BATCH_BF16 \
    $PAD_ARGS --out "$R/bf16-eager-pad.json"
  step bf16-eager-nopad 50 env DDPM_CUDA_GRAPHS=0 DDPM_ATTENTION_PAD=0 $DDPM bench --device "$DEVICE" --config "$M" --precision bf16 \
    --batch-sizes $BATCH_BF16 $PAD_ARGS --out "$R/bf16-eager-nopad.json"
fi

if [ "$PART" != bench ]; then
  # 5. The seed's experiment: MNIST and the eval classifier from .bundle/mnist, training until the budget minus the
  #    eval's reserve is spent (SIGTERM: ddpm train finishes the step, saves a checkpoint, exits 143), then ddpm eval.
  D="$R/data/mnist"
  mkdir -p "$D"
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    if [ -f ".bundle/mnist/$f.gz" ]; then gunzip -c ".bundle/mnist/$f.gz" > "$D/$f"; else echo "error: .bundle/mnist/$f.gz missing"; fi
  done
  cp .bundle/mnist/classifier.safetensors .bundle/mnist/classifier.json .bundle/mnist/anchors.json "$D/" 2> /dev/null
  sed "s#^  root: .*#  root: $D#" "$PWD/$TRAIN_CONFIG" > "$R/train-config.yaml"
  grep -q "root: $D" "$R/train-config.yaml" || echo "error: could not point $TRAIN_CONFIG at $D"
  train_s=$(( $(left) - EVAL_RESERVE_S ))
  if (( train_s < 30 )); then
    echo "== train: skipped ($train_s s left for training after the eval's reserve)"
  else
    t0=$SECONDS
    # timeout sends SIGTERM at the limit (ddpm train then saves and exits), SIGKILL 60 s later if it hangs.
    timeout -k 60 "$train_s" $DDPM train --device "$DEVICE" --config "$R/train-config.yaml" --out "$R/run" > "$R/train.txt" 2>&1
    echo "== train: rc $? in $((SECONDS - t0)) s (limit $train_s s; 124 = stopped by the budget, as planned)"
    grep -E "^epoch|interrupted|saved|error|img/s" "$R/train.txt" | tail -n 12
    ls -l "$R/run" | grep -E "ckpt|csv"
    [ -f "$R/run/train_log.csv" ] && cat "$R/run/train_log.csv"
    pack
  fi
  if [ ! -f "$R/run/checkpoint.ckpt" ]; then
    echo "== eval: skipped (no checkpoint)"
  elif [ ! -f "$D/classifier.safetensors" ]; then
    echo "== eval: skipped (no classifier in .bundle/mnist: run 'ddpm classifier train' here and bundle it with --mnist)"
  else
    step eval 100000 $DDPM eval --device "$DEVICE" --checkpoint "$R/run/checkpoint.ckpt" --data-dir "$D" --out "$R/eval" $EVAL_ARGS
  fi
fi
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.used --format=csv >> "$R/gpu.txt"
pack
echo "device check done in $((SECONDS - START)) s; results in $OUT/results.tar.gz"
