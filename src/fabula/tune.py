"""``fabula tune``: a LoRA adapter for the embedded model (or any GGUF model
transformers can load), trained on the CPU on stories written for cards.

The data is a folder of cards and their stories: a fabula corpus folder (say,
one written by a larger model through a server) or a folder holding
``cards.jsonl`` and ``stories/<card id>.txt`` (the layout of the repository's
``data/tune/<pack>``). Each example is ``card_text(card)`` + title + story +
end of text; the loss counts the story's tokens only, so the adapter learns to
tell the card, not to write cards. Tokens come from llama.cpp's own tokenizer
of the GGUF file, the ids the engine will decode.

transformers loads the GGUF file (its quantised weights dequantised to fp32),
peft adds the LoRA, a plain loop trains it: a fixed seed fixes the split, the
order of the examples and the dropout, so a run stopped and resumed from its
checkpoint ends with the same adapter as one that never stopped. The adapter
is written as a GGUF LoRA adapter (``fabula.lora_gguf``) beside a JSON card
(base digest, data digest, settings, losses).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from fabula.errors import BackendError, UsageError, need
from fabula.records import Card
from fabula.write import CARD_FORMAT, card_text

ADAPTER_FILE = "adapter.gguf"
CARD_FILE = "adapter.json"
CHECKPOINT_FILE = "checkpoint.pt"
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TuneSettings:
    rank: int = 16
    alpha: float = 32.0
    targets: tuple[str, ...] = TARGETS
    dropout: float = 0.05
    # The defaults are those of the run on data/tune/spy (90 stories trained): the held-out
    # loss went 3.24 (base) -> 2.74 -> 2.63 -> 2.63 over three epochs, so two are enough there.
    lr: float = 3e-4  # peak; linear warm-up over the first 5 % of steps, then linear decay to 10 %
    epochs: float = 2.0
    accumulate: int = 2  # examples per optimizer step (each example is one sequence: no padding)
    max_tokens: int = 1024  # an example is cut to this many tokens
    held_out: float = 0.1  # share of the stories kept out of training; their loss is printed
    seed: int = 0
    save_every: int = 10  # optimizer steps between checkpoints


@dataclass(frozen=True)
class Example:
    key: str  # the story's id (a corpus) or its card id (a data folder)
    prompt: str  # card_text + title + blank line
    story: str


@dataclass
class Progress:
    """What ``tune`` reports after every optimizer step."""

    step: int
    steps: int
    loss: float  # mean story-token loss of this step's examples
    held_out: float | None = None  # set at the end of each epoch and at the end
    seconds: float = 0.0
    tokens: int = 0  # tokens trained on so far in this process


# -- data ----------------------------------------------------------------------
def examples(*sources: str | os.PathLike[str]) -> list[Example]:
    """The (card, story) pairs of corpus folders or cards.jsonl + stories/
    folders; with several, each key is led by its folder's name."""
    if len(sources) == 1:
        return _examples(Path(sources[0]))
    names = [Path(s).resolve() for s in sources]
    if len(set(names)) < len(names):
        raise UsageError("the same data folder is given twice; give each once")
    return [replace(e, key=f"{Path(s).name}/{e.key}") for s in sources for e in _examples(Path(s))]


def _examples(root: Path) -> list[Example]:
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder; give a corpus folder or a folder of cards.jsonl and stories/")
    if (root / "corpus.jsonl").is_file():
        from fabula.api import Corpus

        out = [Example(st.id, prompt(st.card), _story(st.text)) for st in Corpus(root)]
    elif (root / "cards.jsonl").is_file() and (root / "stories").is_dir():
        out = _data_folder(root)
    else:
        raise UsageError(
            f"{root}: holds neither corpus.jsonl (a fabula corpus) nor cards.jsonl with a stories/ folder; "
            "give the folder `fabula write --out` made, or one laid out as data/tune/spy"
        )
    if len(out) < 2:
        raise UsageError(f"{root}: {len(out)} stories with cards; tuning needs at least 2 (one to train on, one held out)")
    return out


