#!/usr/bin/env python3
"""Regenerate the two corpora shipped for the default (laptop) configuration.

    apt-get install r-cran-janeaustenr libcoq-stdlib && python resources/corpora/build_corpora.py

* ``austen.jsonl.gz`` -- the PG19 analogue: Jane Austen's six novels (Project Gutenberg texts, public domain),
  from Debian's ``r-cran-janeaustenr`` (the R package's lazy-load database, read with PyPI ``rdata``).
  One document per chapter; *Persuasion* is the test split (held out by book, as PG19 holds out books).
* ``coq.jsonl.gz`` -- the proof-pile analogue: the Coq standard library's ``.v`` sources (formal mathematics,
  LGPL-2.1) from Debian's ``libcoq-stdlib``. One document per file, with the licence banner that opens every file
  removed (it is identical everywhere and would make the first tokens of each document trivially predictable);
  one file in ten (by a hash of its path) is the test split.

Each line is ``{"id": ..., "split": "train"|"test", "text": ...}``; files are written byte-for-byte
deterministically (sorted, gzip mtime 0) so ``SHA256SUMS`` pins them.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import zlib
from pathlib import Path

JANEAUSTENR = Path("/usr/lib/R/site-library/janeaustenr/data/Rdata")
COQ_THEORIES = Path("/usr/lib/ocaml/coq/theories")
BOOKS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion"]
TEST_BOOKS = {"persuasion"}
CHAPTER = re.compile(r"^chapter\s+([0-9ivxlc]+)\.?\s*$", re.I)
COQ_BANNER = re.compile(r"\A(?:[ \t]*\(\*.*\*\)[ \t]*\n|[ \t]*\n)+")  # the one-line comments opening each file


def read_janeaustenr(base: Path = JANEAUSTENR) -> dict[str, list[str]]:
    """The six novels as lists of lines, from the R lazy-load database (``.rdx`` index + ``.rdb`` blobs)."""
    import rdata

    index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress(base.with_suffix(".rdx").read_bytes())))
    blob = base.with_suffix(".rdb").read_bytes()
    books = {}
    for name, (off, length) in index["variables"].items():
        chunk = blob[int(off): int(off) + int(length)]
        obj = rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(chunk[4:])))
        books[str(name)] = [str(x) for x in obj]
    return books


def split_chapters(lines: list[str]) -> list[str]:
    """Chapters of a novel as paragraphs joined by blank lines; front matter before chapter 1 is dropped."""
    chapters, current = [], None
    for line in lines:
        if CHAPTER.match(line.strip()):
            if current is not None:
                chapters.append(current)
            current = [line.strip()]
        elif current is not None:
            current.append(line)
    if current is not None:
        chapters.append(current)
    out = []
    for ch in chapters:
        paragraphs = re.split(r"\n\s*\n", "\n".join(ch))
        text = "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
        out.append(text)
    return out


def austen_docs() -> list[dict]:
    books = read_janeaustenr()
    docs = []
    for book in BOOKS:
        for i, text in enumerate(split_chapters(books[book]), 1):
            docs.append({"id": f"{book}/ch{i:02d}", "split": "test" if book in TEST_BOOKS else "train", "text": text})
    return docs


def coq_docs(root: Path = COQ_THEORIES) -> list[dict]:
    docs = []
    for path in sorted(root.rglob("*.v")):
        rel = path.relative_to(root).as_posix()
        text = COQ_BANNER.sub("", path.read_text(encoding="utf-8", errors="replace"), count=1).strip() + "\n"
        if len(text) < 200:
            continue
        test = int(hashlib.sha1(rel.encode()).hexdigest(), 16) % 10 == 0
        docs.append({"id": rel, "split": "test" if test else "train", "text": text})
    return docs


def write_jsonl_gz(docs: list[dict], path: Path) -> str:
    payload = "".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n" for d in docs).encode()
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(payload)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    sums = []
    for name, docs in (("austen", austen_docs()), ("coq", coq_docs())):
        digest = write_jsonl_gz(docs, args.out / f"{name}.jsonl.gz")
        n_test = sum(d["split"] == "test" for d in docs)
        chars = sum(len(d["text"]) for d in docs)
        print(f"{name}: {len(docs)} documents ({n_test} test), {chars:,} characters, sha256 {digest}")
        sums.append(f"{digest}  {name}.jsonl.gz\n")
    (args.out / "SHA256SUMS").write_text("".join(sums))


if __name__ == "__main__":
    main()
