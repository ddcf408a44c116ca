"""``aed bench``: the speed of the student (model only, end to end) and of its teachers, and what each
includes.

    aed bench                                        # the shipped weights, batch 1 and 32, on the CPU
    aed bench --weights runs/cam/weights.pt --teachers --clip examples/ped2_test004.mp4
    aed bench --variant fastaed --channels 3 --size 360x640 --device cuda --precision fp16 --batch 1,32

Compare figures only within one session of one machine: speed is measured, never assumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from aedcli.bench import BenchOptions, iter_table_rows, parse_batches, parse_size, run_bench
from aedcli.cli.options import DeviceOpt, JsonOpt, RuntimeOpt, WeightsOpt
from aedcli.cli.output import consoles, write_results
from aedcli.model.student import VARIANTS


def bench(
    weights: WeightsOpt = None,
    variant: Annotated[
        str | None,
        typer.Option(
            "--variant",
            metavar="NAME",
            help=f"Time a randomly initialised student instead ({', '.join(VARIANTS)}): speed only.",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    batch: Annotated[
        str,
        typer.Option(
            "--batch", metavar="SIZES", help="Comma-separated batch sizes; the largest runs end to end."
        ),
    ] = "1,32",
    size: Annotated[
        str | None,
        typer.Option(
            "--size",
            metavar="HxW",
            help="Input size (default: the weights', else the paper's 360x640).",
            show_default=False,
        ),
    ] = None,
    channels: Annotated[
        int | None,
        typer.Option(
            "--channels",
            metavar="1|3",
            help="With --variant: 1 gray, 3 colour per frame (default 3).",
            show_default=False,
        ),
    ] = None,
    precision: Annotated[
        str, typer.Option("--precision", metavar="fp32|fp16|bf16", help="Arithmetic (fp16 on CUDA only).")
    ] = "fp32",
    runtime: RuntimeOpt = "auto",
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads", metavar="N", help="CPU threads (default: all the runtime takes).", show_default=False
        ),
    ] = None,
    clip: Annotated[
        Path | None,
        typer.Option(
            "--clip",
            metavar="VIDEO",
            help="Clip to run end to end (default: a generated one).",
            show_default=False,
        ),
    ] = None,
    frames: Annotated[int, typer.Option("--frames", metavar="N", help="Frames of the generated clip.")] = 120,
    teachers: Annotated[
        bool,
        typer.Option(
            "--teachers", help="Also time the teachers on the clip, and the student / teachers ratio."
        ),
    ] = False,
    iters: Annotated[
        int,
        typer.Option("--iters", metavar="N", help="Timed passes per batch size (after 3 warm-up passes)."),
    ] = 20,
    json_out: JsonOpt = None,
) -> None:
    """Measure speed honestly: model only and end to end (with and without the overlay), CPU or GPU."""
    results, logs = consoles(json_out)
    options = BenchOptions(
        weights=weights,
        variant=variant,
        device=device,
        batches=parse_batches(batch),
        size=parse_size(size) if size else None,
        channels=channels,
        precision=precision,
        runtime=runtime,
        threads=threads,
        clip=clip,
        frames=frames,
        teachers=teachers,
        iters=iters,
    )
    with logs.status("benchmarking") as status:
        result = run_bench(options, progress=lambda msg: status.update(f"benchmarking: {msg}"))
    report = result.to_json()
    system = report["system"]
    hardware = system["gpu"] or system["cpu"]
    colour = "gray" if report["model"]["input"]["channels"] == 1 else "colour"
    title = (
        f"aed bench: {report['model']['source']}\n{report['runtime']} {report['precision']} on "
        f"{report['device']} ({hardware}), {report['threads']} threads, input "
        f"{result.size[0]}x{result.size[1]} {colour} ({report['model']['in_channels']} stacked channels)"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("includes")
    for name, value, includes in iter_table_rows(result):
        table.add_row(name, value, includes)
    results.print(table)
    load = system.get("load_average_1m")
    logs.print(
        f"torch {system['torch']}, optimisations: {', '.join(report['optimisations']) or 'none'}"
        + (f"; load average {load} on {system['cpu_count']} CPUs" if load is not None else ""),
        highlight=False,
        soft_wrap=True,
    )
    for note in report["notes"]:
        logs.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    write_results(json_out, report, logs)
