"""The revision check of records a step wrote with an expected revision
(`core.transitions.check_records`): pure, driven by hand with the revisions a store would load."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from plait.core.rows import Outcome, RecordWrite, StepData
from plait.core.transitions import REVISION_CONFLICT, check_records
from plait.core.txn import Need, Txn, drive


def outcome(*writes: RecordWrite, retry_at: float | None = 5.0) -> Outcome:
    return Outcome(
        "r", "s", "t", output=b"1", data=StepData(records=writes), conflict_retry_at=retry_at
    )


def check(txn: Txn, o: Outcome, stored: dict[tuple[str, str], tuple[int, bool]]) -> Outcome:
    asked: list[Need] = []

    def load(t: Txn, need: Need) -> None:
        asked.append(need)
        for key in need.records:
            if key in stored:
                t.add_record(key, *stored[key])

    result: list[Outcome] = []

    def run() -> Iterator[Need]:
        result.append((yield from check_records(txn, o)))

    drive(run(), load, txn)
    assert all(n.run_id == "r" and not n.steps for n in asked)
    return result[0]


def test_writes_without_an_expectation_load_nothing_and_count() -> None:
    txn = Txn(0.0)
    o = outcome(RecordWrite("c", "k", b"1"), RecordWrite("c", "k", b"2"))
    assert check(txn, o, {}) is o
    assert txn.records == {} and txn.records_written == {("c", "k"): 2}


def test_an_expectation_is_checked_against_the_stored_and_this_transactions_writes() -> None:
    txn = Txn(0.0)
    stored = {("c", "k"): (3, True)}
    first = outcome(RecordWrite("c", "k", b"1", expected=3))
    assert check(txn, first, stored) is first
    second = outcome(RecordWrite("c", "k", b"2", expected=3))  # the first moved it to 4
    failed = check(txn, second, stored)
    assert failed.error_code == REVISION_CONFLICT and failed.retry_at == 5.0
    assert failed.data is None and failed.output is None
    assert failed.error_message == (
        "record 'k' of collection 'c' is at revision 4, but the step's ctx.record expected "
        "revision 3; nothing of this attempt was committed"
    )
    third = outcome(RecordWrite("c", "k", b"3", expected=4))
    assert check(txn, third, stored) is third
    assert txn.records_written == {("c", "k"): 2}


def test_a_tombstone_reads_as_no_document_and_a_conflict_uncounts_the_attempts_writes() -> None:
    txn = Txn(0.0)
    stored = {("c", "gone"): (7, False)}
    o = outcome(
        RecordWrite("c", "free", b"1"),
        RecordWrite("c", "gone", b"1", expected=0),
        RecordWrite("c", "new", b"1", expected=1),  # never written: revision 0
        retry_at=None,
    )
    failed = check(txn, o, stored)
    assert failed.error_code == REVISION_CONFLICT and failed.retry_at is None
    assert "record 'new' of collection 'c' does not exist" in (failed.error_message or "")
    assert txn.records_written == {("c", "free"): 0, ("c", "gone"): 0}
    assert txn.record_revision(("c", "gone")) == 0 and txn.record_revision(("c", "new")) == 0


KEYS = [("c", "a"), ("c", "b"), ("d", "a")]
write_st = st.builds(
    lambda key, expected: RecordWrite(key[0], key[1], b"1", expected),
    st.sampled_from(KEYS),
    st.one_of(st.none(), st.integers(0, 4)),
)


@given(
    stored=st.dictionaries(
        st.sampled_from(KEYS), st.tuples(st.integers(0, 3), st.booleans()), max_size=3
    ),
    outcomes=st.lists(st.lists(write_st, min_size=1, max_size=4), min_size=1, max_size=5),
)
def test_a_group_commit_checks_as_if_its_outcomes_committed_one_by_one(
    stored: dict[tuple[str, str], tuple[int, bool]], outcomes: list[list[RecordWrite]]
) -> None:
    # the reference: each outcome in turn against the records as the ones before left them
    model = {k: (stored.get(k, (0, False))) for k in KEYS}
    expect_ok = []
    for writes in outcomes:
        trial = dict(model)
        ok = True
        for w in writes:
            rev, live = trial[(w.collection, w.key)]
            if w.expected is not None and w.expected != (rev if live else 0):
                ok = False
                break
            trial[(w.collection, w.key)] = (rev + 1, True)
        expect_ok.append(ok)
        if ok:
            model = trial

    txn = Txn(0.0)
    got_ok = [check(txn, outcome(*writes), stored).error_code is None for writes in outcomes]

    assert got_ok == expect_ok
    for key in KEYS:  # what the transaction would write, seen as a reader would after it
        if key not in txn.records:
            txn.add_record(key, *stored.get(key, (0, False)))
        rev, live = model[key]
        assert txn.record_revision(key) == (rev if live else 0)
