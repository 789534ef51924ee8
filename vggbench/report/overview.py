"""The report's first screen (what was run, at what budget, and what held), the environment of
the runs and the links to the files the report was built from."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .. import records
from ..grid import ABLATIONS
from .blocks import Block, heading, paragraph, table_block
from .budget import DEFINITION, Budget
from .claims import verdict_counts
from .settings import Setting
from .text import number, rel, slug
from .verdicts import CANNOT_JUDGE, NOT_EVIDENCE, NOT_RUN


def section_summary(settings: list[Setting], judged: dict[int, pd.DataFrame], budgets: dict[int, Budget],
                    results_dir: Path, out: Path, n_records: int) -> list[Block]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = []
    for s in settings:
        b, counts = budgets[s.index], verdict_counts(judged[s.index])
        grey = "" if b.adequate else f" ({NOT_EVIDENCE})"
        rows.append({"setting": f"[{s.index}: {s.short_caption}](#{slug(setting_title(s))})",
                     "records": len(s.records), "budget": b.label,
                     **{v: f"{n} {v}" + ("" if v in (NOT_RUN, CANNOT_JUDGE) else grey) for v, n in counts.items()}})
    claims = judged[settings[0].index][["id", "comparison"]].copy()
    for s in settings:
        claims[f"setting {s.index}"] = judged[s.index].shown.values
    blocks = [heading(1, "VGG ablation report"),
              paragraph(f"Built {now} by `vggbench report` from {n_records} run records in "
                        f"`{rel(records.Results(results_dir).runs, out)}/`; {len(settings)} setting(s)."),
              heading(2, "Verdicts"),
              table_block(pd.DataFrame(rows), "claims per setting by verdict, and the setting's budget"),
              table_block(claims, "each claim's verdict per setting (grey: not evidence; details in each setting's "
                                  "Claims section)"),
              paragraph("The same verdicts as a short file to link or quote: [verdicts.md](verdicts.md)."),
              paragraph(DEFINITION)]
    inferred = [str(s.index) for s in settings if s.inferred]
    if inferred:
        blocks.append(paragraph(f"Note: the profile of setting(s) {', '.join(inferred)} is inferred from the "
                                "configuration: their records carry no stored provenance."))
    return blocks + [heading(2, "Contents"), Block("toc")]


def setting_title(s: Setting) -> str:
    return f"Setting {s.index}: {s.caption}"


def _applies(values: pd.Series) -> bool:
    return any(v not in (None, "", "-", "none", "None") and v == v for v in values)


def section_environment(all_records: list[dict]) -> list[Block]:
    rows = []
    for r in all_records:
        v = r.get("versions", {})
        rows.append({"device": r.get("device"), "amp": r.get("amp"), "python": v.get("python"), "torch": v.get("torch"),
                     "torchvision": v.get("torchvision"), "cuda": v.get("cuda"), "cudnn": v.get("cudnn"),
                     "pandas": v.get("pandas"), "commit": r.get("commit") or "unknown", "created": r.get("created"),
                     "wall_s": number(r.get("wall_s"))})
    df = pd.DataFrame(rows)
    keys = ["device", "amp", "python", "torch", "torchvision", "cuda", "cudnn", "pandas", "commit"]
    if not df.device.astype(str).str.startswith("CPU").eq(False).any():   # CUDA versions say nothing of a CPU run
        keys = [k for k in keys if k not in ("cuda", "cudnn")]
    keys = [k for k in keys if _applies(df[k])]
    table = (df.fillna({k: "-" for k in keys}).groupby(keys, sort=False)
             .agg(records=("created", "size"), first=("created", "min"), last=("created", "max"),
                  **{"compute (h)": ("wall_s", lambda w: f"{w.sum() / 3600:.2f}")})
             .reset_index())
    return [heading(2, "Environment"),
            table_block(table, "device, library versions, commit and dates of the runs (from the records)")]


def section_files(results_dir: Path, out: Path) -> list[Block]:
    links = [f"- [{name}.csv]({rel(records.Results(results_dir).table(name), out)}): every cell of the ablation, one row each"
             for name in ABLATIONS if records.Results(results_dir).table(name).is_file()]
    links.append(f"- [runs/]({rel(records.Results(results_dir).runs, out)}/): one JSON record per cell (configuration, history, "
                 "result, throughput, environment)")
    links.append("- `vggbench/references.json`: the claims and reference figures with their sources")
    return [heading(2, "Files"), paragraph("\n".join(links))]

