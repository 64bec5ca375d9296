"""``veil data``: which data sets are present, where they were found, how to place the rest."""

from __future__ import annotations

import typer

app = typer.Typer(help="Data sets: list them, or show one.", no_args_is_help=True)


@app.command("list")
def list_sets() -> None:
    """Each data set, whether it is present, and where it was found (or what to place where)."""
    from rich.console import Console
    from rich.table import Table

    from veil.core import data

    table = Table(title=f"data folder: {data.data_dir()} (set ${data.DATA_ENV} to change)")
    for col in ("name", "present", "where / how to place it", "train", "test"):
        table.add_column(col)
    for st in data.status():
        info = data.info(st.name)
        table.add_row(
            st.name,
            "yes" if st.present else "[red]no[/]",
            st.where or st.hint,
            str(info.sizes["train"]),
            str(info.sizes["test"]),
        )
    Console().print(table)


@app.command("info")
def info(name: str = typer.Argument(..., help="Data set name, e.g. mnist.")) -> None:
    """What a data set is: shape, classes, sizes, source and licence."""
    from veil.core import data

    i = data.info(name)
    typer.echo(f"{i.name}: {i.description}")
    typer.echo(f"  input shape {i.input_shape}, {i.num_classes} classes: {', '.join(i.classes)}")
    typer.echo(f"  sizes: {i.sizes}; source: {i.source}")
    typer.echo("  bundled with scikit-learn" if i.bundled else f"  placement: {i.placement}")
