"""Hub conventions for every ebtkit model: ``save_pretrained``, ``from_pretrained`` and ``push_to_hub``.

:class:`HubMixin` plugs ebtkit's own files into ``huggingface_hub.ModelHubMixin``: the mixin supplies the
API and the Hub plumbing (``push_to_hub`` = ``HfApi.create_repo`` + ``upload_folder`` of a temporary
``save_pretrained``), and :meth:`HubMixin._save_pretrained` / :meth:`HubMixin._from_pretrained` use our
checkpoint I/O, so a saved folder is exactly what ``ebtkit.save`` writes and ``ebtkit.load`` reads::

    model.safetensors   weights (safetensors; refused if any tensor is NaN or infinite)
    config.json         {"config": <run config>, "task", "format_version", "ebtkit_version"}
    README.md           model card: YAML front matter (library_name, tags, pipeline_tag, sizes, training data,
                        metrics, the training command) + a usage snippet
    <extra files>       the tokenizer's files (a BPE ``tokenizer.json``), a sequence run's statistics, ...

``Model.from_pretrained(x)`` takes a ``save_pretrained`` folder, a checkpoint folder, a run directory (its
``checkpoint/``) or a Hub repo id (downloaded into the Hugging Face cache), checks that the checkpoint holds
this class's task and model (one-line :class:`~ebtkit.core.checkpoint.CheckpointError` naming both otherwise),
rebuilds the model from its own config section (``cls.hub_config``; text runs go through ``RunConfig.upgrade``
for older formats) and loads the weights. It returns the bare model (eval mode); ``ebtkit.from_pretrained``
(the task layer) returns the whole :class:`~ebtkit.tasks.base.Bundle` with the tokenizer and extras.

**Metrics that belong to the weights.** An evaluation records which weights it scored (:func:`weights_stamp`: the
checkpoint's step and the SHA-256 of ``model.safetensors``), and the card shows only the headline metrics of
evaluations of the weights it ships (``ebtkit.metrics``, with the step they were evaluated at); the validation
figure saved with the checkpoint is shown as what it is (``ebtkit.validation``: measured during training), and run
metadata (world size, elapsed time) is never shown as a metric. Which metrics are the headline of which evaluation
file is the task layer's business (:mod:`ebtkit.tasks.hub`).

This module knows only core: checkpoint I/O, configs, and the class attributes each model declares in its
class statement (``class TextEBT(AutoregressiveEBT, HubMixin, task="text", name="ebt", config=ModelConfig,
run_config=RunConfig, pipeline_tag="text-generation", energy_based=True)``). There is no registry: the class
that would load a mismatched checkpoint is found among ``HubMixin``'s subclasses, for the error message only.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml
from huggingface_hub import ModelCard, ModelCardData, ModelHubMixin

from . import __version__
from . import checkpoint as ckpt
from .config import Config

PAPER_URL = "https://arxiv.org/abs/2507.02092"
LIBRARY = "ebtkit"
HUB_TAGS = ("ebtkit",)
EBT_TAG = "energy-based-transformer"
CARD = "README.md"
# checkpoint files that stay in a run: training state, not part of a shared model
RUN_ONLY_FILES = ("state.json", "optimizer.pt")
# seconds to wait for the Hub to answer a metadata request before a download counts as offline
ETAG_TIMEOUT = 10.0
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HubError(OSError):
    """The Hub could not be reached, or refused a request (one line naming the repo)."""


@dataclass
class SaveInfo:
    """What a save writes beyond the weights: the run config (``None``: the model's own config wrapped as the
    task's run config), extra files, and what the model card reports (``card``: keys ``training_data``,
    ``steps``, ``validation`` (metric → value, measured during training), ``metrics`` (evaluation file name →
    headline metrics of these weights), ``stale`` (evaluation file name → the step of the other weights it scored:
    named, not shown), ``command``, ``reproduce``, ``usage``, ``repo_id``)."""

    config: dict | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)


def first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def is_hub_error(e: BaseException) -> bool:
    """An exception raised by talking to the Hub: huggingface_hub's own errors, its HTTP library's, OS errors."""
    root = type(e).__module__.split(".")[0]
    return root in ("huggingface_hub", "httpx", "httpx2", "requests", "urllib3") or isinstance(e, OSError)


def looks_like_repo_id(s: str) -> bool:
    return bool(_REPO_ID.match(s))


def resolve(path_or_repo: str | os.PathLike, *, revision: str | None = None, token: str | bool | None = None,
            cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
            force_download: bool = False) -> Path:
    """The local checkpoint folder of a run directory, a checkpoint or ``save_pretrained`` folder, or a Hub repo
    id ``owner/name`` (downloaded into the Hugging Face cache, or found there when offline).

    A path that exists is always local. Raises CheckpointError (nothing usable at a local path) or
    :class:`HubError` (a repo id that is neither cached nor downloadable), each one line."""
    s = os.fspath(path_or_repo)
    if Path(s).exists() or not looks_like_repo_id(s):
        return ckpt.find_checkpoint(s)
    from huggingface_hub import snapshot_download
    try:
        local = snapshot_download(repo_id=s, revision=revision, token=token, cache_dir=cache_dir,
                                  local_files_only=local_files_only, force_download=force_download,
                                  etag_timeout=ETAG_TIMEOUT)
    except Exception as e:  # noqa: BLE001 — the Hub's many error types become one line; others propagate
        if not is_hub_error(e):
            raise
        raise HubError(f"{s} is not a local run or checkpoint, and Hub repo {s} could not be fetched "
                       f"({first_line(e)})") from None
    return ckpt.find_checkpoint(local)


def weights_stamp(checkpoint: str | os.PathLike | None) -> dict | None:
    """Which weights a result is of: ``{"step": N, "sha256": HEX}`` — the checkpoint's training step (``None`` when
    it records none) and the SHA-256 of its ``model.safetensors`` (the bytes that are shared). Evaluations store it;
    the model card shows an evaluation only when its stamp matches the weights being saved. ``None`` for a model
    that was not loaded from a checkpoint."""
    if checkpoint is None:
        return None
    c = ckpt.find_checkpoint(checkpoint)
    h = hashlib.sha256()
    with open(c / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"step": ckpt.read_state(c).get("step"), "sha256": h.hexdigest()}


def count_parameters(model) -> tuple[int, int | None]:
    """(all parameters, the paper's non-embedding count: the shared block stack) of a model."""
    total = sum(p.numel() for p in model.parameters())
    for name in ("non_embedding_params", "trunk_params"):
        fn = getattr(model, name, None)
        if callable(fn):
            return total, int(fn())
    return total, None


def _data_summary(config: dict) -> str:
    data = config.get("data")
    if not isinstance(data, dict):
        return "unknown"
    return ", ".join(f"{k}={v}" for k, v in sorted(data.items()) if v is not None and not isinstance(v, (dict, list)))


def _class_for(task: str, name: str | None) -> str | None:
    """The name of the HubMixin class that loads ``(task, name)`` checkpoints (for error messages)."""
    todo, seen = list(HubMixin.__subclasses__()), set()
    while todo:
        k = todo.pop()
        if k in seen:
            continue
        seen.add(k)
        todo.extend(k.__subclasses__())
        if "hub_task" in vars(k) and (k.hub_task, k.hub_model) == (task, name):
            return k.__name__
    return None


def model_card(model: "HubMixin", config: dict, info: dict[str, Any] | None = None) -> str:
    """The README.md of a saved model: YAML front matter (``huggingface_hub.ModelCardData``) and a short body."""
    info = dict(info or {})
    cls = type(model)
    total, non_emb = count_parameters(model)
    meta: dict[str, Any] = {"task": cls.hub_task, "model": cls.hub_model, "class": cls.__name__,
                            "parameters": total}
    if non_emb is not None:
        meta["non_embedding_parameters"] = non_emb
    meta["training_data"] = info.get("training_data") or _data_summary(config)
    for key in ("steps", "metrics", "validation", "stale", "command", "reproduce"):
        if info.get(key) not in (None, {}, []):
            meta[key] = info[key]
    meta["ebtkit_version"] = __version__
    tags = sorted({*HUB_TAGS, cls.hub_task, EBT_TAG if cls.hub_ebt else "baseline"})
    data = ModelCardData(library_name=LIBRARY, pipeline_tag=cls.hub_pipeline, tags=tags, ebtkit=meta)
    if cls.hub_ebt:
        intro = (f"An Energy-Based Transformer (Gladstone et al., 2025, [arXiv 2507.02092]({PAPER_URL})) for the "
                 f"{cls.hub_task} task, trained and saved with ebtkit.")
    else:
        intro = f"The {cls.hub_model} baseline of ebtkit's {cls.hub_task} task, trained and saved with ebtkit."
    rows = [("task", cls.hub_task), ("model", f"`{cls.__name__}` ({cls.hub_model})"), ("parameters", f"{total:,}")]
    if non_emb is not None:
        rows.append(("non-embedding parameters", f"{non_emb:,}"))
    rows.append(("training data", meta["training_data"]))
    if "steps" in meta:
        rows.append(("training steps", str(meta["steps"])))
    body = [f"# {cls.__name__} ({cls.hub_task})", "", intro, "", "| | |", "|---|---|",
            *[f"| {k} | {v} |" for k, v in rows], ""]
    body += _metrics_section(meta)
    commands = meta.get("command", [])
    if commands or "reproduce" in meta:
        body += ["## Training", ""]
        if commands:
            body += ["```sh", *([commands] if isinstance(commands, str) else commands), "```", ""]
        if "reproduce" in meta:
            body += [f"The same run from its saved config: `{meta['reproduce']}`.", ""]
    usage = info.get("usage") or (f"from {cls.__module__} import {cls.__name__}\n\n"
                                  f"model = {cls.__name__}.from_pretrained(\"REPO_ID\")   # or a local folder")
    usage = usage.replace("REPO_ID", str(info.get("repo_id") or "REPO_ID"))
    body += ["## Usage", "", "```python", usage.strip(), "```", ""]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "–" if v is None else str(v).replace("|", "\\|")


def _table(rows: dict[str, dict], first: str) -> list[str]:
    """A markdown table: one row per key of ``rows``, one column per key of the inner dicts (in order seen)."""
    cols = list(dict.fromkeys(k for r in rows.values() for k in r))
    return [f"| {first} | " + " | ".join(c.replace("_", " ") for c in cols) + " |", "|---" * (len(cols) + 1) + "|",
            *[f"| {_cell(name)} | " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for name, r in rows.items()],
            ""]


def _headline_tables(headline: dict) -> list[str]:
    """A headline as markdown: its plain values as one table, its entries of plain values (e.g. one per split or
    model) as a second, and each entry of entries (e.g. the other policies, a noise level) as a table of its own."""
    plain = {k: v for k, v in headline.items() if not isinstance(v, dict)}
    rows = {k: v for k, v in headline.items()
            if isinstance(v, dict) and not any(isinstance(x, dict) for x in v.values())}
    nested = {k: v for k, v in headline.items() if isinstance(v, dict) and k not in rows}
    out = _table({k: {"value": v} for k, v in plain.items()}, "") if plain else []
    if rows:
        out += _table(rows, "")
    for k, v in nested.items():
        out += [f"{k}:", "", *_table({n: (r if isinstance(r, dict) else {"value": r}) for n, r in v.items()}, "")]
    return out


def _metrics_section(meta: dict) -> list[str]:
    """The card's "Metrics" body: one table per evaluation of these weights, the training-time validation figure
    (labelled as such), and the evaluations left out because they scored other weights."""
    lines: list[str] = []
    for name, headline in (meta.get("metrics") or {}).items():
        head = dict(headline)
        at = head.pop("evaluated_at_step", None)
        lines += [f"From `{name}` (`ebt eval`" + (f", these weights at training step {at}" if at is not None else "")
                  + "):", "", *_headline_tables(head)]
    if meta.get("validation"):
        at = meta.get("steps")
        lines += ["Validation during training" + (f" (step {at})" if at is not None else "") + ", on the training "
                  "loop's validation batches, as saved with the checkpoint: "
                  + ", ".join(f"{k} = {_cell(v)}" for k, v in meta["validation"].items()) + ".", ""]
    if meta.get("stale"):
        lines += ["Not shown: " + "; ".join(f"`{n}` scored earlier weights (step {s})" if s is not None else
                                            f"`{n}` scored other weights" for n, s in meta["stale"].items())
                  + ". Run `ebt eval` on the run to evaluate these weights.", ""]
    if not meta.get("metrics") and not meta.get("stale"):
        lines += ["No `ebt eval` result of these weights was found.", ""]
    return ["## Metrics", "", *lines]


def read_card(path: str | os.PathLike) -> ModelCard:
    """A saved model card (``README.md`` or its folder), parsed by huggingface_hub."""
    p = Path(path)
    return ModelCard.load(p / CARD if p.is_dir() else p)


class HubMixin(ModelHubMixin, library_name=LIBRARY, tags=list(HUB_TAGS)):
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for an ebtkit model, in ebtkit's own format.

    Class keywords (given in the model's class statement): ``task`` and ``name`` (the checkpoint's ``task`` and
    ``config.model.model``), ``config`` (the model's config class, built from the saved ``model`` section),
    ``run_config`` (optional: the run config class whose ``upgrade`` reads older saved configs and which wraps
    the model config when saving without one), ``pipeline_tag`` and ``energy_based`` (model card tags).
    """

    hub_task: ClassVar[str]
    hub_model: ClassVar[str]
    hub_config: ClassVar[type[Config]]
    hub_run_config: ClassVar[type[Config] | None] = None
    hub_pipeline: ClassVar[str | None] = None
    hub_ebt: ClassVar[bool] = False

    def __init_subclass__(cls, *, task: str | None = None, name: str | None = None,
                          config: type[Config] | None = None, run_config: type[Config] | None = None,
                          pipeline_tag: str | None = None, energy_based: bool | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if task is not None:
            if name is None or config is None:
                raise TypeError(f"{cls.__name__}: a HubMixin model declares task, name and config together")
            cls.hub_task, cls.hub_model, cls.hub_config = task, name, config
            cls.hub_run_config, cls.hub_pipeline = run_config, pipeline_tag
            cls.hub_ebt = bool(energy_based)

    # ------------------------------------------------------------------ saving
    def hub_run_config_dict(self, config: Config | dict | None = None) -> dict:
        """The run config saved in config.json: ``config`` (its model section must equal this model's ``cfg``),
        or this model's config wrapped as the task's run config."""
        own = self.cfg.to_dict()
        if config is None:
            return self.hub_run_config(model=self.cfg).to_dict() if self.hub_run_config else {"model": own}
        d = config.to_dict() if isinstance(config, Config) else config
        if not isinstance(d, dict) or not isinstance(d.get("model"), dict):
            raise ValueError(f"config must be a run config with a 'model' section, got {type(config).__name__}")
        saved = self.hub_config.from_dict(d["model"], prefix="model.").to_dict()
        if saved != own:
            diff = sorted(k for k in own if own[k] != saved.get(k))
            raise ValueError(f"config.model does not match the model being saved (differs in {', '.join(diff)})")
        return json.loads(json.dumps(d))

    def _save_info(self, config, tokenizer, files, card) -> SaveInfo:
        """Check and gather what a save writes beyond the weights (ValueError before anything is written)."""
        extra = {**(tokenizer.files() if tokenizer is not None else {}), **(files or {})}
        bad = [n for n in extra if n in ("model.safetensors", "config.json", CARD, *RUN_ONLY_FILES)
               or Path(n).name != n or n.startswith(".")]
        if bad:
            raise ValueError(f"extra file name {bad[0]!r} is reserved or not a plain file name")
        card = dict(card or {})
        if config is None:
            card.setdefault("training_data", "not recorded (saved without its run config)")
        return SaveInfo(self.hub_run_config_dict(config), extra, card)

    @contextmanager
    def _pending(self, info: SaveInfo | None):
        """Hand ``info`` to :meth:`_save_pretrained` (the mixin calls it with the folder only); the outermost
        call wins, so ``push_to_hub``'s info reaches the ``save_pretrained`` the mixin runs inside it."""
        outer = self.__dict__.get("_hub_pending")
        if outer is None and info is not None:
            self.__dict__["_hub_pending"] = info
        try:
            yield
        finally:
            if outer is None:
                self.__dict__.pop("_hub_pending", None)

    def save_pretrained(self, save_directory: str | os.PathLike, *, config: Config | dict | None = None,
                        tokenizer=None, files: dict[str, bytes] | None = None, card: dict[str, Any] | None = None,
                        **kwargs) -> str | None:
        """Write weights, config.json, the model card and extra files into ``save_directory``.

        ``config``: the whole run config (default: this model's config as the task's run config); ``tokenizer``:
        an object with ``files() -> {name: bytes}`` (text runs); ``files``: more files; ``card``: what the model
        card reports (:class:`SaveInfo`). Other keywords (``push_to_hub``, ``repo_id``) are the mixin's.
        Bad input writes nothing; a run directory (with ``checkpoint/``) is refused as a target.
        """
        # inside push_to_hub the mixin calls save_pretrained(tmp, config=...): what push_to_hub was given wins
        pending = self.__dict__.get("_hub_pending") or self._save_info(config, tokenizer, files, card)
        target = Path(save_directory)
        if (target / ckpt.CKPT).is_dir():
            raise ValueError(f"{target} is a run directory; save_pretrained writes a model folder (choose another)")
        bad = ckpt.nonfinite_tensors({k: v.detach() for k, v in self.state_dict().items()})
        if bad:
            raise ckpt.NonFiniteError(f"refusing to save non-finite weights (e.g. {bad[0]}) to {target}")
        existed = target.exists()
        with self._pending(pending):
            try:
                return super().save_pretrained(target, config=pending.config, **kwargs)
            except BaseException:
                if not existed:
                    shutil.rmtree(target, ignore_errors=True)
                raise

    def _save_pretrained(self, save_directory: Path) -> None:
        """The mixin's hook: our checkpoint files, written to a temporary folder inside ``save_directory`` and
        moved into place (config.json and README.md last, so a folder is never half new)."""
        info = self.__dict__.get("_hub_pending") or self._save_info(None, None, None, None)
        card = model_card(self, info.config, info.card).encode("utf-8")
        with tempfile.TemporaryDirectory(prefix=".ebtkit-save-", dir=save_directory) as tmp:
            c = ckpt.save_checkpoint(tmp, self, info.config, task=self.hub_task,
                                     extra_files={**info.files, CARD: card})
            names = sorted(f.name for f in c.iterdir() if f.name not in RUN_ONLY_FILES)
            for name in sorted(names, key=lambda n: n in ("config.json", CARD)):
                os.replace(c / name, Path(save_directory) / name)

    def push_to_hub(self, repo_id: str, *, config: Config | dict | None = None, tokenizer=None,
                    files: dict[str, bytes] | None = None, card: dict[str, Any] | None = None, **kwargs) -> str:
        """Upload what :meth:`save_pretrained` writes to Hub repo ``repo_id`` (the mixin's ``push_to_hub``:
        ``HfApi.create_repo`` + ``upload_folder`` of a temporary folder). Keywords as :meth:`save_pretrained`,
        plus the mixin's (``private``, ``token``, ``commit_message``, ``branch``, ``create_pr``)."""
        info = self._save_info(config, tokenizer, files, {"repo_id": repo_id, **(card or {})})
        with self._pending(info):
            return super().push_to_hub(repo_id, config=info.config, **kwargs)

    # ------------------------------------------------------------------ loading
    @classmethod
    def hub_config_from(cls, meta: dict, where: Path) -> Config:
        """This class's model config from a checkpoint's config.json; CheckpointError if it holds another model."""
        run = meta["config"] if isinstance(meta.get("config"), dict) else {}
        section = run.get("model") if isinstance(run.get("model"), dict) else {}
        default = {f.name: f.default for f in fields(cls.hub_config)}.get("model")
        name = section.get("model", default)
        if (meta["task"], name) != (cls.hub_task, cls.hub_model):
            other = _class_for(meta["task"], name) or f"{meta['task']} model {name!r}"
            raise ckpt.CheckpointError(
                f"{where} holds a {other} checkpoint (task {meta['task']}, model {name}), not a {cls.__name__}; "
                f"load it with {other}.from_pretrained or ebtkit.from_pretrained")
        try:
            if cls.hub_run_config is not None:
                run = cls.hub_run_config.upgrade(dict(run))
            return cls.hub_config.from_dict(run.get("model", {}), prefix="model.")
        except ValueError as e:
            raise ckpt.CheckpointError(f"{where / 'config.json'} does not build a {cls.__name__}: {e}") from None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, force_download: bool = False,
                        token: str | bool | None = None, cache_dir: str | os.PathLike | None = None,
                        local_files_only: bool = False, revision: str | None = None,
                        map_location: str = "cpu", **model_kwargs):
        """The model saved at a ``save_pretrained`` folder, checkpoint folder, run directory or Hub repo id
        (eval mode, on ``map_location``). One-line CheckpointError / HubError on anything wrong."""
        if model_kwargs:
            raise TypeError(f"{cls.__name__}.from_pretrained got unexpected keywords: {', '.join(model_kwargs)}")
        c = resolve(pretrained_model_name_or_path, revision=revision, token=token, cache_dir=cache_dir,
                    local_files_only=local_files_only, force_download=force_download)
        cls.hub_config_from(ckpt.read_config(c), c)                     # the right class, a valid config
        return super().from_pretrained(c, force_download=force_download, token=token, cache_dir=cache_dir,
                                       local_files_only=local_files_only, revision=revision,
                                       map_location=map_location)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                         map_location: str = "cpu", **model_kwargs):
        """The mixin's hook: rebuild from our config.json and load our safetensors (refusing mismatched,
        corrupt or non-finite weights)."""
        c = ckpt.find_checkpoint(model_id)      # (other keywords are the mixin's download options: already done)
        model = cls(cls.hub_config_from(ckpt.read_config(c), c))
        ckpt.load_weights(model, c)
        return model.to(map_location).eval()


__all__ = ["HubMixin", "HubError", "SaveInfo", "resolve", "first_line", "model_card", "read_card", "count_parameters",
           "weights_stamp",
           "is_hub_error", "looks_like_repo_id", "PAPER_URL", "CARD", "RUN_ONLY_FILES"]
