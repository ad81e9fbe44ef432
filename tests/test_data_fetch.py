"""`connectomes data`: downloads from the sources a manifest names, served here from local files (a local
HTTP server in a thread, and file:// URLs) through the same code as the real sources: checked, atomic,
resumable; a wrong checksum, a truncated download and an interrupted one resumed; the conversion step of
a set made from an archive; the packaged manifest against the reference data folder."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import stat
import tarfile
import threading
from pathlib import Path

import pytest

from connectomes.cli import main
from connectomes.core.errors import DataError
from connectomes.data.catalog import imdb_jsonl, load_manifest, select, set_state
from connectomes.data.fetch import fetch, fetch_set

A = bytes(range(256)) * 40  # 10,240 bytes: big enough to cut in the middle
B = b"second file\n" * 50


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class Server:
    """Serves ``files`` {url path: bytes} with HTTP Range support. ``cut`` {path: n} sends the full
    Content-Length but only n bytes, then drops the connection (an interrupted download); ``ignore_range``
    answers 200 with the whole file. Every request's (path, Range header) is recorded."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.cut, self.ignore_range, self.requests = files, {}, False, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet test output
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                owner.requests.append((self.path, rng))
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and not owner.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                n = owner.cut.pop(self.path, None)
                self.wfile.write(part if n is None else part[:n])
                if n is not None:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server({"/src/a.bin": A, "/src/sub/b.txt": B})
    yield s
    s.close()


def manifest(tmp: Path, base: str, files: dict[str, bytes], name: str = "toy", froms: dict | None = None) -> Path:
    """A one-set manifest in the packaged format: files {path: bytes they must have}."""
    lines = [f"{name}:", '  what: "a toy set"', '  used_by: "tests"', '  licence: "MIT"', '  citation: "nobody 2026"',
             '  homepage: "https://example.org"', f"  base: {base}", "  files:"]
    for path, data in files.items():
        src = f', from: "{froms[path]}"' if froms and path in froms else ""
        lines.append(f'    - {{path: "{path}"{src}, bytes: {len(data)}, sha256: {sha(data)}}}')
    p = tmp / f"manifest_{name}.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def toy(tmp: Path, base: str, files: dict[str, bytes] | None = None, **kw):
    return load_manifest(manifest(tmp, base, files or {"a.bin": A, "sub/b.txt": B}, **kw))["toy"]


def umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_fetch_over_http_lays_out_the_set_checked_and_with_the_users_umask(tmp_path, server):
    ds = toy(tmp_path, server.url + "src/")
    root = tmp_path / "data"
    rep = fetch_set(ds, root, say=lambda s: None)
    assert (rep.fetched, rep.present, rep.bytes) == (2, 0, len(A) + len(B))
    assert (root / "toy" / "a.bin").read_bytes() == A and (root / "toy" / "sub" / "b.txt").read_bytes() == B
    assert sorted(p.name for p in (root / "toy").rglob("*")) == ["a.bin", "b.txt", "sub"]  # no .part left
    assert stat.S_IMODE((root / "toy" / "a.bin").stat().st_mode) == 0o666 & ~umask()
    assert set_state(ds, root, verify=True).word(2) == "present"
    server.requests.clear()
    assert fetch_set(ds, root, say=lambda s: None).present == 2 and server.requests == []  # nothing downloaded twice


def test_file_urls_take_the_same_path(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(A)
    (src / "sub" / "b.txt").write_bytes(B)
    ds = toy(tmp_path, src.as_uri() + "/")
    fetch([ds], tmp_path / "data", say=lambda s: None)
    assert (tmp_path / "data" / "toy" / "a.bin").read_bytes() == A


def test_a_wrong_checksum_is_an_error_and_leaves_no_file(tmp_path, server):
    server.files["/src/a.bin"] = A[:-1] + b"\x00"  # same size, other bytes: the source changed
    ds = toy(tmp_path, server.url + "src/", {"a.bin": A})
    with pytest.raises(DataError, match=r"is not the pinned file \(sha256 [0-9a-f]{64}, 10,240 bytes; the manifest pins "
                       + sha(A)):
        fetch_set(ds, tmp_path / "data", say=lambda s: None)
    assert list((tmp_path / "data" / "toy").iterdir()) == []  # neither the file nor its .part


def test_a_truncated_download_leaves_no_file_and_resumes_where_it_stopped(tmp_path, server):
    server.files["/src/a.bin"] = A[:4000]  # the server ends early, saying nothing about a longer file
    ds = toy(tmp_path, server.url + "src/", {"a.bin": A})
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"ended at 4,000 of 10,240 bytes; .*a\.bin\.part keeps them: run the same command again"):
        fetch_set(ds, root, say=lambda s: None)
    assert [p.name for p in (root / "toy").iterdir()] == ["a.bin.part"]
    server.files["/src/a.bin"] = A
    server.requests.clear()
    fetch_set(ds, root, say=lambda s: None)
    assert server.requests == [("/src/a.bin", "bytes=4000-")]  # only the rest was asked for
    assert (root / "toy" / "a.bin").read_bytes() == A and not (root / "toy" / "a.bin.part").exists()


