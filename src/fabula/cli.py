"""The command line: fabula write | plan | packs | report | doctor.

Every expected failure is a FabulaError, printed as one line
(``fabula: error: ...``) with exit code 2. Ctrl-C keeps every finished story
and exits 130.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

import click

from fabula.api import DEFAULT_BAN_COMMON
from fabula.errors import FabulaError, FabulaWarning, UsageError
from fabula.reporting.metrics import TEXT_SAMPLE
from fabula.version import __version__

EPILOG_WRITE = """\b
Examples:
  fabula write -n 3 --out corpus                 # 3 spy stories, embedded model
  fabula write -n 50 --out corpus                # the same folder again: extends it to 50
  fabula write -n 10 --pack bedtime --out bedtime  # built-in packs: spy, bedtime, noir, outpost (fabula packs)
  fabula write -n 5 --pack my_pack.toml --words 300 --out westerns
  fabula write -n 20 --backend gguf:/models/qwen.gguf --out corpus2
  fabula write -n 100 --backend openai --base-url http://127.0.0.1:8000/v1 \\
      --model qwen2.5-7b-instruct --concurrency 16 --out served
  fabula write -n 1000 --executor ray --ray-address auto --workers 8 --out big
\b
Re-running a command on the same --out continues where it stopped; stories
already written are never touched.
"""


def _fail(e: Exception, code: int = 2) -> None:
    click.echo(f"fabula: error: {e}", err=True)
    sys.exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, FabulaWarning):
        click.echo(f"fabula: warning: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


class _Group(click.Group):
    def invoke(self, ctx):
        # A crash in native code (llama.cpp) prints a Python traceback instead
        # of a bare "Segmentation fault"; costs nothing until it fires.
        faulthandler.enable()
        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except FabulaError as e:
            _fail(e, e.exit_code)
        except BrokenPipeError:  # `fabula plan | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
            sys.exit(141)  # as a process that SIGPIPE ends (128 + 13)
        except OSError as e:  # a path that cannot be made, read or written: the user's to change
            _fail(UsageError(_os_error(e)))


def _os_error(e: OSError) -> str:
    """One line for a path the system refused: which path, why, what to do."""
    from fabula.store import TMP_SUFFIX

    name = str(e.filename).removesuffix(TMP_SUFFIX) if e.filename else ""
    why = e.strerror or str(e)
    if not name:  # pyarrow and others put the path in the message
        return f"{why}; check the path: a folder that exists and that you may write to"
    return f"{name}: {why.lower()}; choose a path in a folder that exists and that you may write to"


@click.group(cls=_Group, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fabula")
@click.pass_context
def main(ctx: click.Context) -> None:
    """fabula writes corpora of short fiction with language models, and keeps
    them diverse: every story is planned as a card, the planner steers the
    corpus away from repeats, and `fabula report` measures the result.

    Start with `fabula write -n 3 --out corpus`, then `fabula report corpus`.
    """
    if ctx.invoked_subcommand is None:  # `fabula` alone: the help, and success
        click.echo(ctx.get_help())


def _read_avoid(avoid_path: str | None) -> tuple[str, ...]:
    """The phrases of an --avoid file: one per line, # comments."""
    if not avoid_path:
        return ()
    p = Path(avoid_path)
    if not p.is_file():
        raise UsageError(f"--avoid {p}: no such file; give a text file with one phrase per line")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"--avoid {p}: not UTF-8 text; save it as UTF-8 with one phrase per line") from None
    return tuple(ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))


