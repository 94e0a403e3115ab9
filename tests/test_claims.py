"""The verdict words the chapters glue come from the numbers (unlearnkit.claims)."""

import math

import pytest

import unlearnkit as uk


def test_verdict_better_worse_tie_from_the_spread():
    assert uk.verdict([90, 91, 92], [80, 81, 79]) == "better"
    assert uk.verdict([80, 81, 79], [90, 91, 92]) == "worse"
    # overlapping spreads: no word stronger than tie
    assert uk.verdict([90, 70, 80], [85, 75, 78]) == "tie"


def test_verdict_lower_is_better_and_margin():
    assert uk.verdict([1.0, 1.1, 0.9], [5.0, 5.2, 4.8], higher_is_better=False) == "better"
    # identical runs, a difference smaller than the margin is a tie, larger is not
    assert uk.verdict([0.0, 0.0], [0.1, 0.1], margin=0.5) == "tie"
    assert uk.verdict([0.0, 0.0], [0.1, 0.1]) == "worse"


def test_verdict_against_a_constant_and_custom_words():
    w = uk.verdict([12.0, 9.0, 11.0], 10.0, words=("above", "below", "at"))
    assert w == "at"
    assert uk.verdict([30.0, 31.0], 10.0, words=("above", "below", "at")) == "above"


def test_verdict_paired_test():
    a = [80.0, 70.0, 90.0, 60.0]
    b = [79.0, 69.0, 89.0, 59.0]  # spreads overlap, but every pair differs by +1
    assert uk.verdict(a, b) == "tie"
    assert uk.verdict(a, b, paired=True) == "better"
    assert uk.verdict(a, b, paired=True, margin=2.0) == "tie"
    with pytest.raises(ValueError, match="paired"):
        uk.verdict([1.0, 2.0], [1.0], paired=True)


def test_verdict_ignores_diverged_runs_and_refuses_all_nan():
    assert uk.verdict([90, float("nan"), 92], [50, 51]) == "better"
    with pytest.raises(ValueError, match="diverge"):
        uk.verdict([float("nan")], [1.0])


def test_word_glues_without_quotes_and_carries_details():
    from IPython.lib.pretty import pretty

    w = uk.verdict([3.0, 3.1], [1.0, 1.1])
    assert pretty(w) == "better" and repr(w) == "better"
    assert math.isclose(w.details["diff"], 2.0)


def test_against_paper_uses_the_stated_tolerance():
    assert uk.against_paper([7.0, 8.0, 9.0], 7.44, tol=2.0) == "agrees"
    w = uk.against_paper([50.0, 52.0, 50.7], 7.44, tol=5.0)
    assert w == "disagrees" and w.details["gap"] > 40
    # a wide spread does not make a result agree
    assert uk.against_paper([0.0, 100.0], 10.0, tol=5.0) == "disagrees"
    with pytest.raises(ValueError, match="tol"):
        uk.against_paper([1.0], 1.0, tol=-1)


def test_ordering_against_the_paper():
    paper = {"neggrad": 38.4, "adv": 79.4, "adv+imp": 83.0}
    ours = {"neggrad": [60, 62, 61], "adv": [70, 71, 72], "adv+imp": [80, 81, 82]}
    assert uk.ordering(ours, paper) == "agrees"
    ours_tie = {"neggrad": [60, 62, 61], "adv": [70, 80, 75], "adv+imp": [72, 82, 77]}
    assert uk.ordering(ours_tie, paper) == "partly agrees"
    ours_rev = {"neggrad": [90, 91, 92], "adv": [70, 71, 72], "adv+imp": [80, 81, 82]}
    assert uk.ordering(ours_rev, paper) == "disagrees"
    with pytest.raises(ValueError, match="same methods"):
        uk.ordering({"a": [1]}, {"b": 1.0})


def test_a_dry_run_does_not_judge_runs_without_numbers():
    try:
        uk.profile("smoke", quiet=True, dry_run=True)
        assert uk.verdict([float("nan")] * 3, [1.0, 2.0]) == "(not judged in a dry run)"
        assert uk.against_paper([float("nan")], 7.4, tol=5) == "(not judged in a dry run)"
        assert uk.verdict([3.0, 3.1], [1.0, 1.1]) == "better"
    finally:
        uk.profiles.reset()
    with pytest.raises(ValueError, match="diverge"):
        uk.verdict([float("nan")], [1.0])


def test_verdict_pairs_runs_automatically_when_both_sides_have_aligned_runs():
    a, b = [90.0, 91.0, 92.0, 93.0], [89.0, 90.5, 91.0, 92.0]  # close means, consistent gaps
    assert uk.verdict(a, b) == "tie"  # the spread rule cannot tell them apart
    assert uk.verdict(a, b, paired="auto") == "better"  # the paired test can
    assert uk.verdict(b, a, paired="auto", words=("up", "down", "same")) == "down"
    assert uk.verdict([5.0], [5.0], paired="auto") == "tie"  # one run each: the spread rule
    assert uk.verdict([90.0, 91.0], [80.0, 81.0, 82.0], paired="auto") == "better"  # not aligned
    with pytest.raises(ValueError, match="'auto'"):
        uk.verdict(a, b, paired="yes")
