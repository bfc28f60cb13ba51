#!/usr/bin/env bash
# The GPU measurements of `ddpm bench` and the CLI on a CUDA machine that has PyTorch but no .NET.
# Prepare here:  scripts/bundle.sh  (→ .bundle/ddpm-linux-x64.tar.xz); optionally .bundle/mnist/*.gz (gzipped MNIST
# train IDX files: gzip -c data/mnist/train-images-idx3-ubyte > .bundle/mnist/train-images-idx3-ubyte.gz, same for
# the labels) for a real one-epoch run. scripts/pytorch_baseline.py gives same-card PyTorch numbers and a profile.
# Run there, from the repository root:  OUT=<results dir> scripts/device-check.sh   (≈ 7–8 min on an H200; give the
# device call a 560 s limit: the steps' own limits add up to more, and results are packed after each step)
# Builds nothing; every step has its own time limit, so one failure does not cost the rest. $OUT receives only
# summary.log and results.tar.gz (re-packed after every step), since the device tool returns few files per run.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-device-results}"
R="$PWD/.bundle/results"
rm -rf "$R" && mkdir -p "$OUT" "$R"
exec > >(tee -a "$OUT/summary.log") 2>&1
step() { # name, seconds, command...
  local name="$1" limit="$2"; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$R/$name.txt" 2>&1
  echo "== $name: rc $? in $((SECONDS - t0)) s"
  grep -E "^device|^\| |img/s|ms/step|sampled|epoch 1:|CUDA graphs|CUDAGraph::" "$R/$name.txt" | grep -v -- "---" | tail -n 14
  tar -C "$R/.." -czf "$OUT/results.tar.gz" results
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$R/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
mkdir -p .bundle/run && tar -C .bundle/run -xJf .bundle/ddpm-linux-x64.tar.xz
D="$PWD/.bundle/run/ddpm/ddpm"
C="$PWD/configs"
M="$C/mnist.yaml"

# Now: flat Adam, host reads every 50 steps, fp32 with TF32, cuDNN autotuner (the defaults on cuda).
step after-fp32 90 "$D" bench --device cuda --config "$M" --batch-sizes 64,256 --sample-full --out "$R/after-fp32.json"
# The trainer before the speed work (TorchSharp's per-tensor Adam) is no longer built; its numbers are in
# docs/bench/2026-11-27-h200/run*-before.*. What a host read every step costs the flat optimizer today:
step sync-every-1 75 "$D" bench --device cuda --config "$M" --batch-sizes 64,256 --sync-every 1 --no-sample --out "$R/sync-every-1.json"
# bf16 forward/backward with float32 master weights.
step after-bf16 90 "$D" bench --device cuda --config "$M" --batch-sizes 64,256 --precision bf16 --sample-full --out "$R/after-bf16.json"
# Host cost: at batch 1 the GPU is idle, so the step time is what issuing the kernels costs.
step host-cost 60 "$D" bench --device cuda --config "$M" --batch-sizes 1,64 --sample-batch 1 --out "$R/host-cost.json"
step pytorch-reference 90 python3 scripts/pytorch_baseline.py cuda 64,256 "$R/pytorch-reference.json"
step pytorch-sdpa-profile 120 env SDPA=1 PROFILE=1 python3 scripts/pytorch_baseline.py cuda 64,256 "$R/pytorch-sdpa.json"
# What CUDA graphs would give this architecture (same kernels replayed without per-kernel host cost), and whether
# libtorch exports what a C# capture would call.
step pytorch-graphs 120 env SDPA=1 GRAPH=1 python3 scripts/pytorch_baseline.py cuda 64 "$R/pytorch-graphs.json"
graph_symbols() {
  local lib
  lib="$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
  nm -D --defined-only "$lib/libtorch_cuda.so" | c++filt | grep -E 'CUDAGraph::|torch_(set_current|get)_cuda_stream'
  nm -D --defined-only "$lib/libc10_cuda.so" | c++filt | grep -E 'getStreamFromPool|setCurrentCUDAStream'
  nm -D --defined-only "$lib/libtorch_cuda.so" | grep -E 'CUDAGraph|cuda_stream'
}
export -f graph_symbols
step cudagraph-symbols 30 bash -c graph_symbols
if [ -f .bundle/mnist/train-images-idx3-ubyte.gz ]; then
  cat > "$R/mnist-gpu.yaml" <<YAML
dataset_params:
  name: idx
  images: $PWD/.bundle/mnist/train-images-idx3-ubyte.gz
  labels: $PWD/.bundle/mnist/train-labels-idx1-ubyte.gz
YAML
  sed -n '/^diffusion_params:/,$p' "$M" | sed 's/num_epochs: 64/num_epochs: 1/' >> "$R/mnist-gpu.yaml"
  # The seed's experiment for one epoch through the CLI, then 100 images × 1000 DDPM steps from it.
  step train-1-epoch 90 "$D" train --device cuda --config "$R/mnist-gpu.yaml" --out "$R/run"
  step sample-1000 40 "$D" sample --device cuda --checkpoint "$R/run/checkpoint.ckpt" --num 100 --frames 0 --out "$R/samples"
  rm -f "$R"/run/*.ckpt
fi
step quick 40 "$D" bench --device cuda --config "$C/quick.yaml" --batch-sizes 64,256 --out "$R/quick.json"
nvidia-smi --query-gpu=name,memory.used --format=csv >> "$R/gpu.txt"
tar -C "$R/.." -czf "$OUT/results.tar.gz" results
