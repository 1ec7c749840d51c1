"""Model files: the same object gives the same bytes, whatever the file's (temporary) name."""

import torch

from medrepro.training.checkpoint import load_torch, save_torch_atomic


def test_equal_objects_give_equal_model_files(tmp_path):
    torch.manual_seed(0)
    payload = {"kind": "Test", "config": {"steps": 3}, "state_dict": torch.nn.Linear(4, 2).state_dict()}
    save_torch_atomic(payload, tmp_path / "a.pt")
    save_torch_atomic(payload, tmp_path / "sub" / "other-name.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "sub" / "other-name.pt").read_bytes()
    loaded = load_torch(tmp_path / "a.pt")
    assert loaded["config"] == {"steps": 3}
    assert all(torch.equal(loaded["state_dict"][k], v) for k, v in payload["state_dict"].items())
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary file left behind
