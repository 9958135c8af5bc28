"""The loaded service: the model, its batcher, the decode pool and the explain pool, built once per
app (:func:`emonet_face.serve.app.create_app`) and handed to each route by
:func:`emonet_face.serve.deps.get_service`. Its methods run in the pools, never on the event loop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from emonet_face.explain import Explainer, placement_for
from emonet_face.faces import get_detector
from emonet_face.media import Item, media_stages
from emonet_face.options import MediaOptions
from emonet_face.pipeline import EmoNetFace, Scored
from emonet_face.serve.batcher import Batcher
from emonet_face.serve.config import ServeConfig, load_model
from emonet_face.serve.records import records
from emonet_face.serve.uploads import Upload
from emonet_face.tracking import FaceTracker

__all__ = ["ExplainRequest", "Service"]


@dataclass
class ExplainRequest:
    """What ``/v1/explain`` was asked for."""

    faces: str
    face: int | None
    emotions: str | None
    top: int
    method: str
    options: dict[str, int]


class Service:
    """The loaded model, its batcher and the decode pool; built once by the app's lifespan."""

    def __init__(self, config: ServeConfig, loader: Callable[[ServeConfig], EmoNetFace] = load_model) -> None:
        self.config = config
        self.loader = loader
        self.net: EmoNetFace | None = None
        self.batcher: Batcher | None = None
        self.load_error: str | None = None
        self.in_progress = 0
        self.streams = 0
        """Live streams open now (``/v1/stream``)."""
        self.pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="emonet-face-decode")
        self.explain_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emonet-face-explain")
        """Explanations take seconds of forward and backward passes: one at a time, beside the batcher."""
        self._local = threading.local()

    def load(self) -> None:
        """Load the model and start the encoder thread (``/health`` says ok only after this)."""
        net = self.loader(self.config)
        self.batcher = Batcher(
            net.scorer.encode,
            max_batch_size=self.config.max_batch_size,
            timeout_s=self.config.batch_timeout_ms / 1000,
            max_queue=self.config.max_queue,
        ).start()
        self._warm_decode_threads()
        self.net = net

    def _warm_decode_threads(self) -> None:
        """Start every decode thread and load its face detector now, before ``/health`` says ok: the
        first requests do not wait for it, and the server's memory is what it will stay (loaded on
        first use, one detector per thread made a fresh server grow by tens of MB under its first
        streams, which looked like a leak)."""
        if self.config.faces == "none":
            return
        workers = self.config.workers
        barrier = threading.Barrier(workers)  # each task holds its thread until all have one

        def warm() -> None:
            self.detector()
            barrier.wait(timeout=120)

        for started in [self.pool.submit(warm) for _ in range(workers)]:
            started.result()

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()
        self.pool.shutdown(wait=True)
        self.explain_pool.shutdown(wait=True)

    # runs in the decode pool ------------------------------------------------------------------
    def detector(self) -> Any:
        """One face detector per decode thread (native detectors are not shared between threads)."""
        if not hasattr(self._local, "detector"):
            self._local.detector = get_detector(self.config.detector, **self.config.detector_options)
        return self._local.detector

    def prepare(self, uploads: list[Upload], faces: str, fps: float, max_frames: int | None) -> list[list[Item]]:
        """Decode, detect faces and preprocess each upload (the pipeline's stages 1–4)."""

        assert self.net is not None
        detector = self.detector() if faces != "none" else self.config.detector
        source, expand = media_stages(
            [u.file for u in uploads], self.config.face_options(faces, detector), MediaOptions(fps, max_frames)
        )
        out = []
        for upload in uploads:
            items = self.net.prepare({"path": upload.name}, upload.file, source=source, expand=expand)
            for item in items:  # messages name the upload, never the server's temporary file
                if item.error:
                    item.error = item.error.replace(str(upload.file), upload.name)
            out.append(items)
        return out

    def rows(self, items: list[Item], results: list[Scored], tracked: bool) -> list[dict[str, Any]]:
        """The score table's rows as JSON objects, built in the pool (pandas work stays off the event
        loop). ``tracked`` (a video): one track id per person, as ``predict`` does."""
        assert self.net is not None
        return records(self.net.scorer.table(items, results, annotate=FaceTracker() if tracked else None))

    # runs in the explain pool -----------------------------------------------------------------
    def explain(self, upload: Upload, request: ExplainRequest) -> list[dict[str, Any]]:
        """Maps for one still picture (the explain pool's one thread). Forward and backward passes run
        on the PyTorch encoder (:meth:`EmoNetFace.torch_encoder`, loaded on the first request when the
        server runs a compiled one), never on the batcher's compiled encoder, whose runtime is not
        shared between threads; scores can therefore differ from ``/v1/predict``'s in the last digits.
        Each row carries ``crop``: where the crop lies in the picture (centre, size, turn), for drawing."""
        assert self.net is not None
        net = self.net
        detector = self.detector() if request.faces != "none" else self.config.detector
        source, expand = media_stages([upload.file], self.config.face_options(request.faces, detector))
        chosen = expand if request.face is None else partial(_only_face, expand, request.face)
        twin = net.torch_encoder()
        assert net.heads is not None  # torch_encoder() refused the model without separate heads (an exported one)
        explainer = Explainer(twin, net.heads, method=request.method, torch_encoder=twin, batch_size=4, **request.options)
        rows: list[dict[str, Any]] = []
        for image in net.explain_images(
            [upload.file],
            emotions=request.emotions,
            top=request.top,
            explainer=explainer,
            source=source,
            expand=chosen,
            progress=False,
        ):
            for crop in image.crops:
                place = None
                if image.image is not None:
                    place = asdict(placement_for(crop, image.image.size, self.config.margin, self.config.align))
                rows.extend({**_explain_row(row, upload), "crop": place} for row in crop.rows(image.method))
        return rows


def _only_face(expand: Callable, face: int, ids: dict[str, Any], image: Any) -> list:
    """``expand``'s crops of one picture, only the face numbered ``face`` (``/v1/explain?face=``)."""
    return [pair for pair in expand(ids, image) if pair[0].get("face") == face]


def _explain_row(row: dict[str, Any], upload: Upload) -> dict[str, Any]:
    """An explanation row as JSON: the upload's name (never the temporary file), rounded saliency."""
    row["path"] = upload.name
    if row.get("error"):
        row["error"] = str(row["error"]).replace(str(upload.file), upload.name)
    if row.get("saliency") is not None:
        row["saliency"] = [round(float(v), 6) for v in row["saliency"]]
    return row
