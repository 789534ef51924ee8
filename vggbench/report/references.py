"""The reference figures (vggbench/references.json: the paper's Table 3, torchvision's weights,
CIFAR-10 results) beside our numbers."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .blocks import Block, heading, paragraph, table_block
from .settings import Setting
from .text import mean_text, mean_std_text


def load_references() -> dict:
    return json.loads((Path(__file__).parents[1] / "references.json").read_text())


def _ours(s: Setting, ablation: str, case: str, col: str, err: bool = False) -> str:
    g = s.rows[(s.rows.ablation == ablation) & (s.rows.case == case)]
    vals = pd.to_numeric(g[col], errors="coerce")
    return mean_std_text(100 - vals if err else vals) if len(g) else "-"


def table3_beside_ours(s: Setting, ref: dict) -> pd.DataFrame:
    return pd.DataFrame([{"config": r["config"], "layers": r["layers"], "paper top-1 err": r["top1_err"],
                          "paper top-5 err": r["top5_err"],
                          "ours top-1 err": _ours(s, "depth", r["config"], "test_top1", err=True),
                          "ours top-5 err": _ours(s, "depth", r["config"], "test_top5", err=True)}
                         for r in ref["paper_table3"]["rows"]])


def torchvision_beside_ours(s: Setting, ref: dict) -> pd.DataFrame:
    rows = []
    for r in ref["torchvision"]["rows"]:
        case = f"{r['config']}-{'bn' if r['batch_norm'] else 'plain'}"
        ours = s.rows[(s.rows.config == r["config"]) & (s.rows.batch_norm == r["batch_norm"])
                      & (s.rows.kernels == "3x3")]
        rows.append({"model": r["model"], "acc@1": r["acc1"], "acc@5": r["acc5"],
                     "params (M)": f"{r['params'] / 1e6:.2f}", "GFLOPS": r["gflops"],
                     "ours top-1": _ours(s, "batchnorm", case, "test_top1") if r["config"] in ("A", "D", "E") else "-",
                     "ours params (M)": mean_text(ours.params / 1e6, "{:.3f}")})
    return pd.DataFrame(rows)


def cifar10_beside_ours(s: Setting, ref: dict) -> pd.DataFrame:
    src = ref["sources"]
    theirs = [{"setting": r["setting"], "test acc %": r["test_acc"], "test err %": r["test_err"],
               "± std": r["std"] if r["std"] is not None else "", "source": src[r["source"]]["short"]}
              for r in ref["cifar10"]["rows"]]
    ours = [{"setting": f"ours: {case}", "test acc %": _ours(s, ab, case, "test_top1"),
             "test err %": _ours(s, ab, case, "test_top1", err=True), "± std": "(± is over seeds)", "source": s.caption}
            for ab, case in (("batchnorm", "D-plain"), ("batchnorm", "D-bn"), ("optimizer", "D-sgd"),
                             ("optimizer", "D-adam"), ("optimizer", "D-adagrad"))]
    return pd.DataFrame(theirs + ours)


def section_references(s: Setting) -> list[Block]:
    ref = load_references()
    src = ref["sources"]
    return [heading(3, "References beside our numbers"),
            paragraph(f"Our columns: {s.caption}. They are comparable with the references only in direction, not in "
              "level, unless the setting is the reference's (ImageNet at 224px for the paper and torchvision, "
              "CIFAR-10 at full width for the CIFAR figures)."),
            table_block(table3_beside_ours(s, ref),
              f"{ref['paper_table3']['what']} — {src['vgg']['cite']} ({src['vgg']['url']})"),
            table_block(torchvision_beside_ours(s, ref),
              f"{ref['torchvision']['what']} — {src['torchvision']['cite']} ({src['torchvision']['url']})"),
            table_block(cifar10_beside_ours(s, ref),
              f"{ref['cifar10']['what']} — {src['wilson2017']['cite']} ({src['wilson2017']['url']}); "
              f"{src['cifar10_repro']['cite']}")]
