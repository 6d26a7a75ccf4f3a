"""A loopback stand-in for the Hugging Face Hub: the HTTP calls ``huggingface_hub`` makes to create a
dataset repo and a branch, list a tree, validate a card, pre-upload, upload LFS objects (basic transfer)
and commit (ndjson). It keeps every revision's files in memory and checks the bearer token.

    with FakeHub(token="hf_x") as hub:   # hub.url -> HF_ENDPOINT
        ...
        hub.files("me/data")             # {path: bytes} at main
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import yaml

LFS_SUFFIXES = (".parquet", ".png", ".jpg", ".jpeg", ".arrow")


class FakeHub:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, dict] = {}  # repo id -> {"private": bool, "branches": {name: {path: bytes}}}
        self.lfs: dict[str, bytes] = {}  # sha256 -> bytes
        self.commits: list[dict] = []  # {"repo", "revision", "summary", "added", "deleted"}
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Authorization header)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.lock = threading.Lock()

    def __enter__(self):
        # shutdown() waits for the loop to look again: poll often, or every `with` ends 0.5 s late
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo]["branches"][revision])

    # --- the routes ---------------------------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict, body: bytes, authorised: bool):
        """(status, JSON-able body) for one request."""
        if path.startswith("/lfs-upload/") and method == "PUT":  # a presigned URL: no token, like S3
            oid = path.rsplit("/", 1)[1]
            if hashlib.sha256(body).hexdigest() != oid:
                return 400, {"error": "sha256 mismatch"}
            self.lfs[oid] = body
            return 200, {}
        if not authorised:
            return 401, {"error": "Invalid credentials in Authorization header"}
        if path == "/api/repos/create" and method == "POST":
            data = json.loads(body)
            repo = f"{data.get('organization')}/{data['name']}"
            if data.get("type") != "dataset":
                return 400, {"error": "only dataset repos here"}
            if repo in self.repos:
                return 409, {"error": "You already created this dataset repo", "url": f"{self.url}/datasets/{repo}"}
            private = data.get("visibility", "public") == "private" or bool(data.get("private"))
            self.repos[repo] = {"private": private, "branches": {"main": {".gitattributes": b"*.parquet filter=lfs\n"}}}
            return 200, {"url": f"{self.url}/datasets/{repo}", "name": repo}
        if path == "/api/validate-yaml" and method == "POST":
            return self.validate_yaml(json.loads(body))
        if path.endswith(".git/info/lfs/objects/batch") and method == "POST":
            objects = []
            for obj in json.loads(body)["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"]}
                if obj["oid"] not in self.lfs:  # already stored: no action, the client skips it (resumes)
                    entry["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{obj['oid']}"}}
                objects.append(entry)
            return 200, {"transfer": "basic", "objects": objects}
        parts = path.split("/")  # /api/datasets/<org>/<name>/<verb>/<revision>[/path]
        if len(parts) < 7 or parts[:3] != ["", "api", "datasets"]:
            return 404, {"error": f"no route {method} {path}"}
        repo, verb, revision = f"{parts[3]}/{parts[4]}", parts[5], unquote(parts[6])
        if repo not in self.repos:
            return 404, {"error": "Repository not found"}
        branches = self.repos[repo]["branches"]
        if verb == "branch" and method == "POST":
            if revision in branches:
                return 409, {"error": "Branch already exists"}
            branches[revision] = dict(branches["main"])
            return 200, {}
        if revision not in branches:
            return 404, {"error": f"Invalid rev id: {revision}"}
        files = branches[revision]
        if verb == "tree" and method == "GET":
            prefix = unquote("/".join(parts[7:]))
            return 200, [{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                         for p, b in sorted(files.items()) if p.startswith(prefix)]
        if verb == "preupload" and method == "POST":
            return 200, {"files": [{"path": f["path"], "shouldIgnore": False, "oid": None,
                                    "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) or f["size"] > 10 << 20
                                    else "regular"} for f in json.loads(body)["files"]]}
        if verb == "commit" and method == "POST":
            return self.commit(repo, revision, files, body)
        return 404, {"error": f"no route {method} {path}"}

    def validate_yaml(self, data: dict):
        """The Hub's card check, as far as it matters here: YAML front matter that is a mapping."""
        content = data.get("content", "")
        if not content.startswith("---\n"):
            return 200, {"warnings": [{"message": "empty or missing yaml metadata in repo card"}]}
        try:
            meta = yaml.safe_load(content.split("---\n", 2)[1])
        except yaml.YAMLError as err:
            return 400, {"error": f"Invalid YAML: {err}"}
        if not isinstance(meta, dict):
            return 400, {"error": "YAML metadata is not a mapping"}
        return 200, {"warnings": []}

    def commit(self, repo: str, revision: str, files: dict, body: bytes):
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header, ops = lines[0], lines[1:]
        new, added, deleted = dict(files), [], []
        for op in ops:
            value = op["value"]
            if op["key"] == "file":
                new[value["path"]] = base64.b64decode(value["content"])
                added.append(value["path"])
            elif op["key"] == "lfsFile":
                if value["oid"] not in self.lfs:
                    return 400, {"error": f"LFS object {value['oid']} was never uploaded"}
                new[value["path"]] = self.lfs[value["oid"]]
                added.append(value["path"])
            elif op["key"] == "deletedFile":
                if value["path"] not in new:
                    return 404, {"error": f"{value['path']} does not exist"}
                del new[value["path"]]
                deleted.append(value["path"])
            elif op["key"] == "deletedFolder":
                gone = [p for p in new if p.startswith(value["path"].rstrip("/") + "/")]
                for p in gone:
                    del new[p]
                deleted += gone
            else:
                return 400, {"error": f"unknown operation {op['key']}"}
        files.clear()
        files.update(new)
        oid = hashlib.sha1(f"{repo}{revision}{len(self.commits)}".encode()).hexdigest()
        self.commits.append({"repo": repo, "revision": revision, "summary": header["value"]["summary"],
                             "added": added, "deleted": deleted})
        return 200, {"commitUrl": f"{self.url}/datasets/{repo}/commit/{oid}", "commitOid": oid, "success": True}

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                url = urlparse(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                auth = self.headers.get("Authorization", "")
                with hub.lock:
                    hub.requests.append((self.command, url.path, auth))
                    status, payload = hub.route(self.command, url.path, parse_qs(url.query), body,
                                                auth == f"Bearer {hub.token}")
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status >= 400:
                    self.send_header("X-Error-Message", str(payload.get("error", "")))
                    if status == 404 and "Repository" in str(payload.get("error")):
                        self.send_header("X-Error-Code", "RepoNotFound")
                    elif status == 404 and "rev" in str(payload.get("error")):
                        self.send_header("X-Error-Code", "RevisionNotFound")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, *args):  # quiet
                pass

        return Handler
