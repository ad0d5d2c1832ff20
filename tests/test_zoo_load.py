"""medzoo.load: cache -> bundled -> hub resolution, integrity, offline use, hf:// references, push_to_hub.

The hub is a loopback HTTP server started by the tests (:class:`FakeHub`) that answers
the download requests of ``huggingface_hub.hf_hub_download`` (``HEAD``/``GET
/{repo_id}/resolve/{revision}/{filename}`` with ``X-Repo-Commit``, ``ETag``,
``Content-Length``) and the upload requests of ``HfApi`` (create repo and branch,
preupload, commit), so the real huggingface_hub client code runs end to end without
network, and can be made to fail: tampered, truncated or wrongly sized files, a
download cut off mid-stream, a hub that stops answering. ``huggingface_hub`` reads
``HF_ENDPOINT`` once at import, so the fixture also points its ``constants.ENDPOINT``
/ URL template at the server.

Failure modes covered: first download then cache hit (one request per file); a pinned
revision honoured after its branch moves; tampered, truncated and wrong-size downloads
refused, and tampered cached and bundled copies; a download cut off mid-stream (resumed
when the hub stays up; a clear error, nothing cached and recovery on the next call when
it does not); HF_HUB_OFFLINE / local_files_only with a warm and a cold cache;
push_to_hub uploading what load then downloads.
"""

import base64
import hashlib
import http.server
import json
import logging
import os
import pathlib
import shutil
import threading
import time
import urllib.parse

import numpy as np
import pytest

import medzoo
from medzoo.data import PreprocessSpec
from medzoo.errors import ConfigError, IntegrityError, ModelNotFoundError
from medzoo.models import VAE
from medzoo.zoo import FilesUnavailableError, hub, manifest
from medzoo.zoo.integrity import sha256_file
from medzoo.zoo.presets import save_preset, update_preset

SPEC = PreprocessSpec(size=(32, 32), resize="stretch")
TRAINING = {"recipe": "test", "epochs": 2, "splits": {"train": "train", "metrics": "test"},
            "dataset": {"name": "kermany_pediatric_cxr_64", "licence": "CC-BY-4.0",
                        "citation": "Kermany et al., Cell 2018"}}


