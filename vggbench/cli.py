"""The `vggbench` command. Each subcommand is a `cmd_*` function and one parser entry below.

  vggbench profile CONFIG [...]   per-layer table and totals (params, GMACs, GFLOPs) of one model
  vggbench report [...]           report.md + report.html: tables, plots, claims judged over seeds
  vggbench data prepare NAME      decode a dataset once into the cache; print its splits and the time
  vggbench collect [...]          the tables results/<ablation>.csv from the records (after --no-wait)
  vggbench pretrained CONFIG      fetch/read ImageNet weights and load them into a VGG (transfer ablation)
  vggbench status [...]           the last session's cells: done, running (epoch k/N), failed, not started
  vggbench run [...]              run ablation cells without pytest: the options, records and tables of
                                  `pytest ablations` (vggbench.session)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import UsageError
from .grid import ABLATIONS
from .models import CONFIGS, HEADS, KERNEL_PLANS, ModelSpec, analytic_macs, analytic_params, build_model
from .options import Options, Outputs, add_to_argparse, number


# `vggbench profile` and `bench` build a model (float32 weights) only up to this size; beyond it they
# answer with the analytic counts instead of allocating (a width-16 VGG-D at 224px is 128 GiB).
BUILD_MAX_BYTES = 4 << 30


def cmd_profile(args) -> int:
    from .measure import count_flops, count_params, layer_table
    from .progress import working

    spec = _model_spec(args)
    with working(f"vggbench profile {spec.name}") as stage:
        stage("building the model")
        model = build_model(spec)
        stage("counting FLOPs (fvcore, FlopCounterMode)")
        counts, flops = count_params(model), count_flops(model)
        if not args.json:
            stage("the per-layer table")
            rows = layer_table(model)
    summary = {"model": spec.name, "config": spec.config, "batch_norm": spec.batch_norm, "kernels": spec.kernels,
               "head": spec.head, "width": spec.width, "image_size": spec.image_size,
               "num_classes": spec.num_classes, **counts, "gmacs": round(flops["gmacs"], 6),
               "gflops": round(flops["gflops"], 6)}
    if args.json:
        print(json.dumps(summary))
        return 0
    widths = {"layer": 16, "type": 18, "output": 14, "params": 14, "macs": 16}
    print("".join(f"{k:<{w}}" if k in ("layer", "type", "output") else f"{k:>{w}}" for k, w in widths.items()))
    print("-" * sum(widths.values()))
    for r in rows:
        print(f"{r['layer']:<16}{r['type']:<18}{r['output']:<14}{r['params']:>14,}{r['macs']:>16,}")
    print("-" * sum(widths.values()))
    print(f"{spec.name} at {spec.image_size}x{spec.image_size}, {spec.num_classes} classes, head {spec.head}: "
          f"params {counts['params']:,} (trainable {counts['trainable_params']:,}), "
          f"{flops['gmacs']:.3f} GMACs (fvcore), {flops['gflops']:.3f} GFLOPs (FlopCounterMode)")
    return 0


def cmd_data_prepare(args) -> int:
    import time

    from .data import DataSpec, load_data
    from .data.sources import native_size

    spec = DataSpec(args.name, args.image_size or native_size(args.name), data_dir=args.data_dir,
                    cache_dir=args.cache_dir, skip_bad=args.skip_bad, verify_data=args.verify_data)
    t0 = time.perf_counter()
    data = load_data(spec)
    seconds = time.perf_counter() - t0
    sizes = data.sizes()
    print(f"{data.name}: {data.num_classes} classes, {data.image_size}x{data.image_size}, "
          f"train {sizes['train']} / val {sizes['val']} / test {sizes['test']}")
    print(f"source: {data.source}")
    print("mean " + " ".join(f"{v:.4f}" for v in data.mean) + ", std " + " ".join(f"{v:.4f}" for v in data.std))
    print(f"took {seconds:.3f} s")
    return 0


def _model_spec(args) -> ModelSpec:
    """The model of `profile` / `bench`; UsageError (one line, with its size) if too large to build here."""
    spec = ModelSpec(config=args.config, batch_norm=args.bn, kernels=args.kernels, head=args.head, width=args.width,
                     image_size=args.image_size, num_classes=args.num_classes)
    params = analytic_params(spec)
    if 4 * params > BUILD_MAX_BYTES:
        raise UsageError(f"{spec.name} at {spec.image_size}px has {params:,} parameters "
                         f"({analytic_macs(spec)['total'] / 1e9:,.1f} GMACs): building it would need "
                         f"{4 * params / 2**30:,.1f} GiB of float32 weights, more than the "
                         f"{BUILD_MAX_BYTES >> 30} GiB `vggbench {args.command}` builds; give a smaller --width or "
                         "--image-size")
    return spec


def cmd_bench_pipeline(args) -> int:
    from .bench import pipeline
    from .data import DataSpec

    data = DataSpec(args.dataset, args.image_size, train_subset=args.train_subset, data_dir=args.data_dir,
                    cache_dir=args.cache_dir)
    out = Path(args.results_dir) / "pipeline.csv"
    df = pipeline(_model_spec(args), data, args.batch_size, args.device, args.workers, out, repeats=args.repeats,
                  amp=args.amp or "auto")
    r = df.iloc[0]
    print(f"{r['model']} on {r['dataset']} ({r['train_images']} images, batch {r['batch_size']}, {r['steps']} steps), "
          f"{r['device']}, amp {r['amp']}; median of {r['repeats']} alternating epochs per variant")
    for name, label in (("vggbench", "(a) vggbench: device-resident data, batched augmentation"),
                        ("typical", f"(b) typical: DataLoader+PIL ({args.workers} workers), .item() per step"),
                        ("ceiling", "(c) ceiling: same steps on one pre-made device batch")):
        print(f"  {label:<62} {r[name + '_s']:8.2f} s  {r[name + '_images_per_s']:9.0f} img/s")
    print(f"  a/b = {r['ratio_a_over_b']:.3f}  (vggbench is {1 / r['ratio_a_over_b']:.2f}x the typical loop's speed)")
    print(f"  a/c = {r['ratio_a_over_c']:.3f}  (vggbench's epoch vs the model-only ceiling)")
    print(f"written: {out}")
    return 0


def cmd_bench_throughput(args) -> int:
    from .bench import model_throughput

    r = model_throughput(_model_spec(args), args.batch_size, args.device, args.amp or "auto", not args.no_channels_last,
                         args.compile, repeats=args.repeats, window_s=args.window)
    if args.json:
        print(json.dumps(r, default=str))
        return 0
    print(f"{r['model']} at {r['image_size']}px, batch {r['train']['batch_size']}, {r['dtype']}, "
          f"channels_last={r['channels_last']}, compile={r['compile']}, {r['device']} (--amp {r['amp']}"
          + (f"; CPU bf16 units: {r['cpu_bf16_units'] or 'none'})" if r["device"].startswith("CPU") else ")"))
    for kind in ("train", "infer"):
        t = r[kind]
        print(f"  {kind:5}: {t['images_per_s']:9.1f} img/s (min {t['images_per_s_min']:.1f}, max {t['images_per_s_max']:.1f}, "
              f"{t['repeats']} windows of {t['steps_per_repeat']} steps; warm-up/compile {t['compile_s']:.2f} s)"
              + (f"; compiled: {t['compiled']}" if t["compiled"] else ""))
    print(f"  training: {r['train_gflop_per_s']:.1f} GFLOP/s achieved = {r['ceiling_fraction']:.1%} of the "
          f"{r['dtype']} ceiling ({r['ceiling_gflop_per_s']:.1f} GFLOP/s, float32 math {r['ceiling_math_mode']}: "
          f"{r['ceiling_method']})")
    if r["ceiling_exceeded"]:
        print(f"  the model ran at {r['ceiling_fraction_unclipped']:.1%} of the ceiling: the ceiling is too low "
              "(the fraction is clipped to 100%)")
    return 0


def cmd_collect(args) -> int:
    from .tables import collect

    from .notices import notice
    from .records import older_identity, runs_dir

    tables, sizes = collect(args.results_dir, args.ablation)
    older = older_identity(args.results_dir)
    if older:
        notice(f"{older} records of an older identity in {runs_dir(args.results_dir)}/ were not used (written "
               "before cell ids covered the data's content; see docs/running.md)")
    for name, df in tables.items():
        counts = df["status"].value_counts()
        statuses = ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
        missing = sizes[name] - len(df)
        profiles = ", ".join(sorted(str(p) for p in df["profile"].dropna().unique())) or "unknown"
        print(f"{name}: {len(df)} of {sizes[name]} cells have records ({statuses}; profile {profiles})"
              + (f"; {missing} have none (not selected yet, or their jobs are still running)" if missing else "")
              + f" -> {args.results_dir}/{name}.csv")
    return 0


def cmd_status(args) -> int:
    from .status import render, status

    print(render(status(args.results_dir), args.results_dir))
    return 0


def cmd_report(args) -> int:
    from .progress import working
    from .report import build_report

    with working("vggbench report: reading the records, drawing the figures"):
        out = build_report(args.results_dir, args.out, data_dir=args.data_dir, cache_dir=args.cache_dir)
    print(f"report: {out['html']} and {out['md']} ({out['tables']} tables, {len(out['figures'])} figures); "
          f"verdict summary: {out['verdicts']}")
    return 0


def cmd_run(args) -> int:
    from .session import run

    return run(args, ablations=args.ablation or ())


def cmd_pretrained(args) -> int:
    """Fetch (into torch.hub's cache) or read pretrained weights and load them into vggbench's VGG:
    run it where there is internet before a transfer session on an offline machine."""
    import torch

    from . import pretrained

    spec = ModelSpec(config=args.config, batch_norm=args.bn, image_size=args.image_size, **pretrained.ARCHITECTURE)
    weights = pretrained.weights_for(args.pretrained, spec)
    where = (pretrained.cache_path(pretrained.torchvision_weights(spec)) if weights.source == "torchvision"
             else weights.path)
    with torch.device("meta" if args.dry_run else "cpu"):
        model = build_model(spec)
    if not args.dry_run:
        pretrained.load_weights(model, weights, new_head=False)
    print(f"{spec.name} at {spec.image_size}px: {json.dumps(weights.identity())} at {where} "
          + ("(not read: --dry-run)" if args.dry_run else f"loaded, {sum(p.numel() for p in model.parameters()):,} params"))
    return 0


def _add_model_flags(parser: argparse.ArgumentParser, **defaults) -> None:
    """The model's flags (a ModelSpec's fields), the same for `profile` and `bench`."""
    parser.add_argument("config", nargs="?" if "config" in defaults else None, default=defaults.get("config"),
                        choices=list(CONFIGS), help="configuration of Table 1")
    parser.add_argument("--bn", action="store_true", help="batch norm after every convolution")
    parser.add_argument("--kernels", choices=KERNEL_PLANS, default="3x3",
                        help="3x3: the paper's stacks; large: one conv of the stack's receptive field per block")
    parser.add_argument("--head", choices=list(HEADS), default=defaults.get("head", "paper"),
                        help="classifier: paper (4096-4096), compact (512-512), linear")
    parser.add_argument("--num-classes", type=number(int, 2, "num classes must be an integer >= 2"), default=1000
                        if defaults.get("head", "paper") == "paper" else 10, help="classes of the last layer")
    add_to_argparse(parser, Options, ["width", "image_size"], width=defaults.get("width", 1.0),
                    image_size=defaults.get("image_size", 224))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vggbench", description="VGG ablation benchmark suite")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("profile", help="per-layer table, params and FLOPs of one configuration")
    _add_model_flags(pr)
    pr.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    pr.set_defaults(func=cmd_profile)

    from .data import DATASETS

    da = sub.add_parser("data", help="datasets: decode once into the cache").add_subparsers(dest="action", required=True)
    dp = da.add_parser("prepare", help="decode a dataset into the cache (again only if its source changed)")
    dp.add_argument("name", choices=sorted(DATASETS))
    add_to_argparse(dp, Options, ["data_dir", "cache_dir", "skip_bad", "verify_data", "image_size"])
    dp.set_defaults(func=cmd_data_prepare)

    be = sub.add_parser("bench", help="benchmarks: the input pipeline, model throughput").add_subparsers(
        dest="action", required=True)
    for name, helptext in (("pipeline", "one epoch three ways: vggbench vs typical DataLoader+PIL vs ceiling"),
                           ("throughput", "training/inference images/s and fraction of the matmul ceiling")):
        b = be.add_parser(name, help=helptext)
        _add_model_flags(b, config="A", head="linear", image_size=32, width=0.25 if name == "pipeline" else 1.0)
        add_to_argparse(b, Options, ["batch_size", "device", "amp"], batch_size=128)
        if name == "pipeline":
            add_to_argparse(b, Options, ["dataset", "data_dir", "cache_dir", "train_subset"], dataset="cifar10")
            add_to_argparse(b, Outputs, ["results_dir"])
            b.add_argument("--workers", type=number(int, 0, "workers must be an integer >= 0"), default=2,
                           help="DataLoader workers of the typical loop")
            b.add_argument("--repeats", type=number(int, 1, "repeats must be an integer >= 1"), default=3,
                           help="epochs per variant, alternating; the median is reported")
            b.set_defaults(func=cmd_bench_pipeline)
        else:
            b.add_argument("--no-channels-last", action="store_true", help="NCHW instead of channels-last memory")
            add_to_argparse(b, Options, ["compile"])
            b.add_argument("--repeats", type=number(int, 1, "repeats must be an integer >= 1"), default=10,
                           help="timed windows of steps; the median is reported with min and max")
            b.add_argument("--window", type=number(float, 0, "window must be a number of seconds > 0", above=True), default=1.0,
                           help="least seconds per timed window of steps (default 1.0)")
            b.add_argument("--json", action="store_true", help="one JSON object instead of the summary")
            b.set_defaults(func=cmd_bench_throughput)

    pt = sub.add_parser("pretrained", help="fetch or read ImageNet weights and load them into a VGG (the "
                                           "transfer ablation's --pretrained; downloads into torch.hub's cache)")
    pt.add_argument("config", choices=list(CONFIGS))
    pt.add_argument("--bn", action="store_true", help="the _bn weights (vgg16_bn ...)")
    add_to_argparse(pt, Options, ["pretrained", "image_size"], pretrained="torchvision", image_size=224)
    pt.add_argument("--dry-run", action="store_true", help="say which weights and where, read nothing")
    pt.set_defaults(func=cmd_pretrained)

    co = sub.add_parser("collect", help="aggregate the run records into results/<ablation>.csv (e.g. after "
                                        "`pytest ablations --launcher slurm --no-wait`)")
    add_to_argparse(co, Outputs, ["results_dir"])
    co.add_argument("--ablation", action="append", choices=sorted(ABLATIONS),
                    help="only this ablation (repeatable; default: those of the last session)")
    co.set_defaults(func=cmd_collect)

    st = sub.add_parser("status", help="the last session's cells: done, reused, running (epoch k/N, last write), "
                                       "interrupted, failed (the error's first line), not started; submitit jobs")
    add_to_argparse(st, Outputs, ["results_dir"])
    st.set_defaults(func=cmd_status)

    ru = sub.add_parser("run", help="run ablation cells without pytest: the same options, records, cell ids and "
                                    "tables as `pytest ablations` (e.g. vggbench run --case depth:A --seeds 3)")
    from .preflight import session_options

    session_options(ru)
    ru.add_argument("--ablation", action="append", choices=sorted(ABLATIONS),
                    help="only this ablation (repeatable; default: every ablation, as `pytest ablations`)")
    ru.set_defaults(func=cmd_run)

    rp = sub.add_parser("report", help="build report.md and report.html from the run records")
    add_to_argparse(rp, Outputs, ["results_dir"])
    rp.add_argument("--out", help="output folder (default <results-dir>/report)")
    add_to_argparse(rp, Options, ["data_dir", "cache_dir"])
    rp.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, FileNotFoundError, PermissionError) as err:
        # Bad input: one line that says what to do, no traceback. Anything else is a bug: its traceback.
        parser.exit(2, f"vggbench {args.command}: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
