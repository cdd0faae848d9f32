"""An image reference is parsed once, where it enters: `run`'s way to an image record (the
store lookup, the embedded image, the pull) shares one parse of the name the user gave."""
from __future__ import annotations

import pytest

from pydocklite.containers.options import RunOptions
from pydocklite.embedded import HELLO_CANONICAL, HELLO_IMAGE_NAME, hello_layout
from registry.reference import Reference


@pytest.fixture
def settings(tmp_path, monkeypatch):
    from pydocklite.settings import Settings
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return Settings.from_environment(root=str(tmp_path / "store"),
                                     runtime_dir=str(tmp_path / "run"))


@pytest.fixture
def parses(monkeypatch):
    calls = []
    real = Reference.parse.__func__

    def counting(cls, s, *a, **kw):
        calls.append(s)
        return real(cls, s, *a, **kw)
    monkeypatch.setattr(Reference, "parse", classmethod(counting))
    return calls


def test_hello_constant_is_the_normalised_name():
    assert str(Reference.parse(HELLO_IMAGE_NAME)) == HELLO_CANONICAL


def test_run_parses_the_image_name_once(settings, parses):
    try:
        hello_layout()
    except FileNotFoundError:
        pytest.fail("the embedded hello image is missing: run ./build.sh first")
    from pydocklite.cli.run import ensure_image
    opts = RunOptions(image="hello")
    _, record = ensure_image(settings, opts)          # not in the store: the embedded one
    assert record.id.startswith("sha256:")
    assert parses == ["hello"]
    parses.clear()
    _, again = ensure_image(settings, opts)           # now found in the store
    assert again.id == record.id and parses == ["hello"]


def test_an_unparsable_name_is_not_found_without_a_traceback(settings, parses):
    from pydocklite.cli.run import ensure_image
    from pydocklite.errors import ImageNotFoundError
    with pytest.raises(ImageNotFoundError):
        ensure_image(settings, RunOptions(image="Bad Name", pull="never"))
    assert parses == ["Bad Name"]
