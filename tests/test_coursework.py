"""The feedback checks of the graded exercises: each way an answer can be wrong gets its own message."""

import numpy as np
import pytest
import torch

from spikelib.coursework import Case, ExerciseFailed, check_function, check_value


def not_answered():
    # YOUR CODE HERE
    raise NotImplementedError()


def not_answered_step(x):
    # YOUR CODE HERE
    raise NotImplementedError()


def square(x):
    return x * x


def test_check_value_passes_a_right_answer_and_says_so(capsys):
    check_value("1.1", lambda: 3, 3, hint="count the crossings")
    check_value("1.1", lambda: torch.tensor([0.5, 0.25]), np.array([0.5, 0.25]), hint="-")
    assert capsys.readouterr().out == "Exercise 1.1 passed.\nExercise 1.1 passed.\n"


def test_check_value_within_tolerance_passes_and_outside_fails():
    check_value("0.2", lambda: 0.1 + 0.2, 0.3, hint="-")
    with pytest.raises(ExerciseFailed, match=r"got 0\.31, expected 0\.3"):
        check_value("0.2", lambda: 0.31, 0.3, hint="-")


def test_unanswered_exercise_says_so_and_names_the_function():
    with pytest.raises(ExerciseFailed) as failed:
        check_value("1.1", not_answered, 3, hint="count the crossings")
    message = str(failed.value)
    assert "Exercise 1.1 is not answered yet" in message
    assert "`not_answered`" in message and "NotImplementedError" in message


def test_unanswered_function_exercise_says_so():
    with pytest.raises(ExerciseFailed, match=r"Exercise 2\.1 is not answered yet.*`not_answered_step`"):
        check_function("2.1", not_answered_step, square, [Case("one", (1.0,))], hint="-")


def test_wrong_value_gives_the_hint_and_both_values():
    with pytest.raises(ExerciseFailed) as failed:
        check_value("1.1", lambda: 4, 3, hint="the first step starts from rest")
    message = str(failed.value)
    assert message.startswith("Exercise 1.1: got 4, expected 3")
    assert message.endswith("Hint: the first step starts from rest")


def test_known_wrong_value_is_named_instead_of_the_hint():
    with pytest.raises(ExerciseFailed) as failed:
        check_value("1.1", lambda: 5, 3, hint="h", mistakes={"counting the reset step as a spike": 5})
    assert "This is what counting the reset step as a spike gives" in str(failed.value)
    assert "Hint" not in str(failed.value)


def test_none_and_text_answers_are_explained():
    with pytest.raises(ExerciseFailed, match="the answer is None"):
        check_value("0.1", lambda: None, 3, hint="-")
    with pytest.raises(ExerciseFailed, match="return a number, not a string"):
        check_value("0.1", lambda: "3", 3, hint="-")  # numpy alone would read "3" as 3
    with pytest.raises(ExerciseFailed, match="not a number or an array"):
        check_value("0.1", lambda: {"a": 1}, 3, hint="-")


def test_nan_answer_is_explained():
    with pytest.raises(ExerciseFailed, match="got nan, with NaN or infinity where the expected answer, 3, differs"):
        check_value("0.1", lambda: float("nan"), 3.0, hint="-")


def test_check_function_passes_every_case(capsys):
    cases = [Case("zero", (0.0,)), Case("tensor", (torch.arange(4.0),)), Case("keyword", (), {"x": 2.0})]
    check_function("3.1", lambda x: x**2, square, cases, hint="-")
    assert capsys.readouterr().out == "Exercise 3.1 passed (3 cases).\n"


def test_wrong_function_names_the_first_failing_case():
    cases = [Case("zero", (0.0,)), Case("one", (1.0,)), Case("three", (3.0,))]
    with pytest.raises(ExerciseFailed) as failed:
        check_function("3.1", lambda x: x + x, square, cases, hint="multiply x by itself")
    message = str(failed.value)
    # 0 + 0 == 0 * 0: the first case passes; 1 + 1 != 1 * 1 fails before "three" is tried
    assert message.startswith("Exercise 3.1, case 'one': got 2, expected 1")
    assert message.endswith("Hint: multiply x by itself")


def test_known_mistake_of_a_function_is_named():
    mistakes = {"adding x to itself": lambda x: x + x, "the cube": lambda x: x**3}
    with pytest.raises(ExerciseFailed) as failed:
        check_function("3.1", lambda x: x**3, square, [Case("two", (2.0,))], hint="h", mistakes=mistakes)
    assert str(failed.value).endswith("This is what the cube gives.")