@main.command(epilog=EPILOG_WRITE)
@click.option("-n", "count", type=click.IntRange(min=1), default=3, show_default=True, help="Stories the corpus should hold.")
@click.option("--out", "out", type=click.Path(file_okay=False), default="corpus", show_default=True, help="Corpus folder (created, or continued).")
@click.option("--seed", type=int, default=1, show_default=True, help="Plans and sampling derive from it; same seed, same corpus.")
@click.option(
    "--pack", default="spy", show_default=True, help="Built-in pack (spy, bedtime, noir, outpost; `fabula packs` lists them) or path to a pack .toml."
)
@click.option(
    "--backend",
    default="embedded",
    show_default=True,
    help="embedded | gguf:PATH | openai (with --base-url and --model) | fake | an installed plug-in's name (`fabula backends` lists them).",
)
@click.option(
    "--words",
    type=click.IntRange(min=40),
    default=None,
    help="Target length in words [default: the pack's, 450 for spy]; a pack's openers need room (spy: about 230 or more).",
)
@click.option("--temperature", type=click.FloatRange(0, 2), default=None, help="Sampling temperature [default: the pack's].")
@click.option("--top-p", type=click.FloatRange(0.01, 1), default=None, help="Nucleus sampling mass [default: the pack's].")
@click.option("--repeat-penalty", type=click.FloatRange(1, 2), default=None, help="Penalty on recently used tokens [default: the pack's].")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None, help="Drafts per card before it is rejected [default: the pack's].")
@click.option("--avoid", "avoid_path", type=click.Path(dir_okay=False), default=None, help="Extra phrases to keep out, one per line.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for the embedded model [default: all cores].")
@click.option(
    "--batch",
    type=click.IntRange(1, 64),
    default=None,
    help="Sequences decoded together by the embedded model, --best-of K per story [default: min(32, N x K); see docs/writing.md].",
)
@click.option(
    "--mode",
    type=click.Choice(["steer", "beats", "instruct"]),
    default=None,
    help="steer: each paragraph opens with a few words carrying the card's people and places, the model "
    "writes the rest; beats: the model continues the pack's whole beat sentence; instruct: one chat "
    "request per story [default: instruct for openai, else the pack's (spy: steer)].",
)
@click.option(
    "--best-of",
    "best_of",
    type=click.IntRange(1, 16),
    default=None,
    help="Candidates sampled per paragraph (per story in instruct mode); the scorer keeps the best "
    "(docs/writing.md) [default: 4 with the embedded and gguf backends, 1 with openai or in instruct mode].",
)
@click.option(
    "--ban-common",
    "ban_common",
    type=click.FloatRange(0, 1),
    default=DEFAULT_BAN_COMMON,
    show_default=True,
    help="Embedded and gguf backends: keep out of what the model samples every word 4-gram already in this "
    "share of the N stories (at least 2 stories), except the card's own phrases; 0 turns it off.",
)
@click.option(
    "--adapter",
    type=click.Path(dir_okay=False),
    default=None,
    help="Embedded and gguf backends: a LoRA adapter (the adapter.gguf `fabula tune` wrote) applied to the model; the card leads every prompt, as in training.",
)
@click.option(
    "--exemplar/--no-exemplar",
    default=False,
    show_default=True,
    help="steer and beats modes: put one of the pack's exemplar stories before each story (a base model writes like the text before it).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: run the embedded or gguf model on Ray workers (each loads it once, with --threads and "
    "--batch); this process keeps the plan, the checks and the folder. Needs pip install 'fabula[ray]'.",
)
@click.option(
    "--ray-address",
    default=None,
    help="--executor ray: the cluster to join (auto: the one `ray start` made on this node; or HOST:PORT) [default: start a local Ray on this machine].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="--executor ray: workers (actors), each with --threads CPUs [default: 2; threads: the cluster's CPUs / workers].",
)
@click.option(
    "--base-url",
    "base_urls",
    multiple=True,
    help="openai backend: the API root, e.g. http://127.0.0.1:8000/v1; give it several times for several "
    "servers (each request goes to the one with the fewest in flight).",
)
@click.option(
    "--base-urls",
    "base_urls_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="openai backend: a file of API roots, one a line (# comments), added to --base-url.",
)
@click.option("--model", "model_name", default=None, help="openai backend: the model id the server serves.")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True, help="openai backend: environment variable holding the API key.")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=8, show_default=True, help="openai backend: requests in flight.")
@click.option("--timeout", type=click.FloatRange(min=1), default=120, show_default=True, help="openai backend: seconds per request.")
@click.option("--max-retries", type=click.IntRange(min=0), default=6, show_default=True, help="openai backend: retries per request.")
@click.option(
    "--mixed",
    is_flag=True,
    help="Continue a corpus although its pack file, backend, model or --words changed (each story's record keeps its own); without it such a run is refused.",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Start --out over: delete the stories and records a previous run wrote there (files fabula did not write stay), e.g. to see a pack edit.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def write(
    count,
    out,
    seed,
    pack,
    backend,
    words,
    temperature,
    top_p,
    repeat_penalty,
    max_attempts,
    avoid_path,
    threads,
    batch,
    mode,
    best_of,
    ban_common,
    adapter,
    exemplar,
    executor,
    ray_address,
    workers,
    base_urls,
    base_urls_file,
    model_name,
    api_key_env,
    concurrency,
    timeout,
    max_retries,
    mixed,
    fresh,
    quiet,
):
    """Write stories into a corpus folder until it holds N."""
    from fabula.api import Corpus, EmbeddedModel, RayCluster, Server, as_backend

    if executor == "ray":
        executor = RayCluster(address=ray_address, workers=workers or 2)
    elif ray_address or workers:
        raise UsageError("--ray-address and --workers are for --executor ray")

    urls = list(base_urls)
    if base_urls_file:
        p = Path(base_urls_file)
        if not p.is_file():
            raise UsageError(f"--base-urls {p}: no such file; give a text file with one API root per line")
        urls += [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if backend == "openai":
        be = Server(
            base_url=urls[0] if len(urls) == 1 else tuple(urls),
            model=model_name or "",
            api_key_env=api_key_env,
            concurrency=concurrency,
            timeout=timeout,
            max_retries=max_retries,
        )
    else:
        if urls or model_name:
            raise UsageError("--base-url and --model are for --backend openai; embedded models are chosen with --backend gguf:PATH")
        be = as_backend(backend)
        if isinstance(be, EmbeddedModel):
            be = EmbeddedModel(path=be.path, threads=threads, batch=batch, adapter=adapter)
        elif batch or adapter:
            raise UsageError(f"--{'batch' if batch else 'adapter'} applies to the embedded and gguf backends, not {backend}")
    corpus = Corpus(out)
    try:
        summary = corpus.write(
            count,
            pack=pack,
            backend=be,
            seed=seed,
            words=words,
            mode=mode,
            best_of=best_of,
            temperature=temperature,
            top_p=top_p,
            repeat_penalty=repeat_penalty,
            max_attempts=max_attempts,
            avoid=_read_avoid(avoid_path),
            ban_common=ban_common,
            exemplar=exemplar,
            executor=executor,
            progress=not quiet,
            warn=lambda m: click.echo(f"fabula: warning: {m}", err=True),
            mixed=mixed,
            fresh=fresh,
        )
    except KeyboardInterrupt:
        click.echo(f"fabula: interrupted; {len(corpus)} stories kept in {out}; run the same command to continue", err=True)
        sys.exit(130)
    for line in summary.lines():
        click.echo(line)
    click.echo(f"corpus: {Path(out) / 'stories'}")


@main.command()
@click.option("-n", "count", type=click.IntRange(min=1), default=3, show_default=True, help="Cards to plan.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--pack", default="spy", show_default=True, help="Built-in pack (spy, bedtime, noir, outpost; `fabula packs` lists them) or path to a pack .toml."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON card per line instead of text.")
def plan(count, seed, pack, as_json):
    """Print the cards a run would write, without writing.

    \b
    Example:
      fabula plan -n 2 --seed 7
    """
    from fabula.packs import load_pack
    from fabula.plan import Planner

    p = load_pack(pack)
    planner = Planner(p, seed, count)
    for problem in planner.feasibility():
        click.echo(f"fabula: warning: {problem}", err=True)
    for _ in range(count):
        card = planner.next()
        if as_json:
            click.echo(json.dumps(card.to_dict(), ensure_ascii=False))
            continue
        from fabula.write import person

        click.echo(f"#{card.id}  {card.title}")
        for role, ch in card.cast.items():
            click.echo(f"  {role}: {person(ch)}")
        click.echo("  " + "; ".join(f"{k}: {v}" for k, v in card.slots.items() if len(v) <= 40))
        steer = p.generation.mode == "steer"
        for i, beat in enumerate(card.beats, 1):
            click.echo(f"  {i}. {beat}")
            if steer and i <= len(card.openers):  # what the writer sends in the pack's mode
                click.echo(f"     opens: {card.openers[i - 1]} ...")
        click.echo()


@main.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default="adapter",
    show_default=True,
    help="Folder for adapter.gguf, adapter.json and the checkpoint; a stopped run there is resumed.",
)
@click.option("--base", default="embedded", show_default=True, help="The model to tune: embedded (Gemma 3 270M) or gguf:PATH of a model transformers can load.")
@click.option("--epochs", type=click.FloatRange(min=0.01), default=2.0, show_default=True, help="Passes over the training stories.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Stop after this many optimizer steps [default: the epochs' worth].")
@click.option("--rank", type=click.IntRange(1, 256), default=16, show_default=True, help="LoRA rank.")
@click.option(
    "--alpha", type=click.FloatRange(min=0, min_open=True), default=32.0, show_default=True, help="LoRA alpha (the update is scaled by alpha / rank)."
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-4, show_default=True, help="Peak learning rate.")
@click.option("--accumulate", type=click.IntRange(min=1), default=2, show_default=True, help="Stories per optimizer step.")
@click.option("--max-tokens", type=click.IntRange(min=64), default=1024, show_default=True, help="Card and story cut to this many tokens.")
@click.option(
    "--held-out",
    type=click.FloatRange(0, 0.5),
    default=0.1,
    show_default=True,
    help="Share of the stories kept out of training; their loss is printed each epoch.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Fixes the split, the order and the dropout.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads [default: all cores].")
@click.option("-q", "--quiet", is_flag=True, help="No line per step.")
def tune(sources, out, base, epochs, steps, rank, alpha, lr, accumulate, max_tokens, held_out, seed, threads, quiet):
    """Train a LoRA adapter for the embedded model on stories written for cards.

    Each SOURCE is a corpus folder (`fabula write --out`, e.g. one a larger
    model wrote through a server) or a folder of cards.jsonl and
    stories/<id>.txt (as data/tune/spy in fabula's repository). Runs on the CPU; needs
    pip install 'fabula[tune]'. Write with the result: fabula write --adapter OUT/adapter.gguf

    \b
    Example:
      fabula tune data/tune/spy data/tune/spy-2 --out adapters/spy
    """
    from fabula.tune import Progress, TuneSettings
    from fabula.tune import tune as run_tune

    if base == "embedded":
        base_path = None
    elif base.startswith("gguf:"):
        base_path = base[len("gguf:") :]
    else:
        raise UsageError(f"--base {base}: use embedded or gguf:PATH")
    settings = TuneSettings(rank=rank, alpha=alpha, lr=lr, epochs=epochs, accumulate=accumulate, max_tokens=max_tokens, held_out=held_out, seed=seed)

    def show(p: Progress) -> None:
        if quiet:
            return
        held = f"  held-out {p.held_out:.3f}" if p.held_out is not None else ""
        rate = p.tokens / p.seconds if p.seconds else 0.0
        click.echo(f"step {p.step}/{p.steps}  loss {p.loss:.3f}{held}  {rate:.0f} tokens/s", err=True)

    try:
        card = run_tune(list(sources), out, base=base_path, settings=settings, steps=steps, on_step=show, threads=threads)
    except KeyboardInterrupt:
        click.echo(f"fabula: interrupted; run the same command to resume from the last checkpoint in {out}", err=True)
        sys.exit(130)
    held = card["held_out_loss"]
    click.echo(
        f"tuned on {card['train_stories']} stories ({card['held_out_stories']} held out), {card['steps']} steps: "
        f"loss {card['first_loss']:.3f} -> {card['last_loss']:.3f}, held-out {held[0]:.3f} -> {held[-1]:.3f}"
    )
    click.echo(f"adapter: {Path(out) / card['adapter']}  (fabula write --adapter {Path(out) / card['adapter']})")


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--to", "to", required=True, type=click.Path(path_type=Path), help="Output file (parquet, jsonl) or folder (hf); must not exist.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl", "hf"]), default=None, help="[default: from the --to suffix: .parquet, .jsonl, else hf]")
def export(folders, to, fmt):
    """Export a corpus as a dataset: one row per committed story.

    Columns: id, index, text, title, hero_* and other_* (name, first, last,
    gender, nationality, service), every slot of the pack, beats (list), card
    (JSON), pack, model, backend, seed, attempt, words, tokens. `hf` writes a
    `datasets` folder (load it with datasets.load_from_disk) with a dataset
    card whose figures come from `fabula report`. Needs the export extra:
    pip install 'fabula[export]'.

    Several folders (shards, each written by its own driver with its own
    --seed) are joined into one file, with a `shard` column: a story that is
    a near-duplicate of one in a shard named before it is left out, by the
    same MinHash rule the writer keeps within a shard.

    \b
    Examples:
      fabula export corpus --to corpus.parquet
      fabula export corpus --to corpus.jsonl
      fabula export corpus --to corpus_hf --format hf
      fabula export shard1 shard2 shard3 --to corpus.parquet
    """
    from fabula.api import Corpus
    from fabula.store import MANIFEST

    for folder in folders:
        if not (folder / MANIFEST).is_file():
            raise UsageError(f"{folder} is not a fabula corpus (no {MANIFEST}); give the folder `fabula write --out` wrote")
    _check_target(to, "--to")
    if fmt is None and to.suffix and to.suffix not in (".parquet", ".jsonl"):
        raise UsageError(
            f"--to {to}: export writes a .parquet or .jsonl file, or a folder for Hugging Face datasets; name it .parquet or .jsonl, or give --format"
        )
    fmt = fmt or {".parquet": "parquet", ".jsonl": "jsonl"}.get(to.suffix, "hf")
    if len(folders) == 1:
        n = Corpus(folders[0]).export(to, fmt)
        click.echo(f"exported {n} stories to {to} ({fmt})")
        return
    from fabula import export as export_mod
    from fabula import join

    if fmt == "hf":
        raise UsageError(f"--format hf takes one folder ({len(folders)} given); join the shards to a .parquet file, then load it with datasets")
    if to.exists():
        raise UsageError(f"{to} exists; choose a new --to (fabula export never overwrites)")
    shards = join.cross_duplicates(list(folders), progress=lambda line: click.echo(line, err=True))
    n = export_mod.write(join.rows(shards), to, fmt, f"{', '.join(map(str, folders))} hold")
    left = sum(len(s.like) for s in shards)
    click.echo(f"exported {n} stories of {len(folders)} shards to {to} ({fmt}); left out {left} near-duplicates of stories in shards before theirs")
    for shard in shards:
        for rid, like in list(shard.like.items())[:3]:
            click.echo(f"  {shard.name}/{rid} is like {like}")


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the dataset repository private.")
@click.option("--dry-run", is_flag=True, help="Check everything and print what would be uploaded; send nothing.")
def publish(folder, repo_id, private, dry_run):
    """Publish a dataset folder (export --format hf) on the Hugging Face Hub, with its card.

    Creates the dataset repository REPO_ID (your-name/dataset-name) if it
    does not exist, uploads the dataset card (README.md), then the rows.
    Log in first with `hf auth login`, or set HF_TOKEN. Needs the export
    extra: pip install 'fabula[export]'.

    \b
    Examples:
      fabula export corpus --to corpus_hf --format hf
      fabula publish corpus_hf your-name/spy-stories --dry-run
      fabula publish corpus_hf your-name/spy-stories
    """
    from fabula import publish as hub

    upload = hub.check(folder, repo_id, private)
    if not dry_run:  # refused before anything is printed as done
        if upload.filler:
            raise UsageError(hub.FILLER)
        token = hub.saved_token()
    click.echo("dry run: would publish" if dry_run else "publishing")
    for line in upload.lines():
        click.echo("  " + line)
    if dry_run:
        problems = ([hub.FILLER] if upload.filler else []) + ([] if hub.logged_in() else [hub.NO_LOGIN])
        for problem in problems:
            click.echo(f"fabula: warning: a real publish would be refused: {problem}", err=True)
        click.echo("dry run: nothing was sent" + ("" if problems else "; everything is ready"))
        return
    click.echo(f"published: {hub.publish(upload, token)}")


def _check_target(path: Path, option: str) -> None:
    """An output path the command can write: its folder exists and takes files."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: the folder {parent} does not exist; create it or choose another path")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{option} {path}: the folder {parent} cannot be written to; choose another path")


def _is_report(path: Path) -> bool:
    """A file an earlier `fabula report` wrote (so a rerun may replace it):
    JSON, a list of per-folder metrics; HTML, the report's generator tag."""
    try:
        if path.stat().st_size > 64 << 20:  # bytes; a report of many folders is a few MB at most
            return False
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if '<meta name="generator" content="fabula report">' in text[:2000]:
        return True
    try:
        data = json.loads(text)
    except ValueError:
        return False
    return isinstance(data, list) and all(isinstance(r, dict) and "folder" in r and "stories" in r for r in data)


def _warn_if_not_whole(folder: Path) -> None:
    """A fabula corpus whose records and files disagree: say so (the report
    counts the stories a reader sees: recorded, present, once)."""
    from fabula import verify as fsck
    from fabula.store import MANIFEST

    if not (folder / MANIFEST).exists():
        return
    # Temporary and stray files are normal while a writer commits; these are not.
    faults = [x for x in fsck.verify(folder, hashes=False).faults if x.kind in ("missing", "duplicate")]
    if faults:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(Counter(x.kind for x in faults).items()))
        click.echo(
            f"fabula: warning: {folder}: the records and the story files disagree ({kinds}); counting only "
            f"the stories whose file is there, once; run `fabula verify {folder}`",
            err=True,
        )


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--repair",
    is_flag=True,
    help="Move damaged and unrecorded stories to FOLDER/quarantine/ and drop their records, so that the next write rewrites those cards (nothing is deleted).",
)
def verify(folder, repair):
    """Check that a corpus folder is whole (fsck for a corpus).

    Every record has its story file, once; every file's text matches the
    hash in its name and record; the records agree with the plan and
    fabula.json; no torn line, stray or temporary file. Prints one line per
    fault and exits 1 if there is any; reading never blocks a writer.

    \b
    Examples:
      fabula verify corpus
      fabula verify corpus --repair && fabula write -n 100 --out corpus
    """
    from fabula import verify as fsck
    from fabula.store import lock_folder, unlock_folder

    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder; give the folder `fabula write --out` wrote")
    check = fsck.verify(folder)
    for fault in check.faults:
        click.echo(str(fault))
    click.echo(
        f"{folder}: {check.stories} whole stories, {check.records} records, {check.files} story files, "
        f"{len(check.faults)} fault{'s' * (len(check.faults) != 1)}"
    )
    if check.writer is not None:
        click.echo(f"(process {check.writer} is writing this folder: {len(check.in_flight)} file(s) it is committing are not counted)")
    if not check.faults:
        return
    if not repair:
        click.echo(f"run `fabula verify {folder} --repair` to quarantine what is damaged; the next write rewrites it", err=True)
        sys.exit(1)
    lock_folder(folder)  # a writer must not be adding records while they are rewritten
    try:
        for line in fsck.repair(folder, fsck.verify(folder)):
            click.echo(f"repair: {line}")
        after = fsck.verify(folder)
    finally:
        unlock_folder(folder)
    for fault in after.faults:
        click.echo(str(fault))
    click.echo(f"{folder}: {after.stories} whole stories after repair; `fabula write` with the same -n rewrites the rest")
    if after.faults:
        sys.exit(1)


