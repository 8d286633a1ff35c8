"""safetensors: reading files and shard indexes, the streaming writer, exports, and bad input (exit 2)."""

import json

import pytest
import tomli_w
import torch

pytest.importorskip("safetensors")
from safetensors.torch import load_file, save_file  # noqa: E402

from arsearch.checkpoint import CheckpointError  # noqa: E402
from arsearch.cli import main  # noqa: E402
from arsearch.compress import decompress  # noqa: E402
from arsearch.config import load_job  # noqa: E402
from arsearch.posttrain import base_model, posttrain, pretrain  # noqa: E402
from arsearch.tasks import build_task  # noqa: E402
from arsearch.weights import read_safetensors, read_state_dict, save_safetensors  # noqa: E402
from tests.support import job_data  # noqa: E402


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("st")
    torch.manual_seed(0)
    task = build_task(load_job(data=job_data("posttrain", tmp / "out", **{"model.checkpoint": tmp / "x.pt"})))
    pretrain(task, epochs=2)
    return {k: v.clone() for k, v in base_model(task).state_dict().items()}


def shard(tmp_path, state, missing=False):
    """A two-shard checkpoint with its index, as Hugging Face writes large models."""
    keys = sorted(state)
    halves = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for name, part in halves.items():
        if not (missing and name.startswith("model-00002")):
            save_file({k: state[k].contiguous() for k in part}, str(tmp_path / name))
    index = {"metadata": {"total_size": 0}, "weight_map": {k: n for n, part in halves.items() for k in part}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    return tmp_path / "model.safetensors.index.json"


def test_streaming_writer_is_read_by_safetensors(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64), "c": torch.randn(2, 2).t(),
               "d": torch.randn(4).to(torch.bfloat16), "e": torch.tensor([True, False]), "empty": torch.zeros(0, 3)}
    path = save_safetensors(tmp_path / "x.safetensors", tensors, {"format": "pt", "note": "hi"})
    back = load_file(str(path))
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    _, meta = read_safetensors(path)
    assert meta == {"format": "pt", "note": "hi"}


def test_tied_tensors_are_written_in_full(tmp_path):
    w = torch.randn(4, 3)
    path = save_safetensors(tmp_path / "tied.safetensors", {"emb": w, "head": w})
    back = load_file(str(path))
    assert torch.equal(back["emb"], w) and torch.equal(back["head"], w)


def test_single_and_sharded_files_load_and_posttrain(tmp_path, state):
    single = tmp_path / "single.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(single))
    index = shard(tmp_path, state)
    for path in (single, index, tmp_path):          # a file, an index, a directory holding the index
        loaded = read_state_dict(path)
        assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    result = posttrain(load_job(data=job_data("posttrain", tmp_path / "out", **{"model.checkpoint": index})))
    assert result.checkpoint.endswith("posttrained.safetensors")
    exported = load_file(result.checkpoint)          # plain safetensors, loadable without arsearch
    assert set(exported) == set(state)
    # and the export starts the next job
    again = posttrain(load_job(data=job_data("posttrain", tmp_path / "b" / "out",
                                              **{"model.checkpoint": result.checkpoint, "ars.iterations": 0})))
    assert again.before["accuracy"] == pytest.approx(result.after["accuracy"])


def test_pt_export_on_request(tmp_path, state):
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    data = job_data("posttrain", tmp_path / "out", **{"model.checkpoint": tmp_path / "w.safetensors",
                                                     "model.export": "pt"})
    result = posttrain(load_job(data=data))
    assert result.checkpoint.endswith("posttrained.pt")
    assert set(torch.load(result.checkpoint, weights_only=True)) == set(state)


def test_compressed_export_carries_its_format(tmp_path, state):
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    data = job_data("posttrain", tmp_path / "out", compress={"prune": 0.5, "share_bits": 3, "search": "centroids"},
                    **{"model.checkpoint": tmp_path / "w.safetensors"})
    result = posttrain(load_job(data=data))
    assert result.compressed_checkpoint.endswith("compressed.safetensors")
    tensors, meta = read_safetensors(result.compressed_checkpoint)
    assert meta["format"] == "arsearch-compressed" and meta["share_bits"] == "3"
    dense = load_file(result.checkpoint)
    restored = read_state_dict(result.compressed_checkpoint)   # decompressed on reading
    assert set(restored) == set(dense) and all(torch.equal(restored[k], dense[k]) for k in dense)
    from arsearch.weights import unflatten_compressed

    assert all(torch.equal(v, dense[k]) for k, v in decompress(unflatten_compressed(tensors, meta)).items())


