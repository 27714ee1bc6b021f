"""Hub conventions (ebtkit/core/hub.py, ebtkit/tasks/hub.py, ``ebt push``): save_pretrained → from_pretrained for
every model class, loading run directories, checkpoints and checkpoints written by earlier code (the checked-in
fixtures), the model card, the wrong-class error, the Hub cache, and ``ebt push`` with a mocked ``HfApi`` and
offline. Nothing here reaches the network."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import ebtkit
from ebtkit import tasks
from ebtkit.cli import main
from ebtkit.core import hub
from ebtkit.core.checkpoint import CheckpointError, NonFiniteError
from ebtkit.core.models import DiT, ImageEBT, SequenceEBT, SequenceTransformer, TextEBT, TransformerPP
from ebtkit.data.tokenizers import BPETokenizer
from ebtkit.tasks import hub as task_hub
from tests.helpers import close

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
TEXT_RUN, SEQ_RUN = FIXTURES / "text-ebt-tiny", FIXTURES / "sequence-ebt-tiny"
TEXT = "In the beginning God created the heaven and the earth."
SHARED = {"model.safetensors", "config.json", "README.md"}

CLASSES = {  # class → (task, model name, tiny overrides)
    TextEBT: ("text", "ebt", {"model.d_model": 16, "model.n_layers": 1, "model.context": 8}),
    TransformerPP: ("text", "transformer++", {"model.d_model": 16, "model.n_layers": 1, "model.context": 8}),
    ImageEBT: ("denoise", "ebt", {"model.d_model": 16, "model.n_layers": 1, "model.image_size": 14}),
    DiT: ("denoise", "dit", {"model.d_model": 16, "model.n_layers": 1, "model.image_size": 14}),
    SequenceEBT: ("sequence", "ebt", {"model.d_model": 16, "model.n_layers": 1, "model.features": 3}),
    SequenceTransformer: ("sequence", "transformer++", {"model.d_model": 16, "model.n_layers": 1,
                                                        "model.features": 3}),
}


def reference_outputs(model, task: str) -> dict:
    """What tests/fixtures/checkpoints/*/reference.json hold (see the README there)."""
    g = torch.Generator().manual_seed(0)
    if task == "text":
        x = torch.tensor([list(TEXT.encode())[:32]])
        cand = torch.randn(1, x.shape[1], model.cfg.vocab_size, generator=g)
    else:
        x = torch.randn(1, 6, model.cfg.features, generator=g)
        cand = torch.randn(x.shape, generator=g)
    with torch.no_grad():
        e = model.energy(x, cand)
    final, traj = model.think(x, steps=2)
    return {"energy": e[0].tolist(), "think_energies": traj[:, 0].tolist(), "think_last": final[0, -1, :16].tolist()}


def close_to_reference(got: list, want: list, model) -> None:
    """Outputs recomputed here vs reference.json's, computed on another CPU: the same float32 sums in another order.
    Tolerance (tests.helpers.tol) from float32's eps, the longest reduction (the candidate's width: the vocabulary
    or the features, longer than the context and the model width) and the reductions chained: every layer, forward
    and backward, for each of the 2 thinking steps and the final energy."""
    cfg = model.cfg
    n = max(getattr(cfg, "vocab_size", None) or 0, getattr(cfg, "features", None) or 0, cfg.context, cfg.d_model)
    close(torch.tensor(got), torch.tensor(want), n, depth=2 * cfg.n_layers * (2 + 1))


def outputs(model) -> list[torch.Tensor]:
    """Deterministic outputs of any model class on fixed inputs (for exact round-trip comparisons)."""
    g = torch.Generator().manual_seed(1)
    cfg = model.cfg
    with torch.no_grad():
        if isinstance(model, (TextEBT, TransformerPP)):
            x = torch.randint(0, cfg.vocab_size, (2, cfg.context), generator=g)
            if isinstance(model, TransformerPP):
                return [model(x)]
            cand = torch.randn(2, cfg.context, cfg.vocab_size, generator=g)
            return [model.energy(x, cand), model.energy(x, cand, reference=True)]
        if isinstance(model, (ImageEBT, DiT)):
            y = torch.rand(2, cfg.channels, cfg.image_size, cfg.image_size, generator=g) * 2 - 1
            return [model(y)] if isinstance(model, ImageEBT) else [model(y, torch.tensor([3, 50]))]
        x = torch.randn(2, cfg.context, cfg.features, generator=g)
        if isinstance(model, SequenceTransformer):
            return [model(x)]
        return [model.energy(x, torch.randn(x.shape, generator=g))]


def tiny(cls):
    """A tiny model of ``cls`` with its task's run config; weights moved off their init (zero energy heads)."""
    task, name, over = CLASSES[cls]
    cfg = tasks.preset(task, "tiny", **{"model.model": name}).replace(**over)
    torch.manual_seed(0)
    model = tasks.get_task(task).build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert type(model) is cls
    return model.eval(), cfg


def front_matter(folder: Path) -> dict:
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def files_of(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


# ------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("cls", list(CLASSES), ids=lambda c: c.__name__)
def test_save_pretrained_from_pretrained_round_trip_every_class(tmp_path, cls):
    model, cfg = tiny(cls)
    want = outputs(model)
    model.save_pretrained(tmp_path / "m", config=cfg)
    assert files_of(tmp_path / "m") == SHARED
    got = cls.from_pretrained(tmp_path / "m")
    assert type(got) is cls and not got.training and got.cfg == model.cfg
    for a, b in zip(want, outputs(got)):
        assert torch.equal(a, b)
    # ebtkit.load reads what save_pretrained wrote (the typed bundle), and from_pretrained what ebtkit.save wrote
    bundle = ebtkit.load(tmp_path / "m")
    assert bundle.task == CLASSES[cls][0] and bundle.config == cfg
    for a, b in zip(want, outputs(bundle.model)):
        assert torch.equal(a, b)
    ebtkit.save(model, tmp_path / "s", config=cfg)
    for a, b in zip(want, outputs(cls.from_pretrained(tmp_path / "s"))):
        assert torch.equal(a, b)
    assert ebtkit.from_pretrained(tmp_path / "s").config == cfg


def test_save_pretrained_without_config_and_card_sizes(tmp_path):
    model = ebtkit.build("ebt", preset="tiny", vocab_size=64)
    model.save_pretrained(tmp_path / "m")
    got = TextEBT.from_pretrained(tmp_path / "m")
    assert got.cfg == model.cfg
    assert ebtkit.load(tmp_path / "m").config.model == model.cfg          # the text run config around it
    meta = front_matter(tmp_path / "m")
    assert meta["library_name"] == "ebtkit" and meta["pipeline_tag"] == "text-generation"
    assert {"ebtkit", "energy-based-transformer", "text"} <= set(meta["tags"])
    e = meta["ebtkit"]
    assert e["class"] == "TextEBT" and e["task"] == "text" and e["model"] == "ebt"
    assert e["parameters"] == sum(p.numel() for p in model.parameters())
    assert e["non_embedding_parameters"] == sum(p.numel() for p in model.backbone.parameters())
    assert e["training_data"].startswith("not recorded")
    assert "metrics" not in e and "command" not in e
    meta_b = front_matter(_saved(TransformerPP, tmp_path / "b"))
    assert "energy-based-transformer" not in meta_b["tags"] and "baseline" in meta_b["tags"]


def _saved(cls, folder):
    model, cfg = tiny(cls)
    model.save_pretrained(folder, config=cfg)
    return folder


def test_save_pretrained_overwrites_a_folder_in_place(tmp_path):
    a, cfg = tiny(SequenceEBT)
    a.save_pretrained(tmp_path / "m", config=cfg)
    with torch.no_grad():
        for p in a.parameters():
            p.mul_(0.5)
    a.save_pretrained(tmp_path / "m", config=cfg)
    assert files_of(tmp_path / "m") == SHARED                            # no temporary folder left behind
    for x, y in zip(outputs(a), outputs(SequenceEBT.from_pretrained(tmp_path / "m"))):
        assert torch.equal(x, y)


def test_save_pretrained_bad_input_writes_nothing(tmp_path):
    model, cfg = tiny(TextEBT)
    with pytest.raises(ValueError, match="does not match the model being saved.*d_model"):
        model.save_pretrained(tmp_path / "a", config=cfg.replace(**{"model.d_model": 32}))
    with pytest.raises(ValueError, match="reserved"):
        model.save_pretrained(tmp_path / "a", files={"config.json": b"{}"})
    with pytest.raises(ValueError, match="is a run directory"):
        model.save_pretrained(TEXT_RUN)
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        model.save_pretrained(tmp_path / "a", config=cfg)
    assert not (tmp_path / "a").exists()
    assert files_of(TEXT_RUN) == {"checkpoint", "eval.json", "metrics.jsonl", "reference.json"}


# ------------------------------------------------------------------------------------------ old checkpoints
@pytest.mark.parametrize("run,cls,task", [(TEXT_RUN, TextEBT, "text"), (SEQ_RUN, SequenceEBT, "sequence")],
                         ids=["text", "sequence"])
def test_checked_in_checkpoints_load_and_match_their_reference(run, cls, task):
    ref = json.loads((run / "reference.json").read_text())
    for source in (run, run / "checkpoint"):
        models = [ebtkit.load(source).model, ebtkit.from_pretrained(source).model, cls.from_pretrained(source)]
        for model in models:
            got = reference_outputs(model, task)
            for key in ("energy", "think_energies", "think_last"):
                close_to_reference(got[key], ref[key], model)
    assert ebtkit.from_pretrained(SEQ_RUN).extras["stats"] == json.loads(
        (SEQ_RUN / "checkpoint" / "sequence_stats.json").read_text())


def test_older_config_formats_load(tmp_path):
    """Configs saved before the text update rule was a choice (no ``model.update``: they stepped on the logits)
    and before ``format_version`` existed."""
    shutil.copytree(TEXT_RUN / "checkpoint", tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "config.json").read_text())
    del meta["config"]["model"]["update"], meta["format_version"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    a, b = TextEBT.from_pretrained(tmp_path / "old"), ebtkit.from_pretrained(tmp_path / "old").model
    assert a.cfg.update == b.cfg.update == "logits"
    x = torch.tensor([list(TEXT.encode())[:16]])
    assert torch.equal(a.think(x, steps=2)[0], b.think(x, steps=2)[0])
    assert not torch.equal(a.think(x, steps=2)[0], TextEBT.from_pretrained(TEXT_RUN).think(x, steps=2)[0])


def test_from_pretrained_on_the_wrong_class_is_one_line_naming_both(tmp_path):
    with pytest.raises(CheckpointError) as e:
        TextEBT.from_pretrained(SEQ_RUN)
    msg = str(e.value)
    assert "\n" not in msg and "SequenceEBT" in msg and "TextEBT" in msg
    with pytest.raises(CheckpointError, match=r"TransformerPP.*not a TextEBT|TextEBT.*not a TransformerPP"):
        TransformerPP.from_pretrained(TEXT_RUN)
    with pytest.raises(CheckpointError, match="TextEBT checkpoint.*not a DiT"):
        DiT.from_pretrained(TEXT_RUN)
    with pytest.raises(CheckpointError, match="no such run or checkpoint"):
        TextEBT.from_pretrained(tmp_path / "missing" / "deeper" / "x")


# ------------------------------------------------------------------------------------------ the Hub cache
def _fake_cache(cache: Path, repo: str, folder: Path) -> None:
    """The Hugging Face cache layout of one downloaded snapshot (what snapshot_download leaves behind)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    rev = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(folder, root / "snapshots" / rev)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(rev)


def test_from_pretrained_repo_id_from_the_cache_and_offline_error(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    ebtkit.save_pretrained(TEXT_RUN, tmp_path / "shared")
    _fake_cache(tmp_path / "cache", "someone/tiny-ebt", tmp_path / "shared")
    b = ebtkit.from_pretrained("someone/tiny-ebt", cache_dir=tmp_path / "cache")
    m = TextEBT.from_pretrained("someone/tiny-ebt", cache_dir=tmp_path / "cache")
    ref = json.loads((TEXT_RUN / "reference.json").read_text())
    for model in (b.model, m):
        close_to_reference(reference_outputs(model, "text")["think_last"], ref["think_last"], model)
    assert b.tokenizer.encode("ab") == [97, 98]
    for load in (ebtkit.from_pretrained, TextEBT.from_pretrained):
        with pytest.raises(hub.HubError) as e:
            load("someone/not-cached", cache_dir=tmp_path / "cache")
        assert "\n" not in str(e.value) and "someone/not-cached" in str(e.value)


def test_from_pretrained_repo_id_with_an_unreachable_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(hub.HubError) as e:
        ebtkit.from_pretrained("someone/tiny-ebt", cache_dir=tmp_path / "cache")
    assert "\n" not in str(e.value) and "could not be fetched" in str(e.value)


# ------------------------------------------------------------------------------------------ model cards
def test_model_card_of_a_run_reports_metrics_command_and_runs_its_usage(tmp_path, capsys):
    ebtkit.save_pretrained(TEXT_RUN, tmp_path / "t")
    ebtkit.save_pretrained(SEQ_RUN, tmp_path / "s")
    assert files_of(tmp_path / "t") == SHARED and files_of(tmp_path / "s") == SHARED | {"sequence_stats.json"}
    t, s = front_matter(tmp_path / "t"), front_matter(tmp_path / "s")
    card = hub.read_card(tmp_path / "t")                                 # huggingface_hub parses it too
    assert card.data.library_name == "ebtkit" and card.data.to_dict()["ebtkit"] == t["ebtkit"]
    rows = json.loads((TEXT_RUN / "eval.json").read_text())["rows"]     # an eval.json from before the table
    got = t["ebtkit"]["metrics"]["eval.json"]                            # its headline: the plain row, exactly
    assert got["val"] == {"perplexity": rows[0]["val_ppl"], "windows": None, "tokens": rows[0]["val_tokens"]}
    assert got["ood"]["perplexity"] == rows[0]["ood_ppl"] and got["evaluated_at_step"] == 2
    assert t["ebtkit"]["validation"] == {"val_ppl": json.loads((TEXT_RUN / "checkpoint" / "state.json")
                                                              .read_text())["val_ppl"]}
    assert t["ebtkit"]["steps"] == 2 and "King James" in t["ebtkit"]["training_data"]
    assert t["ebtkit"]["reproduce"] == "ebt train --config config.json"
    assert "metrics" not in s["ebtkit"] and s["pipeline_tag"] == "time-series-forecasting"
    assert "Moving Fashion-MNIST" in s["ebtkit"]["training_data"]
    for folder in (tmp_path / "t", tmp_path / "s"):                      # the usage snippet runs as written
        text = (folder / "README.md").read_text()
        code = text.split("```python\n")[1].split("```")[0].replace("REPO_ID", str(folder))
        exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.startswith("In the beginning")


@pytest.mark.parametrize("cls", [ImageEBT, DiT], ids=lambda c: c.__name__)
def test_image_model_card_usage_runs(tmp_path, cls):
    model, cfg = tiny(cls)
    ebtkit.save(model, tmp_path / "run", config=cfg)
    ebtkit.save_pretrained(tmp_path / "run", tmp_path / "m")
    meta = front_matter(tmp_path / "m")
    assert meta["pipeline_tag"] == "image-to-image" and meta["ebtkit"]["class"] == cls.__name__
    assert meta["ebtkit"]["non_embedding_parameters"] == model.trunk_params()
    text = (tmp_path / "m" / "README.md").read_text()
    env: dict = {}
    exec(compile(text.split("```python\n")[1].split("```")[0].replace("REPO_ID", str(tmp_path / "m")),
                 "README.md", "exec"), env)
    assert env["clean"].shape == (4, cfg.model.channels, cfg.model.image_size, cfg.model.image_size)


def test_bpe_tokenizer_travels_with_the_model(tmp_path):
    tok = BPETokenizer.train(TEXT * 40 + "and the earth was without form, and void", 300)
    cfg = tasks.preset("text", "tiny", **{"data.tokenizer": "bpe", "data.bpe_vocab": 300}).replace(
        **{"model.vocab_size": tok.vocab_size, "model.d_model": 16, "model.n_layers": 1})
    model = tasks.get_task("text").build_model(cfg)
    model.save_pretrained(tmp_path / "m", config=cfg, tokenizer=tok)
    assert files_of(tmp_path / "m") == SHARED | {"tokenizer.json"}
    b = ebtkit.from_pretrained(tmp_path / "m")
    assert b.tokenizer.encode(TEXT) == tok.encode(TEXT) and b.config == cfg
    ebtkit.save_pretrained(b, tmp_path / "again")                         # a loaded bundle saves the same files
    assert (tmp_path / "again" / "tokenizer.json").read_bytes() == (tmp_path / "m" / "tokenizer.json").read_bytes()


# ------------------------------------------------------------------------------------------ ebt push
class FakeApi:
    """Stands in for huggingface_hub.HfApi: records the repo and the files of the uploaded folder."""

    calls: list = []

    def __init__(self, token=None, **kw):
        self.token = token

    def create_repo(self, repo_id, private=None, exist_ok=False, **kw):
        FakeApi.calls.append(("create_repo", repo_id, private, self.token))

        class Url(str):
            pass
        url = Url(f"https://hub.example/{repo_id}")
        url.repo_id = repo_id
        return url

    def upload_folder(self, repo_id, folder_path, **kw):
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        FakeApi.calls.append(("upload_folder", repo_id, files, kw.get("commit_message")))
        return f"https://hub.example/{repo_id}/commit/1"


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub.hub_mixin
    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub.hub_mixin, "HfApi", FakeApi)
    monkeypatch.setattr(task_hub, "_offline_reason", lambda: None)      # the mocked Hub is always reachable
    return FakeApi.calls


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A text run trained by the CLI (records its command in the run)."""
    root = tmp_path_factory.mktemp("cli")
    (root / "corpus.txt").write_text(TEXT * 80, encoding="utf-8")
    run = root / "run"
    argv = ["train", "--preset", "tiny", "--steps", "1", "--set", "model.d_model=16", "--set", "model.n_layers=1",
            "--data", str(root / "corpus.txt"), "--out", str(run), "--no-progress", "--no-eval"]
    assert main(argv) == 0
    return run, argv


def test_train_records_its_command_and_push_uploads_exactly_the_model(trained_run, fake_hub, capsys):
    run, argv = trained_run
    assert (run / task_hub.COMMAND_FILE).read_text().splitlines() == [" ".join(["ebt", *argv])]
    before = snapshot(run)
    assert main(["push", str(run), "me/tiny-ebt", "--private", "--token", "hf_x", "--message", "first"]) == 0
    assert "pushed" in capsys.readouterr().out
    (op1, repo, private, token), (op2, repo2, files, message) = fake_hub
    assert (op1, repo, private, token, op2, repo2, message) == ("create_repo", "me/tiny-ebt", True, "hf_x",
                                                                "upload_folder", "me/tiny-ebt", "first")
    assert set(files) == SHARED                                          # byte tokenizer: no tokenizer file
    card = files["README.md"].decode()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["ebtkit"]["command"] == [" ".join(["ebt", *argv])] and meta["ebtkit"]["steps"] == 1
    assert meta["ebtkit"]["training_data"].startswith("the file corpus.txt")
    assert 'ebtkit.from_pretrained("me/tiny-ebt")' in card
    saved = json.loads(files["config.json"])
    assert saved == json.loads((run / "checkpoint" / "config.json").read_text())
    assert files["model.safetensors"] == (run / "checkpoint" / "model.safetensors").read_bytes()
    assert snapshot(run) == before                                       # nothing written into the run


def test_push_of_a_bpe_bundle_uploads_its_tokenizer(tmp_path, fake_hub):
    tok = BPETokenizer.train(TEXT * 40, 280)
    cfg = tasks.preset("text", "tiny", **{"data.tokenizer": "bpe", "data.bpe_vocab": 280}).replace(
        **{"model.vocab_size": tok.vocab_size, "model.d_model": 16, "model.n_layers": 1})
    model = tasks.get_task("text").build_model(cfg)
    ebtkit.save(model, tmp_path / "run", config=cfg, tokenizer=tok)
    ebtkit.push_to_hub(tmp_path / "run", "me/bpe")
    files = fake_hub[-1][2]
    assert set(files) == SHARED | {"tokenizer.json"} and files["tokenizer.json"] == tok.files()["tokenizer.json"]


def test_push_offline_is_one_line_exit_2_and_writes_nothing(trained_run, monkeypatch, capsys):
    run, _ = trained_run
    before = snapshot(run)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["push", str(run), "me/tiny-ebt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "ebt: error: cannot push to Hub repo me/tiny-ebt: HF_HUB_OFFLINE is set"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    assert main(["push", str(run), "me/tiny-ebt"]) == 2                  # the reachability check
    err = capsys.readouterr().err.strip()
    assert err.startswith("ebt: error: cannot push to Hub repo me/tiny-ebt: cannot reach http://127.0.0.1:9")
    assert "\n" not in err
    monkeypatch.setattr(task_hub, "_offline_reason", lambda: None)       # the request itself fails
    assert main(["push", str(run), "me/tiny-ebt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ebt: error: push to Hub repo me/tiny-ebt failed (") and "\n" not in err
    assert main(["push", str(run), "not a repo id"]) == 2
    assert "owner/name" in capsys.readouterr().err
    assert snapshot(run) == before


def test_push_cli_with_an_unreachable_endpoint_env(trained_run):
    """The real command in a fresh process, configured only by the environment."""
    run, _ = trained_run
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "ebtkit.cli", "push", str(run), "me/tiny-ebt"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("ebt: error: cannot push to Hub repo me/tiny-ebt")


if __name__ == "__main__":      # rewrite a fixture's reference.json (a new fixture only; see its README)
    if len(sys.argv) != 3 or sys.argv[1] != "--write-reference":
        sys.exit("usage: python tests/test_hub.py --write-reference FIXTURE_DIR")
    b = ebtkit.load(sys.argv[2])
    ref = {"made_with": {"ebtkit_commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                                         text=True).stdout.strip(), "torch": torch.__version__},
           **reference_outputs(b.model, b.task)}
    (Path(sys.argv[2]) / "reference.json").write_text(json.dumps(ref, indent=1))
