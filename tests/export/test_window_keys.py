"""Stride-window keys: the spelling export writes is the one the build and the labels join read."""
from hypothesis import given, settings, strategies as st

from export.window_keys import example_id_of, window_key


def test_window_keys_are_spelled_id_hash_n():
    assert window_key("doc-7", 0) == "doc-7#0"
    assert window_key("doc-7", 12) == "doc-7#12"


@settings(max_examples=200, deadline=None)
@given(example_id=st.text(), n=st.integers(min_value=0, max_value=10**6))
def test_a_window_key_gives_back_its_example_id(example_id, n):
    # ids holding "#" included: only the last "#" is the window's
    assert example_id_of(window_key(example_id, n)) == example_id


def test_a_key_without_a_window_comes_back_unchanged():
    assert example_id_of("doc-7") == "doc-7"
