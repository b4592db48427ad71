"""`page_within` and `page_from`: plain values, no I/O."""

from __future__ import annotations

from hubbub.backends.history import MESSAGE_OVERHEAD, Page, page_from, page_within


def _page(*sizes: int, first: int = 1, complete: bool = True) -> Page:
    messages = [(first + i, b"x" * size) for i, size in enumerate(sizes)]
    return Page(first + len(sizes) - 1, messages, complete)


def test_a_page_that_fits_is_returned_as_is() -> None:
    page = _page(100, 100, 100)
    assert page_within(page, 3 * (100 + MESSAGE_OVERHEAD)) is page
    assert page_within(page, 3 * (100 + MESSAGE_OVERHEAD), newest=False) is page
    assert page_within(Page(0), 0) == Page(0)


def test_newest_keeps_the_end_and_reports_the_missing_start() -> None:
    page = _page(100, 200, 300, first=5)
    cut = page_within(page, 200 + 300 + 2 * MESSAGE_OVERHEAD)
    assert [o for o, _ in cut.messages] == [6, 7] and cut.offset == 7 and not cut.complete


def test_oldest_keeps_the_start_for_paging_on() -> None:
    page = _page(100, 200, 300, first=5)
    cut = page_within(page, 100 + 200 + 2 * MESSAGE_OVERHEAD + 50, newest=False)
    assert [o for o, _ in cut.messages] == [5, 6] and cut.offset == 7 and not cut.complete


def test_a_message_larger_than_the_budget_leaves_an_empty_incomplete_page() -> None:
    cut = page_within(_page(10, 5000), 1000)
    assert cut.messages == [] and not cut.complete
    assert page_within(_page(5000, 10), 1000, newest=False).messages == []


def test_an_incomplete_page_stays_incomplete() -> None:
    page = _page(10, 10, complete=False)
    assert not page_within(page, 10_000).complete


def test_page_from_reports_an_offset_from_an_earlier_life_as_not_recovered() -> None:
    entries = [(4, b"a"), (5, b"b")]
    assert page_from(entries, 5, 3, 10).complete
    assert page_from(entries, 5, 5, 10).complete  # up to date
    assert not page_from(entries, 5, 2, 10).complete  # 3 is gone
    assert not page_from(entries, 5, 9, 10).complete  # above the latest: the room started over
    assert not page_from([], 0, 9, 10).complete
