"""Schemas (pydantic v2) of every file a user hands vhslab, and one way to check a file against one.

Prompt rows (GenEval JSONL), cost models, verifier folders (`verifier.json`), the public release's
layout, world folders (`world.json`), training records (`train_config.json`) and gold files. Each is
checked as JSON (strict: no "2" for 2, no NaN or Infinity) before anything else reads it, and a
mismatch raises a ValueError naming the file, the line (JSONL) or field, what was expected and what
was found, e.g. `prompts.jsonl:3: field include[0].count: expected an integer >= 1, got "x"`.

    check(PromptRow, line, "prompts.jsonl:3", PromptError)    # a row (JSON text or parsed data)
    load("m.json", CostModelFile, SearchError)                 # a file
    read_json("metrics.json")                                   # any JSON, its errors naming the file

Schemas of configs that are dataclasses are made from the dataclass (`from_dataclass`), so a field
added there is in the schema too.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, WrapValidator, create_model
from pydantic_core import PydanticCustomError

from vhslab.errors import InputError
from vhslab.trace.site import VERIFIER_SITE_PATTERN, VERIFIER_SITES, SiteError
from vhslab.trace.site import Site as SiteName

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")  # GenEval's (data.prompts.TAGS)
RELATIONS = ("left of", "right of", "above", "below")
STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
KIND_SITES = {"vhs": "block.<k>", "text": "text", "vision": "vision", "ae": "ae_latent"}


class SchemaError(InputError):
    """A file does not fit its schema; the message names the file, the line or field and what was expected."""


def expect(tp: Any, text: str, **constraints) -> Any:
    """`tp` (strict, with pydantic Field `constraints`) whose every failure reads "expected <text>"."""

    def wrap(value, handler):
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("expected", "expected {text}", {"text": text}) from None

    strict = {} if typing.get_origin(tp) is Literal else {"strict": True}  # a Literal is exact already
    return Annotated[tp, Field(**strict, **constraints), WrapValidator(wrap)]


Int0 = expect(int, "an integer >= 0", ge=0)
Int1 = expect(int, "an integer >= 1", ge=1)
Positive = expect(float, "a finite number > 0", gt=0, allow_inf_nan=False)
NonNegative = expect(float, "a finite number >= 0", ge=0, allow_inf_nan=False)
Text = expect(str, "a string")
Name = expect(str, "a non-blank string", pattern=r"\S")
Tag = expect(Literal[TAGS], "one of GenEval's tags " + ", ".join(map(repr, TAGS)))
Relation = expect(Literal[RELATIONS], "one of " + ", ".join(map(repr, RELATIONS)))


# --- turning pydantic's errors into one line ------------------------------------------------------
_EXPECTED = {"int_type": "an integer", "int_from_float": "an integer", "float_type": "a number", "string_type": "a string",
             "bool_type": "true or false", "list_type": "a list", "tuple_type": "a list", "dict_type": "an object",
             "model_type": "an object", "dataclass_type": "an object", "finite_number": "a finite number",
             "literal_error": "one of {expected}", "too_short": "at least {min_length} item(s)",
             "too_long": "at most {max_length} item(s)", "greater_than": "a number > {gt}",
             "greater_than_equal": "a number >= {ge}", "less_than_equal": "a number <= {le}",
             "string_too_short": "a non-empty string", "string_pattern_mismatch": "a string matching {pattern}"}


def _field(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(err: ValidationError, row: bool = False) -> str:
    """Every error of `err` as `field X: expected Y, got Z`, joined by "; " (`row`: JSON errors of one
    line of text say "at column C")."""
    parts = []
    for e in err.errors(include_url=False):
        kind, ctx = e["type"], e.get("ctx") or {}
        if kind == "json_invalid":
            reason = ctx.get("error", e["msg"])
            text = "invalid JSON (" + (reason.replace(" at line 1 column", " at column") if row else reason) + ")"
        elif kind == "missing":
            text = "missing"
        elif kind == "extra_forbidden":
            text = "unknown field"
        else:
            if kind == "expected":
                want = e["msg"]
            elif kind in _EXPECTED:
                want = "expected " + _EXPECTED[kind].format(**ctx)
            else:
                want = "expected " + e["msg"].removeprefix("Input should be ")
            text = f"{want}, got {_shown(e['input'])}"
        parts.append(f"field {_field(e['loc'])}: {text}" if e["loc"] else text)
    return "; ".join(parts)


@functools.cache
def _adapter(schema: Any) -> TypeAdapter:
    return TypeAdapter(schema)


def check(schema: Any, data: Any, where: str, error: type[ValueError] = SchemaError, whole_file: bool = False) -> Any:
    """`data` (JSON text, or data as `json.loads` gives it) validated by `schema` (a pydantic model or
    type), as JSON: strict types, arrays for tuples. A mismatch raises `error("<where>: <what>")`; a JSON
    error says "at column C" in one line of text (a JSONL row), "at line L column C" in a `whole_file`."""
    if not isinstance(data, (str, bytes)):
        try:
            data = json.dumps(data)
        except (TypeError, ValueError) as err:
            raise error(f"{where}: not JSON data ({err})") from None
    try:
        return _adapter(schema).validate_json(data)
    except ValidationError as err:
        raise error(f"{where}: {describe(err, not whole_file)}") from None


def read_text(path: str | Path, error: type[ValueError] = SchemaError) -> str:
    """The UTF-8 text of a file; a missing one raises FileNotFoundError, an unreadable one `error`, naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {'a folder, not a file' if path.is_dir() else 'no such file'}")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text (byte {err.start} is {err.object[err.start]:#04x})") from None
    except OSError as err:
        raise error(f"{path}: cannot be read ({err.strerror})") from None


