"""Loading a saved index with another kind's loader is one line naming index.json."""
import numpy as np
import pytest

from polymodal.core.errors import PolymodalError
from polymodal.index.exact import ExactIndex
from polymodal.index.lance_index import LanceIndex

pytestmark = pytest.mark.timeout(30)


def test_wrong_loader_names_the_kind(tmp_path):
    idx = ExactIndex(4)
    idx.add(np.eye(4, dtype=np.float32), ["a", "b", "c", "d"])
    idx.save(tmp_path / "ix")
    with pytest.raises(PolymodalError) as e:
        LanceIndex.load(tmp_path / "ix")
    assert str(e.value) == (f"{tmp_path / 'ix' / 'index.json'}: kind is 'exact', not 'lancedb'; "
                            f"use polymodal.index.load_index")
    assert ExactIndex.load(tmp_path / "ix").search(np.eye(4, dtype=np.float32)[:1], k=1)[1][0][0] == "a"
