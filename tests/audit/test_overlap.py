"""Text matching: the normal form, word shingles, and the documented Jaccard threshold at its boundary."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from bireco.audit.overlap import OverlapIndex, OverlapSettings, jaccard, normal_form, shingles
from bireco.conf import CONF_DIR
from tests.audit.fixtures import LONG, NEAR, QUERY, QUERY_VARIANT

WORDS = [f"w{i}" for i in range(20)]


def _changed_last(n: int) -> tuple[str, str]:
    """Two n-word texts that differ in their last word only: Jaccard (n-5)/(n-3) over word 5-grams."""
    words = WORDS[:n]
    return " ".join(words), " ".join([*words[:-1], "other"])


def test_case_spacing_and_punctuation_do_not_change_the_normal_form() -> None:
    assert normal_form(QUERY) == normal_form(QUERY_VARIANT) == "who wrote the novel about the white whale"
    assert normal_form("don't") == normal_form("don 't") == "don t"  # tokenised copies (the twitter corpus)
    assert normal_form("ﬁve $5") == "five $5"  # NFKC; symbols are kept
    assert normal_form("?!") == ""


def test_short_texts_are_one_shingle_and_long_ones_word_five_grams() -> None:
    assert shingles("a b c", 5) == {b"a b c"}
    assert shingles("", 5) == frozenset()
    assert shingles("a b c d e f", 5) == {b"a b c d e", b"b c d e f"}


@pytest.mark.parametrize(("n", "expected"), [(13, 0.8), (12, 7 / 9)])
def test_threshold_boundary(n: int, expected: float) -> None:
    """13 words with the last one changed is exactly at the threshold (counted); 12 words is just below."""
    a, b = _changed_last(n)
    assert jaccard(shingles(a, 5), shingles(b, 5)) == pytest.approx(expected)
    index = OverlapIndex()
    i = index.add(a)
    match = index.match(b)
    assert match.exact is None
    assert [k for k, _ in match.near] == ([i] if expected >= 0.8 else [])


def test_the_index_finds_copies_and_near_duplicates_and_nothing_else() -> None:
    index = OverlapIndex()
    q, d = index.add(QUERY), index.add(LONG)
    index.add("Penguins live in the southern hemisphere and cannot fly.")
    assert index.add(QUERY_VARIANT) == q  # one id per normal form
    assert index.match(QUERY_VARIANT).exact == q
    near = index.match(NEAR)
    assert near.exact is None and [k for k, _ in near.near] == [d] and near.near[0][1] == pytest.approx(71 / 81)
    assert index.match("What is the capital of France?") == index.match("?!")
    assert index.match("What is the capital of France?").exact is None
    assert not index.match("What is the capital of France?").near


def test_the_banding_misses_a_threshold_pair_almost_never() -> None:
    s = OverlapSettings()
    assert s.miss_probability() == pytest.approx((1 - 0.8**4) ** 32) and s.miss_probability() < 1e-7
    with pytest.raises(ValueError, match=r"exceeds audit\.num_perm"):
        OverlapSettings(lsh_bands=64, lsh_rows=4)


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"jaccard_threshold": 5.0}, "audit.jaccard_threshold must be in (0, 1], got 5.0"),
        ({"lsh_bands": 33}, "audit.lsh_bands x audit.lsh_rows = 132 exceeds audit.num_perm=128"),
        ({"lsh_bands": 0, "lsh_rows": 0}, "audit.lsh_bands=0 (at least 2), audit.lsh_rows=0 (at least 1)"),
    ],
)
def test_impossible_settings_are_a_user_error_naming_the_key(settings: dict, line: str) -> None:
    """`bireco-audit audit.jaccard_threshold=5` was a ValueError traceback: now one line naming `audit.*`."""
    from bireco.errors import user_error_in

    with pytest.raises(ValueError) as info:
        OverlapSettings(**settings)
    assert str(user_error_in(info.value)) == line


def test_the_config_states_the_code_defaults() -> None:
    """conf/audit.yaml and OverlapSettings say the same (the docs quote them)."""
    audit = OmegaConf.load(f"{CONF_DIR}/audit.yaml").audit
    defaults = OverlapSettings()
    assert {k: audit[k] for k in defaults.__dataclass_fields__} == defaults.__dict__
