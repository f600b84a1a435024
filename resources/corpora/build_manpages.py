#!/usr/bin/env python3
"""Build `manpages.jsonl.gz`: (document, summary) pairs from Debian's `manpages` and `manpages-dev` (the Linux
man-pages project), the default configuration's stand-in for GovReport (Table 6, summarization).

Each page is rendered with groff (`-man -Tutf8`, no overstriking); its NAME line ("getent \\- get entries from Name
Service Switch libraries") gives the summary, the human-written one-line description after the dash; the document
is the rest of the page (SYNOPSIS, DESCRIPTION, ...; the NAME section, the running header and footer removed).
Symbolic links and `.so` redirects (other names of a page) are skipped, so is a page whose document repeats an
earlier one's, and pages whose document has fewer than MIN_WORDS words. Summaries are headline-like
(closer to XSum than to GovReport's multi-paragraph summaries). The test split is 1 page in TEST_EVERY by the
sha1 of its id (fixed, independent of the page count).

    apt-get install manpages manpages-dev groff-base
    .venv/bin/python resources/corpora/build_manpages.py     # byte-identical for the same package versions

Licences: Linux man-pages, various permissive and copyleft licences per page (GPL-2.0-or-later, BSD, the
"Linux man-pages copyleft" licence, ...): see `manpages.COPYRIGHT` (the packages' copyright files, copied).
"""
import gzip
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = ("manpages", "manpages-dev")
MIN_WORDS = 150
TEST_EVERY = 5
DASHES = ("\\-", " - ", " \u2212 ", " \u2010 ", " \u2013 ")


def package_pages(pkg: str) -> list[Path]:
    out = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=True).stdout.split()
    return sorted(Path(p) for p in out if re.match(r"/usr/share/man/man\d/[^/]+\.gz$", p))


def version(pkg: str) -> str:
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True,
                          check=True).stdout


def render(source: bytes) -> str:
    # one line per paragraph (no wrapping, so no hyphenation), left-adjusted (no padding spaces)
    cmd = ["groff", "-man", "-Tutf8", "-P-cbou", "-rLL=4000n", "-rLT=4000n", "-rHY=0", "-dAD=l"]
    p = subprocess.run(cmd, input=source, capture_output=True, check=True)
    return p.stdout.decode("utf-8", "replace")


def split_sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading, lines) of a rendered page; headings are the unindented lines, the first and last lines (running
    header and footer) dropped."""
    lines = text.rstrip("\n").split("\n")[1:-1]
    sections: list[tuple[str, list[str]]] = []
    for line in lines:
        if line and not line[0].isspace():
            sections.append((line.strip(), []))
        elif sections:
            sections[-1][1].append(line.strip())
    return sections


def page(path: Path) -> dict | None:
    if path.is_symlink():
        return None  # another name of a page listed under its own name
    source = gzip.decompress(path.read_bytes())
    if source.lstrip().startswith(b".so "):
        return None  # a redirect to another page
    sections = split_sections(render(source))
    name = next((" ".join(x for x in body if x) for head, body in sections if head == "NAME"), "")
    summary = next((name.split(d, 1)[1].strip() for d in DASHES if d in name), "")
    body = [(head, "\n".join(body).strip()) for head, body in sections if head != "NAME"]
    document = "\n\n".join(f"{head}\n{text}" for head, text in body if text)
    document = re.sub(r"\n{3,}", "\n\n", document)
    if not summary or len(document.split()) < MIN_WORDS:
        return None
    page_id = path.name.removesuffix(".gz")  # e.g. getent.1
    test = int(hashlib.sha1(page_id.encode()).hexdigest(), 16) % TEST_EVERY == 0
    return {"id": page_id, "split": "test" if test else "train", "text": document, "summary": summary}


def main() -> None:
    docs, skipped, seen = [], 0, set()
    for pkg in PACKAGES:
        for path in package_pages(pkg):
            d = page(path)
            if d is None or d["text"] in seen:
                skipped += 1
            else:
                seen.add(d["text"])
                docs.append(d)
    docs.sort(key=lambda d: d["id"])
    out = HERE / "manpages.jsonl.gz"
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        for d in docs:
            f.write((json.dumps(d, ensure_ascii=False) + "\n").encode())
    copyright_text = "".join(f"=== {pkg} {version(pkg)}: /usr/share/doc/{pkg}/copyright ===\n"
                             + Path(f"/usr/share/doc/{pkg}/copyright").read_text() + "\n" for pkg in PACKAGES)
    (HERE / "manpages.COPYRIGHT").write_text(copyright_text)
    words = sorted(len(d["text"].split()) for d in docs)
    n_test = sum(d["split"] == "test" for d in docs)
    print(f"{out.name}: {len(docs)} pages ({n_test} test), {skipped} skipped; document words: median "
          f"{words[len(words) // 2]}, max {words[-1]}; packages " + ", ".join(f"{p} {version(p)}" for p in PACKAGES),
          file=sys.stderr)


if __name__ == "__main__":
    main()
