"""The wheel's smoke test, run by .ci/smoke_wheel.sh with the fresh virtualenv's Python, from outside
the checkout. Sub-commands:

* ``model DIR``: the tests' tiny model (tests/tiny_models.py: a 2-layer SigLIP + 44 heads in the
  released layouts) in DIR/encoder and DIR/heads, built by the installed package.
* ``rows CSV``: the score table has a face row with a box and the 40 + 4 score columns.
* ``serve URL``: the server answers /health, /v1/info, the page and each of its static files.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def installed_package() -> None:
    """The package imported is the installed wheel, not the checkout's src/."""
    import emonet_face

    where = Path(emonet_face.__file__).resolve()
    if CHECKOUT / "src" in where.parents:
        sys.exit(f"smoke: emonet_face was imported from the checkout ({where}), not from the wheel")


def build_model(folder: Path) -> None:
    sys.path.insert(0, str(CHECKOUT / "tests"))  # tiny_models.py imports only torch, transformers, emonet_face
    from tiny_models import build_tiny_heads, build_tiny_siglip

    installed_package()
    for name, build in (("encoder", build_tiny_siglip), ("heads", build_tiny_heads)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        build(folder / name)


def check_rows(path: Path) -> None:
    import pandas as pd

    from emonet_face.taxonomy import HEAD_KEYS

    table = pd.read_csv(path)
    faces = table.dropna(subset=["face", "box_w"])
    missing = [key for key in HEAD_KEYS if key not in table.columns]
    if faces.empty or missing or ("error" in table and table["error"].notna().any()):
        sys.exit(f"smoke: {path}: expected a face row with 44 scores and no error, got\n{table.head()}")
    print(f"smoke: {len(faces)} face row(s), box {[float(faces.iloc[0][c]) for c in ('box_x', 'box_y', 'box_w', 'box_h')]}")


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def check_server(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, body = get(f"{url}/health")
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"smoke: {url}/health did not answer within {timeout:.0f} s")
            time.sleep(0.5)
    if status != 200 or json.loads(body) != {"status": "ok"}:
        sys.exit(f"smoke: /health answered {status} {body[:200]!r}")
    info = json.loads(get(f"{url}/v1/info")[1])
    page = get(f"{url}/")[1].decode()
    assets = sorted({a for a in re.findall(r'(?:src|href)="(/?static/[^"]+)"', page)})
    if not assets:
        sys.exit("smoke: the page links no static files")
    for asset in assets:
        status, body = get(f"{url}/{asset.lstrip('/')}")
        if status != 200 or not body:
            sys.exit(f"smoke: {asset} answered {status} ({len(body)} bytes)")
    print(f"smoke: /health ok, /v1/info version {info.get('package_version')}, page + {len(assets)} static files")


if __name__ == "__main__":
    command, argument = sys.argv[1], sys.argv[2]
    {"model": lambda: build_model(Path(argument)), "rows": lambda: check_rows(Path(argument)),
     "serve": lambda: check_server(argument)}[command]()  # fmt: skip
