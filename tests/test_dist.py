"""Multi-process training (core/dist.py and the loop under ``torchrun``).

* Gradients averaged with the bucketed all_reduce equal one process's gradients on the whole batch (text, image
  and sequence models), equal the per-parameter all_reduce bit for bit, and handle missing gradients the same
  on every rank.
* ``fit`` in 2 processes equals one process stepping on the average of the two ranks' batches, for every task
  and model, with and without ZeRO-1; the ranks stay identical and only rank 0 writes; ZeRO checkpoints hold the
  full AdamW state and resume in another number of processes exactly.

DDP's hooks give wrong gradients for EBT steps (second order); ebtkit averages gradients itself. Each group of
tests shares one spawned pair of gloo processes (module-scoped fixtures), so the whole file spawns twice.
"""
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ebtkit.core import dist as edist
from ebtkit.core.config import ThinkingConfig, preset
from ebtkit.core.models.image import build_image_model
from ebtkit.tasks.denoise import ebt_denoise_loss
from ebtkit.tasks.denoise import preset as denoise_preset
from ebtkit.tasks.sequence import ebt_sequence_loss, regressor_loss
from ebtkit.tasks.sequence import preset as sequence_preset
from ebtkit.tasks.text import ebt_text_loss
from tests.helpers import close, tiny_model

pytestmark = pytest.mark.slow


def _data():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 13, (4, 9), generator=g)
    y0 = torch.randn(4, 8, 13, generator=g, dtype=torch.float64)
    return tokens, y0


def _image_data():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(4, 1, 28, 28, generator=g, dtype=torch.float64) * 2 - 1
    noisy = clean + 0.3 * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    return clean, noisy


def _image_model(kind):
    torch.manual_seed(0)
    cfg = denoise_preset("tiny", model=kind)
    m = build_image_model(cfg.model)
    m = m.double() if kind == "ebt" else m      # the DiT's timestep features are float32
    for p in m.parameters():                     # adaLN-Zero starts at zero: make every path non-trivial
        torch.nn.init.normal_(p, std=0.05)
    return m, cfg


def _sequence_model(kind, system):
    from ebtkit.core.models.sequence import build_sequence_model
    torch.manual_seed(0)
    cfg = sequence_preset("tiny", model="ebt" if kind == "seq" else "transformer++", system=system or "s1",
                          **{"thinking.replay_fraction": 0.0, "thinking.replay_size": 0, "thinking.max_steps": "none",
                             "thinking.alpha_jitter": 1.0}).replace(
                              **{"model.features": 6})
    m = build_sequence_model(cfg.model).double()
    if kind == "seq":
        torch.nn.init.normal_(m.head.weight, std=0.5)          # a non-trivial energy from the start
    return m, cfg


