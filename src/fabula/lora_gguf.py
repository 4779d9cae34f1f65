"""LoRA adapters as GGUF files, the form llama.cpp loads
(``llama_adapter_lora_init``).

An adapter file holds, for every adapted weight ``blk.N.attn_q.weight`` of the
base model, two tensors ``….lora_a`` (rank × inputs) and ``….lora_b``
(outputs × rank), and the keys ``general.type = adapter``, ``adapter.type =
lora`` and ``adapter.lora.alpha``; llama.cpp scales the product by alpha/rank,
as peft does. fabula adds ``fabula.base.sha256`` (the base model file's
digest, checked before loading) and ``fabula.card_format`` (the prompt layout
the adapter was trained on, see ``fabula.write.card_text``).

Writing needs the ``gguf`` package (the tune extra); reading the keys is a
few lines of ``struct`` so that loading an adapter needs nothing beyond the
core install.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import numpy as np

BASE_KEY = "fabula.base.sha256"
FORMAT_KEY = "fabula.card_format"
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file (a base model: ~0.3 s for 270 MB), cached per process
    by path, size and modification time."""
    st = os.stat(path)
    key = (os.fspath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def adapter_name(path: str | os.PathLike[str]) -> str:
    """How records name an adapter: its file stem and the first 8 hex of its digest."""
    return f"{Path(path).stem}:{file_digest(path)[:8]}"


def hf_to_gguf_names(arch: str, n_layers: int, hf_names: list[str]) -> dict[str, str]:
    """transformers module names (``model.layers.3.self_attn.q_proj``) → the
    GGUF tensor names of the same weights (``blk.3.attn_q``), by the gguf
    package's own table for the architecture."""
    import gguf

    archs = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in archs:
        raise ValueError(f"architecture {arch!r} is not one the gguf package knows")
    table = gguf.get_tensor_name_map(archs[arch], n_layers)
    out = {}
    for name in hf_names:
        mapped = table.get_name(name)
        if mapped is None:
            raise ValueError(f"no GGUF name for the weight {name!r} of a {arch} model")
        out[name] = mapped
    return out


def write_adapter(path: Path, arch: str, alpha: float, tensors: Mapping[str, tuple[np.ndarray, np.ndarray]], meta: Mapping[str, str]) -> None:
    """Write ``tensors`` (GGUF base name → (A: rank × in, B: out × rank), as
    peft holds them) as a GGUF LoRA adapter at ``path``, atomically."""
    import gguf

    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), arch)
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for key, value in meta.items():
        w.add_string(key, value)
    for name, (a, b) in sorted(tensors.items()):
        w.add_tensor(f"{name}.weight.lora_a", np.ascontiguousarray(a, dtype=np.float32))
        w.add_tensor(f"{name}.weight.lora_b", np.ascontiguousarray(b, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)


# -- reading the keys (no dependency) ---------------------------------------------
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_keys(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The key-value metadata of a GGUF file (arrays are skipped: None).
    Raises ValueError when the file is not GGUF."""
    return read_header(path)[1]


def read_header(path: str | os.PathLike[str]) -> tuple[int, dict[str, Any]]:
    """(tensor count, key-value metadata) of a GGUF file."""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError("not a GGUF file")
        (version,) = struct.unpack("<I", f.read(4))
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old")
        n_tensors, n_kv = struct.unpack("<QQ", f.read(16))
        out: dict[str, Any] = {}
        for _ in range(n_kv):
            key = _string(f)
            (kind,) = struct.unpack("<I", f.read(4))
            out[key] = _value(f, kind)
        return n_tensors, out


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", f.read(8))
    return f.read(n).decode("utf-8", "replace")


def _value(f: BinaryIO, kind: int) -> Any:
    if kind == 8:
        return _string(f)
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
    if kind == 9:
        (elem, n) = struct.unpack("<IQ", f.read(12))
        if elem in _SCALARS:
            f.seek(n * struct.calcsize(_SCALARS[elem]), 1)
        else:
            for _ in range(n):
                _value(f, elem)
        return None
    raise ValueError(f"unknown GGUF value type {kind}")
