"""Evaluation of real models: perplexity, KL / top-1 agreement, embedding agreement, accuracy.

* :func:`perplexity` -- llama.cpp's fixed-window protocol on WikiText-2 (see :mod:`.perplexity`);
* :func:`reference` + :func:`compare` -- KL divergence and top-1 agreement against the float model;
  :func:`kl_divergence` for two logit tensors;
* :func:`embedding_similarity` -- cosine and top-10 neighbour overlap vs the fp32 encoder;
* :func:`accuracy` -- classifier accuracy (digits-cnn test split).

Every function takes the object :func:`qlab.models.load` returns.
"""

from .classification import accuracy, predict
from .embedding import embed, embedding_similarity, reference_embeddings, topk_overlap
from .kl import Reference, compare, kl_divergence, reference
from .perplexity import logits, perplexity, token_nll, token_windows
from .text import calibration_text, sentences, wikitext2_test, wikitext_sentences

__all__ = [
    "Reference",
    "accuracy",
    "compare",
    "embed",
    "embedding_similarity",
    "kl_divergence",
    "logits",
    "perplexity",
    "predict",
    "reference",
    "reference_embeddings",
    "sentences",
    "token_nll",
    "token_windows",
    "topk_overlap",
    "wikitext2_test",
    "calibration_text",
    "wikitext_sentences",
]
