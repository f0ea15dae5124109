"""`recloop items import FILE` (bulk-load a catalogue) and `recloop features explain`.

Both open the loop's item catalogue directly, so they work beside a running server: the
server follows the catalogue's change feed and serves the new features within a tick.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from recloop.cli.checks import RecloopTyper
from recloop.cli.stream import ConfigOpt, DataDirOpt, read_events
from recloop.core.errors import InvalidInputError
from recloop.features.catalogue import ItemCatalogue
from recloop.features.spec import plan_fields
from recloop.settings import DEFAULT_LOOP, LoopSettings, load_settings
from recloop.stores.factory import open_item_store

console = Console()
items_app = RecloopTyper(help="The item catalogue: raw fields in, features out.")
features_app = RecloopTyper(help="The feature generator.")
LoopOpt = Annotated[str, typer.Option("--loop", help="The loop whose catalogue to use.")]


def _cell(value: str) -> Any:
    """A CSV cell as a number when it is one (CSV has no types)."""
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(value)
    return value


def read_items(path: Path, id_field: str) -> Iterator[tuple[int, str | None, dict[str, Any]]]:
    """(line number, item id, raw fields) from CSV (a header row) or JSON lines (objects,
    the fields at top level or under "fields"). A line that does not parse has id None and
    the error under "error"."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                fields = {k: _cell(v) for k, v in row.items() if k and v not in (None, "")}
                item_id = fields.pop(id_field, None)
                yield number, None if item_id is None else str(item_id), fields
        return
    for number, raw in read_events(path):  # JSON lines, as `recloop replay` reads them
        if isinstance(raw, str):
            yield number, None, {"error": raw}
        elif not isinstance(raw, dict):
            yield number, None, {"error": "not a JSON object"}
        else:
            item_id = raw.pop(id_field, None)
            fields = raw["fields"] if isinstance(raw.get("fields"), dict) else raw
            yield number, None if item_id is None else str(item_id), fields


def _http_put(url: str, api_key: str | None, loop: str) -> Any:
    """POST batches to a running server's catalogue; a 4xx becomes InvalidInputError with
    the server's detail (so the caller can find the bad item), anything else stops."""
    import httpx

    headers = {"content-type": "application/json"}
    if api_key:
        headers["x-api-key"] = api_key
    client = httpx.Client(base_url=url.rstrip("/"), timeout=120, headers=headers)
    route = "/v1/items" if loop == DEFAULT_LOOP else f"/v1/loops/{loop}/items"

    def put(items: list[tuple[str, dict[str, Any]]]) -> list[bool]:
        body = {"items": [{"id": i, "fields": f} for i, f in items]}
        r = client.post(route, content=json.dumps(body))
        if r.status_code in (400, 422):
            raise InvalidInputError(str(r.json().get("detail", r.text)))
        if r.status_code != 200:
            raise typer.BadParameter(f"the server answered {r.status_code}: {r.text}")
        return [bool(out["changed"]) for out in r.json()]

    return put


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip()) - (path.suffix.lower() == ".csv")


def _open(
    config: Path | None, data_dir: Path | None, loop: str
) -> tuple[LoopSettings, ItemCatalogue]:
    settings = load_settings(config, data_dir=data_dir)
    loop_settings = settings.loop(loop)
    store = open_item_store(loop_settings, settings.data_dir / loop)
    return loop_settings, ItemCatalogue(store, loop_settings.features)


def _id_field(settings: LoopSettings, given: str | None) -> str:
    if given:
        return given
    ids = [name for name, kind in settings.features.fields.items() if kind == "id"]
    return ids[0] if ids else "id"