def test_a_mistake_that_crashes_on_a_case_does_not_hide_the_hint():
    def only_for_tensors(x):
        return x.flip(0)

    with pytest.raises(ExerciseFailed, match="Hint: h$"):
        check_function(
            "3.1", lambda x: -x, square, [Case("two", (2.0,))], hint="h", mistakes={"flipping": only_for_tensors}
        )


def test_shape_mismatch_is_reported_as_shapes():
    with pytest.raises(ExerciseFailed, match=r"case 'batch': got shape \(1, 3\), expected shape \(3,\)"):
        check_function("2.1", lambda x: (x * x)[None], square, [Case("batch", (torch.ones(3),))], hint="-")


def test_tuple_outputs_are_compared_element_by_element():
    def reference(x):
        return x > 1, x * 2

    check_function("1.2", lambda x: [x > 1, x + x], reference, [Case("list is fine", (torch.arange(3.0),))], hint="-")
    with pytest.raises(ExerciseFailed, match=r"case 'pair': output 1: got \[0\., 1\., 2\.\]"):
        check_function("1.2", lambda x: (x > 1, x), reference, [Case("pair", (torch.arange(3.0),))], hint="-")
    with pytest.raises(ExerciseFailed, match="expected a tuple of 2 values"):
        check_function("1.2", lambda x: x * 2, reference, [Case("single", (torch.arange(3.0),))], hint="-")


def test_a_crash_in_the_students_code_is_feedback_with_the_case():
    def crashes(x):
        return x.unknown_method()

    with pytest.raises(ExerciseFailed) as failed:
        check_function("2.2", crashes, square, [Case("a tensor", (torch.ones(2),))], hint="-")
    assert "Exercise 2.2, case 'a tensor': your function raised AttributeError" in str(failed.value)
    assert isinstance(failed.value.__cause__, AttributeError)


def test_a_function_that_writes_into_its_input_does_not_change_what_the_reference_sees():
    def in_place(x):
        x.mul_(x)
        return x

    cur = torch.tensor([2.0, 3.0])
    check_function("1.2", in_place, square, [Case("in place", (cur,))], hint="-")
    assert torch.equal(cur, torch.tensor([2.0, 3.0]))


def test_exercise_failed_is_an_assertion_error_so_nbgrader_scores_it_zero():
    assert issubclass(ExerciseFailed, AssertionError)


def test_no_cases_and_nan_reference_are_the_authors_errors():
    with pytest.raises(ValueError, match="at least one case"):
        check_function("1.1", square, square, [], hint="-")
    with pytest.raises(ValueError, match="reference returned NaN on case 'nan'"):
        check_function("1.1", square, lambda x: float("nan"), [Case("nan", (1.0,))], hint="-")


def test_infinity_is_right_where_infinity_is_expected():
    def reference(x):
        return torch.where(x > 0.5, 1 / x, torch.full_like(x, float("inf")))

    case = Case("one dark pixel", (torch.tensor([0.2, 1.0]),))
    check_function("2.2", reference, reference, [case], hint="-")
    with pytest.raises(
        ExerciseFailed,
        match=r"got \[-1\.25, +inf\], with NaN or infinity where the expected answer, \[inf,  1\.\], differs",
    ):
        check_function("2.2", lambda x: 1 / (x - 1), reference, [case], hint="-")
    with pytest.raises(ExerciseFailed, match=r"got \[5\., 1\.\], expected \[inf,  1\.\]"):
        check_function("2.2", lambda x: 1 / x, reference, [case], hint="-")


def test_a_large_wrong_array_names_how_many_values_differ_and_the_first():
    expected = torch.zeros(5, 1, 3)
    got = expected.clone()
    got[4, 0, 2] = 1.0
    with pytest.raises(ExerciseFailed) as failed:
        check_value("2.3", lambda: got, expected, hint="-")
    assert "1 of 15 values differ (largest difference 1); the first at index (4, 0, 2): got 1, expected 0" in str(
        failed.value
    )


def test_floats_and_tuples_are_shown_readably():
    with pytest.raises(ExerciseFailed, match=r"got 0\.5, expected 0\.333333 "):
        check_value("0.1", lambda: 0.5, float(torch.tensor(1 / 3)), hint="-")
    with pytest.raises(ExerciseFailed, match=r"got \(60, 42\.25\), expected \(59\.9966, 6\.5\) "):
        check_value("2.1", lambda: (60, 42.25), (59.99655151, 6.5), hint="-")
