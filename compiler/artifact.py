"""The `.samoyed` file: one zip with `manifest.json` and one `.npy` per array.

The manifest holds the format version, samoyed version, model name, input and output
quantization, accelerator config, compile options (`k_pack`; absent means true), layer
table, the IR's nodes (with array references) and the sha256 of every array. `load` checks all of it and says exactly what is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from hw.config import AcceleratorConfig, ConfigError

from . import ir
from .compiled import CompiledModel
from .errors import (ArtifactError, ArtifactHashError, ArtifactVersionError, IRError,
                     TruncatedArtifactError)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_SKIP = {"name", "inputs", "out", "requant", "oracle"}


def samoyed_version() -> str:
    try:
        from importlib.metadata import version
        return version("samoyed")
    except Exception:  # noqa: BLE001 - not installed: running from a checkout
        return "0.1.0+checkout"


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def _node_record(index: int, node: ir.Node, arrays: dict[str, bytes]) -> dict:
    rec = {"op": node.OP, "name": node.name, "inputs": list(node.inputs),
           "out": node.out.to_dict(), "attrs": {}, "arrays": {}}
    for f in dataclasses.fields(node):
        if f.name in _SKIP:
            continue
        value = getattr(node, f.name)
        if f.name in node.ARRAYS:
            if value is not None:
                key = f"arrays/{index:03d}_{f.name}.npy"
                arrays[key] = _npy(value)
                rec["arrays"][f.name] = key
            else:
                rec["arrays"][f.name] = None
        else:
            rec["attrs"][f.name] = _jsonable(value)
    rq = getattr(node, "requant", None)
    if rq is not None:
        r = {"lo": rq.lo, "hi": rq.hi, "bipolar": rq.bipolar, "exact": rq.exact,
             "method": rq.method, "arrays": {}}
        for name in ir.Requant.ARRAYS:
            key = f"arrays/{index:03d}_requant_{name}.npy"
            arrays[key] = _npy(getattr(rq, name))
            r["arrays"][name] = key
        rec["requant"] = r
    return rec


def save(cm: CompiledModel, path) -> None:
    """Write `cm` to `path` (conventionally `*.samoyed`)."""
    arrays: dict[str, bytes] = {}
    nodes = [_node_record(i, n, arrays) for i, n in enumerate(cm.graph.nodes)]
    inp = cm.graph.input
    out = cm.output_type
    manifest = {
        "format": "samoyed", "format_version": FORMAT_VERSION,
        "samoyed_version": samoyed_version(),
        "model": cm.name, "source": cm.source, "meta": cm.meta,
        "input": {"shape": list(inp.in_shape), "scale": inp.quant_scale, "lo": inp.out.lo,
                  "hi": inp.out.hi, "bipolar": inp.out.bipolar,
                  "pre_ops": _jsonable(tuple(inp.pre_ops))},
        "output": {"shape": list(out.shape), "kind": out.kind.value, "lo": out.lo,
                   "hi": out.hi, "scale": [float(s) for s in out.scale],
                   "offset": [float(o) for o in out.offset]},
        "config": cm.config.to_dict(),
        "options": {"k_pack": cm.k_pack},
        "layers": [dataclasses.asdict(r) for r in cm.layers()],
        "graph": {"name": cm.graph.name, "output": cm.graph.output,
                  "stage": cm.graph.stage.value, "nodes": nodes},
        "arrays": {k: hashlib.sha256(v).hexdigest() for k, v in arrays.items()},
    }
    path = Path(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST, json.dumps(_jsonable(manifest), indent=1))
        for key, data in arrays.items():
            z.writestr(key, data)


def _read(z: zipfile.ZipFile, member: str, path: Path) -> bytes:
    try:
        return z.read(member)
    except KeyError:
        raise ArtifactError(f"{path}: missing {member!r}") from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ArtifactHashError(f"{path}: {member!r} is corrupt ({e})") from None


def _load_array(z, key: str, hashes: dict, path: Path) -> np.ndarray:
    if key not in hashes:
        raise ArtifactError(f"{path}: array {key!r} has no sha256 in the manifest")
    data = _read(z, key, path)
    digest = hashlib.sha256(data).hexdigest()
    if digest != hashes[key]:
        raise ArtifactHashError(f"{path}: sha256 mismatch for array {key!r} "
                                f"(manifest {hashes[key][:12]}…, file {digest[:12]}…): the file "
                                "was altered")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        raise ArtifactError(f"{path}: array {key!r} is not a valid .npy ({e})") from None


def _node_from(rec: dict, z, hashes: dict, path: Path) -> ir.Node:
    cls = ir.NODE_TYPES.get(rec["op"])
    if cls is None or cls in ir.RAW_ONLY:
        raise ArtifactError(f"{path}: unknown op {rec['op']!r} in node {rec['name']!r}")
    kwargs = {k: _tuples(v) for k, v in rec["attrs"].items()}
    for f, key in rec["arrays"].items():
        kwargs[f] = None if key is None else _load_array(z, key, hashes, path)
    if "requant" in rec:
        r = rec["requant"]
        arrs = {n: _load_array(z, k, hashes, path) for n, k in r["arrays"].items()}
        kwargs["requant"] = ir.Requant(arrs["mult"], arrs["offset"], arrs["shift"], r["lo"],
                                       r["hi"], r["bipolar"], r["exact"], r["method"])
    return cls(rec["name"], tuple(rec["inputs"]), ir.TensorType.from_dict(rec["out"]), **kwargs)


def load(path) -> CompiledModel:
    """Read and check a `.samoyed` file; ArtifactError subclasses say what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no such file: {str(path)!r}")
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise TruncatedArtifactError(f"{path}: not a complete .samoyed zip archive ({e}); the "
                                     "file is truncated or not a samoyed artifact") from None
    with z:
        try:
            manifest = json.loads(_read(z, MANIFEST, path))
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{path}: manifest.json is not valid JSON ({e})") from None
        if manifest.get("format") != "samoyed":
            raise ArtifactError(f"{path}: not a samoyed artifact (format {manifest.get('format')!r})")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactVersionError(
                f"{path}: format version {version} unsupported; this samoyed "
                f"({samoyed_version()}) reads version {FORMAT_VERSION} (written by samoyed "
                f"{manifest.get('samoyed_version')}); recompile the model")
        hashes = manifest.get("arrays", {})
        try:
            g = manifest["graph"]
            nodes = [_node_from(rec, z, hashes, path) for rec in g["nodes"]]
            graph = ir.Graph(g["name"], nodes, g["output"], ir.Stage(g["stage"]))
            config = AcceleratorConfig.from_dict(manifest["config"])
        except (KeyError, TypeError) as e:
            raise ArtifactError(f"{path}: manifest lacks or mangles field {e}") from None
        except ConfigError as e:
            raise ArtifactError(f"{path}: bad accelerator config: {e}") from None
    k_pack = manifest.get("options", {}).get("k_pack", True)
    if not isinstance(k_pack, bool):
        raise ArtifactError(f"{path}: options.k_pack is {k_pack!r}, not true or false")
    try:
        ir.verify(graph)
    except IRError as e:
        raise ArtifactError(f"{path}: the stored IR does not verify: {e}") from None
    return CompiledModel(graph, config, name=manifest.get("model", ""),
                         source=manifest.get("source", ""), meta=manifest.get("meta", {}),
                         k_pack=k_pack)
