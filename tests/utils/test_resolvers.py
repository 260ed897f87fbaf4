from __future__ import annotations

from bireco.utils.resolvers import MAX_DIRNAME, safe_dirname


def test_short_names_are_kept() -> None:
    assert safe_dirname("pipeline=bireco,seed=1") == "pipeline=bireco,seed=1"
    assert safe_dirname("") == "default"
    assert safe_dirname("data.path=/a/b") == "data.path=_a_b"


def test_long_names_are_capped_deterministically_and_distinctly() -> None:
    a = "x=1," * 100 + "pipeline=bireco"
    b = "x=1," * 100 + "pipeline=baseline"
    assert len(safe_dirname(a)) == MAX_DIRNAME
    assert safe_dirname(a) == safe_dirname(a)
    assert safe_dirname(a) != safe_dirname(b)
