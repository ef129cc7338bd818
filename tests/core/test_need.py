"""`core.lazy.need`: an optional dependency imported, or one line naming what to install."""
import json
import sys

import pytest

from polymodal.core.errors import PolymodalError, UsageError
from polymodal.core.lazy import need

pytestmark = pytest.mark.timeout(30)


def test_need_returns_the_first_module_and_imports_the_rest():
    assert need("json", "json.decoder", message="unused") is json
    assert "json.decoder" in sys.modules


def test_a_missing_module_is_the_given_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "polymodal_no_such_pkg", None)
    with pytest.raises(PolymodalError) as e:
        need("json", "polymodal_no_such_pkg", message="needs X (pip install 'polymodal[x]')")
    assert str(e.value) == "needs X (pip install 'polymodal[x]')"
    assert type(e.value) is PolymodalError
    with pytest.raises(UsageError, match=r"^video needs PyAV"):
        need("polymodal_no_such_pkg", message="video needs PyAV", error=UsageError)
