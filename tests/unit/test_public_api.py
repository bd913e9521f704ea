"""The public API is small and deliberate: `pillbox.__all__` is exactly what users import."""

from __future__ import annotations

import pillbox


def test_public_names_are_exactly_the_documented_ones():
    assert pillbox.__all__ == sorted(pillbox.__all__)
    assert set(pillbox.__all__) == {
        "App", "ConfigError", "CronError", "DatabaseError", "Message", "PayloadError",
        "PayloadNotJSON", "PayloadTooLarge", "PillboxError", "UnknownSubscription",
        "UnknownTopic", "__version__",
    }
    for name in pillbox.__all__:
        assert getattr(pillbox, name) is not None


def test_errors_form_one_tree_under_pillbox_error():
    for name in pillbox.__all__:
        value = getattr(pillbox, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, pillbox.PillboxError)


def test_package_is_typed():
    from importlib import resources

    assert resources.files("pillbox").joinpath("py.typed").is_file()
