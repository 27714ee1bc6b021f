"""``ebt presets``: list the named presets and thinking recipes."""
from ..core.config import PRESET_SYSTEMS, PRESETS, RECIPES
from ..tasks.denoise import DenoiseTask


def add_parser(sub):
    return sub.add_parser("presets", help="list presets and thinking recipes")


def run(args) -> int:
    print("presets (text):")
    for name, over in PRESETS.items():
        m = {k.split(".")[1]: v for k, v in over.items() if k.startswith("model.")}
        print(f"  {name:<8} layers={m.get('n_layers')} d_model={m.get('d_model')} heads={m.get('n_heads')} "
              f"context={m.get('context')} lr={over.get('train.lr')} recipe={PRESET_SYSTEMS.get(name, 's1')}")
    print("thinking recipes (--system):")
    for name, over in RECIPES.items():
        print(f"  {name:<8} " + " ".join(f"{k.split('.')[1]}={v}" for k, v in over.items()))
    print("presets (--task denoise):")
    for name, over in DenoiseTask.presets.items():
        print(f"  {name:<8} " + " ".join(f"{k}={v}" for k, v in over.items()))
    print("thinking recipes (--task denoise --system):")
    for name, over in DenoiseTask.recipes.items():
        print(f"  {name:<8} " + " ".join(f"{k}={v}" for k, v in over.items()))
    return 0
