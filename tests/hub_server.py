"""A Hugging Face Hub look-alike on 127.0.0.1, for testing the Hub code path end to end.

It answers the handful of requests huggingface_hub (2.x) makes for ``snapshot_download`` and
``hf_hub_download``, as the real Hub does:

* ``GET /api/models/{repo}[/revision/{rev}]``: repository info, ``sha`` (the resolved commit) and
  ``siblings``; unknown repository → 404 ``X-Error-Code: RepoNotFound``, unknown revision → 404
  ``RevisionNotFound``.
* ``GET /api/models/{repo}/tree/{rev}[/{path}]``: the file list (``type``, ``path``, ``size``,
  ``oid`` = git blob id, and ``lfs`` {``oid`` = SHA-256, ``size``, ``pointerSize``} for weights).
* ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit``, ``ETag``; a small file is served
  in place (``ETag`` = its git blob id), an LFS file answers ``302`` to a second origin (the "CDN")
  with ``X-Linked-Etag`` (its SHA-256) and ``X-Linked-Size``, as the real Hub redirects weights to
  its CDN; missing file → 404 ``EntryNotFound`` (with ``X-Repo-Commit``).
* The CDN (``GET /cdn/{sha256}``) honours ``Range: bytes=N-`` (``206``), which huggingface_hub uses to
  resume a download cut mid-way.

Faults for the error paths: :meth:`HubServer.fail` answers a status (e.g. 500) to matching
requests, :meth:`HubServer.cut` closes the connection after part of a file's body (optionally
stopping the whole server, as a machine that goes away). Every request is logged
(:attr:`HubServer.requests`). Standard library only: no test reaches the real Hub.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".pth", ".bin", ".onnx", ".xml")
"""Files the test Hub stores as LFS (served through the CDN redirect), like the real repositories' weights."""


Content = bytes | Path
"""A file in a commit: its bytes, or a path read when served (real-size weights stay on disk)."""


