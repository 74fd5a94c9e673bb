"""Nearest-neighbour agreement, overall and where the reference's neighbour is clear (export.parity)."""

import numpy as np

from export.parity import CLEAR_MARGIN, agreement_text, neighbour_matches


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_a_flipped_near_tie_counts_against_overall_agreement_only():
    # Row 0's reference neighbours: row 2, then row 1 almost tied (gap < margin); rows 1-4 have clear ones.
    ref = _unit([[1.0, 0.0, 0.0], [0.9, 0.44, 0.0], [0.9, -0.43, 0.0], [0.0, 0.0, 1.0], [0.0, 0.2, 1.0]])
    sims = ref @ ref.T
    assert abs(sims[0, 1] - sims[0, 2]) < CLEAR_MARGIN
    other = ref.copy()
    other[0] = _unit([[1.0, 0.02, 0.0]])[0]  # nudged towards row 1: row 0's nearest neighbour flips
    same, clear = neighbour_matches(ref, other)
    assert not same[0] and same[1:].all()
    assert not clear[0] and clear[1:].all()
    assert same[clear].mean() == 1.0 and same.mean() == 0.8


def test_identical_embeddings_agree_everywhere_and_tiny_sets_are_trivially_clear():
    ref = _unit(np.random.default_rng(0).standard_normal((16, 8)))
    same, clear = neighbour_matches(ref, ref.copy())
    assert same.all() and clear.dtype == bool
    same, clear = neighbour_matches(ref[:2], ref[:2][::-1])
    assert same.all() and clear.all()


def test_agreement_text_names_the_clear_rows_only_when_some_are_not():
    report = {"nn_agreement": 0.9, "nn_agreement_clear": 0.97, "nn_clear_share": 0.85}
    assert agreement_text(report) == ("nearest-neighbour agreement 90.0% (97.0% on the 85% of rows whose "
                                      "neighbour is clear)")
    assert agreement_text(report | {"nn_clear_share": 1.0}) == "nearest-neighbour agreement 90.0%"
    assert agreement_text({"prediction_agreement": 1.0, "nn_agreement": 0.5}) == "same prediction 100.0%"
