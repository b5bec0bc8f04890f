"""Nothing breaks for users: a checkpoint written by npsenet 0.1.0 (before the plain and
fast paths were split) still loads, under the same state_dict keys, and gives the logits
that release computed, on both paths (docs/contract.md#checkpoints)."""
from pathlib import Path

import numpy as np
import pytest

import npsenet as ns

DATA = Path(__file__).parent / "data"

pytestmark = pytest.mark.usefixtures("code_path")   # on the fast and the plain path


def test_a_checkpoint_of_release_0_1_0_loads_and_gives_its_logits():
    model = ns.io.load_model(DATA / "se_resnet20_v0.1.0.npz")
    assert model.name == "se_resnet20"
    assert model.options["reduction"] == 8 and model.options["placement"] == "pre"
    reference = np.load(DATA / "se_resnet20_v0.1.0_logits.npz")
    model.eval()
    np.testing.assert_allclose(model(reference["x"]), reference["logits"], rtol=1e-4,
                               atol=1e-5)
    with np.load(DATA / "se_resnet20_v0.1.0.npz", allow_pickle=False) as archive:
        keys = [k for k in archive.files if not k.startswith("__")]
    assert keys == list(model.state_dict())