def _grads(kind, system, rows):
    """Gradients of one loss on batch ``rows`` (a slice): text EBT (system s1/s2), image EBT or DiT, sequence
    EBT (s1/s2) or its Transformer++ regressor."""
    if kind in ("seq", "seqtpp"):
        model, cfg = _sequence_model(kind, system)
        window = torch.randn(4, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        if kind == "seq":
            loss, _, _ = ebt_sequence_loss(model, window[rows], cfg, None)
        else:
            loss, _ = regressor_loss(model, window[rows], cfg)
    elif kind == "text":
        model = tiny_model(n_landscapes=2 if system == "s1" else 1)
        tokens, y0 = _data()
        loss, _, _ = ebt_text_loss(model, tokens[rows], ThinkingConfig(system=system, steps=2), init=y0[rows])
    else:
        model, cfg = _image_model(kind)
        clean, noisy = _image_data()
        if kind == "ebt":
            cfg = cfg.replace(**{"thinking.system": system, "thinking.steps": 2, "thinking.max_steps": None})
            loss, _ = ebt_denoise_loss(model, clean[rows], noisy[rows], cfg, None)
        else:
            t = torch.tensor([3, 50, 7, 90])[rows]
            noise = (noisy - clean)[rows].float()
            loss = cfg.noise.diffusion().training_loss(model, clean[rows].float(), t, noise)
    model.zero_grad()
    loss.backward()
    return model


KINDS = [("text", "s1"), ("text", "s2"), ("ebt", "s1"), ("ebt", "s2"), ("dit", None), ("seq", "s1"), ("seq", "s2"),
         ("seqtpp", None)]


def _init(rank, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    assert edist.init_from_env() and edist.world_size() == 2 and edist.rank() == rank


def _per_parameter_average(model):
    """The reference: one all_reduce per parameter (what average_gradients did before it was bucketed)."""
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(2)


def _grad_worker(rank, port, out):
    """Every model kind's gradients on this rank's half batch, averaged three ways: bucketed (default 25 MB
    buckets: one bucket here), bucketed with 4 KB buckets (many buckets), and the per-parameter reference; plus
    a model whose gradients are None on one rank or on both."""
    _init(rank, port)
    res = {}
    for kind, system in KINDS:
        model = _grads(kind, system, slice(2 * rank, 2 * rank + 2))
        local = {n: p.grad.clone() for n, p in model.named_parameters()}
        for how, average in (("bucketed", edist.average_gradients),
                             ("small_buckets", lambda m: edist.average_gradients(m, bucket_bytes=4096)),
                             ("per_parameter", _per_parameter_average)):
            for n, p in model.named_parameters():
                p.grad = local[n].clone()
            average(model)
            res[(kind, system, how)] = {n: p.grad.clone() for n, p in model.named_parameters()}
    res["none"] = _none_grads(rank)
    torch.save(res, f"{out}/grads.rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def _none_model():
    torch.manual_seed(0)
    m = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 4), "b": torch.nn.Linear(4, 2).double(),
                             "c": torch.nn.Linear(3, 2), "unused": torch.nn.Linear(2, 2),
                             "frozen": torch.nn.Linear(2, 2)})
    m["frozen"].requires_grad_(False)
    return m


def _none_grads(rank):
    """Rank 0's loss reaches ``a`` and ``b``; rank 1's reaches ``b`` and ``c``; none reaches ``unused`` or
    ``frozen`` (which does not require a gradient).
    Float32 and float64 parameters: two dtypes, so two buckets."""
    m = _none_model()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(rank))
    h = torch.tanh(m["a"](x) if rank == 0 else torch.cat([m["c"](x), m["c"](x)], 1))
    m["b"](h.double()).pow(2).sum().backward()
    edist.average_gradients(m, bucket_bytes=64)
    return {n: (None if p.grad is None else p.grad.clone()) for n, p in m.named_parameters()}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def averaged(tmp_path_factory):
    """One 2-process gloo group computes every gradient comparison of this module (one spawn, not one per case)."""
    out = tmp_path_factory.mktemp("grads")
    mp.start_processes(_grad_worker, args=(_free_port(), str(out)), nprocs=2, join=True, start_method="spawn")
    return [torch.load(out / f"grads.rank{r}.pt", weights_only=True) for r in (0, 1)]


@pytest.mark.parametrize("kind,system", KINDS)
def test_allreduce_gradients_equal_single_process(averaged, kind, system):
    """2 processes on half batches each, averaged with the bucketed all_reduce == one process on the whole batch
    (tight tolerance: the two halves' means vs one mean), == the per-parameter all_reduce bit for bit, whatever
    the bucket size, and identical on both ranks."""
    model = _grads(kind, system, slice(0, 4))
    # the two halves' means averaged vs one mean: the same sums in another order. Tolerance from the dtype's eps
    # (float64; float32 for the DiT), the longest reduction (the whole batch's loss terms: 4 × 8 × 13 logits,
    # 4 × 784 pixels, 4 × 6 × 6 values) and the 2 layers
    n = {"text": 4 * 8 * 13, "ebt": 4 * 784, "dit": 4 * 784}.get(kind, 4 * 6 * 6)
    ref = averaged[0][(kind, system, "per_parameter")]
    for r in (0, 1):
        for how in ("bucketed", "small_buckets"):
            got = averaged[r][(kind, system, how)]
            for name, p in model.named_parameters():
                close(got[name], p.grad, n, depth=2, msg=(name, how))
                assert torch.equal(got[name], ref[name]), (name, how, r)


