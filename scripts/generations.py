"""Lesson 13's "same prompt, every format" cache: greedy continuations of SmolLM2-135M, float and
quantized (:func:`qlab.analysis.generation.same_prompt`), for English and Korean prompts.

    python scripts/generations.py      # writes data/cache/generations.json (~1 min per prompt, 2 cores)

Greedy decoding is deterministic on one machine; where the float model's two best logits are
nearly tied (``margin`` in the float row) another CPU may continue differently, which is why the
lesson shows this cache and generates live only for new prompts.
"""

from __future__ import annotations

import time

import torch

import qlab
from qlab import cache
from qlab.analysis.generation import DEFAULT_RECIPES, same_prompt

PROMPTS = [
    "The capital of France is",
    "Quantization makes a neural network smaller by",
    "대한민국의 수도는",
    "양자화는 신경망을 작게 만드는 방법으로,",
]
N_TOKENS = 24


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    m = qlab.models.load("smollm2-135m", progress=False)
    results = []
    for p in PROMPTS:
        r = same_prompt(m, p, DEFAULT_RECIPES, N_TOKENS, progress=True)
        results.append(r.to_dict())
        print(p, [(row.label, row.diverge, round(row.mean_kl, 3)) for row in r.rows], flush=True)
    path = cache.save("generations", results, script="scripts/generations.py",
                      params={"model": "smollm2-135m", "recipes": list(DEFAULT_RECIPES), "n_tokens": N_TOKENS,
                              "decoding": "greedy (argmax), KV cache, float32", "threads": 2})  # fmt: skip
    print(f"wrote {path} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
