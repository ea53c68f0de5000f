"""Property-based: whatever bytes or text a reader is given, the outcome is a result or one of
transferkit's own errors, never another exception type (and never a hang)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from transferkit.data import (
    from_csv,
    from_text_csv,
    load_data,
    load_image,
    read_attributes,
    read_descriptions,
)
from transferkit.errors import TransferkitError
from transferkit.model import TransferModel

FUZZ = settings(max_examples=int(os.environ.get("TK_FUZZ_EXAMPLES", 60)), deadline=None,
                derandomize="TK_FUZZ_RANDOM" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow])

PNG = b"\x89PNG\r\n\x1a\n"
# bytes that start like real formats, then anything: the readers' paths past the magic number
raw = st.one_of(st.binary(max_size=400),
                st.binary(max_size=400).map(lambda b: PNG + b),
                st.binary(max_size=400).map(lambda b: b"\xff\xd8\xff\xe0" + b),
                st.binary(max_size=400).map(lambda b: b"GIF89a" + b))
cells = st.one_of(st.text(alphabet='ab,"\n\r; 1.5-é\x00\t[]/\\{}:n', max_size=200),
                  st.sampled_from(["nan,inf", "x,1e999", ",,,", "\ufeffclass,a\nb,1"]))
csv_text = st.one_of(cells, cells.map(lambda t: "path,label\n" + t),
                     cells.map(lambda t: "text,label\n" + t),
                     cells.map(lambda t: "class,description\n" + t),
                     cells.map(lambda t: "class,has_fur,legs\n" + t))
json_text = st.one_of(cells, st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), st.text(max_size=20),
              st.integers()),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12).map(json.dumps))


def _outcome(fn, *args, **kw) -> None:
    with contextlib.suppress(TransferkitError):  # a clear, named error is fine
        fn(*args, **kw)


@FUZZ
@given(data=raw)
def test_image_reader(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.png"
        p.write_bytes(data)
        _outcome(load_image, p)
        _outcome(load_image, p, max_side=16)


@FUZZ
@given(text=csv_text, encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]))
@example(text="path,label\n\x00", encoding="utf-8")  # found by this test: a NUL in a path
def test_csv_readers(text: str, encoding: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.csv"
        try:
            p.write_bytes(text.encode(encoding))
        except UnicodeEncodeError:
            p.write_bytes(text.encode("utf-8"))
        (Path(d) / "a").write_bytes(PNG)
        for reader in (from_csv, from_text_csv, load_data, read_descriptions,
                       read_attributes):
            _outcome(reader, p)
        _outcome(from_csv, p, label_column=None)


@FUZZ
@given(text=json_text)
def test_json_descriptions(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "d.json"
        p.write_text(text, encoding="utf-8")
        _outcome(read_descriptions, p)


@FUZZ
@given(names=st.lists(st.text(alphabet="abc.[]/ _-é", min_size=1, max_size=6), max_size=4),
       blobs=st.lists(raw, max_size=4))
def test_folder_reader(names: list[str], blobs: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for i, blob in enumerate(blobs):
            sub = root / (names[i % len(names)] if names else "c")
            try:
                sub.mkdir(parents=True, exist_ok=True)
                (sub / f"{i}.png").write_bytes(blob)
                (sub / f"{i}.txt").write_bytes(blob)
            except OSError:
                return  # a name the filesystem refuses: nothing to read
        _outcome(load_data, root)
        _outcome(load_data, root, labelled=False)


@FUZZ
@given(config=json_text, weights=raw)
def test_run_directory_loader(config: str, weights: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        run = Path(d)
        (run / "config.json").write_text(config, encoding="utf-8")
        (run / "model.safetensors").write_bytes(weights)
        _outcome(TransferModel.load, run)