def test_bad_files_exit_2_with_the_reason(tmp_path, state, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "good.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(good))
    raw = good.read_bytes()
    cases = {}
    (tmp_path / "truncated.safetensors").write_bytes(raw[: len(raw) // 2])
    cases["truncated.safetensors"] = "truncated or corrupt"
    (tmp_path / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json!!!!!!}")
    cases["garbage.safetensors"] = "truncated or corrupt"
    (tmp_path / "empty.safetensors").write_bytes(b"")
    cases["empty.safetensors"] = "truncated or corrupt"
    sub = tmp_path / "missing"
    sub.mkdir()
    shard(sub, state, missing=True)
    cases["missing/model.safetensors.index.json"] = "names shard files that do not exist"
    (tmp_path / "bad.safetensors.index.json").write_text("{oops")
    cases["bad.safetensors.index.json"] = "is not valid JSON"
    (tmp_path / "nomap.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
    cases["nomap.safetensors.index.json"] = "has no 'weight_map'"
    short = tmp_path / "short"
    short.mkdir()
    index = shard(short, state)
    first = short / "model-00001-of-00002.safetensors"
    first.write_bytes(first.read_bytes()[:-8])       # a shard cut short
    cases["short/model.safetensors.index.json"] = "truncated or corrupt"
    lying = tmp_path / "lying"
    lying.mkdir()
    index = shard(lying, state)
    data = json.loads(index.read_text())
    data["weight_map"]["extra.weight"] = "model-00001-of-00002.safetensors"
    index.write_text(json.dumps(data))
    cases["lying/model.safetensors.index.json"] = "lacks tensors its index assigns to it"
    for name, reason in cases.items():
        with pytest.raises(CheckpointError, match=reason):
            read_state_dict(tmp_path / name)
        cfg = tmp_path / "job.toml"
        cfg.write_text(tomli_w.dumps(job_data("posttrain", tmp_path / "out", **{"model.checkpoint": tmp_path / name})))
        assert main(["posttrain", str(cfg), "--quiet"]) == 2, name
        err = capsys.readouterr().err
        assert reason in err and name.split("/")[-1] in err, (name, err)
    assert not (tmp_path / "out").exists()          # nothing written before the input was refused


@pytest.mark.parametrize("where", ["../outside.safetensors", "ABSOLUTE", "link.safetensors"])
def test_a_shard_index_cannot_read_files_outside_the_model_directory(tmp_path, state, where):
    """A crafted index naming ../x, /abs/x or a symlink out of the directory is refused; the outside file,
    which holds real tensors of the right names, is never read."""
    from arsearch.checkpoint import CheckpointError

    model = tmp_path / "model"
    model.mkdir()
    shard(model, state)
    outside = tmp_path / "outside.safetensors"
    save_file({k: torch.full_like(v, 7.0).contiguous() for k, v in state.items()}, str(outside))
    if where == "ABSOLUTE":
        where = str(outside)
    elif where == "link.safetensors":
        (model / where).symlink_to(outside)
    index = model / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    first = sorted(data["weight_map"])[0]
    data["weight_map"][first] = where
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="outside its directory"):
        read_safetensors(model)


def test_a_file_that_claims_a_huge_tensor_is_refused_before_allocating(tmp_path, capsys):
    """A tiny compressed safetensors file whose metadata claims a [200000, 100000] float32 tensor (80 GB):
    refused with its size, exit 2, without trying to allocate it."""
    import resource

    from arsearch.weights import flatten_compressed

    form = {"format": "arsearch-compressed", "masks": {}, "codebooks": {}, "indices": {},
            "values": {"w": torch.randn(64)}, "dense": {"b": torch.zeros(8)}, "shapes": {"w": [200000, 100000]},
            "dtypes": {"w": "torch.float32"}, "pruned_fraction": 0.0, "share_bits": 0}
    tensors, meta = flatten_compressed(form)
    path = save_safetensors(tmp_path / "liar.safetensors", tensors, meta)
    assert path.stat().st_size < 4096
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match=r"would need 7[0-9.]+ GiB of memory.*refused before allocating"):
        read_state_dict(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000        # KiB: nothing was allocated
    (tmp_path / "job.toml").write_text(tomli_w.dumps(job_data("posttrain", tmp_path / "out",
                                                               **{"model.checkpoint": str(path)})))
    assert main(["posttrain", str(tmp_path / "job.toml")]) == 2
    assert "refused before allocating" in capsys.readouterr().err


def test_a_pt_file_that_expands_past_free_memory_is_refused_before_loading(tmp_path, monkeypatch):
    from arsearch import checkpoint as ckpt

    torch.save({"w": torch.zeros(4_000_000)}, tmp_path / "big.pt")          # 16 MB of tensor data
    monkeypatch.setattr(ckpt, "available_memory", lambda: 8 * 1024 * 1024)   # as if 8 MiB were free
    with pytest.raises(CheckpointError, match=r"big.pt \(its entries expand to 15.\d MiB\) would need"):
        ckpt.load(tmp_path / "big.pt")
    monkeypatch.setattr(ckpt, "available_memory", lambda: 1 << 40)
    assert ckpt.load(tmp_path / "big.pt")["w"].numel() == 4_000_000
