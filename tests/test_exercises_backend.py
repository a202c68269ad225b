"""Notebook 13's exercise checker, check_layer_norm_any_backend, and its tracing backend: the
package's LayerNorm passes; one that names ``np.``, copies to the host, or gets the maths wrong
fails with a hint naming the mistake; a stub's NotImplementedError passes through."""

from __future__ import annotations

import numpy as np
import pytest

from minibertgen.backend import get_xp, to_numpy
from minibertgen.exercises import check_layer_norm_any_backend
from minibertgen.exercises.backend import TracedArray, TracingNamespace
from minibertgen.ops import layernorm_forward


def package(x, weight, bias, eps):
    return layernorm_forward(x, {"weight": weight, "bias": bias}, eps)[0]


def by_the_seam(x, weight, bias, eps):
    xp = get_xp(x)
    centered = x - x.mean(axis=-1, keepdims=True)
    return centered / xp.sqrt((centered * centered).mean(axis=-1, keepdims=True) + eps) * weight + bias


def hard_codes_numpy(x, weight, bias, eps):
    centered = x - np.mean(x, axis=-1, keepdims=True)
    return centered / np.sqrt(np.mean(centered**2, axis=-1, keepdims=True) + eps) * weight + bias


def copies_to_the_host(x, weight, bias, eps):
    host = [a.get() if hasattr(a, "get") else np.asarray(a) for a in (x, weight, bias)]
    return hard_codes_numpy(*host, eps)


def via_asarray(x, weight, bias, eps):
    return hard_codes_numpy(np.asarray(x), np.asarray(weight), np.asarray(bias), eps)


def unbiased_variance(x, weight, bias, eps):
    xp = get_xp(x)
    return (x - x.mean(axis=-1, keepdims=True)) / xp.sqrt(x.var(axis=-1, ddof=1, keepdims=True) + eps) * weight + bias


def eps_outside_the_sqrt(x, weight, bias, eps):
    xp = get_xp(x)
    return (x - x.mean(axis=-1, keepdims=True)) / (xp.sqrt(x.var(axis=-1, keepdims=True)) + eps) * weight + bias


def over_the_first_axis(x, weight, bias, eps):
    xp = get_xp(x)
    return (x - x.mean(axis=0, keepdims=True)) / xp.sqrt(x.var(axis=0, keepdims=True) + eps) * weight + bias


def upcasts_to_float64(x, weight, bias, eps):
    xp = get_xp(x)
    return by_the_seam(x, weight, bias, xp.asarray(eps, dtype=xp.float64))


def test_the_package_and_a_seam_solution_pass(capsys):
    check_layer_norm_any_backend(package)
    check_layer_norm_any_backend(by_the_seam)
    out = capsys.readouterr().out
    assert out.startswith("check_layer_norm_any_backend: ") and "xp.sqrt" in out


@pytest.mark.parametrize(("wrong", "hint"), [
    (hard_codes_numpy, r"called NumPy directly \(np\.mean"),
    (copies_to_the_host, r"you copied to the host \(\.get\(\)\) and computed there"),
    (via_asarray, r"copied the input to the host \(np\.asarray"),
    (unbiased_variance, "biased variance"),
    (eps_outside_the_sqrt, "eps goes inside the square root"),
    (over_the_first_axis, "the last axis"),
    (upcasts_to_float64, "upcasts float32"),
])  # fmt: skip
def test_a_known_wrong_answer_fails_naming_its_mistake(wrong, hint):
    with pytest.raises(AssertionError, match=rf"^check_layer_norm_any_backend: (.|\n)*\nHint: .*{hint}"):
        check_layer_norm_any_backend(wrong)


def test_a_stub_says_not_implemented():
    def stub(x, weight, bias, eps):
        raise NotImplementedError("your code here")

    with pytest.raises(NotImplementedError):
        check_layer_norm_any_backend(stub)


def test_the_tracing_backend_behaves_like_a_device_array():
    xp = TracingNamespace()
    x = xp.asarray(np.arange(6.0).reshape(2, 3))
    assert get_xp(x) is xp and get_xp(np.zeros(2)) is np  # the seam finds its module; numpy unchanged
    y = xp.exp(x - x.max(axis=-1, keepdims=True)) * 2.0 + 1
    assert isinstance(y, TracedArray) and y.shape == (2, 3) and "xp.exp" in xp.calls
    assert to_numpy(y) is y  # not a CuPy array: to_numpy leaves it alone
    with pytest.raises(TypeError, match="np.exp was called"):
        np.exp(x)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(x)
    np.testing.assert_array_equal(y.get(), np.exp(np.arange(6.0).reshape(2, 3) - [[2.0], [5.0]]) * 2 + 1)
    assert xp.host_copies == ["np.asarray", ".get()"]
