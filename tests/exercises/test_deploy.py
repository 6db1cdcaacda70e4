"""Lesson 12 exercise: MatMulNBits bytes; a correct formula passes, plausible mistakes fail."""

import math

import qlab.exercises as ex
from qlab.viz.deploy import matmul_nbits_bytes


def test_formula_answer_passes():
    r = ex.check("matmul_nbits_bytes", lambda n, k, bits, bs, sym: matmul_nbits_bytes(n, k, bits, bs, sym)["total"])
    assert r, r.message


def test_forgetting_padding_or_zero_points_fails():
    def no_pad(n, k, bits, bs, sym):
        blocks = k / bs
        return int(n * k * bits / 8 + 4 * n * blocks + (0 if sym else n * blocks * bits / 8))

    r = ex.check("matmul_nbits_bytes", no_pad)
    assert not r and "case" in r.message and "ceil" in r.hint

    def no_zeros(n, k, bits, bs, sym):
        blocks = math.ceil(k / bs)
        return n * blocks * bs * bits // 8 + 4 * n * blocks

    r = ex.check("matmul_nbits_bytes", no_zeros)
    assert not r and "case 1" in r.message