class FakeHub:
    """An in-memory Hub: repos of commits of files, served over loopback HTTP; records every request.

    Downloads: ``HEAD``/``GET /{repo_id}/resolve/{revision}/{path}``, ``Range`` requests answered
    with 206. Uploads, the calls ``HfApi.create_repo``, ``create_branch`` and ``upload_folder``
    make: ``POST /api/repos/create``, ``/api/validate-yaml`` (the model card),
    ``/api/models/{repo_id}/branch/{branch}``, ``/api/models/{repo_id}/preupload/{revision}``
    (every file "regular", so no LFS or Xet storage is involved) and
    ``/api/models/{repo_id}/commit/{revision}`` (NDJSON, base64 file contents), which adds a
    commit on top of the branch.

    Faults to inject: :attr:`tamper` (other bytes served for a path, consistently),
    :attr:`announce` (a size the metadata (HEAD) claims for a path, not the size of the bytes
    then sent), :meth:`cut_off` (the next GET of a path is cut off mid-stream) and
    :attr:`down` (every request dropped without an answer).
    """

    def __init__(self):
        self.repos = {}  # repo_id -> {"commits": {commit: {path: bytes}}, "refs": {branch: commit}, ...}
        self.requests = []  # (method, path)
        self.authorizations = set()  # Authorization headers of the upload calls
        self.tamper = {}  # path in repo -> bytes served instead of the stored ones
        self.announce = {}  # path in repo -> size announced by HEAD instead of the true one
        self.cuts = {}  # path in repo -> (bytes sent before the connection drops, then down)
        self.down = False
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, repo_id, folder, *, branch="main", subfolder="") -> str:
        """Commit a preset folder (at ``subfolder`` in the repo) and move ``branch`` to it; return the commit."""
        files = {f"{subfolder}/{p.name}" if subfolder else p.name: p.read_bytes() for p in sorted(folder.iterdir())}
        self.repos.setdefault(repo_id, {"commits": {}, "refs": {}, "messages": {}, "private": False})
        return self._commit(repo_id, branch, files, f"add {folder.name}", parent=None)

    def _commit(self, repo_id, branch, files, message, *, parent) -> str:
        repo = self.repos[repo_id]
        files = {**(repo["commits"][parent] if parent else {}), **files}
        commit = hashlib.sha1(repr((parent, sorted(files.items()), message, len(repo["commits"]))).encode()).hexdigest()
        repo["commits"][commit], repo["messages"][commit], repo["refs"][branch] = files, message, commit
        return commit

    def cut_off(self, path, after, *, then_down=False):
        """The next GET of ``path`` announces the whole file, sends its first ``after`` bytes and drops the
        connection; with ``then_down``, the hub stays :attr:`down` from then on (until that is reset)."""
        self.cuts[path] = (after, then_down)

    def _handler(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def do_POST(self):
                fake.requests.append((self.command, self.path))
                payload = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if fake.down:
                    return  # connection closed, nothing answered
                fake.authorizations.add(self.headers.get("Authorization"))
                path = urllib.parse.urlsplit(self.path).path
                parts = [urllib.parse.unquote(p) for p in path.lstrip("/").split("/")]
                if path == "/api/validate-yaml":
                    return self._json(200, {"errors": [], "warnings": []})
                if path == "/api/repos/create":
                    return self._create_repo(json.loads(payload))
                if len(parts) != 6 or parts[:2] != ["api", "models"]:
                    return self._json(404, {"error": f"no such endpoint {path}"})
                repo_id, action, revision = f"{parts[2]}/{parts[3]}", parts[4], parts[5]
                repo = fake.repos.get(repo_id)
                if repo is None:
                    return self._json(404, {"error": "Repository not found"}, code="RepoNotFound")
                if action == "branch":
                    if revision in repo["refs"]:
                        return self._json(409, {"error": "Reference already exists"})
                    start = json.loads(payload or b"{}").get("startingPoint", "main")
                    repo["refs"][revision] = repo["refs"].get(start, start)
                    return self._json(200, {})
                if revision not in repo["refs"]:
                    return self._json(404, {"error": "Invalid rev id"}, code="RevisionNotFound")
                if action == "preupload":
                    modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                             for f in json.loads(payload)["files"]]
                    return self._json(200, {"files": modes})
                if action == "commit":
                    return self._commit(repo_id, revision, [json.loads(line) for line in payload.splitlines()])
                return self._json(404, {"error": f"no such endpoint {path}"})

            def _create_repo(self, payload):
                repo_id = f"{payload['organization']}/{payload['name']}"
                url = f"{fake.url}/{repo_id}"
                if repo_id in fake.repos:
                    return self._json(409, {"error": "You already created this model repo", "url": url})
                fake.repos[repo_id] = {"commits": {}, "refs": {}, "messages": {},
                                       "private": payload.get("visibility") == "private"}
                fake._commit(repo_id, "main", {".gitattributes": b"*.h5 filter=lfs diff=lfs merge=lfs -text\n"},
                             "initial commit", parent=None)
                return self._json(200, {"url": url, "name": repo_id})

            def _commit(self, repo_id, branch, items):
                header, files = {}, {}
                for item in items:
                    if item["key"] == "header":
                        header = item["value"]
                    elif item["key"] == "file" and item["value"]["encoding"] == "base64":
                        files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    else:
                        return self._json(400, {"error": f"this hub only takes base64 files, got {item['key']}"})
                parent = fake.repos[repo_id]["refs"][branch]
                commit = fake._commit(repo_id, branch, files, header["summary"], parent=parent)
                return self._json(200, {"commitUrl": f"{fake.url}/{repo_id}/commit/{commit}", "commitOid": commit,
                                        "success": True, "pullRequestUrl": None})

            def _serve(self, body):
                fake.requests.append((self.command, self.path))
                if fake.down:
                    return  # connection closed, nothing answered
                parts = urllib.parse.urlsplit(self.path).path.lstrip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._error(404, "RepoNotFound")
                repo = fake.repos.get(f"{parts[0]}/{parts[1]}")
                if repo is None:
                    return self._error(404, "RepoNotFound")
                revision = urllib.parse.unquote(parts[3])
                commit = revision if revision in repo["commits"] else repo["refs"].get(revision)
                if commit is None:
                    return self._error(404, "RevisionNotFound")
                path = urllib.parse.unquote("/".join(parts[4:]))
                if path not in repo["commits"][commit]:
                    return self._error(404, "EntryNotFound", commit)
                data = fake.tamper.get(path, repo["commits"][commit][path])
                size, start = len(data), 0
                if not body and path in fake.announce:
                    size = fake.announce[path]
                ranged = body and self.headers.get("Range")
                if ranged:
                    start = int(ranged.removeprefix("bytes=").split("-")[0])
                self.send_response(206 if ranged else 200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{hashlib.sha256(repo["commits"][commit][path]).hexdigest()}"')
                self.send_header("Content-Length", str(size - start))
                if ranged:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if not body:
                    return
                cut = fake.cuts.pop(path, None)
                if cut is None:
                    self.wfile.write(data[start:])
                else:  # Content-Length promised the rest of the file: the client sees the stream end early
                    self.wfile.write(data[start:cut[0]])
                    fake.down = fake.down or cut[1]

            def _json(self, status, value, code=None):
                data = json.dumps(value).encode()
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status, code, commit=None):
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                if commit:
                    self.send_header("X-Repo-Commit", commit)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def downloads(self):
        """File downloads (GET .../resolve/...); huggingface_hub may also ask for its own registries."""
        return [path for method, path in self.requests if method == "GET" and "/resolve/" in path]


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    from huggingface_hub import constants

    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "hf-home" / "agents.json"))
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def preset(tmp_path_factory, tiny_cxr):
    model = VAE(input_shape=(32, 32, 1), filters=4, depth=2, latent_dim=4, seed=0)
    rng = np.random.default_rng(0)
    for v in model.weights:  # distinct values everywhere (kernels, BN statistics), as after training
        if "float" in str(v.dtype):
            v.assign(v.numpy() * (1 + 0.1 * rng.normal(size=v.shape)).astype("float32"))
    path = save_preset(model, tmp_path_factory.mktemp("preset") / "tiny_vae", name="tiny_vae", spec=SPEC,
                       description="A tiny VAE for tests.", training=TRAINING, metrics={"test": {"bce": 500.0}})
    return {"path": path, "expected": model.reconstruct(tiny_cxr[:4]), "x": tiny_cxr[:4]}


