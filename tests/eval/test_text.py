"""The calibration text of the LLM methods never overlaps the text perplexity scores."""

import pytest

from qlab.eval import calibration_text, token_windows, wikitext2_test


def test_calibration_text_is_disjoint_from_the_evaluation_text(smollm2):
    full, cal = wikitext2_test(), calibration_text()
    start = full.index(cal)
    assert len(cal) == 200_000 and cal.startswith(" = ") and cal[3] != "=" and start > len(full) // 2
    # the protocol's 16 x 512 tokens all come from the first 100k characters, far before `start`
    assert token_windows(smollm2, full[:100_000], 512, 16).shape == (16, 512)
    with pytest.raises(ValueError):
        calibration_text(0)
