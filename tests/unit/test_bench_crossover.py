"""P7's crossover: the match_points rows at which the view refresh and the incremental
refresh cost the same, interpolated between the sizes `make bench` measured."""

from __future__ import annotations

import pytest

from bench.standings_modes import crossover


def test_costs_that_grow_as_powers_of_the_rows_cross_where_the_powers_meet() -> None:
    # Given a view refresh that grows as the rows and an incremental one as their root,
    # equal at 10,000 rows (1e-5 * r == 1e-3 * r ** 0.5), measured either side of it
    def view_s(rows: int) -> float:
        return 1e-5 * rows

    def incremental_s(rows: int) -> float:
        return 1e-3 * rows**0.5

    points = [(rows, view_s(rows), incremental_s(rows)) for rows in (1_000, 100_000, 1_000_000)]

    # When the crossover is interpolated
    # Then it is the size where they meet
    assert crossover(points) == pytest.approx(10_000)


def test_the_crossover_lies_between_the_two_sizes_where_the_cheaper_mode_changes() -> None:
    # Given the view cheaper (half) at 10k rows and dearer (4x) at 100k, given unordered
    points = [(100_000, 0.2, 0.05), (1_000_000, 2.0, 0.1), (10_000, 0.02, 0.04)]

    # Then log(ratio) runs from -log 2 to +log 4: a third of the way, 10 ** (4 + 1/3) rows
    assert crossover(points) == pytest.approx(10 ** (4 + 1 / 3))


def test_a_size_where_both_cost_the_same_is_the_crossover() -> None:
    # Given both modes equal at 100k rows
    points = [(10_000, 0.01, 0.02), (100_000, 0.05, 0.05), (1_000_000, 0.5, 0.1)]

    # Then that size is the crossover
    assert crossover(points) == pytest.approx(100_000)


def test_no_crossover_when_one_mode_is_cheaper_at_every_size() -> None:
    # Given the incremental refresh cheaper at every size measured, and then the view
    cheaper_incremental = [(10_000, 0.03, 0.02), (100_000, 0.2, 0.03), (1_000_000, 1.5, 0.2)]
    cheaper_view = [(rows, incremental, view) for rows, view, incremental in cheaper_incremental]

    # Then neither has a crossover within the sizes measured
    assert crossover(cheaper_incremental) is None
    assert crossover(cheaper_view) is None
