"""`aed bench`: the speed of the student (model only, end to end) and of its teachers, and what each includes.

aed bench                                    # weights/ped2.pt if shipped, else a random 'fastaed'
aed bench --variant fastaed-xs --size 240x360 --batch 1,32 --threads 2 --json bench.json
aed bench --weights runs/ped2/weights.pt --runtime onnx --teachers
aed bench --variant fastaed --device cuda --precision fp16 --batch 1,64
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def bench(
    weights: Path | None = typer.Option(
        None,
        "--weights",
        metavar="FILE",
        help="Student weights (default: the shipped weights/ped2.pt, else a random --variant).",
        show_default=False,
    ),
    variant: str | None = typer.Option(
        None,
        "--variant",
        metavar="NAME",
        help="Time a randomly initialised student of this variant (fastaed, fastaed-s, fastaed-xs) instead.",
        show_default=False,
    ),
    device: str = typer.Option("cpu", "--device", help="'cpu' or 'cuda'."),
    batch: str = typer.Option("1,32", "--batch", metavar="SIZES", help="Comma-separated batch sizes."),
    size: str | None = typer.Option(
        None,
        "--size",
        metavar="HxW",
        help="Input height x width in pixels (default: the weights' size, else the paper's 360x640).",
        show_default=False,
    ),
    channels: int | None = typer.Option(
        None,
        "--channels",
        metavar="1|3",
        help="Channels per frame of a random --variant: 1 gray, 3 colour (default 3, the paper's).",
        show_default=False,
    ),
    precision: str = typer.Option(
        "fp32", "--precision", metavar="fp32|fp16|bf16", help="fp16 needs CUDA; bf16 a CPU with bfloat16."
    ),
    runtime: str = typer.Option("torch", "--runtime", metavar="torch|onnx", help="Inference runtime."),
    threads: int | None = typer.Option(
        None, "--threads", metavar="N", help="CPU threads (default: PyTorch's choice).", show_default=False
    ),
    clip: Path | None = typer.Option(
        None,
        "--clip",
        metavar="PATH",
        help="Video or frame folder for the end-to-end and teacher figures (default: a generated clip).",
        show_default=False,
    ),
    frames: int = typer.Option(120, "--frames", metavar="N", help="Frames of the generated clip."),
    teachers: bool = typer.Option(
        False, "--teachers", help="Also time the teachers on the clip and report the student's speed-up."
    ),
    targets: Path | None = typer.Option(
        None,
        "--targets",
        metavar="DIR",
        help="Targets folder holding trained teachers (<name>/teacher.pt); default <weights folder>/targets.",
        show_default=False,
    ),
    optimise: bool = typer.Option(
        True, "--optimise/--no-optimise", help="PyTorch: oneDNN primitives and fused activations (CPU)."
    ),
    json_out: Path | None = typer.Option(
        None, "--json", metavar="FILE", help="Write the figures as JSON to this file.", show_default=False
    ),
    warmup: int = typer.Option(3, "--warmup", metavar="N", help="Untimed forward passes per batch size."),
    iters: int = typer.Option(20, "--iters", metavar="N", help="Timed forward passes per batch size."),
) -> None:
    """Measure frames per second of the student (model only and end to end) and of its teachers."""
    from aedcli.bench import BenchOptions, iter_table_rows, parse_batches, parse_size, run_bench
    from aedcli.files import write_json_atomic

    console = Console(stderr=True)
    options = BenchOptions(
        weights=weights,
        variant=variant,
        device=device,
        batches=parse_batches(batch),
        size=parse_size(size) if size is not None else None,
        channels=channels,
        precision=precision,
        runtime=runtime,
        threads=threads,
        clip=clip,
        frames=frames,
        teachers=teachers,
        targets=targets,
        warmup=warmup,
        iters=iters,
        optimise=optimise,
    )
    with console.status("benchmarking") as status:
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
    Console().print(table)
    load = system.get("load_average_1m")
    console.print(
        f"torch {system['torch']}, optimisations: {', '.join(report['optimisations']) or 'none'}"
        + (f"; load average {load} on {system['cpu_count']} CPUs" if load is not None else ""),
        highlight=False,
        soft_wrap=True,
    )
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    if json_out is not None:
        write_json_atomic(json_out, report)
        console.print(f"wrote {json_out}", highlight=False, markup=False)