@main.command()
@click.option("--backend", default="embedded", show_default=True, help="embedded | gguf:PATH")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads [default: all cores].")
def doctor(backend, threads):
    """Check that llama.cpp runs the local model on this CPU.

    Prints the CPU, what the installed llama.cpp was compiled with, whether
    fabula lets it repack weights (off where Intel AMX is compiled in, or with
    FABULA_SAFE_CPU=1), and decodes once in a child process: a crash there is
    reported as one line with the fix, and never takes this process down.

    \b
    Examples:
      fabula doctor
      FABULA_SAFE_CPU=1 fabula doctor --backend gguf:/models/other.gguf
    """
    from fabula.backends import llama_cpu
    from fabula.backends.embedded import default_model_path

    if backend == "embedded":
        path = default_model_path()
    elif backend.startswith("gguf:"):
        path = backend[len("gguf:") :]
        if not os.path.isfile(path):
            raise UsageError(f"--backend {backend}: no such file; give the path of a .gguf model file")
    else:
        raise UsageError(f"--backend {backend}: doctor checks local models; use embedded or gguf:PATH")
    click.echo(f"cpu:        {llama_cpu.cpu_model()} (AMX: {'yes' if llama_cpu.cpu_has_amx() else 'no'})")
    click.echo(f"llama.cpp:  {llama_cpu.system_info().strip()}")
    click.echo(f"AMX built:  {'yes: fabula keeps weights out of it' if llama_cpu.library_has_amx() else 'no'}")
    extra = llama_cpu.preflight(path, threads or os.cpu_count() or 1, fresh=True)
    click.echo(f"repacking:  {'on' if extra else 'off'}" + (f" ({llama_cpu.SAFE_ENV}=1)" if llama_cpu.safe_cpu_requested() else ""))
    click.echo(f"decode:     ok ({os.path.basename(path)})")