def test_an_interrupted_download_is_resumed_never_a_half_file(tmp_path, server):
    server.cut["/src/a.bin"] = 3000  # the connection drops after 3,000 of 10,240 bytes
    ds = toy(tmp_path, server.url + "src/", {"a.bin": A})
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"(stopped|ended) at 3,000 .*run the same command again to fetch the rest"):
        fetch_set(ds, root, say=lambda s: None)
    assert not (root / "toy" / "a.bin").exists() and (root / "toy" / "a.bin.part").read_bytes() == A[:3000]
    server.requests.clear()
    fetch_set(ds, root, say=lambda s: None)
    assert server.requests == [("/src/a.bin", "bytes=3000-")]
    assert (root / "toy" / "a.bin").read_bytes() == A


def test_a_server_that_ignores_range_restarts_the_file(tmp_path, server):
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    (root / "toy" / "a.bin.part").write_bytes(b"junk" * 100)  # 400 bytes from an older attempt
    server.ignore_range = True
    fetch_set(toy(tmp_path, server.url + "src/", {"a.bin": A}), root, say=lambda s: None)
    assert (root / "toy" / "a.bin").read_bytes() == A


def test_a_present_file_with_other_bytes_is_never_overwritten(tmp_path, server):
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    (root / "toy" / "a.bin").write_bytes(b"my own edits")
    with pytest.raises(DataError, match=r"a\.bin exists but is not the file the manifest pins .*move it aside"):
        fetch_set(toy(tmp_path, server.url + "src/", {"a.bin": A}), root, say=lambda s: None)
    assert (root / "toy" / "a.bin").read_bytes() == b"my own edits"
    assert server.requests == []


def test_a_missing_source_names_the_url(tmp_path, server):
    ds = toy(tmp_path, server.url + "nothing/", {"a.bin": A})
    with pytest.raises(DataError, match=r"cannot fetch http://127\.0\.0\.1:\d+/nothing/a\.bin: HTTP 404"):
        fetch_set(ds, tmp_path / "data", say=lambda s: None)


