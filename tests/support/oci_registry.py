"""An OCI registry on loopback that serves Helm charts for pulling: a stub speaking the
distribution API's wire format (``/v2/<name>/manifests/<tag>``, ``/v2/<name>/blobs/<digest>``,
``/v2/<name>/tags/list``), over TLS with a certificate authority made per server.

A chart is stored the way ``helm push`` stores it: an image manifest whose config
is the chart's metadata (``application/vnd.cncf.helm.config.v1+json``) and whose
one layer is the packaged chart (``application/vnd.cncf.helm.chart.content.v1.tar+gzip``).
helm trusts the authority through ``SSL_CERT_FILE``, as it would a private
registry's; no test-only flag is involved.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.gitserver import certificates

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class OciRegistry:
    host: str  # 127.0.0.1:<port>
    ca_file: Path
    requests: list[str] = field(default_factory=list)
    # repository -> tag -> manifest bytes; digest -> blob bytes
    manifests: dict[str, dict[str, bytes]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)

    def push_chart(self, repository: str, archive: bytes, *, name: str, version: str) -> str:
        """Store a packaged chart as ``repository:version``; returns the manifest's digest."""
        config = json.dumps({"apiVersion": "v2", "name": name, "version": version}).encode()
        self.blobs[_digest(config)] = config
        self.blobs[_digest(archive)] = archive
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {
                    "mediaType": "application/vnd.cncf.helm.config.v1+json",
                    "digest": _digest(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                        "digest": _digest(archive),
                        "size": len(archive),
                    }
                ],
            }
        ).encode()
        self.manifests.setdefault(repository, {})[version] = manifest
        return _digest(manifest)


def _handler(registry: OciRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, *, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            registry.requests.append(f"{self.command} {path}")
            if path in ("/v2", "/v2/"):
                return self._send(200, b"{}", "application/json", body=body)
            repository, _, rest = path.removeprefix("/v2/").rpartition("/")
            repository, _, kind = repository.rpartition("/")
            tags = registry.manifests.get(repository, {})
            if kind == "tags" and rest == "list" and tags:
                listing = json.dumps({"name": repository, "tags": sorted(tags)}).encode()
                return self._send(200, listing, "application/json", body=body)
            if kind == "manifests":
                by_digest = {_digest(m): m for m in tags.values()}
                manifest = tags.get(rest) or by_digest.get(rest)
                if manifest is not None:
                    return self._send(200, manifest, MANIFEST_TYPE, body=body, digest=_digest(manifest))
            if kind == "blobs" and rest in registry.blobs:
                blob = registry.blobs[rest]
                return self._send(200, blob, "application/octet-stream", body=body, digest=rest)
            error = {"errors": [{"code": "MANIFEST_UNKNOWN" if kind == "manifests" else "NAME_UNKNOWN"}]}
            return self._send(404, json.dumps(error).encode(), "application/json", body=body)

        def _send(self, status: int, data: bytes, content_type: str, *, body: bool, digest: str = "") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if digest:
                self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler


@contextmanager
def serve_oci_registry(folder: Path) -> Iterator[OciRegistry]:
    """A registry at https://127.0.0.1:<port>; its CA certificate is written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_file, cert, key = certificates(folder)
    registry = OciRegistry(host="", ca_file=ca_file)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(registry))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    registry.host = f"127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