@items_app.command("import")
def import_items(
    path: Annotated[Path, typer.Argument(help="CSV (with a header) or JSON-lines file.")],
    loop: LoopOpt = DEFAULT_LOOP,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    id_field: Annotated[
        str | None, typer.Option(help="The id column (default: the spec's id field, or id).")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="Items per transaction.")] = 1000,
    url: Annotated[
        str | None, typer.Option(help="A running server (POST /v1/items); default: the files.")
    ] = None,
    api_key: Annotated[str | None, typer.Option(envvar="RECLOOP_API_KEY")] = None,
) -> None:
    """Load items into a loop's catalogue, computing features for new content. The first
    batch fits the text reduction and topics, so make it representative (or large)."""
    if not path.exists():
        console.print(f"[red]no such file: {path}[/red]")
        raise typer.Exit(2)
    settings = load_settings(config, data_dir=data_dir).loop(loop)
    catalogue: ItemCatalogue | None = None
    if url:
        put = _http_put(url, api_key, loop)
    else:
        settings, catalogue = _open(config, data_dir, loop)
        local = catalogue

        def put(items: list[tuple[str, dict[str, Any]]]) -> list[bool]:
            return [r.changed for r in local.put(items)]

    key = _id_field(settings, id_field)
    stats = {"written": 0, "unchanged": 0, "refused": 0}
    problems: list[str] = []

    def flush(pending: list[tuple[int, str, dict[str, Any]]]) -> None:
        try:
            changed = put([(i, f) for _, i, f in pending])
        except InvalidInputError:  # find the bad ones: the others still go in
            for entry in pending:
                try:
                    changed = put([(entry[1], entry[2])])
                except InvalidInputError as exc:
                    stats["refused"] += 1
                    problems.append(f"line {entry[0]} ({entry[1]}): {exc}")
                    continue
                _tally(changed)
            return
        _tally(changed)

    def _tally(changed: list[bool]) -> None:
        for c in changed:
            stats["written" if c else "unchanged"] += 1

    pending: list[tuple[int, str, dict[str, Any]]] = []
    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*Progress.get_default_columns()[:1], *columns, console=console) as bar:
        task = bar.add_task(f"importing into {loop}", total=_count_lines(path))
        for number, item_id, fields in read_items(path, key):
            bar.advance(task)
            if item_id is None:
                stats["refused"] += 1
                problems.append(f"line {number}: {fields.get('error', f'no {key!r} field')}")
                continue
            pending.append((number, item_id, fields))
            if len(pending) >= batch:
                flush(pending)
                pending = []
        if pending:
            flush(pending)
    total = "" if catalogue is None else f"; {len(catalogue)} in the catalogue of {loop}"
    if catalogue is not None:
        catalogue.store.close()
    for line in problems[:20]:
        console.print(f"[yellow]{line}[/yellow]")
    console.print(
        f"{stats['written']} items featurized, {stats['unchanged']} unchanged, "
        f"{stats['refused']} refused{total}"
    )
    if stats["refused"]:
        raise typer.Exit(1)


@items_app.command("refit")
def refit(
    loop: LoopOpt = DEFAULT_LOOP,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    fit_sample: Annotated[
        int, typer.Option(min=1, help="Items (by id) the text reduction is fitted on.")
    ] = 20_000,
) -> None:
    """Fit the feature generator again on the whole catalogue and recompute every item's
    features. Every item's representation changes: reset the loop's model afterwards
    (or let it relearn)."""
    _, catalogue = _open(config, data_dir, loop)
    total = len(catalogue)
    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*Progress.get_default_columns()[:1], *columns, console=console) as bar:
        task = bar.add_task(f"refitting {loop}", total=total)
        done = catalogue.refit(fit_sample, progress=lambda n: bar.advance(task, n))
    rows = catalogue.explain()
    catalogue.store.close()
    console.print(f"{done} items recomputed in the catalogue of {loop}")
    for row in rows:
        console.print(f"  {row['field']}: {row['kind']}, {row['fitted']}")


@items_app.command("get")
def get_item(
    item_id: str,
    loop: LoopOpt = DEFAULT_LOOP,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print an item's raw fields and generated features as JSON."""
    _, catalogue = _open(config, data_dir, loop)
    record = catalogue.get(item_id)
    catalogue.store.close()
    if record is None:
        console.print(f"[red]no item {item_id!r} in the catalogue of {loop}[/red]")
        raise typer.Exit(1)
    typer.echo(
        json.dumps({"id": record.item_id, "fields": record.fields, "features": record.features})
    )


@features_app.command("explain")
def explain(
    loop: LoopOpt = DEFAULT_LOOP,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    sample: Annotated[
        Path | None,
        typer.Option(help="Infer from this CSV/JSON-lines file instead (nothing is written)."),
    ] = None,
    id_field: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Each raw field's kind, whether the spec named it or it was inferred, and why."""
    if sample is not None:  # settings only: opening the catalogue would create its files
        settings = load_settings(config, data_dir=data_dir).loop(loop)
        rows = _sample_plans(settings, sample, _id_field(settings, id_field))
        title = f"features of loop {loop} as {sample.name} would be read"
    else:
        settings, catalogue = _open(config, data_dir, loop)
        rows = catalogue.explain()
        count = len(catalogue)
        catalogue.store.close()
        title = f"features of loop {loop} ({count} items in the catalogue)"
    table = Table(title=title)
    for column in ("field", "kind", "source", "reason", "fitted"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(row.get(c, "") for c in ("field", "kind", "source", "reason", "fitted")))
    console.print(table)
    if not rows:
        console.print("no fields yet: import items (recloop items import FILE) or pass --sample")


def _sample_plans(settings: LoopSettings, path: Path, key: str) -> list[dict[str, str]]:
    items: list[Mapping[str, Any]] = []
    for _, item_id, fields in read_items(path, key):
        if item_id is not None:
            items.append(fields)
        if len(items) >= 1000:
            break
    plans = plan_fields(settings.features.fields, items, {})
    return [{**p.to_dict(), "fitted": "(sample: nothing fitted)"} for p in plans.values()]
