#!/usr/bin/env bash
# Publishes the CLI self-contained for linux-x64 WITHOUT the CPU libtorch, for GPU machines that have PyTorch but no
# .NET: the launcher `ddpm` finds PyTorch's torch/lib (or $DDPM_LIBTORCH) and the app loads libtorch (CUDA) from there.
# The CUDA-graph shim (libddpm_cuda_graph.so, built with g++) ships beside it.
# Usage: scripts/bundle.sh [--mnist DIR]
#   --mnist DIR: also .bundle/mnist/ for scripts/device-check.sh: DIR's four MNIST IDX files gzipped, and the eval
#   classifier cached there (classifier.safetensors/.json, anchors.json) when 'ddpm classifier train' made it.
# Output: .bundle/ddpm/, .bundle/ddpm-linux-x64.tar.xz (and .bundle/mnist/)
set -euo pipefail
cd "$(dirname "$0")/.."
mnist=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mnist) mnist="${2:?--mnist needs a folder}"; shift 2 ;;
    *) echo "usage: scripts/bundle.sh [--mnist DIR]" >&2; exit 2 ;;
  esac
done
out=.bundle/ddpm
rm -rf "$out" && mkdir -p "$out"
dotnet publish src/Ddpm.Cli -c Release -r linux-x64 --self-contained -nologo -v quiet \
  -p:DdpmCpuLibTorch=false -p:DdpmForceGlibcxxPatch=true -o "$out"
[ -f "$out/libddpm_cuda_graph.so" ] || echo "warning: no libddpm_cuda_graph.so in the bundle (no g++ here?): CUDA graphs will report unavailable" >&2
cat > "$out/ddpm" <<'LAUNCHER'
#!/usr/bin/env bash
# Runs ddpm on the libtorch of a PyTorch installation (CUDA included): $DDPM_LIBTORCH, else python3's torch/lib.
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${DDPM_LIBTORCH:-}" ]; then
  DDPM_LIBTORCH="$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)" || true
fi
if [ -z "${DDPM_LIBTORCH:-}" ] || [ ! -f "$DDPM_LIBTORCH/libtorch.so" ]; then
  echo "error: no libtorch found: install PyTorch (python3 -c 'import torch' must work) or set DDPM_LIBTORCH to its torch/lib folder" >&2
  exit 1
fi
export DDPM_LIBTORCH
export LD_LIBRARY_PATH="$DDPM_LIBTORCH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$here/Ddpm.Cli" "$@"
LAUNCHER
chmod +x "$out/ddpm"
cp -r configs "$out/configs"
tar -C .bundle -cJf .bundle/ddpm-linux-x64.tar.xz ddpm
du -sh "$out" .bundle/ddpm-linux-x64.tar.xz
if [ -n "$mnist" ]; then
  rm -rf .bundle/mnist && mkdir -p .bundle/mnist
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    [ -f "$mnist/$f" ] || { echo "error: $mnist/$f is missing (ddpm data mnist --dir $mnist)" >&2; exit 1; }
    gzip -c "$mnist/$f" > ".bundle/mnist/$f.gz"
  done
  for f in classifier.safetensors classifier.json anchors.json; do
    if [ -f "$mnist/$f" ]; then cp "$mnist/$f" .bundle/mnist/; fi
  done
  [ -f .bundle/mnist/classifier.safetensors ] ||
    echo "warning: no trained classifier in $mnist ('ddpm classifier train --dir $mnist'): the device check will skip ddpm eval" >&2
  du -sh .bundle/mnist
fi
