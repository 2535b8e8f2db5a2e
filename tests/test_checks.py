"""The argument checks every layer uses: each message names the argument, the value received and what is allowed."""

import pytest

from spikelib.checks import check_choice, check_int_tuple, check_number


def test_check_choice_returns_the_value_or_names_value_and_choices():
    assert check_choice("coding", "rate", ("direct", "rate")) == "rate"
    with pytest.raises(ValueError, match=r"^coding must be one of \['direct', 'rate'\], got 'morse'$"):
        check_choice("coding", "morse", ("direct", "rate"))
    with pytest.raises(ValueError, match=r"fold_time must be one of \[True, False, 'auto'\], got 1"):
        check_choice("fold_time", 1, (True, False, "auto"))  # 1 == True, but 1 is not True


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("num_steps", 0, 1), {"integer": True}, "num_steps must be an int >= 1, got 0"),
        (("num_steps", 2.0, 1), {"integer": True}, "num_steps must be an int >= 1, got 2.0"),
        (("num_steps", True, 1), {"integer": True}, "num_steps must be an int >= 1, got True"),
        (("beta", 1.5, 0.0, 1.0), {}, "beta must be a number in [0, 1], got 1.5"),
        (("tau", 0.0, 0.0), {"low_open": True}, "tau must be a number > 0, got 0.0"),
        (("threshold", 1.0, 0.0, 1.0), {"high_open": True}, "threshold must be a number in [0, 1), got 1.0"),
        (("gain", float("nan"), 0.0), {}, "gain must be a number >= 0, got nan"),
        (("scale", "2"), {}, "scale must be a finite number, got '2'"),
        (
            ("test_images", -1, 0),
            {"integer": True, "note": "(0: all)"},
            "test_images must be an int >= 0 (0: all), got -1",
        ),
    ],
)
def test_check_number_names_the_value_and_the_range(args, kwargs, message):
    with pytest.raises(ValueError) as caught:
        check_number(*args, **kwargs)
    assert str(caught.value) == message


def test_check_number_accepts_the_bounds_it_should():
    assert check_number("beta", 1, 0.0, 1.0) == 1
    assert check_number("lr", 0.0, 0.0) == 0.0
    assert check_number("x", -3.5) == -3.5


def test_check_int_tuple_builds_a_tuple_or_names_the_whole_value():
    assert check_int_tuple("channels", [8, 16], 2) == (8, 16)
    assert check_int_tuple("channels", 8) == (8,)
    assert check_int_tuple("head_hidden", [], allow_empty=True) == ()
    with pytest.raises(ValueError, match=r"^channels must be a non-empty sequence of ints >= 1, got \[8, 0\]$"):
        check_int_tuple("channels", [8, 0])
    with pytest.raises(ValueError, match=r"^channels must be a non-empty sequence of ints >= 1, got \[\]$"):
        check_int_tuple("channels", [])
    with pytest.raises(ValueError, match=r"kernels must have 3 entries \(one per level\), got 2: \[3, 3\]"):
        check_int_tuple("kernels", [3, 3], 3)
