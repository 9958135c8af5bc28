"""Where a ``predict`` run's time goes, float32 default against ``--dtype int8``: each way in a fresh
process, phase by phase (imports, model load = checkpoint + conversion cache + runtime session,
the scoring of the photos, batch by batch). Run it twice: the first run fills the conversion cache
(conversion, quantisation), the second shows what every later run pays.

    PYTHONPATH=src python benchmarks/int8_startup.py PHOTOS --encoder ENC --heads HEADS [--batch-size 8]

Prints one row per way: seconds per phase and the whole process; the ratio of the totals is the
end-to-end speed-up (quote the CPU flags beside it: ``grep -o -w -E 'avx2|avx512f|avx512_vnni|amx_int8'
/proc/cpuinfo | sort -u``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, warnings
start = time.perf_counter()
from emonet_face import EmoNetFace
from emonet_face.inputs import discover_inputs
imported = time.perf_counter()
args = json.loads(sys.argv[1])
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    net = EmoNetFace.from_pretrained(encoder=args["encoder"], heads=args["heads"], device="cpu", dtype=args["dtype"])
loaded = time.perf_counter()
batches = []
for frame in net.predict_batches(discover_inputs(args["photos"]), faces=args["faces"], batch_size=args["batch_size"]):
    batches.append(time.perf_counter())
done = time.perf_counter()
print(json.dumps({"import": imported - start, "load": loaded - imported, "first_batch": batches[0] - loaded,
                  "other_batches": done - batches[0], "encoder": net.describe()["encoder"]}, default=str))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--heads", required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--faces", default="none")
    parser.add_argument("--ways", default="auto,int8", help="--dtype values, comma-separated")
    args = parser.parse_args()
    rows = {}
    for dtype in args.ways.split(","):
        spec = {"photos": args.photos, "encoder": args.encoder, "heads": args.heads, "dtype": dtype,
                "batch_size": args.batch_size, "faces": args.faces}  # fmt: skip
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"--dtype {dtype} failed:\n{out.stderr[-3000:]}")
        phases = json.loads(out.stdout.strip().splitlines()[-1])
        phases["process"] = time.perf_counter() - start
        rows[dtype] = phases
    base = rows[args.ways.split(",")[0]]["process"]
    print(f"{'way':8s} {'runtime':18s} {'import':>7s} {'load':>7s} {'batch 1':>8s} {'rest':>8s} {'process':>8s} {'speed-up':>8s}")
    for dtype, r in rows.items():
        runtime = f"{r['encoder'].get('backend')} {r['encoder'].get('precision')}"
        print(f"{dtype:8s} {runtime:18s} {r['import']:7.2f} {r['load']:7.2f} {r['first_batch']:8.2f} "
              f"{r['other_batches']:8.2f} {r['process']:8.2f} {base / r['process']:7.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
