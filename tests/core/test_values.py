"""The one place that checks a setting's value: what passes (converted), and the messages."""

from __future__ import annotations

import pytest

from camexp.core.errors import ConfigError, MethodError
from camexp.core.values import (
    check_choice,
    check_count,
    check_flag,
    check_fraction,
    check_nonnegative,
    check_number,
    check_positive,
)


def test_values_that_pass_come_back_converted() -> None:
    assert check_fraction("k", 1, ConfigError) == 1.0 and isinstance(check_fraction("k", 1, ConfigError), float)
    assert check_fraction("k", 0, ConfigError) == 0.0
    assert check_nonnegative("k", 0, ConfigError) == 0.0
    assert check_count("k", 0, ConfigError) == 0
    assert check_positive("k", 3, ConfigError) == 3
    assert check_choice("k", "b", ConfigError, {"b": 1, "a": 2}) == "b"
    assert check_flag("k", False, ConfigError) is False
    assert check_number("k", 2, ConfigError, above=0) == 2.0 and check_number("k", -3.5, ConfigError) == -3.5


@pytest.mark.parametrize(("call", "message"), [
    (lambda: check_choice("data.split", "x", ConfigError, ("wsol", "official")),
     "data.split='x' is not allowed; use one of ['official', 'wsol']."),
    (lambda: check_choice("method.target", "x", MethodError, ("masks", "boxes"), context="method=fsl"),
     "method.target='x' is not allowed for method=fsl: use one of ['boxes', 'masks']."),
    (lambda: check_positive("data.batch_size", 0, ConfigError), "data.batch_size=0 must be a positive integer."),
    (lambda: check_positive("n", True, ConfigError, note=" (or null)"), "n=True must be a positive integer (or null)."),
    (lambda: check_count("model.head.num_convs", -1, ConfigError),
     "model.head.num_convs=-1 must be an integer >= 0."),
    (lambda: check_count("method.grid_size", 2.0, MethodError, context="method=has", describe="the side",
                         note=" (0: off)"),
     "method.grid_size=2.0 is not allowed for method=has: use the side, an integer >= 0 (0: off)."),
    (lambda: check_nonnegative("method.beta", -1, MethodError, context="method=cutmix"),
     "method.beta=-1 is not allowed for method=cutmix: use a number >= 0."),
    (lambda: check_fraction("x", 1, ConfigError, high_open=True), "x=1 must be a number in [0, 1)."),
    (lambda: check_fraction("x", 0, ConfigError, low_open=True), "x=0 must be a number in (0, 1]."),
    (lambda: check_fraction("x", "0.5", ConfigError), "x='0.5' must be a number in [0, 1]."),
    (lambda: check_fraction("method.p", False, MethodError, context="method=adl"),
     "method.p=False is not allowed for method=adl: use a number in [0, 1]."),
    (lambda: check_flag("model.compile", "yes", ConfigError), "model.compile='yes' must be true or false."),
    (lambda: check_number("model.pool_r", 0, ConfigError, above=0), "model.pool_r=0 must be a number > 0."),
    (lambda: check_number("a", float("nan"), ConfigError), "a=nan must be a finite number."),
    (lambda: check_number("method.w", True, MethodError, context="method=bas"),
     "method.w=True is not allowed for method=bas: use a finite number."),
])
def test_each_refusal_names_the_key_the_value_and_what_is_allowed(call, message) -> None:
    with pytest.raises(Exception) as info:
        call()
    assert str(info.value) == message
    assert type(info.value) in (ConfigError, MethodError)