@pytest.fixture
def zoo(fake_hub, preset, tmp_path):
    """The preset pushed to the fake hub and added (bundled + hub) to a temporary manifest, and an empty cache."""
    commit = fake_hub.add("medzoo/tiny-vae", preset["path"])
    path = tmp_path / "pkg" / "weights_manifest.json"
    manifest.add_to_manifest(preset["path"], manifest_path=path, hub={"repo_id": "medzoo/tiny-vae", "revision": commit})
    return dict(manifest_path=path, cache_dir=tmp_path / "cache", commit=commit,
                bundled=path.parent / "presets" / "tiny_vae")


def cached_weights(cache_dir):
    return sorted(pathlib.Path(cache_dir).rglob("model.weights.h5"))


def test_resolution_order_is_cache_then_bundled_then_hub(zoo, fake_hub, preset, caplog):
    opts = dict(manifest_path=zoo["manifest_path"], cache_dir=zoo["cache_dir"])
    caplog.set_level(logging.INFO, logger="medzoo.zoo")

    model = medzoo.load("tiny_vae", **opts)  # empty cache: the bundled copy, no network
    assert model.zoo_metadata["source"] == "bundled" and fake_hub.requests == []
    assert "from the copy bundled in the package" in caplog.text
    np.testing.assert_array_equal(model.reconstruct(preset["x"]), preset["expected"])
    assert model.preprocess_spec == SPEC and model.compiled

    model = medzoo.load("tiny_vae", force_download=True, **opts)  # skip local copies: the hub
    assert model.zoo_metadata["source"] == "hub"
    assert model.zoo_metadata["hub"] == {"repo_id": "medzoo/tiny-vae", "revision": zoo["commit"]}
    assert len(fake_hub.downloads()) == 4 and "downloading" in caplog.text
    np.testing.assert_array_equal(model.reconstruct(preset["x"]), preset["expected"])
    [cached] = cached_weights(zoo["cache_dir"])
    assert cached.parent.name == zoo["commit"]

    fake_hub.requests.clear()
    model = medzoo.load("tiny_vae", **opts)  # a verified cached copy wins over the bundled one
    assert model.zoo_metadata["source"] == "cache" and model.zoo_metadata["path"] == str(cached.parent)
    assert fake_hub.requests == []

    shutil.rmtree(zoo["cache_dir"])
    shutil.rmtree(zoo["bundled"])
    model = medzoo.load("tiny_vae", **opts)  # nothing local: the hub
    assert model.zoo_metadata["source"] == "hub" and len(fake_hub.downloads()) == 4
    np.testing.assert_array_equal(model.reconstruct(preset["x"]), preset["expected"])


def _corrupt(path):
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_tampered_bundled_copy_raises_with_both_digests(zoo, fake_hub):
    weights = zoo["bundled"] / "model.weights.h5"
    want = sha256_file(weights)
    _corrupt(weights)
    with pytest.raises(IntegrityError) as info:
        medzoo.load("tiny_vae", manifest_path=zoo["manifest_path"], cache_dir=zoo["cache_dir"])
    message = str(info.value)
    assert want in message and sha256_file(weights) in message and "bundled in the package" in message
    assert fake_hub.requests == []  # not silently replaced by a download


def test_a_tampered_cached_copy_raises_with_both_digests(zoo):
    opts = dict(manifest_path=zoo["manifest_path"], cache_dir=zoo["cache_dir"])
    medzoo.load("tiny_vae", force_download=True, **opts)
    [weights] = cached_weights(zoo["cache_dir"])
    want = sha256_file(weights)
    _corrupt(weights)
    with pytest.raises(IntegrityError) as info:
        medzoo.load("tiny_vae", **opts)
    message = str(info.value)
    assert want in message and sha256_file(weights) in message and "force_download=True" in message
    model = medzoo.load("tiny_vae", force_download=True, **opts)  # the advertised way out works
    assert model.zoo_metadata["source"] == "hub" and sha256_file(weights) == want