@main.command()
def backends():
    """List the backends --backend accepts: built-in, and plug-ins installed
    by other packages (the fabula.backends entry point group; docs/extending.md).

    \b
    Example:
      fabula backends
    """
    from importlib.metadata import entry_points

    from fabula.backends import BUILTIN, ENTRY_POINTS

    about = {
        "embedded": "the embedded Gemma 3 270M, on this CPU (llama.cpp)",
        "gguf": "gguf:PATH, any GGUF model file (llama.cpp)",
        "openai": "an OpenAI-compatible server (--base-url, --model)",
        "fake": "filler text, no model: try the pipeline",
    }
    for name in BUILTIN:
        click.echo(f"{name:<12}{about.get(name, '')}")
    for ep in sorted(entry_points(group=ENTRY_POINTS), key=lambda e: e.name):
        if ep.name not in BUILTIN:
            dist = f" (package {ep.dist.name})" if getattr(ep, "dist", None) else ""
            click.echo(f"{ep.name:<12}plug-in {ep.value}{dist}")


@main.group(invoke_without_command=True)
@click.option("--show", "show", default=None, metavar="NAME|PATH", help="Validate one pack and print its pools and placeholders.")
@click.option(
    "--check",
    "check",
    default=None,
    metavar="NAME|PATH",
    help="--show, plus how many distinct cards and wordings the pack can make and which caps cannot hold for --n stories.",
)
@click.option("--n", "n", type=click.IntRange(min=1), default=1000, show_default=True, help="--check: the corpus size the caps must hold for.")
@click.pass_context
def packs(ctx, show, check, n):
    """List the built-in premise packs, validate and describe one, or start a new one.

    \b
    Examples:
      fabula packs
      fabula packs --show spy
      fabula packs --show ./my_pack.toml     # exit 2 and one line if it is broken
      fabula packs new harbour               # writes harbour.toml, a commented starter pack
      fabula packs --check harbour.toml --n 500
    """
    from fabula.packs import builtin_names, load_pack

    if ctx.invoked_subcommand is not None:
        return
    if show is None and check is None:
        for name in builtin_names():
            p = load_pack(name)
            click.echo(f"{name:<10} {p.title} ({p.words} words, {len(p.beats)} beats) - {p.description}")
        click.echo(
            "\nUse --pack NAME or --pack PATH.toml with write and plan; `fabula packs --show NAME` describes one; `fabula packs new NAME` starts your own."
        )
        return
    p = load_pack(check or show)
    _describe(p)
    if check:
        _check(p, n)


