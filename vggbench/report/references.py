"""The reference figures of vggbench/references.json beside our numbers. Which table sits beside
which ablation is the ablation's display hint (grid.Display.references); each row names the case
of ours it is set beside ("ours": [ablation, case]) and, where our figure is not the plain test
top-1, its column ("ours": [ablation, case, column], e.g. eval_multi_crop_top1 for the paper's
multi-crop test: its _top5 twin gives the top-5 error beside the paper's)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .blocks import Block, table_block
from .settings import Setting
from .text import mean_std_text


def load_references() -> dict:
    return json.loads((Path(__file__).parents[1] / "references.json").read_text())


def same_scale(s: Setting, source: dict) -> bool:
    """A reference figure is comparable in level only with ours on its own dataset."""
    return source.get("dataset") == s.first["config"]["data"]["dataset"]


def _ours(s: Setting, ablation: str, case: str, col: str, err: bool = False) -> str:
    g = s.rows[(s.rows.ablation == ablation) & (s.rows.case == case)]
    if not len(g) or col not in g:
        return "-"  # not run in this setting
    vals = pd.to_numeric(g[col], errors="coerce")
    return mean_std_text(100 - vals if err else vals)


def beside_ours(s: Setting, table: dict, sources: dict) -> pd.DataFrame:
    """The reference table's own columns, then ours for the case each row names."""
    rows = []
    for r in table["rows"]:
        theirs = {k: (sources[v]["short"] if k == "source" else v) for k, v in r.items() if k != "ours"}
        if "params" in theirs:
            theirs["params"] = f"{theirs['params'] / 1e6:.2f}M"
        ab, case, col = (*r["ours"], "test_top1")[:3] if r.get("ours") else (None, None, "test_top1")
        top5 = col.replace("top1", "top5")
        ours = {"ours: case": case or "-",
                "ours top-1 %": _ours(s, ab, case, col) if case else "-",
                "ours top-1 err %": _ours(s, ab, case, col, err=True) if case else "-"}
        if "top5_err" in r:  # the paper's tables give top-5 error too
            ours["ours top-5 err %"] = _ours(s, ab, case, top5, err=True) if case else "-"
        if col != "test_top1":
            ours["ours: measured as"] = col
        rows.append({**theirs, **ours})
    return pd.DataFrame(rows)


def reference_tables(s: Setting, names: tuple[str, ...]) -> list[Block]:
    ref = load_references()
    src = ref["sources"]
    blocks = []
    for name in names:
        table = ref[name]
        keys = [table["source"]] if "source" in table else sorted({r["source"] for r in table["rows"]})
        cites = "; ".join(src[k]["cite"] + (f" ({src[k]['url']})" if src[k].get("url") else "") for k in keys)
        scale = ("same dataset as ours" if all(same_scale(s, src[k]) for k in keys)
                 else "another dataset: compare directions, not levels")
        blocks.append(table_block(beside_ours(s, table, src), f"{table['what']} ({scale}) — {cites}"))
    return blocks