def test_allreduce_handles_missing_gradients_the_same_on_every_rank(averaged):
    """A gradient that is None on one rank counts as zero there (the average is the other rank's half); one that
    is None on every rank stays None (the optimizer skips it, as in one process); frozen parameters are left
    alone. Both ranks end with the same gradients."""
    m = _none_model()
    local = []
    for rank in (0, 1):
        m.zero_grad(set_to_none=True)
        x = torch.randn(5, 3, generator=torch.Generator().manual_seed(rank))
        h = torch.tanh(m["a"](x) if rank == 0 else torch.cat([m["c"](x), m["c"](x)], 1))
        m["b"](h.double()).pow(2).sum().backward()
        local.append({n: p.grad for n, p in m.named_parameters()})
    for n, _ in m.named_parameters():
        grads = [g[n] for g in local if g[n] is not None]
        want = None if not grads else sum(grads) / 2
        for r in (0, 1):
            got = averaged[r]["none"][n]
            if want is None:
                assert got is None, (n, r)
            else:
                torch.testing.assert_close(got, want, rtol=0, atol=0, msg=(n, r))
    assert averaged[0]["none"]["a.weight"] is not None and averaged[0]["none"]["c.weight"] is not None
    assert averaged[0]["none"]["unused.weight"] is None and averaged[0]["none"]["frozen.weight"] is None


def test_gradient_buckets_depend_on_parameters_only():
    """The layout: by (device, dtype), in order, at most ``bucket_bytes`` each (a larger tensor alone)."""
    m = _none_model()
    params = [p for p in m.parameters() if p.requires_grad]
    f32 = [p for p in params if p.dtype == torch.float32]
    f64 = [p for p in params if p.dtype == torch.float64]
    one = edist.gradient_buckets(params)
    assert [[id(p) for p in b] for b in one] == [[id(p) for p in f32], [id(p) for p in f64]]
    small = edist.gradient_buckets(params, bucket_bytes=48)             # a.weight (48 B) fills a bucket alone
    assert [id(p) for b in small for p in b if p.dtype == torch.float32] == [id(p) for p in f32]
    assert all(sum(p.numel() * p.element_size() for p in b) <= 48 or len(b) == 1 for b in small)
    assert len(small) > len(one)


# ------------------------------------------------------------------------------------------ fit under 2 ranks
COMMON = {"train.steps": 3, "train.save_every": 3, "train.eval_every": 3, "train.log_every": 1,
          "train.eval_batches": 1, "train.batch_size": 4}


def _corpus(root):
    """A 22 KB text file (reading the built-in 4 MB corpus would dominate these runs)."""
    import random
    rnd = random.Random(0)
    words = "the of and to in that he said unto for his a i with not they be is him them it".split()
    path = os.path.join(root, "corpus.txt")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(" ".join(rnd.choice(words) for _ in range(6000)))
    return path


def _cases(text):
    """Every task and model at the tiny preset, 3 steps (text: on the file ``text``)."""
    t = {**COMMON, "data.path": text}
    return {"text-s1": preset("tiny", **t),
            "text-s2": preset("tiny", "s2", **t),
            "text-tpp": preset("tiny", **{**t, "model.model": "transformer++"}),
            "denoise-ebt": denoise_preset("tiny", **{**COMMON, "data.dataset": "mini"}),
            "denoise-dit": denoise_preset("tiny", model="dit", **{**COMMON, "data.dataset": "mini"}),
            "sequence-ebt": sequence_preset("tiny", **COMMON),
            "sequence-tpp": sequence_preset("tiny", model="transformer++", **COMMON)}


