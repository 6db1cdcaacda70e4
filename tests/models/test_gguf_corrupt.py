"""Cut and crafted GGUF files (issue 11, item 11 and "unhelpful crashes"): ``qlab.models.load``
raises ``ValueError("<path>: truncated/corrupt GGUF: ...")`` instead of ``struct.error`` /
``OverflowError`` / a short tensor, and the CLI exits 2 with that line. The files are a real tiny
LLaMA written by gguf-py, then cut or patched."""

from __future__ import annotations

import struct

import pytest

from qlab.cli import main
from qlab.models import load
from tests.models.test_gguf_path import QTYPES, write_tiny_llama


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path, _ = write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf", QTYPES)
    return path.read_bytes()


@pytest.mark.parametrize(
    "cut, match",
    [
        (10, r"10 bytes, shorter than the 24-byte header"),
        (200, r"string of|array of|unpack"),  # inside the metadata
        (-1000, r"tensor '.*' ends at byte \d+, the file has \d+ bytes \(truncated"),  # inside the data
    ],
)
def test_cut_file(good, tmp_path, cut, match):
    path = tmp_path / f"cut{cut}.gguf"
    path.write_bytes(good[:cut])
    with pytest.raises(ValueError, match=rf"cut{cut}\.gguf: truncated/corrupt GGUF: .*({match})"):
        load(path, progress=False)


@pytest.mark.parametrize("field, value", [("n_tensors", 2**63), ("n_kv", 2**63), ("n_kv", 10**6)])
def test_absurd_counts(good, tmp_path, field, value):
    raw = bytearray(good)
    struct.pack_into("<Q", raw, 8 if field == "n_tensors" else 16, value)
    path = tmp_path / "crafted.gguf"
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"crafted\.gguf: truncated/corrupt GGUF: "):
        load(path, progress=False)


def test_cli_exits_2_with_the_line(good, tmp_path, capsys):
    path = tmp_path / "cut.gguf"
    path.write_bytes(good[: len(good) // 2])
    assert main(["quantize", "--model", str(path), "--recipe", "int8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qlab quantize: error: ") and "cut.gguf: truncated/corrupt GGUF: tensor" in err
