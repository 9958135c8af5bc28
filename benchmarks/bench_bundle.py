"""Bundles at real size, and what running one costs at start-up against a warm Hugging Face cache.

The random-weight so400m checkpoint (the real architecture, text + vision, ~4.5 GB, see
``bench_encoder.py``) and random Large (1152 → 1024 → 512 → 256 → 1) and Small (1152 → 128 → 32 → 1)
heads in the released layouts are served under the released ids by the loopback Hub of
``tests/hub_server.py``. One ``emonet-face predict`` warms the Hugging Face cache (and the OpenVINO
conversion cache) from it; ``emonet-face download`` then writes the Large and Small bundles and a
Large bundle ``--with-openvino``, and ``download --check`` prints each. Then, each in a fresh
process, interleaved over ``--rounds`` (server stopped, ``HF_HUB_OFFLINE=1``):

* ``hub``: ``--model large`` from the warm HF cache, conversion cache warm;
* ``bundle``: ``--model BUNDLE`` (no HF cache: an empty ``HF_HOME``), its conversion cached by a warm-up run,
  its files checked before (untouched since: not hashed again);
* ``bundle-hash``: the same with the record of earlier checks removed (every file it reads hashed);
* ``bundle-ov``: ``--model BUNDLE`` written ``--with-openvino`` (the stored graph, no conversion);
* ``hub-torch`` / ``bundle-torch``: the same with ``--backend torch``;

each timing import, ``EmoNetFace.from_pretrained`` (bundles: SHA-256 of every file included) and one
photo scored; and the checksum pass alone. First starts: ``bundle-ov`` and ``bundle`` with an empty
conversion cache. Prints seconds and ratios against ``hub`` from the same run.

    python benchmarks/bench_bundle.py --workdir /tmp/emonet-face-bench-bundle --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

from bench_encoder import CHECKPOINT, build_checkpoint  # noqa: E402

SMALL_HEADS = (128, 32)
LARGE_HEADS = (1024, 512, 256)


def build_heads(folder: Path, hidden: tuple[int, ...], seed: int) -> Path:
    """44 random heads of real width in the released layout (``model_<key>_best.pth`` + neutral stats)."""
    if any(folder.glob("*neutral*")):
        return folder
    import torch

    from emonet_face import taxonomy as tx
    from emonet_face.heads import FusedHeads, HeadArchitecture, save_heads

    torch.manual_seed(seed)
    heads = FusedHeads(tx.HEAD_KEYS, HeadArchitecture(1152, hidden), [0.01 * i for i in range(44)])
    save_heads(heads, folder)
    return folder


def probe(model: str, backend: str, photo: str) -> None:
    """Fresh process: seconds for import, model load and one photo, as JSON on the last line."""
    start = time.perf_counter()
    from emonet_face.pipeline import EmoNetFace
    imported = time.perf_counter()
    net = EmoNetFace.from_pretrained(model, backend=backend, device="cpu")
    loaded = time.perf_counter()
    table = net.predict([photo], num_workers=0)
    scored = time.perf_counter()
    assert table["error"].isna().all(), table["error"].tolist()
    described = net.encoder.describe()
    print(
        json.dumps(
            {
                "import_s": imported - start,
                "load_s": loaded - imported,
                "first_photo_s": scored - loaded,
                "total_s": scored - start,
                "backend": described["backend"],
                "precision": described["precision"],
                "converted_now": not getattr(net.encoder, "cache_hit", True),
            }
        )
    )


def verify_probe(bundle: str) -> None:
    from emonet_face.bundle import open_bundle, verify_bundle

    start = time.perf_counter()
    opened = open_bundle(bundle, verify=False)
    verify_bundle(opened, rehash=True)
    size = sum(f["size"] for f in opened.manifest["files"].values())
    print(json.dumps({"verify_s": time.perf_counter() - start, "bytes": size}))


def run_probe(args: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, env={**os.environ, **env}, check=False
    )
    if done.returncode:
        raise SystemExit(f"probe {args} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cli(args: list[str], env: dict[str, str]) -> str:
    tick = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "emonet_face", *args], capture_output=True, text=True, env={**os.environ, **env}
    )
    if done.returncode:
        raise SystemExit(f"emonet-face {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    print(f"  ({time.perf_counter() - tick:.1f} s) emonet-face {' '.join(args[:2])} …", flush=True)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/emonet-face-bench-bundle"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--probe", nargs=3, metavar=("MODEL", "BACKEND", "PHOTO"), help=argparse.SUPPRESS)
    parser.add_argument("--verify-probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        return probe(*args.probe)
    if args.verify_probe:
        return verify_probe(args.verify_probe)

    from PIL import Image

    from emonet_face.hub import DEFAULT_ENCODER, MODELS
    from hub_server import HubServer, encoder_files, released_heads_files

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = build_checkpoint(work / CHECKPOINT)
    large = build_heads(work / "heads-large", LARGE_HEADS, 0)
    small = build_heads(work / "heads-small", SMALL_HEADS, 1)
    photo = work / "photo.jpg"
    Image.new("RGB", (640, 480), (150, 120, 100)).save(photo)
    for stale in ("hf-home", "empty-hf-home", "compiled", "bundle-large", "bundle-small", "bundle-large-ov"):
        shutil.rmtree(work / stale, ignore_errors=True)
    (work / "empty-hf-home").mkdir()

    server = HubServer().start()
    server.repo(DEFAULT_ENCODER).commit(encoder_files(checkpoint))
    server.repo(MODELS["large"].heads).commit(released_heads_files(large))
    server.repo(MODELS["small"].heads).commit(released_heads_files(small))
    online = server.env(HF_HOME=str(work / "hf-home"), EMONET_FACE_CACHE=str(work / "compiled"))
    print("warming the Hugging Face cache and the conversion cache from the loopback Hub:")
    cli(["predict", str(photo), "--out", str(work / "warm.csv"), "--faces", "none", "--quiet"], online)
    cli(
        ["predict", str(photo), "--out", str(work / "warm.csv"), "--model", "small", "--faces", "none", "--quiet"],
        online,
    )
    bundles = {"large": work / "bundle-large", "small": work / "bundle-small", "large-ov": work / "bundle-large-ov"}
    cli(["download", "large", "--out", str(bundles["large"])], online)
    cli(["download", "small", "--out", str(bundles["small"])], online)
    cli(["download", "large", "--out", str(bundles["large-ov"]), "--with-openvino"], online)
    server.stop()

    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(work / "hf-home"), "EMONET_FACE_CACHE": str(work / "compiled")}
    air = {**offline, "HF_HOME": str(work / "empty-hf-home")}
    hub_cache = work / "hf-home" / "hub"
    print("\n== bundles ==")
    for folder in bundles.values():
        print(cli(["download", "--check", str(folder)], air).rstrip())
    print(f"(the Hugging Face cache these came from: {_du(hub_cache) / 1e9:.2f} GB)")

    print("\nfirst starts (empty conversion cache):")
    cold = {}
    for name, model in (("bundle-ov", bundles["large-ov"]), ("bundle", bundles["large"])):
        fresh = work / f"compiled-cold-{name}"
        shutil.rmtree(fresh, ignore_errors=True)
        cold[name] = run_probe(["--probe", str(model), "auto", str(photo)], {**air, "EMONET_FACE_CACHE": str(fresh)})
        print(f"  {name:14s} {_fmt(cold[name])}")
    for name in ("large", "small"):  # their conversions, cached for the rounds (as the Hub's was by the warm-up)
        run_probe(["--probe", str(bundles[name]), "auto", str(photo)], air)

    stamps = work / "compiled" / "checked-files"  # bundle files hashed before and untouched since
    ways = {
        "hub": ("large", "auto", offline),
        "bundle-hash": (str(bundles["large"]), "auto", air),  # run with the stamps removed: hashes 2 GB
        "bundle": (str(bundles["large"]), "auto", air),
        "bundle-ov": (str(bundles["large-ov"]), "auto", air),
        "hub-torch": ("large", "torch", offline),
        "bundle-torch": (str(bundles["large"]), "torch", air),
        "hub-small": ("small", "auto", offline),
        "bundle-small": (str(bundles["small"]), "auto", air),
    }
    results: dict[str, list[dict]] = {name: [] for name in ways}
    verify: list[dict] = []
    for round_ in range(args.rounds):
        print(f"\nround {round_ + 1}:")
        for name, (model, backend, env) in ways.items():
            if name == "bundle-hash":
                shutil.rmtree(stamps, ignore_errors=True)
            results[name].append(run_probe(["--probe", model, backend, str(photo)], env))
            print(f"  {name:14s} {_fmt(results[name][-1])}", flush=True)
        verify.append(run_probe(["--verify-probe", str(bundles["large"])], air))
        print(f"  checksums      {verify[-1]['verify_s']:.2f} s for {verify[-1]['bytes'] / 1e9:.2f} GB")

    print(f"\n== start-up, median of {args.rounds} rounds (ratio to hub of the same backend) ==")
    med = {
        name: {k: statistics.median(r[k] for r in runs) for k in ("load_s", "total_s")}
        for name, runs in results.items()
    }
    for name in ways:
        base = {"torch": "hub-torch", "small": "hub-small"}.get(name.rsplit("-", 1)[-1], "hub")
        print(
            f"  {name:14s} load {med[name]['load_s']:6.2f} s ({med[name]['load_s'] / med[base]['load_s']:.2f}x)   "
            f"import+load+1 photo {med[name]['total_s']:6.2f} s ({med[name]['total_s'] / med[base]['total_s']:.2f}x)"
        )
    v = statistics.median(r["verify_s"] for r in verify)
    print(f"  SHA-256 of the Large bundle alone: {v:.2f} s ({verify[0]['bytes'] / 1e9 / v:.2f} GB/s)")


def _fmt(r: dict) -> str:
    return (
        f"import {r['import_s']:5.2f} s  load {r['load_s']:6.2f} s  1 photo {r['first_photo_s']:5.2f} s  "
        f"total {r['total_s']:6.2f} s  [{r['backend']} {r['precision']}{', converted now' if r['converted_now'] else ''}]"
    )


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


if __name__ == "__main__":
    main()