def load(path: str | Path, schema: Any, error: type[ValueError] = SchemaError, what: str = "") -> Any:
    """The JSON file at `path` validated by `schema`; errors say `<path>: <what>: ...`."""
    return check(schema, read_text(path, error), f"{path}: {what}" if what else str(path), error, whole_file=True)


def read_json(path: str | Path, error: type[ValueError] = SchemaError) -> Any:
    """Any JSON file, parsed; invalid JSON raises `error` naming the file, line and column."""
    return load(path, Any, error)


# --- prompt rows (GenEval metadata) -----------------------------------------------------------------
class ItemRow(BaseModel):
    """One `include` / `exclude` entry of a GenEval row."""

    model_config = STRICT
    cls: Name = Field(alias="class")
    count: Int1 = 1
    color: Name | None = None
    position: tuple[Relation, Int0] | None = None


class PromptRow(BaseModel):
    """One GenEval row: `{"tag", "include", "exclude", "prompt"}`."""

    model_config = STRICT
    tag: Tag
    include: Annotated[list[ItemRow], Field(min_length=1)]
    exclude: list[ItemRow] = []
    prompt: Name


# --- cost models (vhslab.search.costs) ----------------------------------------------------------------
Ms = expect(float, "a finite number of milliseconds > 0", gt=0, allow_inf_nan=False)


class StageCosts(BaseModel):
    model_config = STRICT
    dit_block: Ms
    decode: Ms
    vision_encode: Ms
    llm_prefill: Ms


MsOrZero = expect(float, "a finite number of milliseconds >= 0", ge=0, allow_inf_nan=False)


class PerCallCosts(BaseModel):
    """Paid once per call whatever its batch: the prompt's encoding (once per search) and a pipeline
    call's overhead beyond its DiT (per batch of candidates, and for the winner's finishing call)."""

    model_config = STRICT
    prompt_encode: MsOrZero
    call_overhead: MsOrZero


class StagesMs(BaseModel):
    """Per-stage ms at batch 1, per candidate at batch 4, and (absent in older files: 0) per call."""

    model_config = STRICT
    batch_1: StageCosts
    batch_4: StageCosts
    per_call: PerCallCosts | None = None


class CostModelFile(BaseModel):
    """A cost model: the card, the DiT's blocks and per-stage ms at batch 1, per candidate at batch 4 and
    per call (optional; free-form fields such as `source`, `note` or `threads` beside them are kept)."""

    model_config = ConfigDict(**{**STRICT, "extra": "allow"})
    name: Name | None = None
    card: Name
    num_blocks: Int1
    stages_ms: StagesMs
    dtype: Text = ""
    source: Text = ""
    note: Text = ""


# --- world folders (vhslab.world) ----------------------------------------------------------------------
class WorldInfo(BaseModel):
    """`world.json` of an assembled world."""

    model_config = ConfigDict(**{**STRICT, "extra": "allow"})
    seed: Int0 = 0
    default_guidance: NonNegative
    max_sequence_length: Int1
    resolution: Int1 = 64


def from_dataclass(cls: type, ranges: dict[str, Any] | None = None) -> type[BaseModel]:
    """A strict pydantic model of dataclass `cls`: its fields, types and defaults, with `ranges`
    (field -> type, e.g. `Int1`) where a field has a narrower range than its type says."""
    hints, fields = typing.get_type_hints(cls), {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=f.default_factory)
        else:
            default = ...
        fields[f.name] = ((ranges or {}).get(f.name, hints[f.name]), default)
    return create_model(f"{cls.__name__}Schema", __config__=STRICT, **fields)


def to_dataclass(cls: type, model: BaseModel):
    """The dataclass `cls` with a validated model's fields."""
    return cls(**{f.name: getattr(model, f.name) for f in dataclasses.fields(cls)})


@functools.cache
def run_record_schema(config_class: type, key: str) -> type[BaseModel]:
    """A stage's `train_config.json`: `{"seed": int, key: config}` (missing config fields take their defaults)."""
    config = from_dataclass(config_class)
    return create_model(f"{config_class.__name__}Record", __config__=STRICT, seed=(Int0, ...),
                        **{key: (config, Field(default_factory=config))})


