"""``ebt push RUN REPO_ID``: upload a run's model to the Hugging Face Hub.

Uploads exactly what ``save_pretrained`` writes — ``model.safetensors``, ``config.json``, the model card
``README.md`` (sizes, training data, metrics from ``eval*.json``, the training command, a usage snippet) and
the tokenizer's / task's files — with ``huggingface_hub`` (``HfApi.create_repo`` + ``upload_folder`` of a
temporary folder). Nothing is written into the run. Offline, or when the Hub refuses (bad token, no rights),
it is a one-line error and exit status 2. The token: ``--token``, else ``HF_TOKEN`` or the cached
``hf auth login``.
"""
from __future__ import annotations

from ..tasks.hub import push_to_hub


def add_parser(sub):
    p = sub.add_parser("push", help="upload a run's model (weights, config, tokenizer, model card) to the "
                       "Hugging Face Hub", description="Upload a run's model to the Hugging Face Hub: safetensors "
                       "weights, config.json, the tokenizer's files and a model card with the run's metrics and "
                       "training command. Load it with ebtkit.from_pretrained('REPO_ID').")
    p.add_argument("run", help="run directory (or checkpoint directory)")
    p.add_argument("repo_id", help="Hub repository, owner/name (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--token", default=None, help="Hub access token (default: HF_TOKEN or the cached login)")
    p.add_argument("--message", default=None, help="commit message")
    return p


def run(args) -> int:
    info = push_to_hub(args.run, args.repo_id, private=True if args.private else None, token=args.token,
                       commit_message=args.message)
    url = getattr(info, "commit_url", None) or str(info)
    print(f"pushed {args.run} to {args.repo_id}: {url}")
    return 0
