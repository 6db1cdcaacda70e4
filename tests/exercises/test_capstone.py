"""The capstone exercise: qlab's pareto_front passes; plausible wrong answers fail with a useful message."""

import numpy as np

import qlab.exercises as ex


def loop_front(size, metric, maximize):
    m = -np.asarray(metric) if maximize else np.asarray(metric)
    n = len(size)
    return np.array([not any(size[j] <= size[i] and m[j] <= m[i] and (size[j] < size[i] or m[j] < m[i])
                             for j in range(n)) for i in range(n)])  # fmt: skip


def test_registered_and_correct_answers_pass():
    assert "pareto_front" in ex.names(13)
    assert "Pareto front" in ex.show("pareto_front")
    r = ex.check("pareto_front", loop_front)
    assert r and r.cases_run == 10  # three capstone sweeps, identical points, six tie-heavy grids


def test_ignoring_maximize_fails():
    r = ex.check("pareto_front", lambda s, m, maximize: loop_front(s, m, False))
    assert not r and "values differ" in r.message and "maximize" in r.hint


def test_equal_points_dominating_each_other_fails():
    def wrong(size, metric, maximize):  # forgets "strictly better in one of the two"
        m = -np.asarray(metric) if maximize else np.asarray(metric)
        n = len(size)
        return np.array([not any(j != i and size[j] <= size[i] and m[j] <= m[i] for j in range(n)) for i in range(n)])

    r = ex.check("pareto_front", wrong)
    assert not r and "differ" in r.message and "same size and the same metric" in r.hint


def test_returning_indices_fails_on_shape():
    r = ex.check("pareto_front", lambda s, m, maximize: np.flatnonzero(loop_front(s, m, maximize)))
    assert not r and "shape" in r.message
