"""Vowpal Wabbit arguments from outside, checked against an allow-list before VW sees them.

VW acts on its arguments while it parses them: ``-f``, ``--readable_model``,
``--invert_hash``, ``-p`` or ``--cache_file`` create files wherever the server's user can
write, ``--pid_file`` or ``--daemon`` fork listeners on a network port, and a bare word is
opened as a data file. Arguments reach recloop from requests (candidate policies,
Personalizer's policy and evaluations), stored settings and the command line, so every one
of them passes :func:`check_vw_args` (or :func:`check_learner_args`) first: only the
learning options named here, each value of its type and within its bounds, anything else
refused with :class:`InvalidInputError` naming the option. Only then is VW asked to parse
the result (``--quiet``, nothing else added), so a combination VW refuses is refused
before it is stored, not when the pipeline next starts.

The checked arguments come back normalised (tokens joined by single spaces): every token
allowed is free of spaces and quotes, so VW, which splits on whitespace and knows no
quoting, reads exactly the tokens that were checked.
"""

from __future__ import annotations

import re
import shlex
import struct
from dataclasses import dataclass

from recloop.core.errors import InvalidInputError, ModelRejectedError

MAX_LENGTH = 1000
"""Characters of one argument string (the longest sensible one is a tenth of that)."""
MAX_TOKENS = 64
MAX_BITS = 24
"""2^24 weights is already 16 million per model; -b 32 would allocate gigabytes."""
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class _Value:
    """What may follow an option: a bounded number, one of some words, or namespaces."""

    what: str
    low: float = 0.0
    high: float = 0.0
    integer: bool = False
    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None

    def check(self, option: str, text: str) -> None:
        if self.choices:
            ok = text in self.choices
        elif self.pattern is not None:
            ok = self.pattern.fullmatch(text) is not None
        elif self.integer:  # compared as an integer: a 64-bit seed is exact
            ok = _INTEGER.fullmatch(text) is not None and self.low <= int(text) <= self.high
        else:
            ok = _NUMBER.fullmatch(text) is not None and self.low <= float(text) <= self.high
        if not ok:
            raise InvalidInputError(f"VW option {option}: {_shown(text)} is not {self.what}")


def _number(low: float, high: float) -> _Value:
    return _Value(f"a number in [{low:g}, {high:g}]", low, high)


def _integer(low: int, high: int) -> _Value:
    return _Value(f"a whole number in [{low}, {high}]", low, high, integer=True)


def _choice(*words: str) -> _Value:
    return _Value(f"one of {', '.join(words)}", choices=words)


def _namespaces(low: int, high: int, wildcard: bool = True) -> _Value:
    chars = "A-Za-z0-9:" if wildcard else "A-Za-z0-9"
    count = str(low) if low == high else f"{low}-{high}"
    what = f"{count} namespace letters" + (" (':' for any)" if wildcard else "")
    return _Value(what, pattern=re.compile(f"[{chars}]{{{low},{high}}}"))


_FLAG = None
_PAIR, _TRIPLE = _namespaces(2, 2), _namespaces(3, 3)
_NAMESPACES = _namespaces(1, 26, wildcard=False)

LEARNING_OPTIONS: dict[str, _Value | None] = {
    "--cb_adf": _FLAG,
    "--cb_type": _choice("ips", "dr", "mtr", "dm", "sm"),
    "--clip_p": _number(0, 1),  # probabilities below it count as it: weights at most 1/it
    "-q": _PAIR,
    "--quadratic": _PAIR,
    "--cubic": _TRIPLE,
    "--interactions": _namespaces(2, 3),
    "--ignore": _NAMESPACES,
    "--ignore_linear": _NAMESPACES,
    "--keep": _NAMESPACES,
    "--noconstant": _FLAG,
    "-l": _number(0, 1000),
    "--learning_rate": _number(0, 1000),
    "--power_t": _number(0, 1),
    "--initial_t": _number(0, 1e6),
    "--decay_learning_rate": _number(0, 1),
    "--l1": _number(0, 1),
    "--l2": _number(0, 1),
    "--adaptive": _FLAG,
    "--normalized": _FLAG,
    "--invariant": _FLAG,
    "--sgd": _FLAG,
    "--loss_function": _choice("squared", "classic", "logistic", "hinge", "quantile", "poisson"),
    "-b": _integer(1, MAX_BITS),
    "--bit_precision": _integer(1, MAX_BITS),
    "--random_seed": _integer(0, 2**64 - 1),  # a saved model holds VW's 64-bit state here
    "--hash": _choice("strings", "all"),
    "--quiet": _FLAG,
}
"""What a VW learner may be told: the model and its updates (and ``--quiet``), nothing
about files, caches, daemons, input or output."""

