"""A stand-in for the Hugging Face Hub on 127.0.0.1, for the real `huggingface_hub` client.

It answers the four requests `snapshot_download` and `hf_hub_download` make, shaped as the Hub
answers them: the revision info (`/api/models/R/revision/REV`), the recursive tree listing with LFS
ids, and HEAD/GET on `/R/resolve/REV/FILE` (ETag = the file's sha256, Range requests answered 206).
A gated repository answers 401 (no token) or 403 (a token that was not granted) with the Hub's
`X-Error-Code: GatedRepo`.

Faults are queued: each request takes the first queued fault whose `where` is in its path and whose
method matches, and suffers it once:
  500 / 503    an error status
  429          Too Many Requests with `Retry-After: 1`
  drop         the connection closed before any answer
  stall        headers and half the body, then nothing for `stall_s` seconds
  cut          headers promise the whole body; half of it is sent and the connection closed
  corrupt      the whole body, of the right length, with one byte changed
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

COMMIT = "5e1f0c0ffee0ddba11deadbeef00c0ffee5e1f00"


@dataclass
class Repo:
    repo_id: str
    files: dict[str, bytes]
    kind: str = "models"  # or "datasets"
    gated: bool = False


@dataclass
class Fault:
    kind: str
    where: str = "/resolve/"
    method: str = "GET"


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    authorized: bool


@dataclass
class HubStandIn:
    repos: list[Repo]
    granted_tokens: set[str] = field(default_factory=set)
    stall_s: float = 5.0
    faults: list[Fault] = field(default_factory=list)
    log: list[Request] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "HubStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def take_fault(self, method: str, path: str) -> str | None:
        with self._lock:
            for i, f in enumerate(self.faults):
                if f.method == method and f.where in path:
                    return self.faults.pop(i).kind
        return None

    def downloads(self, name: str) -> list[Request]:
        return [r for r in self.log if r.method == "GET" and r.path.endswith("/" + name)]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _handler(hub: HubStandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_HEAD(self):
            self._serve("HEAD")

        def do_GET(self):
            self._serve("GET")

        # -- routing

        def _serve(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            hub.log.append(Request(method, path, self.headers.get("Range"), bool(token)))
            fault = hub.take_fault(method, path)
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if fault in ("500", "503", "429"):
                extra = {"Retry-After": "1"} if fault == "429" else {}
                return self._json(int(fault), {"error": f"injected {fault}"}, extra)
            found = self._route(path)
            if found is None:
                return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            repo, what, rest = found
            if repo.gated and token not in hub.granted_tokens:
                status = 403 if token else 401
                return self._json(status, {"error": f"Access to model {repo.repo_id} is restricted."},
                                  {"X-Error-Code": "GatedRepo",
                                   "X-Error-Message": f"Access to model {repo.repo_id} is restricted."})
            if what == "revision":
                return self._json(200, {"id": repo.repo_id, "sha": COMMIT, "private": False,
                                        "gated": "manual" if repo.gated else False,
                                        "siblings": [{"rfilename": p} for p in sorted(repo.files)]})
            if what == "tree":
                return self._json(200, [_tree_entry(p, d) for p, d in sorted(repo.files.items())])
            data = repo.files.get(rest)
            if data is None:
                return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            self._file(method, data, fault)

        def _route(self, path: str):
            parts = path.strip("/").split("/")
            for repo in hub.repos:
                rid = repo.repo_id.split("/")
                api = ["api", repo.kind, *rid]
                if parts[:len(api)] == api and len(parts) > len(api):
                    if parts[len(api)] == "revision":
                        return repo, "revision", ""
                    if parts[len(api)] == "tree":
                        return repo, "tree", ""
                base = (["datasets"] if repo.kind == "datasets" else []) + rid
                n = len(base)
                if parts[:n] == base and len(parts) > n + 2 and parts[n] == "resolve":
                    return repo, "file", "/".join(parts[n + 2:])
            return None

        # -- answers

        def _json(self, status: int, body, extra: dict | None = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", "Content-Length": str(len(raw)),
                         "X-Repo-Commit": COMMIT, **(extra or {})}.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(raw)

        def _file(self, method: str, data: bytes, fault: str | None) -> None:
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng.removeprefix("bytes=").split("-")[0] or 0)
            body = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{_sha256(data)}"')
            self.send_header("X-Repo-Commit", COMMIT)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if method == "HEAD":
                return
            if fault == "corrupt":
                body = bytearray(body)
                body[len(body) // 2] ^= 0xFF
                body = bytes(body)
            if fault in ("cut", "stall"):
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if fault == "stall":
                    hub._stop.wait(hub.stall_s)
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


def _tree_entry(path: str, data: bytes) -> dict:
    entry = {"type": "file", "path": path, "size": len(data), "oid": _git_oid(data)}
    if path.endswith((".gguf", ".parquet", ".bin")):
        entry["lfs"] = {"oid": _sha256(data), "size": len(data), "pointerSize": 134}
    return entry