def read_run_record(path: str | Path, config_class: type, key: str) -> dict:
    """A training record as JSON data, every field of the config present (defaults for those added since)."""
    return load(path, run_record_schema(config_class, key), what="not a training record of this stage").model_dump(mode="json")


@functools.cache
def gold_schema() -> type[BaseModel]:
    from vhslab.shapes.gold import GoldRecord

    return from_dataclass(GoldRecord, {"index": Int0, "seed": Int0, "tag": Tag,
                                       "split": expect(Literal["dev", "holdout"], "'dev' or 'holdout'")})


# --- verifiers (vhslab.verifier.model) ----------------------------------------------------------------
Site = expect(str, VERIFIER_SITES, pattern=VERIFIER_SITE_PATTERN)


@functools.cache
def verifier_config_schema() -> type[BaseModel]:
    from vhslab.verifier.model import VerifierConfig

    answer = expect(str, "a non-blank string", pattern=r"\S")
    return from_dataclass(VerifierConfig, {
        "site": Site, "in_channels": Int1, "eps": Positive, "token_grid": Int1 | None, "image_token": Name,
        "question": expect(str, "a string holding {prompt}", pattern=r"\{prompt\}"), "answers": tuple[answer, answer]})


def kind_of(site: str) -> str:
    """The verifier kind (`load_verifier`'s `kind`) of a site."""
    try:
        if SiteName.parse(site).is_block:
            return "vhs"
    except SiteError:
        pass
    return {v: k for k, v in KIND_SITES.items()}.get(site, site)


def read_verifier_config(path: str | Path, kind: str | None = None, error: type[ValueError] = SchemaError,
                         parts: tuple[str, ...] = ("llm/config.json", "tokenizer")):
    """The VerifierConfig of a saved verifier folder, checked: its files and `parts` are there,
    `verifier.json` fits the schema and, with `kind`, reads that kind's site."""
    from vhslab.verifier.model import CONFIG, WEIGHTS, VerifierConfig

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a saved LatentVerifier: no such folder")
    missing = [name for name in (CONFIG, WEIGHTS, *parts) if not (path / name).exists()]
    if missing:
        raise FileNotFoundError(f"{path} is not a saved LatentVerifier: {', '.join(missing)} missing")
    config = to_dataclass(VerifierConfig, load(path / CONFIG, verifier_config_schema(), error))
    if kind is not None:
        if kind not in KIND_SITES:
            raise error(f"unknown verifier kind {kind!r}; kinds: {', '.join(KIND_SITES)}")
        if kind_of(config.site) != kind:
            raise error(f"{path} holds a {kind_of(config.site)} verifier (site {config.site!r}), not a {kind} "
                        f"verifier (site {KIND_SITES[kind]!r})")
    return config


Connector = expect(Literal["mlp2x_gelu"], "'mlp2x_gelu' (Linear-GELU-Linear, the only connector known)")


class ReleaseConfig(BaseModel):
    """The release's LLaVA-Qwen `config.json`: Qwen2 fields (the ones checked here; the rest go to
    Qwen2Config as they are) and the connector's."""

    model_config = ConfigDict(**{**STRICT, "extra": "allow"})
    mm_hidden_size: Int1
    mm_projector_type: Connector = "mlp2x_gelu"
    hidden_size: Int1
    intermediate_size: Int1
    num_hidden_layers: Int1
    num_attention_heads: Int1
    num_key_value_heads: Int1 | None = None
    vocab_size: Int1


def check_release(path: str | Path, site: str | None, error: type[ValueError] = SchemaError) -> tuple[dict, str]:
    """(config.json as data, site) of a folder in the release's layout, after checking that config.json
    fits `ReleaseConfig` and that the weights, the tokenizer and the site's statistics are there."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder (expected a verifier in the release's layout)")
    raw = load(path / "config.json", ReleaseConfig, error, "not a release config").model_dump(exclude_unset=True)
    if not list(path.glob("*.safetensors")):
        raise FileNotFoundError(f"{path}: no *.safetensors weights (the release's layout)")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        raise FileNotFoundError(f"{path}: no tokenizer (tokenizer.json or tokenizer_config.json)")
    if site is None:
        stats = sorted(path.glob("block_*_mean_bf16.pt"))
        site = str(SiteName.block(int(stats[0].name.split('_')[1]))) if stats else "vision"
    check(Site, json.dumps(site), f"{path}: site", error)
    if SiteName.parse(site).is_block:
        k = SiteName.parse(site).index
        missing = [f"block_{k}_{n}_bf16.pt" for n in ("mean", "variance") if not (path / f"block_{k}_{n}_bf16.pt").is_file()]
        if missing:
            raise FileNotFoundError(f"{path}: the statistics of site {site} are missing ({', '.join(missing)})")
    return raw, site
