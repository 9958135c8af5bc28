#!/usr/bin/env bash
# The package as users get it: build the sdist and, from it, the wheel (python -m build); check that
# the wheel holds the licence and the package data; install it into a fresh virtualenv (CPU torch
# first, not editable) and, from a folder outside the checkout, run `emonet-face --version`,
# `predict --faces detect` on a shipped photo with the tests' tiny model, the one-line errors of
# features whose extra is missing, then `serve` (with the [serve] extra) answering /health and the
# page's static files. Called by .ci/run after the tests. 10.8 min on a loaded 2-core machine, of
# which ~1.5 min build, ~8 min installs (~1.3 GB from PyPI, no pip cache here), ~1.5 min checks.
# Usage: .ci/smoke_wheel.sh [WORKDIR]   (a temporary folder by default, removed at the end)
set -euo pipefail
CHECKOUT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d)}"
KEEP_WORK=$#
mkdir -p "$WORK"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill -INT "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" || true; fi
    [ "$KEEP_WORK" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
say() { echo "smoke [${SECONDS} s]: $*"; }
fail() { echo "smoke: FAILED: $*" >&2; exit 1; }

say "building the sdist and the wheel into $WORK/dist"
python -m build --outdir "$WORK/dist" "$CHECKOUT" >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; fail "python -m build"; }
WHEEL="$(ls "$WORK"/dist/emonet_face-*.whl)"
SDIST="$(ls "$WORK"/dist/emonet_face-*.tar.gz)"
VERSION="$(python -c 'import sys, re; print(re.search(r"emonet_face-([^-]+)-", sys.argv[1]).group(1))' "$WHEEL")"
python - "$WHEEL" "$SDIST" <<'PY' || fail "wheel or sdist contents"
import sys, tarfile, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ["licenses/LICENSE", "emonet_face/faces/models/blazeface_full_range.tflite", "emonet_face/serve/static/app.js",
        "emonet_face/serve/static/index.html", "emonet_face/py.typed"]
missing = [n for n in need if not any(name.endswith(n) for name in names)]
sdist = tarfile.open(sys.argv[2]).getnames()
missing += [f"sdist: {n}" for n in ("LICENSE", "CHANGELOG.md", "pyproject.toml") if not any(s.endswith("/" + n) for s in sdist)]
sys.exit(f"missing: {missing}" if missing else 0)
PY
say "wheel $(basename "$WHEEL") and sdist hold the licence and the package data"

VENV="$WORK/venv"
python -m venv "$VENV"
pip_install() {  # quietly; pip's output is shown when it fails
    "$VENV/bin/python" -m pip install -q "$@" >"$WORK/pip.log" 2>&1 || { tail -30 "$WORK/pip.log"; fail "pip install $*"; }
}
pip_install "torch==2.13.0"  # the CPU build, as .ci/run and the README install it
pip_install "$WHEEL"
cd "$WORK"  # outside the checkout: nothing of src/ or tests/ on the path
export HF_HUB_OFFLINE=1 EMONET_FACE_CACHE="$WORK/cache" MPLBACKEND=Agg
unset PYTHONPATH
EMONET="$VENV/bin/emonet-face"

[ "$("$EMONET" --version)" = "emonet-face $VERSION" ] || fail "--version printed '$("$EMONET" --version)'"
say "--version: $("$EMONET" --version)"

"$VENV/bin/python" "$CHECKOUT/.ci/smoke.py" model "$WORK/model" >"$WORK/model.log" 2>&1 || { cat "$WORK/model.log"; fail "tiny model"; }
MODEL=(--encoder "$WORK/model/encoder" --heads "$WORK/model/heads")
cp "$CHECKOUT/tests/data/photos/astronaut.jpg" "$WORK/astronaut.jpg"
"$EMONET" predict astronaut.jpg "${MODEL[@]}" --faces detect --out scores.csv || fail "predict --faces detect"
"$VENV/bin/python" "$CHECKOUT/.ci/smoke.py" rows scores.csv || fail "the score table"

# The lean core: a feature whose extra is missing stops with one line naming the extra (exit 2).
expect_extra() {  # EXTRA COMMAND...
    local extra=$1; shift
    local rc=0; "$@" >"$WORK/extra.out" 2>&1 || rc=$?
    [ "$rc" = 2 ] && [ "$(wc -l <"$WORK/extra.out")" = 1 ] && grep -q "pip install 'emonet-face\[$extra\]'" "$WORK/extra.out" \
        || { cat "$WORK/extra.out"; fail "expected exit 2 and one line naming [$extra], got exit $rc"; }
    say "without [$extra]: $(cat "$WORK/extra.out")"
}
expect_extra dlib "$EMONET" predict astronaut.jpg "${MODEL[@]}" --detector dlib --out dlib.csv
expect_extra serve "$EMONET" serve "${MODEL[@]}"

pip_install "$WHEEL[serve]"
PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$EMONET" serve "${MODEL[@]}" --port "$PORT" >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
"$VENV/bin/python" "$CHECKOUT/.ci/smoke.py" serve "http://127.0.0.1:$PORT" || { cat "$WORK/serve.log"; fail "serve"; }
kill -INT "$SERVER_PID"
rc=0; wait "$SERVER_PID" || rc=$?
SERVER_PID=""
[ "$rc" = 0 ] || { cat "$WORK/serve.log"; fail "serve exited $rc after SIGINT"; }
say "serve stopped cleanly; all passed"