EXPLORATION_OPTIONS: dict[str, _Value | None] = {
    "--cb_explore_adf": _FLAG,
    "--epsilon": _number(0, 1),
    "--softmax": _FLAG,
    "--lambda": _number(0, 1000),
}
"""VW's own exploration, as Personalizer's learning policies are written. Accepted in such
settings (:class:`~recloop.evaluation.experiments.LearnerConfig` turns them into recloop's
explorer) but not in a learner's arguments: recloop explores outside VW."""


def _shown(text: str) -> str:
    """A hostile token, quoted and cut short, for an error message."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _tokens(args: object) -> list[str]:
    if not isinstance(args, str):
        raise InvalidInputError("VW arguments must be a string")
    if len(args) > MAX_LENGTH:
        raise InvalidInputError(f"VW arguments are longer than {MAX_LENGTH} characters")
    try:
        raw = shlex.split(args)
    except ValueError as exc:
        raise InvalidInputError(f"cannot split the VW arguments: {exc}") from None
    tokens: list[str] = []
    for token in raw:  # --name=value, as VW also reads it, becomes two tokens
        name, eq, value = token.partition("=")
        tokens.extend([name, value] if token.startswith("--") and eq else [token])
    if len(tokens) > MAX_TOKENS:
        raise InvalidInputError(f"more than {MAX_TOKENS} VW arguments")
    return tokens


def allowed_vw_args(args: str, *, exploration: bool = True) -> str:
    """The allow-list alone (no VW): ``args`` normalised, or InvalidInputError naming the
    first option that is not a learning option (with ``exploration``, VW's
    ``--cb_explore_adf`` family counts as one)."""
    tokens = _tokens(args)
    _check_tokens(tokens, {**LEARNING_OPTIONS, **(EXPLORATION_OPTIONS if exploration else {})})
    return " ".join(tokens)


def _check_tokens(tokens: list[str], allowed: dict[str, _Value | None]) -> None:
    i = 0
    while i < len(tokens):
        option = tokens[i]
        if option not in allowed:
            if option in EXPLORATION_OPTIONS:
                raise InvalidInputError(
                    f"VW option {option} is not allowed in a learner's arguments: recloop "
                    "explores outside VW (set the loop's explorer, epsilon, softmax_lambda)"
                )
            kind = "option" if option.startswith("-") else "argument"
            raise InvalidInputError(
                f"VW {kind} {_shown(option)} is not allowed; recloop accepts only these "
                f"learning options: {' '.join(sorted(allowed))}"
            )
        value = allowed[option]
        if value is not None:
            if i + 1 >= len(tokens):
                raise InvalidInputError(f"VW option {option} needs a value ({value.what})")
            value.check(option, tokens[i + 1])
            i += 1
        i += 1


def check_vw_args(args: str, *, exploration: bool = True) -> str:
    """``args`` normalised, once the allow-list has passed and VW has parsed them."""
    clean = allowed_vw_args(args, exploration=exploration)
    _parsed_by_vw(clean)
    return clean


def check_learner_args(args: str) -> str:
    """Arguments for recloop's VW learner (a loop's ``vw_args``, a ``vw-cb`` candidate):
    :func:`check_vw_args` without VW's exploration, and with the ``--cb_adf`` reduction,
    the one whose models recloop serves."""
    clean = allowed_vw_args(args, exploration=False)
    if "--cb_adf" not in clean.split():
        raise InvalidInputError("VW learner arguments need --cb_adf (e.g. --cb_adf --cb_type mtr)")
    _parsed_by_vw(clean)
    return clean


def _parsed_by_vw(clean: str) -> None:
    """VW parses the arguments (a millisecond or two); its refusal is the caller's error.
    Only ever called with arguments the allow-list passed."""
    import vowpalwabbit  # here, so that settings can import this module without loading VW

    try:
        workspace = vowpalwabbit.Workspace(f"{clean} --quiet")
    except Exception as exc:  # VW raises plain RuntimeError/ValueError on bad arguments
        raise InvalidInputError(f"Vowpal Wabbit rejected the arguments {clean!r}: {exc}") from None
    workspace.finish()


MODEL_OPTIONS: dict[str, _Value | None] = {
    **LEARNING_OPTIONS,
    **EXPLORATION_OPTIONS,
    "--csoaa_ldf": _choice("multiline", "m"),
    "--csoaa_rank": _FLAG,
}
"""What a model file may tell VW: the learning options, and the reductions ``--cb_adf``
stacks under itself (VW saves them in every ``--cb_adf`` model)."""

OLDEST_MODEL = (8, 3, 2)
"""The first VW version that saves ``--cb_adf`` models (and the header read below)."""
_SAFE_ID = re.compile(r"[A-Za-z0-9_.\-]{0,64}")


def check_model_header(blob: bytes) -> None:
    """Refuse a VW model file whose header would tell VW more than learning options.

    VW reads options from a model's header and acts on them as on its command line: a model
    file whose header says ``--readable_model PATH`` writes that file, and model files come
    from requests (``PUT .../model``) and from the model store. The header is read here as
    VW reads it (its id, bits, n-grams, skips and options become options); ModelRejectedError
    names what is refused. The header's checksum is VW's to check, not ours.
    """
    try:
        header = _read_header(blob)
    except struct.error:
        raise ModelRejectedError("not a Vowpal Wabbit model file: its header ends early") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelRejectedError(f"not a Vowpal Wabbit model file: {exc}") from None
    model_id, bits, extras, options = header
    if not _SAFE_ID.fullmatch(model_id):
        raise ModelRejectedError(f"the model's id {_shown(model_id)} is not a plain name")
    if not 1 <= bits <= MAX_BITS:
        raise ModelRejectedError(f"the model has {bits} bits; at most {MAX_BITS} are loaded")
    if extras:
        raise ModelRejectedError("the model uses n-grams or skips, which recloop never writes")
    if not options.isprintable():  # VW and Python might split control characters apart
        raise ModelRejectedError("the model's header holds control characters in its options")
    try:
        _check_tokens([token for token in options.split(" ") if token], MODEL_OPTIONS)
    except InvalidInputError as exc:
        raise ModelRejectedError(f"the model's header: {exc}") from None


def _read_header(blob: bytes) -> tuple[str, int, int, str]:
    """(id, bits, n-grams + skips, options) as VW reads them from a model file."""
    offset = 0

    def u32() -> int:
        nonlocal offset
        (value,) = struct.unpack_from("<I", blob, offset)
        offset += 4
        return int(value)

    def text() -> str:
        nonlocal offset
        size = u32()
        if size > len(blob) - offset:
            raise ValueError("a header field runs past the end of the file")
        raw = blob[offset : offset + size]
        offset += size
        return raw.split(b"\0", 1)[0].decode("ascii")

    version_text = text()
    if not re.fullmatch(r"\d+\.\d+\.\d+", version_text):
        raise ValueError(f"no version number at its start ({_shown(version_text)})")
    version = tuple(int(part) for part in version_text.split("."))
    if version < OLDEST_MODEL:  # an older header is laid out otherwise
        oldest = ".".join(map(str, OLDEST_MODEL))
        raise ModelRejectedError(f"models from Vowpal Wabbit before {oldest} are not supported")
    model_id = text()
    if blob[offset : offset + 1] != b"m":
        raise ValueError("no model marker")
    offset += 1 + 8  # the marker, min_label and max_label
    bits = u32()
    u32()  # lda
    extras = 0
    for _ in range(2):  # n-grams, then skips: each a count, then three bytes apiece
        count = u32()
        extras += count
        offset += 3 * count
    return model_id, bits, extras, text()
