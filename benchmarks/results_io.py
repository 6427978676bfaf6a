"""Writing a benchmark's result: one JSON (the numbers) and one Markdown (the report)."""
import json
from pathlib import Path
from typing import List, Union


def write_result(out_dir: Union[str, Path], stem: str, result: dict,
                 report: Union[str, List[str]], echo: bool = True) -> Path:
    """Write ``<out_dir>/<stem>.json`` and ``<out_dir>/<stem>.md`` (``report``: the
    Markdown text, or its lines), print the report unless ``echo=False``; returns the
    Markdown file's path. Called again with more results, it overwrites both, so a
    benchmark that writes after every measurement keeps what it measured so far."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f'{stem}.json').write_text(json.dumps(result, indent=1, default=str) + '\n')
    text = report if isinstance(report, str) else '\n'.join(report)
    text = text if text.endswith('\n') else text + '\n'
    (out_dir / f'{stem}.md').write_text(text)
    if echo:
        print(text, end='', flush=True)
    return out_dir / f'{stem}.md'