WEIGHTS = "model.weights.h5"


@pytest.fixture
def no_retry_wait(monkeypatch):
    """huggingface_hub sleeps a second before each retry of a broken download; the tests need not wait."""
    from huggingface_hub import file_download

    class NoWait:
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds):
            pass

    monkeypatch.setattr(file_download, "time", NoWait(), raising=False)


def _flip_a_byte(data):
    return data[:-200] + bytes([data[-200] ^ 0xFF]) + data[-199:]


# what the fake hub does wrong with the weights file, and what load() must raise for it
FAULTS = {
    "tampered": (lambda hub, data: hub.tamper.update({WEIGHTS: _flip_a_byte(data)}), IntegrityError),
    "truncated": (lambda hub, data: hub.tamper.update({WEIGHTS: data[: len(data) // 2]}), IntegrityError),
    # the metadata (HEAD) announces one size, the download delivers the file at another
    "wrong size": (lambda hub, data: hub.announce.update({WEIGHTS: len(data) + 1000}), FilesUnavailableError),
    # half the file, then the connection drops and the hub stays unreachable through every resume attempt
    "cut off mid-stream": (lambda hub, data: hub.cut_off(WEIGHTS, len(data) // 2, then_down=True),
                           FilesUnavailableError),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_bad_download_is_refused_leaves_nothing_and_the_next_call_recovers(fault, zoo, fake_hub, preset,
                                                                              no_retry_wait):
    opts = dict(manifest_path=zoo["manifest_path"], cache_dir=zoo["cache_dir"])
    data = (preset["path"] / WEIGHTS).read_bytes()
    shutil.rmtree(zoo["bundled"])  # the hub is the only source
    inject, error = FAULTS[fault]
    inject(fake_hub, data)
    served = fake_hub.tamper.get(WEIGHTS)
    with pytest.raises(error) as info:
        medzoo.load("tiny_vae", **opts)
    message = str(info.value)
    assert WEIGHTS in message and "hf://medzoo/tiny-vae" in message
    if served is not None:  # the digest check refused it
        assert hashlib.sha256(data).hexdigest() in message and hashlib.sha256(served).hexdigest() in message
        assert "discarded" in message
    else:  # the download failed: a clear MedzooError, not the HTTP library's exception
        assert "nothing was cached" in message and "again" in message
    assert [p for p in zoo["cache_dir"].rglob("*") if p.is_file()] == []  # no bad file, no temporary, no snapshot
    with pytest.raises(FilesUnavailableError, match="not available locally"):  # so nothing a later call trusts
        medzoo.load("tiny_vae", local_files_only=True, **opts)

    fake_hub.tamper.clear(), fake_hub.announce.clear()
    fake_hub.down = False
    fake_hub.requests.clear()
    model = medzoo.load("tiny_vae", **opts)  # the hub is healthy again: the next call downloads it afresh
    assert model.zoo_metadata["source"] == "hub" and len(fake_hub.downloads()) == 4
    np.testing.assert_array_equal(model.reconstruct(preset["x"]), preset["expected"])


def test_a_download_cut_off_once_is_resumed_and_verified(zoo, fake_hub, preset, no_retry_wait):
    data = (preset["path"] / WEIGHTS).read_bytes()
    shutil.rmtree(zoo["bundled"])
    fake_hub.cut_off(WEIGHTS, len(data) // 3)  # the connection drops once, the hub stays up
    model = medzoo.load("tiny_vae", manifest_path=zoo["manifest_path"], cache_dir=zoo["cache_dir"])
    # huggingface_hub tried again (from where it broke, or afresh when nothing of it had reached the file)
    url = f"/medzoo/tiny-vae/resolve/{zoo['commit']}/{WEIGHTS}"
    assert [p for p in fake_hub.downloads() if p.endswith(WEIGHTS)] == [url, url]
    assert model.zoo_metadata["source"] == "hub"
    [cached] = cached_weights(zoo["cache_dir"])
    assert cached.read_bytes() == data
    np.testing.assert_array_equal(model.reconstruct(preset["x"]), preset["expected"])


def test_local_files_only_never_touches_the_network(zoo, fake_hub, monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("hf_hub_download was called")

    opts = dict(manifest_path=zoo["manifest_path"], cache_dir=zoo["cache_dir"], local_files_only=True)
    shutil.rmtree(zoo["bundled"])
    with monkeypatch.context() as patch:
        patch.setattr(huggingface_hub, "hf_hub_download", no_network)
        with pytest.raises(FilesUnavailableError, match="not available locally.*local_files_only=True"):
            medzoo.load("tiny_vae", **opts)
    assert fake_hub.requests == []
    medzoo.load("tiny_vae", manifest_path=zoo["manifest_path"], cache_dir=zoo["cache_dir"])  # online once
    fake_hub.requests.clear()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    assert medzoo.load("tiny_vae", **opts).zoo_metadata["source"] == "cache"
    assert fake_hub.requests == []
    with pytest.raises(ConfigError, match="contradict"):
        medzoo.load("tiny_vae", force_download=True, **opts)


def test_hf_hub_offline_uses_a_warm_cache_and_says_how_to_fill_a_cold_one(zoo, fake_hub, preset, monkeypatch):
    from huggingface_hub import constants

    opts = dict(manifest_path=zoo["manifest_path"], cache_dir=zoo["cache_dir"])
    shutil.rmtree(zoo["bundled"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what huggingface_hub reads from it at import
    with pytest.raises(FilesUnavailableError) as info:  # cold cache
        medzoo.load("tiny_vae", **opts)
    message = str(info.value)
    assert "not available locally" in message and "HF_HUB_OFFLINE" in message
    assert "unset HF_HUB_OFFLINE" in message and "hf://medzoo/tiny-vae" in message and "cache_dir" in message
    with pytest.raises(FilesUnavailableError, match="not in the medzoo cache.*unset HF_HUB_OFFLINE"):
        medzoo.load(f"hf://medzoo/tiny-vae@{zoo['commit']}", cache_dir=zoo["cache_dir"])
    assert fake_hub.requests == []

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    medzoo.load("tiny_vae", **opts)  # online once: the cache is warm
    fake_hub.requests.clear()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = medzoo.load("tiny_vae", **opts)
    assert model.zoo_metadata["source"] == "cache"
    np.testing.assert_array_equal(model.reconstruct(preset["x"]), preset["expected"])
    assert medzoo.load(f"hf://medzoo/tiny-vae@{zoo['commit']}", cache_dir=zoo["cache_dir"]).zoo_metadata[
        "source"] == "cache"
    assert fake_hub.requests == []


def test_a_pinned_revision_is_honoured_after_the_branch_moves(zoo, fake_hub, preset, tmp_path):
    v2 = tmp_path / "v2"
    shutil.copytree(preset["path"], v2)
    update_preset(v2, description="Version two.")
    commit2 = fake_hub.add("medzoo/tiny-vae", v2)  # main moves on
    assert commit2 != zoo["commit"]
    shutil.rmtree(zoo["bundled"])

    model = medzoo.load("tiny_vae", manifest_path=zoo["manifest_path"], cache_dir=zoo["cache_dir"])
    assert model.zoo_metadata["hub"]["revision"] == zoo["commit"]
    assert model.zoo_metadata["description"] == "A tiny VAE for tests."
    assert fake_hub.downloads() and all(f"/resolve/{zoo['commit']}/" in p for p in fake_hub.downloads())

    cache = tmp_path / "other-cache"
    fake_hub.requests.clear()
    model = medzoo.load(f"hf://medzoo/tiny-vae@{zoo['commit']}", cache_dir=cache)
    assert model.zoo_metadata["description"] == "A tiny VAE for tests."
    assert all(f"/resolve/{zoo['commit']}/" in p for p in fake_hub.downloads())
    with pytest.warns(UserWarning, match=f"resolved to commit {commit2}"):  # unpinned: follows the branch
        model = medzoo.load("hf://medzoo/tiny-vae", cache_dir=cache)
    assert model.zoo_metadata["description"] == "Version two." and model.zoo_metadata["hub"]["revision"] == commit2


def test_hub_only_entries_and_the_cache_env_variable(fake_hub, preset, tmp_path, monkeypatch):
    commit = fake_hub.add("medzoo/tiny-vae", preset["path"], subfolder="v1")
    path = tmp_path / "weights_manifest.json"
    entry = manifest.add_to_manifest(preset["path"], manifest_path=path, bundle=False,
                                     hub=f"hf://medzoo/tiny-vae@{commit}/v1")
    assert entry["sources"]["hub"]["filename"] == "v1/model.weights.h5"
    monkeypatch.setenv("MEDZOO_CACHE", str(tmp_path / "env-cache"))
    model = medzoo.load("tiny_vae", manifest_path=path)
    assert model.zoo_metadata["source"] == "hub"
    assert all(p.startswith("/medzoo/tiny-vae/resolve/") and "/v1/" in p for p in fake_hub.downloads())
    assert cached_weights(tmp_path / "env-cache")
    with pytest.raises(FilesUnavailableError, match="not available locally"):
        medzoo.load("tiny_vae", manifest_path=path, cache_dir=tmp_path / "empty", local_files_only=True)


def test_hf_uri_pinned_and_unpinned(fake_hub, preset, tmp_path):
    commit = fake_hub.add("someone/tiny-vae", preset["path"])
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match=f"does not pin a commit.*resolved to commit {commit}"):
        model = medzoo.load("hf://someone/tiny-vae", cache_dir=cache)
    assert model.zoo_metadata["source"] == "hub" and model.zoo_metadata["hub"]["revision"] == commit
    np.testing.assert_array_equal(model.reconstruct(preset["x"]), preset["expected"])
    assert len(fake_hub.downloads()) == 4

    fake_hub.requests.clear()
    model = medzoo.load(f"hf://someone/tiny-vae@{commit}", cache_dir=cache)  # pinned and cached: no network
    assert model.zoo_metadata["source"] == "cache" and fake_hub.requests == []
    with pytest.warns(UserWarning, match="does not pin a commit"):  # a branch, offline: its last known commit
        model = medzoo.load("hf://someone/tiny-vae@main", cache_dir=cache, local_files_only=True)
    assert model.zoo_metadata["hub"]["revision"] == commit and fake_hub.requests == []
    with pytest.raises(FilesUnavailableError, match="not in the medzoo cache"):
        medzoo.load("hf://someone/other", cache_dir=cache, local_files_only=True)
    assert fake_hub.requests == []
    with pytest.raises(FilesUnavailableError, match="could not download config.json"):
        medzoo.load(f"hf://someone/tiny-vae@{'f' * 40}", cache_dir=cache)


def test_hf_uri_checks_the_digests_recorded_in_metadata(fake_hub, preset, tmp_path):
    fake_hub.add("someone/tiny-vae", preset["path"])
    fake_hub.tamper["config.json"] = (preset["path"] / "config.json").read_bytes().replace(b'"seed": 0', b'"seed": 9')
    with pytest.raises(IntegrityError, match="config.json .* has sha256 .* expected .*nothing was cached"):
        medzoo.load("hf://someone/tiny-vae@main", cache_dir=tmp_path / "cache")
    assert not cached_weights(tmp_path / "cache")


def test_fetch_verifies_and_downloads_without_building_the_model(zoo, fake_hub, preset, tmp_path):
    """``medzoo download``'s API: the files load() would use, verified, and where they are."""
    opts = dict(manifest_path=zoo["manifest_path"], cache_dir=zoo["cache_dir"])
    fetched = medzoo.zoo.fetch("tiny_vae", **opts)  # bundled: verified in place, no network
    assert fetched.source == "bundled" and fetched.folder == zoo["bundled"] and fake_hub.requests == []
    assert fetched.files["model.weights.h5"] == sha256_file(preset["path"] / "model.weights.h5")
    fetched = medzoo.zoo.fetch("tiny_vae", force_download=True, **opts)  # into the cache, where load finds it
    assert fetched.source == "hub" and fetched.hub["revision"] == zoo["commit"]
    assert cached_weights(zoo["cache_dir"]) == [fetched.folder / "model.weights.h5"]
    assert medzoo.zoo.fetch("tiny_vae", **opts).source == "cache"
    assert medzoo.load("tiny_vae", **opts).zoo_metadata["path"] == str(fetched.folder)
    _corrupt(fetched.folder / "model.weights.h5")
    with pytest.raises(IntegrityError, match="model.weights.h5 .*force_download=True"):
        medzoo.zoo.fetch("tiny_vae", **opts)
    fetched = medzoo.zoo.fetch(f"hf://medzoo/tiny-vae@{zoo['commit']}", cache_dir=tmp_path / "other")
    assert fetched.source == "hub" and set(fetched.files) == {"config.json", "model.weights.h5", "README.md"}
    with pytest.raises(ModelNotFoundError, match="did you mean 'tiny_vae'"):
        medzoo.zoo.fetch("tiny-vae", **opts)
    with pytest.raises(ConfigError, match="preset folder"):
        medzoo.zoo.fetch(str(preset["path"]))


def test_a_preset_path_loads_without_a_manifest(preset, tmp_path):
    model = medzoo.load(str(preset["path"]))
    assert model.zoo_metadata["source"] == "path" and model.zoo_metadata["name"] == "tiny_vae"
    np.testing.assert_array_equal(model.reconstruct(preset["x"]), preset["expected"])
    assert medzoo.load(preset["path"], compile=False).zoo_metadata["source"] == "path"  # a pathlib.Path too
    with pytest.raises(ModelNotFoundError, match="unknown model 'tiny_vea'"):
        medzoo.load("tiny_vea", manifest_path=_manifest_with(preset, tmp_path))


def _manifest_with(preset, tmp_path):
    path = tmp_path / "m" / "weights_manifest.json"
    manifest.add_to_manifest(preset["path"], manifest_path=path)
    return path


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("hf://org/repo", ("org/repo", None, "")),
        ("hf://org/repo@v1.0", ("org/repo", "v1.0", "")),
        (f"hf://org/repo@{'a' * 40}/presets/ae", ("org/repo", "a" * 40, "presets/ae")),
        ("hf://org/repo@refs%2Fpr%2F3", ("org/repo", "refs/pr/3", "")),
    ],
)
def test_parse_hf_uri(uri, expected):
    ref = hub.parse_hf_uri(uri)
    assert (ref.repo_id, ref.revision, ref.subfolder) == expected
    assert hub.parse_hf_uri(ref.uri) == ref


@pytest.mark.parametrize("uri", ["hf://org", "hf://org/../x", "hf:///repo", "hf://org/repo@v1/../../etc"])
def test_parse_hf_uri_refuses_malformed(uri):
    with pytest.raises(ConfigError):
        hub.parse_hf_uri(uri)


def test_push_to_hub_uploads_what_load_downloads(fake_hub, preset, tmp_path):
    commit = medzoo.push_to_hub(preset["path"], "org/tiny-vae", private=True, token="hf_test")
    repo = fake_hub.repos["org/tiny-vae"]
    assert repo["private"] and repo["refs"]["main"] == commit
    assert fake_hub.authorizations == {"Bearer hf_test"}
    assert "tiny_vae 1.0.0 (medzoo preset)" in repo["messages"][commit]
    uploaded = {path: data for path, data in repo["commits"][commit].items() if path != ".gitattributes"}
    assert uploaded == {p.name: p.read_bytes() for p in preset["path"].iterdir()}  # the preset, byte for byte

    fake_hub.requests.clear()
    model = medzoo.load(f"hf://org/tiny-vae@{commit}", cache_dir=tmp_path / "cache")
    assert model.zoo_metadata["source"] == "hub" and model.zoo_metadata["hub"]["revision"] == commit
    assert sorted(p.rsplit("/", 1)[1] for p in fake_hub.downloads()) == sorted(uploaded)
    np.testing.assert_array_equal(model.reconstruct(preset["x"]), preset["expected"])

    v1 = medzoo.push_to_hub(preset["path"], "org/tiny-vae", revision="v1", token="hf_test")  # a branch, created
    assert repo["refs"]["v1"] == v1 != commit and repo["refs"]["main"] == commit
    with pytest.warns(UserWarning, match=f"resolved to commit {v1}"):
        assert medzoo.load("hf://org/tiny-vae@v1", cache_dir=tmp_path / "cache").zoo_metadata["hub"]["revision"] == v1

    bad = tmp_path / "bad"
    shutil.copytree(preset["path"], bad)
    (bad / "extra.pkl").write_bytes(b"x")
    fake_hub.requests.clear()
    with pytest.raises(ConfigError, match="unexpected files"):
        medzoo.push_to_hub(bad, "org/tiny-vae", token="hf_test")
    assert fake_hub.requests == []  # refused before any request


def test_a_vq_vae_preset_carries_its_entropy_model_through_the_hub(fake_hub, tiny_cxr, tmp_path):
    """entropy_model.npz is uploaded, downloaded (manifest entry and hf://), verified and used like the others."""
    from medzoo.codec.entropy import save_to_preset, shipped_entropy_model
    from medzoo.models import VQVAE

    model = VQVAE(input_shape=(32, 32, 1), filters=4, depth=2, num_embeddings=8, embedding_dim=2, seed=0)
    path = save_preset(model, tmp_path / "tiny_vq", name="tiny_vq", spec=SPEC, training=TRAINING,
                       metrics={"test": {"psnr": 20.0}})
    em = save_to_preset(path, train_images=tiny_cxr[:24], val_images=tiny_cxr[24:])
    commit = medzoo.push_to_hub(path, "org/tiny-vq", token="hf_test")
    assert fake_hub.repos["org/tiny-vq"]["commits"][commit]["entropy_model.npz"] == (
        path / "entropy_model.npz").read_bytes()

    manifest_path = tmp_path / "weights_manifest.json"
    manifest.add_to_manifest(path, manifest_path=manifest_path, bundle=False, hub=f"hf://org/tiny-vq@{commit}")
    fake_hub.requests.clear()
    loaded = medzoo.load("tiny_vq", manifest_path=manifest_path, cache_dir=tmp_path / "cache")
    assert len(fake_hub.downloads()) == 5  # the manifest lists the entropy model
    assert (pathlib.Path(loaded.zoo_metadata["path"]) / "entropy_model.npz").is_file()
    assert shipped_entropy_model(loaded).digest == em.digest
    fake_hub.requests.clear()
    loaded = medzoo.load(f"hf://org/tiny-vq@{commit}", cache_dir=tmp_path / "other-cache")  # no manifest: metadata
    assert sorted(p.rsplit("/", 1)[1] for p in fake_hub.downloads()) == sorted(p.name for p in path.iterdir())
    assert shipped_entropy_model(loaded).digest == em.digest

    fake_hub.tamper["entropy_model.npz"] = (path / "entropy_model.npz").read_bytes()[:-10]
    for source in ("tiny_vq", f"hf://org/tiny-vq@{commit}"):
        with pytest.raises(IntegrityError, match="entropy_model.npz .*nothing was cached"):
            medzoo.load(source, manifest_path=manifest_path, cache_dir=tmp_path / "third-cache")
    assert not list((tmp_path / "third-cache").rglob("*.npz"))


def test_every_zoo_entry_published_by_medzoo_push_loads_from_the_hub_into_a_light_install(fake_hub, tmp_path,
                                                                                           monkeypatch):
    """The wheel carries the default model only: ``medzoo push --all`` publishes the checkout's presets (one
    repository per entry) and pins each commit; an install without the checkout's presets folder then loads every
    entry of the zoo from the Hub, verified, into an empty cache."""
    from medzoo.cli import main
    from medzoo.zoo import mirror

    path = tmp_path / "pkg" / "weights_manifest.json"
    path.parent.mkdir()
    shutil.copy(manifest.DEFAULT_MANIFEST, path)
    names = [entry["name"] for entry in manifest.read_manifest(path)["models"]]
    monkeypatch.setattr(manifest, "DEFAULT_MANIFEST", path)  # what `medzoo push` writes
    assert main(["push", "--all", "--org", "medzoo", "--token", "hf_test"]) == 0
    pinned = manifest.read_manifest(path)["models"]
    assert [e["sources"]["hub"]["repo_id"] for e in pinned] == [f"medzoo/{name}" for name in names]
    assert all(hub.is_commit(e["sources"]["hub"]["revision"]) for e in pinned)

    monkeypatch.setattr(mirror, "CHECKOUT_PRESETS", tmp_path / "not-a-checkout")  # an installed wheel
    monkeypatch.delenv("MEDZOO_MIRROR", raising=False)
    fetched_with_a_prior = set()  # a latent prior loads its autoencoder: from the Hub then, from the cache after
    for entry in pinned:
        model = medzoo.load(entry["name"], manifest_path=path, cache_dir=tmp_path / "cache", compile=False)
        expected = "cache" if entry["name"] in fetched_with_a_prior else "hub"
        assert model.zoo_metadata["source"] == expected, entry["name"]
        if entry["family"] == "prior":
            assert model.autoencoder.zoo_metadata["source"] in ("hub", "cache")
            fetched_with_a_prior.add(model.autoencoder_name)
        assert (model.zoo_metadata.get("hub") or model.zoo_metadata.get("source") == "cache")
        if expected == "hub":
            assert model.zoo_metadata["hub"] == {k: entry["sources"]["hub"][k] for k in ("repo_id", "revision")}
        assert model.zoo_metadata["version"] == entry["version"]
    assert len(cached_weights(tmp_path / "cache")) == len(names)


def test_without_a_hub_source_an_install_says_to_point_medzoo_mirror_at_a_presets_folder(tmp_path, monkeypatch):
    from medzoo.zoo import mirror

    monkeypatch.setattr(mirror, "CHECKOUT_PRESETS", tmp_path / "not-a-checkout")
    monkeypatch.delenv("MEDZOO_MIRROR", raising=False)
    with pytest.raises(FilesUnavailableError, match=r"not on the Hub yet.*presets/ae-chestxray-f4c3/.*"
                                                    r"MEDZOO_MIRROR=CHECKOUT/presets.*medzoo download ae-chestxray-f4c3 "
                                                    r"--from CHECKOUT --to DIR"):
        medzoo.load("ae-chestxray-f4c3", cache_dir=tmp_path / "cache")
    monkeypatch.setenv("MEDZOO_MIRROR", str(mirror.CHECKOUT_PRESETS.parent / "missing"))
    with pytest.raises(ConfigError, match="MEDZOO_MIRROR=.* is not a folder"):
        medzoo.load("ae-chestxray-f4c3")


def test_loading_from_python_keeps_tensorflows_start_up_lines_quiet(tmp_path):
    """``medzoo.load`` in a fresh process prints no CUDA probe or oneDNN notes (the CLI's quiet import, for the API)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MEDZOO_TF_LOGS")}
    code = "import medzoo; m = medzoo.load('vae-chestxray-f8c4'); print(type(m).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "VAE", out.stderr[-2000:]
    assert "cuInit" not in out.stderr and "cudart" not in out.stderr and "oneDNN" not in out.stderr, out.stderr