def _aclimdb_tar(path: Path, reviews: dict[str, str], mode: str = "w:gz") -> bytes:
    """A tar.gz with aclImdb's layout holding ``reviews`` {"train/pos/3_9": text}, plus a test review and a
    non-review file the conversion must skip. Returns the archive's bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for rid, text in {**reviews, "test/pos/0_10": "a test review", "train/urls_pos": "http://x"}.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"aclImdb/{rid}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_the_imdb_conversion_step_makes_the_corpus_jsonl(tmp_path):
    reviews = {"train/pos/10_7": "Ten.<br /><br />Caf\u00e9 \u2028two", "train/pos/2_9": "Two \"quoted\"",
               "train/neg/0_1": "Bad."}
    archive = tmp_path / "aclImdb_v1.tar.gz"
    _aclimdb_tar(archive, reviews)
    pos = imdb_jsonl(archive, "pos")
    assert pos == ('{"id": "train/pos/2_9", "label": "pos", "rating": 9, "text": "Two \\"quoted\\""}\n'
                   '{"id": "train/pos/10_7", "label": "pos", "rating": 7, "text": "Ten.<br /><br />Caf\u00e9 \u2028two"}\n'
                   ).encode("utf-8")  # numeric order (2 before 10), text unchanged and not ASCII-escaped
    assert imdb_jsonl(archive, "neg") == b'{"id": "train/neg/0_1", "label": "neg", "rating": 1, "text": "Bad."}\n'


def test_a_set_built_from_an_archive_is_downloaded_converted_and_checked(tmp_path, server):
    archive = _aclimdb_tar(tmp_path / "a.tar.gz", {"train/pos/0_8": "Good.", "train/neg/1_2": "Meh."})
    server.files["/aclImdb_v1.tar.gz"] = archive
    pos = b'{"id": "train/pos/0_8", "label": "pos", "rating": 8, "text": "Good."}\n'
    neg = b'{"id": "train/neg/1_2", "label": "neg", "rating": 2, "text": "Meh."}\n'
    p = tmp_path / "m.yaml"
    p.write_text("corpus/imdb:\n  what: x\n  used_by: x\n  licence: x\n  citation: x\n  homepage: x\n"
                 f"  build: {{step: imdb_jsonl, archive: '{server.url}aclImdb_v1.tar.gz', md5: {hashlib.md5(archive).hexdigest()}}}\n"
                 f"  files:\n    - {{path: imdb_train_pos.jsonl, bytes: {len(pos)}, sha256: {sha(pos)}}}\n"
                 f"    - {{path: imdb_train_neg.jsonl, bytes: {len(neg)}, sha256: {sha(neg)}}}\n")
    root = tmp_path / "data"
    fetch(select(load_manifest(p), ["corpus"]), root, say=lambda s: None)
    assert (root / "corpus/imdb/imdb_train_pos.jsonl").read_bytes() == pos
    assert (root / "corpus/imdb/imdb_train_neg.jsonl").read_bytes() == neg
    assert not (root / ".downloads").exists()  # the archive is not kept once its files are in place
    bad = tmp_path / "bad.yaml"
    bad.write_text(p.read_text().replace(hashlib.md5(archive).hexdigest(), "0" * 32))
    with pytest.raises(DataError, match="is not the pinned file \\(md5"):
        fetch(select(load_manifest(bad), ["corpus"]), tmp_path / "data2", say=lambda s: None)
    assert not (tmp_path / "data2" / "corpus").exists()


def test_the_packaged_manifest_pins_every_source():
    sets = load_manifest()
    assert {"corpus/novels", "corpus/imdb", "blimp", "blimp_supplement", "hellaswag", "mmlu", "naturalstories",
            "tuckute2024", "langloc", "gpt2"} <= set(sets)
    for ds in sets.values():
        assert ds.licence and ds.citation and ds.homepage.startswith("https://")
        for f in ds.files:
            if f.url and "raw.githubusercontent.com" in f.url:
                assert re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{40}/", f.url), f.url
            assert f.url is None or f.url.startswith("https://")
    assert [s.name for s in select(sets, ["corpus"])] == [n for n in sets if n.startswith("corpus/")]


def test_the_packaged_manifest_matches_the_reference_data_folder(data_root):
    for ds in load_manifest().values():
        st = set_state(ds, data_root, verify=True)
        assert (st.missing, st.differing) == ([], []), ds.name


def test_the_imdb_conversion_reproduces_the_reference_files(data_root, tmp_path):
    """The pinned jsonl files, rebuilt from the reviews they hold laid out as the aclImdb archive."""
    reviews = {}
    for label in ("pos", "neg"):
        for line in (data_root / f"corpus/imdb/imdb_train_{label}.jsonl").read_text(encoding="utf-8").split("\n")[:-1]:  # not splitlines: reviews hold U+2028
            row = json.loads(line)
            reviews[row["id"]] = row["text"]
    archive = tmp_path / "aclImdb_v1.tar"
    _aclimdb_tar(archive, reviews, mode="w")  # uncompressed: gzip would take most of this test's time
    pins = {f.path: f.sha256 for f in load_manifest()["corpus/imdb"].files}
    for label in ("pos", "neg"):
        assert sha(imdb_jsonl(archive, label)) == pins[f"imdb_train_{label}.jsonl"]


def test_data_cli_fetches_from_a_mirror_and_lists_it(data_root, tmp_path, capsys):
    s = Server({f"/{p.relative_to(data_root)}": p.read_bytes() for p in (data_root / "langloc").glob("*.csv")})
    try:
        assert main(["data", "fetch", "langloc", "tuckute2024", "--root", str(tmp_path), "--mirror", s.url]) == 2
        assert "tuckute2024/bold_response_LH.csv: HTTP 404" in capsys.readouterr().err  # not on that mirror
        assert main(["data", "fetch", "tuckute2024", "--root", str(tmp_path), "--mirror", str(data_root)]) == 0
    finally:
        s.close()
    assert "fetched 1 files" in capsys.readouterr().out
    assert main(["data", "list", "--root", str(tmp_path), "--verify"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^langloc +present +10 ", out, re.M) and re.search(r"^tuckute2024 +present +1 ", out, re.M)
    assert re.search(r"^blimp +missing +68 ", out, re.M)


def test_data_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "fetch", "nosuch", "--root", str(tmp_path)]) == 2
    assert "no data set 'nosuch'; the manifest has corpus/imdb, " in capsys.readouterr().err
    assert main(["data", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"data folder: {tmp_path} (--root)" in out and re.search(r"^hellaswag +missing +1 ", out, re.M)