def git_blob_id(data: bytes) -> str:
    """The git object id of a file (what the Hub reports as ``oid`` and a small file's ``ETag``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _size(content: Content) -> int:
    return len(content) if isinstance(content, bytes) else content.stat().st_size


@functools.cache
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def _sha256(content: Content) -> str:
    if isinstance(content, bytes):
        return hashlib.sha256(content).hexdigest()
    stat = content.stat()
    return _file_sha256(content, stat.st_size, stat.st_mtime_ns)


def _oid(path: str, content: Content) -> str:
    """Git blob id: of the file itself, or (an LFS file, as on the Hub) of its LFS pointer."""
    if path.endswith(LFS_SUFFIXES):
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{_sha256(content)}\nsize {_size(content)}\n"
        return git_blob_id(pointer.encode())
    return git_blob_id(content if isinstance(content, bytes) else content.read_bytes())


def _read(content: Content, start: int, stop: int) -> Iterator[bytes]:
    """Bytes ``start:stop`` of a file, in blocks."""
    if isinstance(content, bytes):
        yield content[start:stop]
        return
    with content.open("rb") as fh:
        fh.seek(start)
        left = stop - start
        while left > 0 and (block := fh.read(min(left, 1 << 20))):
            left -= len(block)
            yield block


@dataclass
class HubRepo:
    """One model repository: commits (file trees) and refs (branches and tags) pointing at them."""

    repo_id: str
    commits: dict[str, dict[str, Content]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def commit(self, files: Mapping[str, Content] | Path, *, branch: str = "main", tags: tuple[str, ...] = ()) -> str:
        """Add a commit holding ``files`` (a mapping to bytes or file paths, or every file under a folder,
        served from disk) on ``branch``; returns its sha."""
        if isinstance(files, Path):
            files = {p.relative_to(files).as_posix(): p for p in sorted(files.rglob("*")) if p.is_file()}
        tree = dict(files)
        parent = self.refs.get(branch, "")
        digest = hashlib.sha1(parent.encode())
        for path in sorted(tree):
            digest.update(path.encode() + b"\0" + _sha256(tree[path]).encode())
        sha = digest.hexdigest()
        self.commits[sha] = tree
        self.refs[branch] = sha
        for tag in tags:
            self.refs[tag] = sha
        return sha

    def resolve(self, revision: str) -> str | None:
        """Commit sha of a branch, tag or (full) commit id; ``None`` if unknown."""
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


@dataclass
class _Fault:
    pattern: str  # fnmatch on "METHOD /path"
    times: int
    status: int = 0  # answer this status…
    cut_after: int = -1  # …or send the headers and this many body bytes, then close the connection
    stop_server: bool = False  # after the cut, stop the whole server (a machine that goes away)


class HubServer:
    """The Hub look-alike: :meth:`start` it (or use it as a context manager), point huggingface_hub at
    :attr:`url` with ``HF_ENDPOINT`` (see :meth:`env`). It can be stopped and started again on the
    same port (a server that went away and came back)."""

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        """Every request: (method, path, headers with lower-case names)."""
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._ports: tuple[int, int] = (0, 0)
        self._blobs: dict[str, Content] = {}
        self._connections: set[socket.socket] = set()  # open keep-alive connections, closed by stop()

    # --- content ----------------------------------------------------------------------------------
    def repo(self, repo_id: str) -> HubRepo:
        """The repository ``repo_id``, created empty on first use."""
        return self.repos.setdefault(repo_id, HubRepo(repo_id))

    def _blob(self, content: Content) -> str:
        sha = _sha256(content)
        self._blobs[sha] = content
        return sha

    # --- faults -----------------------------------------------------------------------------------
    def fail(self, pattern: str, status: int = 500, times: int = 1) -> None:
        """Answer ``status`` to the next ``times`` requests whose ``"METHOD /path"`` matches ``pattern``
        (fnmatch; ``times=-1``: until :meth:`clear_faults`)."""
        with self._lock:
            self._faults.append(_Fault(pattern, times, status=status))

    def cut(self, pattern: str, after: int, *, times: int = 1, stop_server: bool = False) -> None:
        """Close the connection after ``after`` body bytes of matching GETs (and stop the server if asked)."""
        with self._lock:
            self._faults.append(_Fault(pattern, times, cut_after=after, stop_server=stop_server))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _fault_for(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times != 0 and fnmatch.fnmatch(f"{method} {path}", fault.pattern):
                    fault.times -= 1 if fault.times > 0 else 0
                    return fault
        return None

    # --- life cycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._ports[0]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._ports[1]}"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a subprocess that uses this server as its Hub (online, no telemetry, quiet)."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_ETAG_TIMEOUT": "5",
            "HF_HUB_DOWNLOAD_TIMEOUT": "5",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            **extra,
        }

    @property
    def running(self) -> bool:
        return bool(self._servers)

    def start(self) -> HubServer:
        """Listen on 127.0.0.1 (free ports the first time, the same ports after a :meth:`stop`)."""
        if self._servers:
            return self
        ports = []
        for role, port in zip(("hub", "cdn"), self._ports):
            handler = type(f"_{role.title()}Handler", (_Handler,), {"hub": self, "role": role})
            server = ThreadingHTTPServer(("127.0.0.1", port), handler)
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
            ports.append(server.server_address[1])
        self._ports = (ports[0], ports[1])
        return self

    def stop(self) -> None:
        """Stop listening: later connections are refused (until :meth:`start`)."""
        servers, threads = self._servers, self._threads
        self._servers, self._threads = [], []
        for server in servers:
            server.shutdown()
            server.server_close()
        with self._lock:  # a machine that goes away takes its open connections with it
            connections, self._connections = set(self._connections), set()
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(10)

    def _stop_soon(self) -> None:
        threading.Thread(target=self.stop, daemon=True).start()  # shutdown() must not run in a handler thread

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, pattern: str) -> int:
        """How many logged requests match ``"METHOD /path"`` (fnmatch)."""
        return sum(fnmatch.fnmatch(f"{m} {p}", pattern) for m, p, _ in self.requests)


_REPO = r"(?P<repo>[^/]+/[^/]+)"
_API_INFO = re.compile(rf"^/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?$")
_API_TREE = re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RESOLVE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN = re.compile(r"^/cdn/(?P<sha>[0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(?P<start>\d+)-(?P<end>\d*)$")


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    role: str
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        return

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.hub._lock:
            self.hub._connections.discard(self.connection)
        with suppress(OSError):
            super().finish()

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    # --- dispatch ---------------------------------------------------------------------------------
    def _serve(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.requests.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
        fault = self.hub._fault_for(self.command, path)
        if fault is not None and fault.status:
            return self._reply(fault.status, {"X-Error-Message": "injected fault"}, b"injected fault", body)
        if self.role == "cdn":
            return self._cdn(path, body, fault)
        if match := _API_INFO.match(path):
            return self._info(match["repo"], match["rev"] or "main", body)
        if match := _API_TREE.match(path):
            return self._tree(match["repo"], match["rev"], match["path"] or "", body)
        if match := _RESOLVE.match(path):
            return self._resolve(match["repo"], match["rev"], match["path"], body, fault)
        return self._reply(404, {}, b"not found", body)

    def _reply(self, status: int, headers: Mapping[str, str], data: bytes, body: bool) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _json(self, payload: object, body: bool, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self._reply(200, {"Content-Type": "application/json", **(headers or {})}, data, body)

    def _lookup(self, repo_id: str, revision: str, body: bool) -> tuple[HubRepo, str] | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._reply(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, b"{}", body)
            return None
        sha = repo.resolve(revision)
        if sha is None:
            message = f"Invalid rev id: {revision}"
            self._reply(404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": message}, b"{}", body)
            return None
        return repo, sha

    # --- endpoints --------------------------------------------------------------------------------
    def _info(self, repo_id: str, revision: str, body: bool) -> None:
        found = self._lookup(repo_id, revision, body)
        if found is None:
            return
        repo, sha = found
        siblings = [{"rfilename": path} for path in sorted(repo.commits[sha])]
        self._json({"id": repo_id, "modelId": repo_id, "sha": sha, "private": False, "siblings": siblings}, body)

    def _tree(self, repo_id: str, revision: str, prefix: str, body: bool) -> None:
        found = self._lookup(repo_id, revision, body)
        if found is None:
            return
        repo, sha = found
        entries = []
        for path, content in sorted(repo.commits[sha].items()):
            if prefix and not path.startswith(prefix.rstrip("/") + "/"):
                continue
            entry = {"type": "file", "path": path, "size": _size(content), "oid": _oid(path, content)}
            if path.endswith(LFS_SUFFIXES):
                entry["lfs"] = {"oid": _sha256(content), "size": _size(content), "pointerSize": 134}
            entries.append(entry)
        self._json(entries, body)

    def _resolve(self, repo_id: str, revision: str, path: str, body: bool, fault: _Fault | None) -> None:
        found = self._lookup(repo_id, revision, body)
        if found is None:
            return
        repo, sha = found
        content = repo.commits[sha].get(path)
        if content is None:
            headers = {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found", "X-Repo-Commit": sha}
            return self._reply(404, headers, b"{}", body)
        if path.endswith(LFS_SUFFIXES):  # weights: redirect to the CDN, metadata in X-Linked-* headers
            blob = self.hub._blob(content)
            headers = {
                "Location": f"{self.hub.cdn_url}/cdn/{blob}",
                "X-Repo-Commit": sha,
                "X-Linked-Etag": f'"{blob}"',
                "X-Linked-Size": str(_size(content)),
                "ETag": f'"{_oid(path, content)}"',
            }
            return self._reply(302, headers, b"", body)
        self._send_file(content, {"X-Repo-Commit": sha, "ETag": f'"{_oid(path, content)}"'}, body, fault)

    def _cdn(self, path: str, body: bool, fault: _Fault | None) -> None:
        match = _CDN.match(path)
        content = self.hub._blobs.get(match["sha"]) if match else None
        if content is None:
            return self._reply(404, {}, b"no such blob", body)
        self._send_file(content, {"ETag": f'"{match["sha"]}"'}, body, fault)

    def _send_file(self, content: Content, headers: dict[str, str], body: bool, fault: _Fault | None) -> None:
        size = _size(content)
        status, start, stop = 200, 0, size
        wanted = _RANGE.match(self.headers.get("Range", ""))
        if wanted and int(wanted["start"]) < size:
            start = int(wanted["start"])
            stop = min(size, int(wanted["end"]) + 1) if wanted["end"] else size
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
            status = 206
        self.send_response(status)
        for key, value in {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(stop - start))
        self.end_headers()
        if not body:
            return
        if fault is not None and fault.cut_after >= 0:  # the fault: promise the whole body, send part, hang up
            stop = min(stop, start + fault.cut_after)
        for block in _read(content, start, stop):
            self.wfile.write(block)
        if fault is None or fault.cut_after < 0:
            return
        self.wfile.flush()
        self.close_connection = True
        if fault.stop_server:
            self.hub._stop_soon()
        with suppress(OSError):
            self.connection.shutdown(2)


@contextmanager
def hub_env(server: HubServer, monkeypatch) -> Iterator[None]:
    """Point huggingface_hub *in this process* at ``server`` (online): its endpoint is read at import,
    so the constants are patched, not the environment."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_PROGRESS_BARS", True)
    for key in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(key, "127.0.0.1,localhost")
    yield