def _describe(p) -> None:
    from fabula.packs import CHARACTER_FIELDS

    click.echo(f"{p.name}: {p.title} ({p.source}, digest {p.digest})")
    click.echo(f"  words {p.words} ({p.min_words}-{p.max_words}), mode {p.generation.mode}")
    for r in p.roles:
        source = (
            f"{len(p.nationalities_for(r))} nationalities"
            if r.nationalities
            else f"Faker {r.locale}"
            if r.locale
            else f"{sum(p.grammar.count(x) for v in r.first_names.values() for x in v)} first names in the pack"
        )  # grammar expansions
        click.echo(f"  role {r.name}: {'/'.join(r.genders)}, names from {source}" + (f", traits {', '.join(r.traits)}" if r.traits else ""))
    g = p.grammar
    for slot, values in p.slots.items():
        # Caps count values; the grammar inside a value varies its words per card.
        wordings = sum(g.count(v) for v in values)
        more = f" ({wordings} wordings)" if wordings > len(values) else ""
        click.echo(f"  slot {slot}: {len(values)} values{more}, cap {p.cap(slot):g}")
    for beat in p.beats:
        # Distinct expansions: each form times the [a|b] and #rule# choices inside it.
        line = f"  beat {beat.name}: {len(beat.variants)} variants, {sum(g.count(v) for v in beat.variants)} expansions"
        if beat.openers:
            line += f"; {len(beat.openers)} openers, {sum(g.count(v) for v in beat.openers)} expansions"
        click.echo(line)
    if g.rules:
        click.echo(f"  grammar: {len(g.rules)} rules ({', '.join(g.rules)})")
    click.echo(f"  avoid: {len(p.avoid_phrases)} phrases, {len(p.avoid_names)} names")
    r0 = p.roles[0]
    click.echo(
        "  placeholders: "
        + ", ".join([f"{r0.name}.{f}" for f in sorted(CHARACTER_FIELDS | set(r0.traits))] + [f"{r.name}.*" for r in p.roles[1:]] + list(p.slots))
    )


