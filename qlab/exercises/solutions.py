"""Reference solutions of the course exercises, as a learner would write them.

Each lesson gives a stub to complete; :func:`qlab.exercises.solution` prints the solution below and
:func:`qlab.exercises.check_solution` runs it through the same checker (nbval runs that in every
lesson, so a solution that stops passing fails the tests). A solution is the source of one function
named ``my_<something>`` (plus the imports it needs); ``np``, ``torch`` and ``math`` are available.
"""

from __future__ import annotations

SOLUTIONS: dict[str, str] = {
    "awq_scales": """\
def my_awq_scales(abs_mean, alpha):
    s = np.maximum(np.asarray(abs_mean, np.float32) ** np.float32(alpha), np.float32(1e-4))
    return (s / np.sqrt(s.max() * s.min())).astype(np.float32)
""",
    "block_bits_per_weight": """\
def my_block_bits_per_weight(block_size, part_bytes, row_length=None, per_row_bytes=0):
    bits = 8 * sum(part_bytes) / block_size
    if row_length:
        bits += 8 * per_row_bytes / row_length
    return bits
""",
    "count_parameters": """\
def my_count_parameters(model):
    return sum(p.numel() for p in model.parameters())
""",
    "decode_e4m3": """\
def my_decode_e4m3(code):
    sign = -1.0 if code & 0x80 else 1.0
    e, m = (code >> 3) & 0xF, code & 0x7
    if e == 0xF and m == 0x7:
        return float("nan")
    if e == 0:
        return sign * 2.0 ** (1 - 7) * (m / 8)
    return sign * 2.0 ** (e - 7) * (1 + m / 8)
""",
    "decode_q4_0_block": """\
def my_decode_q4_0_block(raw):
    d = raw[:2].view(np.float16)[0].astype(np.float32)
    qs = raw[2:]
    codes = np.concatenate([qs & 0x0F, qs >> 4])
    return (codes.astype(np.float32) - 8) * d
""",
    "gptq_column_step": """\
def my_gptq_step(w, u, scale, zero, bits):
    w = np.array(w, dtype=np.float32)
    q = (np.clip(np.rint(w[:, 0] / scale) + zero, 0, 2**bits - 1) - zero) * scale
    err = (w[:, 0] - q) / u[0]
    w[:, 1:] -= np.outer(err, u[1:])
    w[:, 0] = q
    return w.astype(np.float32)
""",
    "lsq_step_grad": """\
def my_lsq_step_grad(v, s, bits):
    Q = 2 ** (bits - 1) - 1
    r = v / s
    inside = np.round(r) - r  # d(round(v/s) * s)/ds with round' = 1
    return np.where(r < -Q, -Q, np.where(r > Q, Q, inside))
""",
    "hadamard_matrix": """\
def my_hadamard(n):
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h
""",
    "kv_bytes_per_token": """\
def my_kv_bytes(layers, kv_heads, head_dim, block, block_bytes):
    return layers * 2 * kv_heads * head_dim / block * block_bytes
""",
    "importance_vector": """\
def my_importance(batches):
    cols = batches[0].shape[-1]
    rows = np.concatenate([np.asarray(b, dtype=np.float64).reshape(-1, cols) for b in batches])
    return np.square(rows).mean(0).astype(np.float32)
""",
    "matmul_nbits_bytes": """\
import math

def my_matmul_nbits_bytes(n, k, bits, block_size, symmetric):
    blocks = math.ceil(k / block_size)
    codes = n * blocks * block_size * bits // 8
    scales = n * blocks * 4  # one float32 per block
    zero_points = 0 if symmetric else n * math.ceil(blocks * bits / 8)
    return codes + scales + zero_points
""",
    "minmax_qparams": """\
def my_minmax_qparams(x, bits):
    lo = np.float32(min(x.min(), 0.0))  # the range must contain 0
    hi = np.float32(max(x.max(), 0.0))
    qmax = 2**bits - 1
    scale = np.float32((hi - lo) / np.float32(qmax))
    zero_point = np.int32(np.clip(np.rint(-lo / scale), 0, qmax))
    return scale, zero_point
""",
    "outlier_columns": """\
def my_outlier_columns(x, threshold=6.0):
    rows = x.reshape(-1, x.shape[-1])
    return np.flatnonzero((np.abs(rows) >= threshold).any(axis=0))
""",
    "pareto_front": """\
def my_pareto_front(size, metric, maximize):
    m = -np.asarray(metric, float) if maximize else np.asarray(metric, float)
    size = np.asarray(size, float)
    on = np.ones(len(size), bool)
    for i in range(len(size)):
        for j in range(len(size)):
            if size[j] <= size[i] and m[j] <= m[i] and (size[j] < size[i] or m[j] < m[i]):
                on[i] = False
    return on
""",
    "per_channel_scales": """\
def my_per_channel_scales(w, bits=8):
    return np.abs(w).max(axis=1) / (2 ** (bits - 1) - 1)
""",
    "prune_2_4": """\
def my_prune_2_4(w):
    w = np.asarray(w, np.float32)
    groups = w.reshape(-1, 4)
    keep = np.argsort(-np.abs(groups), axis=1, kind="stable")[:, :2]  # the two largest |w| of each group
    mask = np.zeros(groups.shape, bool)
    np.put_along_axis(mask, keep, True, axis=1)
    return np.where(mask, groups, np.float32(0)).reshape(w.shape)
""",
    "quantize_per_token": """\
def my_quantize_per_token(x, bits):
    qmax = 2**bits - 1
    lo = np.minimum(x.min(axis=-1, keepdims=True), 0).astype(np.float32)
    hi = np.maximum(x.max(axis=-1, keepdims=True), 0).astype(np.float32)
    scale = ((hi - lo) / np.float32(qmax)).astype(np.float32)
    zero_point = np.clip(np.rint(-lo / scale), 0, qmax)
    codes = np.clip(np.rint(x / scale) + zero_point, 0, qmax)
    return ((codes - zero_point) * scale).astype(np.float32)
""",
    "smoothing_factors": """\
def my_smoothing_factors(act_absmax, w, alpha):
    return act_absmax**alpha / np.abs(w).max(axis=0) ** (1 - alpha)
""",
    "symmetric_int8": """\
def my_quantize_symmetric_int8(x):
    scale = np.abs(x).max() / 127
    q = np.clip(np.round(x / scale), -127, 127).astype(np.int8)
    return q, scale
""",
    "ternary_absmean": """\
def my_ternary(w):
    gamma = np.abs(w).mean(dtype=np.float64).astype(np.float32)
    codes = np.clip(np.rint(w / (gamma + np.float32(1e-5))), -1, 1)
    return (codes * gamma).astype(np.float32)
""",
}

__all__ = ["SOLUTIONS"]
