"""``ebt presets``: list every task's named presets and thinking recipes."""
from ..tasks import TASKS


def add_parser(sub):
    return sub.add_parser("presets", help="list presets and thinking recipes of every task")


def run(args) -> int:
    for name, task in TASKS.items():
        print(f"presets (--task {name}):")
        for p, over in task.presets.items():
            print(f"  {p:<8} " + " ".join(f"{k}={v}" for k, v in over.items()) + f" recipe={task.default_system(p)}")
        print(f"thinking recipes (--task {name} --system):")
        for r, over in task.recipes.items():
            print(f"  {r:<8} " + " ".join(f"{k}={v}" for k, v in over.items()))
    return 0
