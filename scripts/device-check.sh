#!/usr/bin/env bash
# The GPU measurements of `ddpm bench` and the CLI on a CUDA machine that has PyTorch but no .NET.
# Prepare here:  scripts/bundle.sh  (→ .bundle/ddpm-linux-x64.tar.xz); optionally .bundle/mnist/*.gz (gzipped MNIST
# train IDX files, made by `gzip -c data/mnist/train-*-ubyte`) for a real one-epoch run. scripts/pytorch_baseline.py gives a same-card PyTorch baseline.
# Run there, from the repository root:  OUT=<results dir> scripts/device-check.sh
# Builds nothing; every step has its own time limit and logs to $OUT, so one failure does not cost the rest.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-device-results}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/summary.log") 2>&1
step() { # name, seconds, command...
  local name="$1" limit="$2"; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  echo "== $name: rc $? in $((SECONDS - t0)) s"
  tail -n 14 "$OUT/$name.txt"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
mkdir -p .bundle/run && tar -C .bundle/run -xJf .bundle/ddpm-linux-x64.tar.xz
D="$PWD/.bundle/run/ddpm/ddpm"
C="$PWD/configs"

M="$C/mnist.yaml"
# After: flat Adam, host reads every 50 steps, fp32 with TF32 (the defaults on cuda).
step after-fp32 90 "$D" bench --device cuda --config "$M" --batch-sizes 64,256 --sample-full --out "$OUT/after-fp32.json"
# Before: TorchSharp's per-tensor Adam and a host read every step (what the trainer did before this change).
step before 75 "$D" bench --device cuda --config "$M" --batch-sizes 64,256 --optimizer per-tensor --sync-every 1 --no-sample --out "$OUT/before.json"
if [ -f scripts/pytorch_baseline.py ]; then
  step pytorch-reference 90 python3 scripts/pytorch_baseline.py cuda 64,256 "$OUT/pytorch-reference.json"
fi
# bf16 forward/backward with float32 master weights.
step after-bf16 75 "$D" bench --device cuda --config "$M" --batch-sizes 64,256 --precision bf16 --sample-full --out "$OUT/after-bf16.json"
if [ -f .bundle/mnist/train-images-idx3-ubyte.gz ]; then
  cat > "$OUT/mnist-gpu.yaml" <<YAML
dataset_params:
  name: idx
  images: $PWD/.bundle/mnist/train-images-idx3-ubyte.gz
  labels: $PWD/.bundle/mnist/train-labels-idx1-ubyte.gz
YAML
  sed -n '/^diffusion_params:/,$p' "$M" | sed 's/num_epochs: 64/num_epochs: 1/' >> "$OUT/mnist-gpu.yaml"
  # The seed's experiment for one epoch through the CLI, then 100 images × 1000 DDPM steps from it.
  step train-1-epoch 90 "$D" train --device cuda --config "$OUT/mnist-gpu.yaml" --out "$OUT/run"
  step sample-1000 40 "$D" sample --device cuda --checkpoint "$OUT/run/checkpoint.ckpt" --num 100 --frames 0 --out "$OUT/samples"
  rm -f "$OUT"/run/*.ckpt
fi
# cuDNN's autotuner, fp32 and bf16.
step cudnn-fp32 60 env DDPM_CUDNN_BENCHMARK=1 "$D" bench --device cuda --config "$M" --batch-sizes 64,256 --out "$OUT/cudnn-fp32.json"
step cudnn-bf16 60 env DDPM_CUDNN_BENCHMARK=1 "$D" bench --device cuda --config "$M" --batch-sizes 64,256 --precision bf16 --out "$OUT/cudnn-bf16.json"
# One change at a time: flat Adam but a host read every step.
step flat-sync1 40 "$D" bench --device cuda --config "$M" --batch-sizes 64 --sync-every 1 --no-sample --out "$OUT/flat-sync1.json"
step quick 40 "$D" bench --device cuda --config "$C/quick.yaml" --batch-sizes 64,256 --out "$OUT/quick.json"
nvidia-smi --query-gpu=name,memory.used --format=csv >> "$OUT/gpu.txt"