NAMES = ["text-s1", "text-s2", "text-tpp", "denoise-ebt", "denoise-dit", "sequence-ebt", "sequence-tpp"]


def _resume_config(zero, text):
    """The resume scenarios: the text EBT (System 1), 2 of 4 steps before the switch of process count."""
    return preset("tiny", **{**COMMON, "train.steps": 2, "train.save_every": 2, "train.eval_every": 2,
                             "train.zero": zero, "data.path": text})


def _fit_worker(rank, port, root):
    _init(rank, port)
    from ebtkit.tasks import TASKS
    from tests.helpers import train
    text = _corpus(root)
    for name, cfg in _cases(text).items():
        for zero in (0, 1):
            task = TASKS[cfg_task(cfg)]
            seen = {}
            real_build, real_loss = task.build_model, task.loss

            def build(c, seen=seen, real_build=real_build):
                seen["model"] = real_build(c)
                return seen["model"]

            def loss(self, model, gen, seen=seen, real_loss=real_loss):
                out = real_loss(self, model, gen)
                seen.setdefault("losses", []).append(float(out[0].detach()))
                return out

            task.build_model, task.loss = staticmethod(build), loss
            try:
                train(cfg.replace(**{"train.zero": zero}), f"{root}/{name}-zero{zero}")
            finally:
                task.build_model, task.loss = real_build, real_loss
            if rank == 1:
                torch.save({k: v.detach().clone() for k, v in seen["model"].state_dict().items()},
                           f"{root}/{name}-zero{zero}.rank1.pt")
            gathered = [None, None]
            dist.all_gather_object(gathered, seen["losses"])
            if rank == 0:
                with open(f"{root}/{name}-zero{zero}.losses.json", "w") as f:
                    json.dump({"0": gathered[0], "1": gathered[1]}, f)
    # checkpoints across process counts: 2 ranks with ZeRO save at step 2 (the parent resumes in 1 process) ...
    train(_resume_config(1, text), f"{root}/two-then-one")
    # ... and a 1-process checkpoint (written by the parent, without ZeRO) resumed here with ZeRO turned on
    train(None, f"{root}/one-then-two", resume=True, steps=4, changes={"train.zero": 1})
    dist.barrier()                                   # both ranks done before the group goes away
    dist.destroy_process_group()


def cfg_task(cfg):
    from ebtkit.tasks import task_of
    return task_of(cfg).name


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    """One 2-process group trains every case with and without ZeRO, and both halves of the resume scenarios."""
    from tests.helpers import train
    root = tmp_path_factory.mktemp("fits")
    train(_resume_config(0, _corpus(root)), root / "one-then-two")   # 1 process, 2 steps: the 2 ranks resume it
    mp.start_processes(_fit_worker, args=(_free_port(), str(root)), nprocs=2, join=True, start_method="spawn")
    return root


def reference(cfg, worlds):
    """What ``fit`` computes when step ``i`` runs in ``worlds[i]`` processes, in one process: each virtual rank
    r draws its batch from ``step_generator(seed, step, r)`` with its own task instance (its own replay buffer),
    backpropagates alone, and the gradients are summed in rank order and divided by the count (all_reduce's
    arithmetic), then clipped and stepped with AdamW. Returns the final weights."""
    from ebtkit.tasks import task_of
    from ebtkit.training.optim import lr_factor, make_optimizer, step_generator
    task = task_of(cfg)
    runs = [task(cfg) for _ in range(max(worlds))]
    cfg = [r.setup(None) for r in runs][0]
    t = cfg.train
    torch.manual_seed(t.seed)
    model = task.build_model(cfg)
    opt, params = make_optimizer(model, t)
    model.train()
    for step, n in enumerate(worlds):
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * lr_factor(step, t)
        total = [None] * len(params)
        for r in range(n):
            loss, _ = runs[r].loss(model, step_generator(t.seed, step, r))
            opt.zero_grad(set_to_none=True)
            loss.backward(inputs=params)
            total = [a if p.grad is None else p.grad if a is None else a + p.grad for a, p in zip(total, params)]
        for p, g in zip(params, total):
            p.grad = None if g is None else g / n
        torch.nn.utils.clip_grad_norm_(params, t.grad_clip if t.grad_clip > 0 else float("inf"))
        opt.step()
    return {k: v.detach() for k, v in model.state_dict().items()}


