"""verdicts.md: the verdict summary of a results folder, from its records, as a short Markdown file
another page (the README) can link or quote: per setting a header saying where the numbers come
from (commit, machine, wall time, profile, budget label), the counts per verdict and one row per
claim. Built from the very judgements the report shows (claims.judge_claims, budget.judge)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .blocks import Block, heading, paragraph, table_block
from .budget import DEFINITION, Budget
from .claims import effect_text, verdict_counts
from .settings import Setting
from .text import rel

FILE = "verdicts.md"


def own_seconds(r: dict) -> float:
    """A record's own compute: an evaluation cell's record (run.run_evaluation) repeats its training
    cell's wall_s and `created`; its own time is the evaluation's."""
    return float((r.get("evaluation_s") if r.get("trained_by") else r.get("wall_s")) or 0.0)


def wall_time_h(recs: list[dict]) -> float | None:
    """Hours from the first cell's start to the last cell's end (each record's `created` less its
    wall_s; an evaluation after its training's `created`): what a session's clock saw, cells run side
    by side counted once. None without times."""
    spans = []
    for r in recs:
        try:
            t = datetime.fromisoformat(str(r["created"])).timestamp()
        except (KeyError, ValueError, TypeError):
            continue
        spans.append((t, t + own_seconds(r)) if r.get("trained_by") else (t - own_seconds(r), t))
    return (max(e for _, e in spans) - min(s for s, _ in spans)) / 3600 if spans else None


def _values(recs: list[dict], key: str) -> str:
    return ", ".join(sorted({str(r.get(key) or "unknown") for r in recs})) or "unknown"


def setting_header(s: Setting, budget: Budget) -> pd.DataFrame:
    """Where a setting's verdicts come from, one row of its records' provenance."""
    wall = wall_time_h(s.records)
    compute = sum(map(own_seconds, s.records)) / 3600
    profile = (s.profile or "unknown") + (f" ({', '.join(s.overrides)})" if s.overrides else "")
    return pd.DataFrame([{"commit": _values(s.records, "commit"), "machine": _values(s.records, "device"),
                          "wall time": "-" if wall is None else f"{wall:.2f} h", "compute": f"{compute:.2f} h",
                          "profile": profile, "seeds": len(s.seeds), "budget": budget.label}])


def summary_blocks(settings: list[Setting], judged: dict[int, pd.DataFrame], budgets: dict[int, Budget],
                   results_dir: Path, out: Path, n_records: int) -> list[Block]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    blocks = [heading(1, "Verdict summary"),
              paragraph(f"Written {now} by `vggbench report` from {n_records} run records in "
                        f"`{rel(results_dir / 'runs', out)}/`; the full report with every table and figure is "
                        f"[report.md](report.md). Wall time: the first cell's start to the last cell's end; compute: "
                        f"the cells' times summed. {DEFINITION}")]
    for s in settings:
        b, j = budgets[s.index], judged[s.index]
        counts = pd.DataFrame([verdict_counts(j)])
        claims = pd.DataFrame({"claim": j.id, "comparison": j.comparison,
                               "measured effect [95% CI]": [effect_text(r) for r in j.itertuples()],
                               "verdict": j.shown, "why": j.why})
        blocks += [heading(2, f"Setting {s.index}: {s.short_caption}"),
                   table_block(setting_header(s, b), "where the numbers come from (the records' provenance)"),
                   table_block(counts, "claims per verdict" + ("" if b.adequate else
                                                                 ": the budget is not adequate, no verdict is evidence")),
                   table_block(claims, "one row per claim")]
    return blocks
