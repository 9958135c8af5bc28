"""OpenVINO CPU settings for the real-size so400m vision tower, side by side in one run: performance
hint (LATENCY vs THROUGHPUT), number of streams, ``INFERENCE_NUM_THREADS``, dynamic vs static batch
shape. Each setting compiles the same cached f32 IR in its own fresh process and times one batch
(after a warm-up batch of the same size); the table prints s/img and the ratio to the first setting
(the one ``emonet_face.runtime.backends`` uses).

    python benchmarks/bench_openvino_tuning.py --ir /tmp/emonet-face-bench-encoder/compiled/openvino-*/encoder.xml

THROUGHPUT / several streams only pay off when the batch is split over parallel infer requests
(``AsyncInferQueue``): a single synchronous request runs on one stream's threads. Both ways are timed,
and so are micro-batches (chunks of 1 or 2 images) on one stream or several.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

# name: (compile config, static batch shape?, split: False = one request for the whole batch, True = one
# chunk per stream, N = chunks of N images, all run through an AsyncInferQueue with one request per stream)
SETTINGS: dict[str, tuple[dict, bool, bool | int]] = {
    "latency-2t-dynamic (current)": ({"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2}, False, False),
    "latency-2t-static": ({"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2}, True, False),
    "latency-default-threads": ({"PERFORMANCE_HINT": "LATENCY"}, False, False),
    "throughput-sync-1-request": ({"PERFORMANCE_HINT": "THROUGHPUT"}, False, False),
    "throughput-async-split": ({"PERFORMANCE_HINT": "THROUGHPUT"}, False, True),
    "2-streams-1t-async-split": ({"NUM_STREAMS": 2, "INFERENCE_NUM_THREADS": 2}, False, True),
    "2-streams-2t-each-async-split": ({"NUM_STREAMS": 2, "INFERENCE_NUM_THREADS": 4}, False, True),
    "latency-2t-chunks-of-1": ({"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2}, False, 1),
    "throughput-chunks-of-1": ({"PERFORMANCE_HINT": "THROUGHPUT"}, False, 1),
    "throughput-chunks-of-2": ({"PERFORMANCE_HINT": "THROUGHPUT"}, False, 2),
}


def probe(name: str, ir: str, batch: int) -> None:
    import openvino as ov

    config, static, split = SETTINGS[name]
    core = ov.Core()
    model = core.read_model(ir)
    if static:
        model.reshape({0: ov.PartialShape([batch, 3, 384, 384])})
    tick = time.perf_counter()
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", **config})
    compile_s = time.perf_counter() - tick
    streams = int(compiled.get_property("NUM_STREAMS"))
    threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
    pixels = (np.random.default_rng(0).random((batch, 3, 384, 384), dtype=np.float32) * 2 - 1).astype(np.float32)

    if split is not False:
        queue = ov.AsyncInferQueue(compiled, streams)
        chunks = np.array_split(pixels, streams if split is True else -(-batch // split))
        results: list = [None] * len(chunks)
        queue.set_callback(lambda request, i: results.__setitem__(i, request.get_output_tensor(0).data.copy()))

        def run() -> np.ndarray:
            for i, chunk in enumerate(chunks):
                queue.start_async({0: chunk}, i)
            queue.wait_all()
            return np.concatenate(results)
    else:
        request = compiled.create_infer_request()

        def run() -> np.ndarray:
            return np.array(request.infer({0: pixels})[0])

    run()  # warm-up: first inference allocates
    tick = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - tick
    print(
        json.dumps(
            {
                "setting": name,
                "s_per_img": seconds / batch,
                "compile_s": compile_s,
                "streams": streams,
                "threads": threads,
                "checksum": float(np.abs(out).sum()),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ir", required=True, help="encoder.xml of a converted f32 vision tower")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma list (default: all)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe, args.ir, args.batch)
        return
    rows = []
    for name in args.settings.split(","):
        command = [sys.executable, __file__, "--probe", name, "--ir", args.ir, "--batch", str(args.batch)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  {json.dumps(rows[-1])}", flush=True)
    base = rows[0]["s_per_img"]
    print(f"\n| setting (f32, batch {args.batch}) | streams | threads | s/img | vs first | compile, s | peak RSS, MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['setting']} | {row['streams']} | {row['threads']} | {row['s_per_img']:.2f} | "
            f"{base / row['s_per_img']:.2f}x | {row['compile_s']:.1f} | {row['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