def _weights(run):
    from safetensors.torch import load_file
    return load_file(str(run / "checkpoint" / "model.safetensors"))


def _assert_equal(a, b, what):
    assert a.keys() == b.keys(), what
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=(what, k))


@pytest.mark.parametrize("name", NAMES)
def test_fit_in_two_processes_equals_one_process(fits, name):
    """Every task and model: 3 steps in 2 processes (each rank its own batches) give exactly the weights of one
    process stepping on the average of the same two batches' gradients; ZeRO-1 gives the same weights and saves
    the same, full AdamW state, bit for bit."""
    cfg = _cases(_corpus(fits))[name]
    want = reference(cfg, [2, 2, 2])
    _assert_equal(_weights(fits / f"{name}-zero0"), want, name)
    _assert_equal(_weights(fits / f"{name}-zero1"), want, (name, "zero"))
    plain, zero = (torch.load(fits / f"{name}-zero{z}" / "checkpoint" / "optimizer.pt", weights_only=True)
                   for z in (0, 1))
    assert plain["param_groups"] == zero["param_groups"]
    assert plain["state"].keys() == zero["state"].keys() and len(plain["state"]) > 0
    for i in plain["state"]:
        for k in plain["state"][i]:
            assert torch.equal(plain["state"][i][k], zero["state"][i][k]), (name, i, k)


def test_fit_under_two_processes_writes_once_and_keeps_ranks_in_sync(fits):
    """``fit`` joins the process group itself, seeds each rank's batches apart, averages gradients (so the
    ranks' weights stay identical) and writes the run directory from rank 0 only, for every task."""
    for name in NAMES:
        for zero in (0, 1):
            run = fits / f"{name}-zero{zero}"
            _assert_equal(_weights(run), torch.load(fits / f"{name}-zero{zero}.rank1.pt", weights_only=True), name)
            steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()
                     if json.loads(ln)["split"] == "train"]
            assert steps == [1, 2, 3]                                 # one writer: each record once
            assert not (run / ".lock").exists()
            assert json.loads((run / "checkpoint" / "state.json").read_text())["world_size"] == 2
            losses = json.loads((fits / f"{name}-zero{zero}.losses.json").read_text())
            assert losses["0"] != losses["1"]                          # the ranks drew different batches


def test_zero_checkpoints_resume_in_another_number_of_processes(fits):
    """A checkpoint saved by 2 processes with ZeRO-1 (the full AdamW state, gathered on rank 0) resumes in one
    process, and a 1-process checkpoint resumes in 2 processes with ZeRO turned on (``train.zero`` may change
    on resume): both continue exactly as an uninterrupted run with that sequence of process counts."""
    from tests.helpers import train
    two_then_one = fits / "two-then-one"
    train(None, two_then_one, resume=True, steps=4)                   # this process: world size 1, AdamW
    assert json.loads((two_then_one / "checkpoint" / "state.json").read_text())["world_size"] == 1
    cfg = _resume_config(1, _corpus(fits)).replace(**{"train.steps": 4, "train.schedule_steps": 2})
    _assert_equal(_weights(two_then_one), reference(cfg, [2, 2, 1, 1]), "2 ranks → 1")
    one_then_two = fits / "one-then-two"
    assert json.loads((one_then_two / "checkpoint" / "config.json").read_text())["config"]["train"]["zero"] == 1
    _assert_equal(_weights(one_then_two), reference(cfg, [1, 1, 2, 2]), "1 → 2 ranks with ZeRO")