def _data_folder(root: Path) -> list[Example]:
    cards: dict[int, Card] = {}
    for n, line in enumerate((root / "cards.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            card = Card.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{root / 'cards.jsonl'} line {n}: not a card ({e}); write cards with `fabula plan --json`") from None
        cards[card.id] = card
    out = []
    for path in sorted((root / "stories").glob("*.txt")):
        if not path.stem.isdigit() or int(path.stem) not in cards:
            raise UsageError(f"{path}: no card with id {path.stem} in cards.jsonl; name each story after its card's id (000.txt)")
        out.append(Example(path.stem, prompt(cards[int(path.stem)]), _story(path.read_text(encoding="utf-8"))))
    return out


def prompt(card: Card) -> str:
    return f"{card_text(card)}{card.title}\n\n"


def _story(text: str) -> str:
    return "\n\n".join(" ".join(p.split()) for p in text.strip().split("\n\n") if p.strip())


def split(items: list[Example], held_out: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held out): a seeded draw of round(held_out × n) stories, at least one."""
    order = sorted(items, key=lambda e: e.key)
    random.Random(f"fabula-tune-split:{seed}").shuffle(order)
    k = min(len(order) - 1, max(1, round(held_out * len(order))))
    return order[k:], order[:k]


def data_digest(items: list[Example]) -> str:
    h = hashlib.sha256()
    for e in sorted(items, key=lambda e: e.key):
        h.update(f"{e.key}\0{e.prompt}\0{e.story}\0".encode())
    return h.hexdigest()


# -- training ------------------------------------------------------------------------
def _need(module: str):
    return need(module, "fabula tune", extra="tune")


@dataclass
class _Run:
    """What the checkpoint must agree with to be resumed."""

    base: str
    data: str
    settings: dict = field(default_factory=dict)
    steps: int = 0  # the schedule's length: a resumed run must decay the learning rate alike


_BASES: dict[str, object] = {}  # base path → the loaded fp32 model, kept per process (a test tunes several times)


def load_base(path: str):
    """The GGUF model as a transformers model (fp32); a copy per call."""
    import copy

    torch = _need("torch")
    transformers = _need("transformers")
    _need("gguf")
    if path not in _BASES:
        p = Path(path)
        _check_architecture(path)
        transformers.logging.set_verbosity_error()
        try:
            # its GGUF conversion draws a progress bar of its own on stderr
            with contextlib.redirect_stderr(io.StringIO()):
                model = transformers.AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32)
        except Exception as e:  # transformers raises many kinds; the user needs one line
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise BackendError(
                f"transformers could not load {path} ({first}); fabula tune needs a GGUF model whose architecture transformers supports"
            ) from None
        _BASES[path] = model
    return copy.deepcopy(_BASES[path])


def _check_architecture(path: str) -> None:
    """Refuse, before transformers reads it, a GGUF file whose architecture
    transformers cannot load from GGUF or that holds no weights (transformers
    would build a default model of that architecture, 7B for llama, and fill
    the memory)."""
    from fabula.lora_gguf import read_header

    try:
        n_tensors, keys = read_header(path)
    except (OSError, ValueError) as e:
        raise BackendError(f"transformers could not load {path} ({e}); give a GGUF model file") from None
    arch = keys.get("general.architecture")
    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES as known
    except ImportError:  # another transformers layout: let from_pretrained decide
        known = [arch]
    if arch not in known or arch in ("general", "tokenizer"):
        raise BackendError(
            f"transformers could not load {path}: it reads no GGUF model of architecture {arch!r}; "
            f"fabula tune needs one of {', '.join(a for a in known if a not in ('general', 'tokenizer'))}"
        )
    if keys.get("general.type", "model") != "model" or n_tensors == 0:
        raise BackendError(f"transformers could not load {path}: it holds no model weights (general.type {keys.get('general.type')!r}); give a GGUF model file")


def tune(
    source: str | os.PathLike[str] | list,
    out: str | os.PathLike[str],
    base: str | None = None,
    settings: TuneSettings = TuneSettings(),
    steps: int | None = None,
    on_step: Callable[[Progress], None] | None = None,
    threads: int | None = None,
) -> dict:
    """Train an adapter on ``source`` (a folder, or a list of them) into the
    folder ``out``; return its card.

    ``out`` holds adapter.gguf, adapter.json and checkpoint.pt; a folder with
    a checkpoint of the same base, data and settings is resumed, one of
    another run is refused. ``steps`` caps the optimizer steps (default: the
    epochs' worth)."""
    from fabula.backends.embedded import default_model_path
    from fabula.backends.llama_cpu import Tokenizer
    from fabula.lora_gguf import BASE_KEY, FORMAT_KEY, file_digest, hf_to_gguf_names, write_adapter

    base_path = base or default_model_path()
    if not os.path.isfile(base_path):
        raise UsageError(f"{base_path}: no such model file; give --base gguf:PATH of a GGUF model")
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    items = examples(*sources)
    train, held = split(items, settings.held_out, settings.seed)
    out_dir = Path(out)
    per_epoch = len(train)
    total = steps or max(1, math.ceil(settings.epochs * per_epoch / settings.accumulate))
    run = _Run(base=file_digest(base_path), data=data_digest(items), settings=asdict(settings), steps=total)
    ckpt_path = out_dir / CHECKPOINT_FILE
    if not ckpt_path.exists() and out_dir.exists() and any(out_dir.iterdir()):
        raise UsageError(f"{out_dir}: exists and is not a tune folder; give a new --out folder")
    torch = _need("torch")  # after the checks above: importing torch, transformers and peft takes seconds
    peft = _need("peft")
    state = None
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        if state["run"] != asdict(run):
            raise UsageError(
                f"{out_dir}: holds a checkpoint of another run (other base model, data, settings or --steps); "
                "give a new --out folder, or delete its checkpoint.pt to start over"
            )

    if threads:
        torch.set_num_threads(threads)
    model = load_base(base_path)
    tok = Tokenizer(base_path)
    try:
        seqs_train = [_tokens(tok, e, settings.max_tokens) for e in train]
        seqs_held = [_tokens(tok, e, settings.max_tokens) for e in held]
    finally:
        tok.close()
    torch.manual_seed(settings.seed)
    arch = _gguf_arch(base_path)
    config = peft.LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=list(settings.targets), bias="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes of transformers' internals, nothing the user can act on
        model = peft.get_peft_model(model, config)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    order = _order(per_epoch, total * settings.accumulate, settings.seed)
    log: list[dict] = []
    step = 0
    if state is not None:
        peft.set_peft_model_state_dict(model, state["adapter"])
        opt.load_state_dict(state["optim"])
        torch.set_rng_state(state["rng"])
        step, log = state["step"], state["log"]
    out_dir.mkdir(parents=True, exist_ok=True)
    if not log:
        log.append({"step": 0, "held_out": round(_held_loss(torch, model, seqs_held), 4)})  # the base model's
    t0, seen = time.monotonic(), 0
    while step < total:
        lr = settings.lr * _schedule(step, total)
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        batch = order[step * settings.accumulate : (step + 1) * settings.accumulate]
        losses = []
        for i in batch:
            ids, n_prompt = seqs_train[i]
            loss = _loss(torch, model, ids, n_prompt)
            (loss / len(batch)).backward()
            losses.append(float(loss.detach()))
            seen += len(ids)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        entry: dict = {"step": step, "loss": round(sum(losses) / len(losses), 4), "lr": lr}
        epoch_end = (step * settings.accumulate) // per_epoch > ((step - 1) * settings.accumulate) // per_epoch
        if epoch_end or step == total:
            entry["held_out"] = round(_held_loss(torch, model, seqs_held), 4)
        log.append(entry)
        if step % settings.save_every == 0 or step == total:
            _save(torch, peft, model, opt, ckpt_path, run, step, log)
        if on_step:
            on_step(Progress(step, total, entry["loss"], entry.get("held_out"), time.monotonic() - t0, seen))

    weights = {k: v.detach().float().numpy() for k, v in _adapter_state(peft, model).items()}
    tensors = _pairs(weights, arch, model.base_model.model.config.num_hidden_layers, hf_to_gguf_names)
    meta = {BASE_KEY: run.base, FORMAT_KEY: CARD_FORMAT}
    write_adapter(out_dir / ADAPTER_FILE, arch, settings.alpha, tensors, meta)
    card = {
        "adapter": ADAPTER_FILE,
        "base_model": os.path.basename(base_path),
        "base_sha256": run.base,
        "card_format": CARD_FORMAT,
        "data": [str(x) for x in sources],
        "data_sha256": run.data,
        "train_stories": len(train),
        "held_out_stories": len(held),
        "held_out_keys": sorted(e.key for e in held),
        "steps": total,
        "settings": asdict(settings),
        "first_loss": log[1]["loss"],
        "last_loss": log[-1]["loss"],
        "held_out_loss": [e["held_out"] for e in log if "held_out" in e],
        "log": log,
    }
    tmp = out_dir / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / CARD_FILE)
    return card


def _tokens(tok, e: Example, cap: int) -> tuple[list[int], int]:
    head = tok(e.prompt, bos=True)
    ids = (head + tok(e.story) + [tok.eos])[:cap]
    if len(head) >= len(ids) - 1:
        raise UsageError(f"story {e.key}: its card alone fills --max-tokens {cap}; raise --max-tokens")
    return ids, len(head)


def _order(per_epoch: int, n: int, seed: int) -> list[int]:
    """The examples in training order: each epoch a new seeded shuffle."""
    out: list[int] = []
    epoch = 0
    while len(out) < n:
        idx = list(range(per_epoch))
        random.Random(f"fabula-tune-order:{seed}:{epoch}").shuffle(idx)
        out += idx
        epoch += 1
    return out[:n]


def _schedule(step: int, total: int) -> float:
    warm = max(1, total // 20)
    if step < warm:
        return (step + 1) / warm
    return 1.0 - 0.9 * (step - warm) / max(1, total - warm)


def _loss(torch, model, ids: list[int], n_prompt: int):
    """Mean cross-entropy of the story's tokens. Logits only for the
    positions that predict them (the card is context, not a target): the
    262k-word output layer is ~45 % of the model's work per token."""
    x = torch.tensor([ids])
    keep = len(ids) - n_prompt + 1
    logits = model(input_ids=x, logits_to_keep=keep).logits[0, :-1].float()
    return torch.nn.functional.cross_entropy(logits, x[0, n_prompt:])


def _held_loss(torch, model, seqs: list[tuple[list[int], int]]) -> float:
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for ids, n_prompt in seqs:
            k = len(ids) - n_prompt
            total += float(_loss(torch, model, ids, n_prompt)) * k
            n += k
    model.train()
    return total / max(1, n)


def _adapter_state(peft, model) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not find a config file": the vocabulary is the base model's, unchanged
        return peft.get_peft_model_state_dict(model)


def _save(torch, peft, model, opt, path: Path, run: _Run, step: int, log: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    state = {"run": asdict(run), "step": step, "log": log, "adapter": _adapter_state(peft, model), "optim": opt.state_dict(), "rng": torch.get_rng_state()}
    torch.save(state, tmp)
    os.replace(tmp, path)


def _pairs(weights: dict, arch: str, n_layers: int, names: Callable) -> dict:
    """peft's ``base_model.model.<module>.lora_A.weight`` / ``lora_B`` → {GGUF base name: (A, B)}."""
    prefix = "base_model.model."
    modules = sorted({k[len(prefix) :].rsplit(".lora_", 1)[0] for k in weights})
    gguf_names = names(arch, n_layers, modules)
    return {gguf_names[m]: (weights[f"{prefix}{m}.lora_A.weight"], weights[f"{prefix}{m}.lora_B.weight"]) for m in modules}


def _gguf_arch(path: str) -> str:
    from fabula.lora_gguf import read_keys

    return str(read_keys(path).get("general.architecture", ""))