def tree_sha256(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` by relative path (for comparing downloaded copies)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def released_heads_files(heads_dir: Path) -> dict[str, Content]:
    """A released heads folder's files as a commit (``model_<key>_best.pth`` + neutral stats JSON)."""
    return {p.name: p for p in sorted(heads_dir.iterdir()) if p.is_file()}


def encoder_files(
    encoder_dir: Path, readme: str = "---\nlicense: apache-2.0\n---\n# test encoder\n"
) -> dict[str, Content]:
    """A checkpoint folder's files as a commit, with a tokenizer file and a card as the real repository has
    (the encoder download must skip the tokenizer)."""
    files: dict[str, Content] = {p.name: p for p in sorted(encoder_dir.iterdir()) if p.is_file()}
    files["tokenizer.json"] = b'{"tokenizer": "not needed by the vision tower"}'
    files["README.md"] = readme.encode()
    return files


TINY_LARGE = (16, 8, 4)
"""Tiny heads in the Large layout (three hidden layers: 1024 → 512 → 256 in the release)."""
TINY_SMALL = (8, 4)
"""Tiny heads in the Small layout (two hidden layers: 128 → 32 in the release)."""


@dataclass
class Published:
    """What :func:`publish_released` put on the server: local copies of each revision, and the commits."""

    server: HubServer
    encoder: Path
    large: Path  # heads on main
    large_v1: Path  # heads tagged v1.0 (the first commit on main)
    large_exp: Path  # heads on the branch "exp"
    small: Path
    commits: dict[str, str]


def publish_released(server: HubServer, encoder_dir: Path, root: Path) -> Published:
    """The released repositories with tiny models: the default encoder id (a tiny SigLIP, tagged
    ``enc-v1``), Large heads with history (``v1.0`` tag, a later ``main``, a branch ``exp``) and Small heads."""
    from conftest import build_tiny_heads
    from emonet_face.hub import DEFAULT_ENCODER, MODELS

    def heads(name: str, hidden: tuple[int, ...], seed: int) -> Path:
        folder = root / name
        folder.mkdir(parents=True)
        return build_tiny_heads(folder, hidden=hidden, seed=seed)

    large_v1, large, large_exp = (
        heads("large-v1", TINY_LARGE, 1),
        heads("large", TINY_LARGE, 2),
        heads("exp", TINY_LARGE, 3),
    )
    small = heads("small", TINY_SMALL, 4)
    card = {"README.md": b"---\nlicense: cc-by-4.0\n---\n# tiny test heads\n"}
    commits = {"encoder": server.repo(DEFAULT_ENCODER).commit(encoder_files(encoder_dir), tags=("enc-v1",))}
    repo = server.repo(MODELS["large"].heads)
    commits["large_v1"] = repo.commit({**released_heads_files(large_v1), **card}, tags=("v1.0",))
    commits["large_exp"] = repo.commit({**released_heads_files(large_exp), **card}, branch="exp")
    commits["large"] = repo.commit({**released_heads_files(large), **card})
    commits["small"] = server.repo(MODELS["small"].heads).commit({**released_heads_files(small), **card})
    return Published(server, encoder_dir, large, large_v1, large_exp, small, commits)


__all__ = [
    "TINY_LARGE",
    "TINY_SMALL",
    "Content",
    "HubRepo",
    "HubServer",
    "Published",
    "encoder_files",
    "git_blob_id",
    "hub_env",
    "publish_released",
    "released_heads_files",
    "tree_sha256",
]
