#!/usr/bin/env bash
# Publishes the CLI self-contained for linux-x64 WITHOUT the CPU libtorch, for GPU machines that have PyTorch but no
# .NET: the launcher `ddpm` finds PyTorch's torch/lib (or $DDPM_LIBTORCH) and the app loads libtorch (CUDA) from there.
# Output: .bundle/ddpm/ and .bundle/ddpm-linux-x64.tar.xz
set -euo pipefail
cd "$(dirname "$0")/.."
out=.bundle/ddpm
rm -rf "$out" && mkdir -p "$out"
dotnet publish src/Ddpm.Cli -c Release -r linux-x64 --self-contained -nologo -v quiet \
  -p:DdpmCpuLibTorch=false -p:DdpmForceGlibcxxPatch=true -o "$out"
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
