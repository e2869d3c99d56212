"""MkDocs hooks: the site's home is README.md, and the files outside docs/ that pages link to
(the shipped agents' cards, benchmark pictures) are built into the site at their repository
paths. Every page keeps the relative links that work on the repository's web view
(``../pretrained/README.md`` from a page of docs/, ``docs/results.md`` from the README); the
hook turns them into links between the site's files, and the site needs no copies."""

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s#]+)(#[^)\s]*)?\)")
CARDS = ("pretrained/README.md", "pretrained/dream/README.md", "benchmarks/results/large_round2_agent/README.md",
         "benchmarks/results/medium_agent/README.md")  # in the navigation


def _repo_path(site_path: str, generated: bool) -> str:
    """Where a site file's source lies in the repository."""
    if site_path == "index.md" and generated:
        return "README.md"
    return site_path if generated else f"docs/{site_path}"


def _site_path(repo_path: str) -> str:
    return "index.md" if repo_path == "README.md" else repo_path.removeprefix("docs/")


def _targets(text: str, repo_dir: str) -> list[str]:
    """The repository paths of ``text``'s relative links, written in the folder ``repo_dir``."""
    found = []
    for match in LINK.finditer(text):
        target = match.group(2)
        if "://" not in target and not target.startswith(("/", "mailto:")):
            found.append(posixpath.normpath(posixpath.join(repo_dir, target)))
    return found


def on_files(files: Files, config) -> Files:
    repo = Path(config.config_file_path).parent
    files.append(File.generated(config, "index.md", abs_src_path=str(repo / "README.md")))
    wanted = set(CARDS) | set(_targets((repo / "README.md").read_text(encoding="utf-8"), ""))
    for page in [*Path(config.docs_dir).rglob("*.md"), *(repo / card for card in CARDS)]:
        wanted.update(_targets(page.read_text(encoding="utf-8"), page.parent.relative_to(repo).as_posix()))
    for path in sorted(wanted):
        if not path.startswith(("docs/", "..")) and (repo / path).is_file() and files.get_file_from_path(path) is None:
            files.append(File.generated(config, path, abs_src_path=str(repo / path)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Each relative link, resolved in the repository, points at that file's place in the site."""
    generated = not Path(page.file.abs_src_path).is_relative_to(config.docs_dir)
    repo_dir = posixpath.dirname(_repo_path(page.file.src_uri, generated))
    site_dir = posixpath.dirname(page.file.src_uri) or "."

    def rewrite(match: re.Match) -> str:
        (target,) = _targets(f"[]({match.group(2)})", repo_dir) or [None]
        if target is None or target.startswith(".."):
            return match.group(0)
        return f"{match.group(1)}{posixpath.relpath(_site_path(target), site_dir)}{match.group(3) or ''})"

    return LINK.sub(rewrite, markdown)