def _check(p, n: int) -> None:
    """Counts a pack author needs: distinct cards (its motifs, before names and
    wording), wordings of a story's paragraphs, and the caps that cannot hold."""
    import math

    from fabula.plan import Planner

    g = p.grammar
    cast = math.prod(max(1, len(p.nationalities_for(r))) * len(r.genders) for r in p.roles)
    cards = cast * math.prod(len(v) for v in p.slots.values())
    wordings = math.prod(sum(g.count(v) for v in (b.openers if p.generation.mode == "steer" and b.openers else b.variants)) for b in p.beats)
    click.echo(f"  distinct cards: {_big(cards)} (nationalities, genders and slot values; names come on top)")
    click.echo(f"  wordings of one card's paragraphs ({p.generation.mode} mode): {_big(wordings)}")
    problems = Planner(p, 1, n).feasibility()
    if not problems:
        click.echo(f"  caps at {n} stories: every cap holds")
    for line in problems:
        click.echo(f"  caps at {n} stories: {line}")


def _big(x: int) -> str:
    return f"{x:,}" if x < 10**9 else f"about 10^{len(str(x)) - 1}"


@packs.command("new")
@click.argument("name")
@click.option("--dir", "folder", type=click.Path(file_okay=False), default=".", show_default=True, help="Where to write NAME.toml.")
def packs_new(name, folder):
    """Write NAME.toml: a commented starter pack that validates, to edit into your own.

    \b
    Example:
      fabula packs new harbour && fabula packs --check harbour.toml
    """
    import re as _re
    from importlib import resources

    from fabula.packs import load_pack

    if not _re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", name):
        raise UsageError(f"pack name {name!r}: use lower-case letters, digits, - and _ (starting with a letter), e.g. harbour")
    path = Path(folder) / f"{name}.toml"
    if path.exists():
        raise UsageError(f"{path} already exists; choose another NAME or --dir, or move the file aside")
    text = resources.files("fabula.packs").joinpath("starter.txt").read_text(encoding="utf-8").replace("__NAME__", name)
    Path(folder).mkdir(parents=True, exist_ok=True)
    from fabula.store import write_atomic

    write_atomic(path, text)
    load_pack(str(path))  # what it writes validates (tests/test_cli.py checks it too)
    out = path.with_suffix("")
    click.echo(
        f"wrote {path}: edit it, then `fabula packs --check {path}` and "
        f"`fabula write -n 2 --backend fake --pack {path} --out {out}-try --fresh` (--fresh: each run starts the folder over, so an edit shows)"
    )


