"""Evaluation of real models: perplexity, KL / top-1 agreement, embedding agreement, accuracy.

* :func:`perplexity` -- on WikiText-2, ``protocol="full-window"`` (default) or
  ``"llama-perplexity"`` (llama.cpp's tool; see :mod:`.perplexity`);
* :func:`reference` + :func:`compare` -- KL divergence and top-1 agreement against the float model;
  :func:`kl_report` -- every statistic ``llama-perplexity --kl-divergence`` prints (:class:`KLReport`);
  :func:`kl_divergence` for two logit tensors;
* :func:`embedding_similarity` -- cosine and top-10 neighbour overlap vs the fp32 encoder;
* :func:`accuracy` -- classifier accuracy (digits-cnn test split).

Every function takes the object :func:`qlab.models.load` returns (:class:`qlab.core.Loaded`).
Importing this package registers the default evaluation of each model kind, which
``LoadedModel.evaluate()`` runs.
"""

from ..core.text import calibration_text, sentences, wikitext2_test, wikitext_sentences
from .classification import accuracy, predict
from .embedding import embed, embedding_similarity, reference_embeddings, topk_overlap
from .kl import KLReport, Reference, compare, kl_divergence, kl_report, reference
from .perplexity import PROTOCOLS, logits, perplexity, token_nll, token_windows

__all__ = [
    "KLReport",
    "PROTOCOLS",
    "Reference",
    "accuracy",
    "compare",
    "embed",
    "embedding_similarity",
    "kl_divergence",
    "kl_report",
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


def _register() -> None:
    from ..models.zoo import register_evaluation

    def causal_lm(m, reference=None, **kw):  # type: ignore[no-untyped-def]
        return compare(m, reference, **kw) if reference is not None else {"perplexity": perplexity(m, **kw)}

    register_evaluation("causal-lm", causal_lm)
    register_evaluation("sentence-encoder", embedding_similarity)
    register_evaluation("image-classifier", lambda m, **kw: {"accuracy": accuracy(m, **kw)})


_register()
