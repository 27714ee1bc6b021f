"""The README's Python example runs as written, and its first command is the documented main job."""
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "my-ebt" / "checkpoint" / "model.safetensors").exists()


def test_readme_opens_with_the_two_commands():
    lines = README.read_text().splitlines()
    start = lines.index("```bash")
    setup, tests = lines[start + 1], lines[start + 2]
    assert "pip install torch==2.13.0" in setup and setup.rstrip().endswith("ebt train")
    assert tests.strip() == "python -m pytest -q"
    ci = (README.parent / ".ci" / "run").read_text()
    assert "pip install -q torch==2.13.0" in ci and 'pip install -q -e ".[dev]"' in ci and "python -m pytest -q" in ci
