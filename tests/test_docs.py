"""The documentation stays true: links resolve, named config files exist, and the
options reference lists exactly the options the code accepts. (That the README's
snippet trains is tested in test_drop_in.py.)"""
import inspect
import re
from pathlib import Path

import pytest

from helpers import ROOT

DOCS = [ROOT / 'README.md', ROOT / 'CHANGELOG.md', *sorted((ROOT / 'docs').glob('*.md')),
        ROOT / 'benchmarks' / 'README.md']
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)|<img [^>]*src="([^"]+)"')
CONFIG_PATH = re.compile(r'(?<![\w/.:-])((?:benchmarks/)?configs/[\w./-]+\.py)')


def anchors(path: Path):
    """GitHub's heading anchors of a markdown file."""
    out = set()
    for line in path.read_text().splitlines():
        if line.startswith('#'):
            title = line.lstrip('#').strip().lower()
            out.add(re.sub(r'[^\w\- ]', '', title).replace(' ', '-'))
    return out


def relative_links(path: Path):
    for match in LINK.finditer(path.read_text()):
        target = match.group(1) or match.group(2)
        if not re.match(r'[a-z]+:', target):  # not http(s):, mailto: ...
            yield target


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    assert doc.is_file(), doc
    bad = []
    for target in relative_links(doc):
        file, _, anchor = target.partition('#')
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            bad.append(f'{target} (no {dest})')
        elif anchor and dest.suffix == '.md' and anchor not in anchors(dest):
            bad.append(f'{target} (no heading #{anchor} in {dest.name})')
    assert not bad, f'{doc.name}: broken links {bad}'


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_the_docs_name_exists(doc):
    named = set(CONFIG_PATH.findall(doc.read_text()))
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing, f'{doc.name} names config files that do not exist: {missing}'


def documented(section: str):
    """Option names in the first column of the tables under a heading of
    docs/options.md (up to the next heading of that level or higher)."""
    text = (ROOT / 'docs' / 'options.md').read_text()
    level = len(section) - len(section.lstrip('#'))
    start = text.index(section + '\n')
    rest = text[start + len(section):]
    end = re.search(rf'^#{{1,{level}}} ', rest, re.M)
    body = rest[:end.start()] if end else rest
    return {m for m in re.findall(r'^\| `(\w+)` \|', body, re.M)}


def accepted(callable_):
    return {name for name in inspect.signature(callable_).parameters
            if name not in ('self', 'args', 'kwargs')}


def test_the_options_reference_lists_exactly_what_the_code_accepts():
    from vkd_mmdet.hooks import (DistillWeightScheduleHook, OrthogonalityLoggerHook,
                                 StudentExportHook)
    from vkd_mmdet.models import VkDDistiller
    from vkd_mmdet.models.taps import LOSS_KEYS, SPEC_KEYS
    from vkd_mmdet.optim import CPUAmpOptimWrapper
    assert documented('## `VkDDistiller` arguments') == accepted(VkDDistiller.__init__)
    assert documented('## Tap options') == set(SPEC_KEYS) | set(LOSS_KEYS)
    for hook in (DistillWeightScheduleHook, StudentExportHook, OrthogonalityLoggerHook):
        assert documented(f'### `{hook.__name__}`') == accepted(hook.__init__), hook.__name__
    assert documented('## `CPUAmpOptimWrapper`') == accepted(CPUAmpOptimWrapper.__init__)