REPORT_ROWS = [
    ("stories", "stories"),
    ("words_mean", "words, mean"),
    ("words_min", "words, min"),
    ("words_max", "words, max"),
    ("compression_ratio", "compression ratio (gzip; lower = more diverse)"),
    ("self_repetition_4", "self-repetition, 4-grams (lower = better)"),
    ("distinct_1", "distinct-1"),
    ("distinct_2", "distinct-2"),
    ("distinct_3", "distinct-3"),
    ("distinct_4", "distinct-4"),
    ("self_bleu_4", "self-BLEU-4 (lower = better)"),
    ("seq_rep_4", "within-story repeated 4-grams"),
    ("near_duplicate_pairs", "near-duplicate pairs (Jaccard >= 0.5)"),
    ("mean_cosine", "mean pairwise cosine"),
    ("vendi_per_n", "Vendi score / N"),
    ("top_name", "most common name (share of stories)"),
    ("stock_phrases_per_1k_words", "stock phrases per 1,000 words"),
    ("stock_phrase_story_share", "stories with a stock phrase"),
]


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write every metric per folder to this JSON file.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, help="Write a self-contained HTML report here.")
@click.option("--first-words", type=click.IntRange(min=1), default=None, help="Measure only the first N words of each story (human references use 250).")
@click.option("--no-semantic", is_flag=True, help="Skip the embedding metrics even when the semantic extra is installed.")
@click.option(
    "--reference",
    "reference",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="A folder of human-written stories to measure against: the first column, grey and dashed in the plots.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=TEXT_SAMPLE,
    show_default=True,
    help="Measure a folder of more stories on a seeded sample of this many (the same sample every run); 0: every story.",
)
def report(folders, json_path, html_path, first_words, no_semantic, reference, sample):
    """Measure the diversity of one or more folders of .txt stories, side by side.

    Works on any folder of .txt files (a fabula corpus, the reference seeds,
    anyone's stories). Cards are used for recurrence when the folder is a
    fabula corpus.

    \b
    Examples:
      fabula report corpus
      fabula report corpus other_stories/ --html report.html --json report.json
      fabula report corpus --reference human_stories/ --first-words 250 --html report.html
    """
    from fabula.reporting import measure_folders
    from fabula.store import write_atomic

    for path, option in ((json_path, "--json"), (html_path, "--html")):
        if path:
            _check_target(Path(path), option)  # before the measuring, not after it
            if Path(path).exists() and not _is_report(Path(path)):
                raise UsageError(f"{option} {path} exists and is not a fabula report; choose a new path (report replaces only a report it wrote)")
    for f in ([reference] if reference else []) + list(folders):
        _warn_if_not_whole(Path(f))
    results = measure_folders(folders, first_words=first_words, semantic=not no_semantic, reference=reference, progress=True, sample=sample)
    folders = [r["folder"] + (" (reference)" if r["reference"] else "") for r in results]
    width = max(len(label) for _, label in REPORT_ROWS) + 2
    col = max(14, *(len(str(f)) + 2 for f in folders))
    click.echo("metric".ljust(width) + "".join(str(f).rjust(col) for f in folders))
    from fabula.reporting.html import _fmt

    for key, label in REPORT_ROWS:
        click.echo(label.ljust(width) + "".join(_fmt(r.get(key)).rjust(col) for r in results))
    for r in results:
        if r["measured_stories"] < r["stories"]:
            click.echo(
                f"({r['folder']}: measured on a seeded sample of {r['measured_stories']:,} of its {r['stories']:,} stories; --sample 0 measures every one)"
            )
    if all(r["mean_cosine"] is None for r in results) and not no_semantic:
        click.echo("(semantic metrics n/a: the embedding model is not installed; run: pip install 'fabula[semantic]')")
    lexical = sum(r["_seconds"]["lexical"] for r in results)
    embedded = sum(r["_seconds"]["semantic"] for r in results)
    if embedded:
        sampled = ", ".join(str(r["semantic_stories"]) for r in results)
        click.echo(
            f"(time: {lexical:.1f} s reading and lexical metrics, {embedded:.1f} s semantic metrics on {sampled} stories embedded; --no-semantic skips them)"
        )
    else:
        click.echo(f"(time: {lexical:.1f} s)")
    if json_path:
        public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
        write_atomic(Path(json_path), json.dumps(public, indent=2, ensure_ascii=False) + "\n")
        click.echo(f"json: {json_path}")
    if html_path:
        from fabula.reporting.html import render

        write_atomic(Path(html_path), render(results, REPORT_ROWS))
        click.echo(f"html: {html_path}")
