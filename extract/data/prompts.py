"""Prompt templates for multiple-choice questions; the default is lm-eval-harness's MMLU prompt.

A template is a few plain strings with `str.format` placeholders (write a literal brace as
`{{` or `}}`):

- `header`: once per prompt; placeholder `{subject}` (optional) is the example's subject with
  underscores as spaces ("high_school_us_history" -> "high school us history").
  Default: "The following are multiple choice questions (with answers) about {subject}.\\n\\n".
- `header_no_subject`: used instead of `header` for subjects that are not a topic
  (TruthfulQA's "truthfulqa"); no placeholders.
  Default: "The following are multiple choice questions (with answers).\\n\\n".
- `item`: one question; placeholders `{question}` and `{choices}` (both required).
  Default: "{question}\\n{choices}\\nAnswer:".
- `choice`: one option; placeholders `{letter}` and `{text}` (both required); options are joined
  with `choice_separator` ("\\n"). Default: "{letter}. {text}".
- a few-shot exemplar is `item + target_delimiter + letter + fewshot_delimiter`, i.e. by
  default `item + " " + "B" + "\\n\\n"`, placed between the header and the question.
- `strip_question`: strip surrounding whitespace from the question, as lm-eval's
  `{{question.strip()}}` does (963 MMLU test questions have some).

So the zero-shot default for an MMLU example is exactly lm-eval's:

    The following are multiple choice questions (with answers) about abstract algebra.

    Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.
    A. 0
    B. 4
    C. 2
    D. 6
    Answer:

and the model's answer is read as the next token: one of `answer_continuations(K)` = " A", " B", ...
Templates load from JSON or TOML files holding any subset of the fields (`PromptTemplate.from_file`).
"""

from __future__ import annotations

import hashlib
import json
import os
import string
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from extract.data.examples import MCExample

__all__ = [
    "DEFAULT_TEMPLATE",
    "LETTERS",
    "LM_EVAL_MMLU",
    "NO_TOPIC_SUBJECTS",
    "PromptTemplate",
    "TemplateError",
    "answer_continuations",
    "subject_text",
]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
NO_TOPIC_SUBJECTS = frozenset({"truthfulqa"})

# field -> (placeholders allowed, placeholders required)
_PLACEHOLDERS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "header": (frozenset({"subject"}), frozenset()),
    "header_no_subject": (frozenset(), frozenset()),
    "item": (frozenset({"question", "choices"}), frozenset({"question", "choices"})),
    "choice": (frozenset({"letter", "text"}), frozenset({"letter", "text"})),
    "choice_separator": (frozenset(), frozenset()),
    "target_delimiter": (frozenset(), frozenset()),
    "fewshot_delimiter": (frozenset(), frozenset()),
    "name": (frozenset(), frozenset()),
}


class TemplateError(ValueError):
    """A template that cannot render: bad placeholders, unknown fields, unreadable file."""


def subject_text(subject: str) -> str:
    """Subject as written in the header: underscores to spaces."""
    return subject.replace("_", " ")


def answer_continuations(n_choices: int, target_delimiter: str = " ") -> list[str]:
    """The K answer continuations read after the prompt: [" A", " B", ...] for K = n_choices."""
    if not 1 <= n_choices <= len(LETTERS):
        raise TemplateError(f"n_choices must be 1..{len(LETTERS)}, got {n_choices}.")
    return [target_delimiter + letter for letter in LETTERS[:n_choices]]


def _placeholders(fmt: str, field_name: str) -> set[str]:
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError as err:
        raise TemplateError(
            f"template field {field_name!r} is not a valid format string ({err}): {fmt!r}. "
            "Write literal braces as '{{' and '}}'."
        ) from err
    names = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name == "" or spec or conversion:
            raise TemplateError(
                f"template field {field_name!r} has placeholder {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}}; use only plain named placeholders like {{question}}."
            )
        names.add(name)
    return names


@dataclass(frozen=True)
class PromptTemplate:
    """How an `MCExample` (plus optional few-shot exemplars) becomes one prompt string."""

    header: str = "The following are multiple choice questions (with answers) about {subject}.\n\n"
    item: str = "{question}\n{choices}\nAnswer:"
    choice: str = "{letter}. {text}"
    name: str = "lm-eval-mmlu"
    header_no_subject: str = "The following are multiple choice questions (with answers).\n\n"
    choice_separator: str = "\n"
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    strip_question: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "strip_question":
                if not isinstance(value, bool):
                    raise TemplateError(
                        f"template field 'strip_question' must be true/false, got {value!r}."
                    )
                continue
            if not isinstance(value, str):
                raise TemplateError(f"template field {f.name!r} must be a string, got {value!r}.")
            allowed, required = _PLACEHOLDERS[f.name]
            found = _placeholders(value, f.name)
            if found - allowed:
                raise TemplateError(
                    f"template field {f.name!r} uses unknown placeholder(s) "
                    f"{sorted(found - allowed)}; allowed: {sorted(allowed) or 'none'}."
                )
            if required - found:
                raise TemplateError(
                    f"template field {f.name!r} lacks placeholder(s) {sorted(required - found)}: "
                    f"{value!r}. Add them, e.g. the default is {getattr(PromptTemplate, f.name)!r}."
                )

    def render_header(self, subject: str) -> str:
        """The header line(s) for a prompt about `subject`."""
        if subject in NO_TOPIC_SUBJECTS:
            return self.header_no_subject
        return self.header.format(subject=subject_text(subject))

    def render_item(self, example: MCExample) -> str:
        """One question with its lettered options, ending before the answer."""
        k = len(example.choices)
        if not 1 <= k <= len(LETTERS):
            raise TemplateError(f"{example.example_id}: {k} choices; a template letters 1 to 26.")
        options = self.choice_separator.join(
            self.choice.format(letter=LETTERS[i], text=text)
            for i, text in enumerate(example.choices)
        )
        question = example.question.strip() if self.strip_question else example.question
        return self.item.format(question=question, choices=options)

    def render(self, example: MCExample, shots: Sequence[MCExample] = ()) -> str:
        """Header, then each shot answered (`item + " " + letter + "\\n\\n"`), then the question."""
        parts = [self.render_header(example.subject)]
        for shot in shots:
            parts.append(
                self.render_item(shot)
                + self.target_delimiter
                + LETTERS[shot.label]
                + self.fewshot_delimiter
            )
        parts.append(self.render_item(example))
        return "".join(parts)

    def continuations(self, n_choices: int) -> list[str]:
        """Answer continuations for this template ([target_delimiter + letter, ...])."""
        return answer_continuations(n_choices, self.target_delimiter)

    def to_dict(self) -> dict[str, Any]:
        """All fields, for provenance and for writing a template file."""
        return asdict(self)

    def text(self) -> str:
        """Canonical JSON text of the template (sorted keys); what `sha256` hashes."""
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    def sha256(self) -> str:
        """sha256 hex digest of `text()`: equal templates give equal digests."""
        return hashlib.sha256(self.text().encode("utf-8")).hexdigest()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PromptTemplate:
        """A template from a .json or .toml file holding any subset of the fields."""
        p = Path(path)
        if not p.is_file():
            raise TemplateError(f"template file {str(p)!r} not found; check the path.")
        try:
            if p.suffix.lower() == ".json":
                data = json.loads(p.read_text(encoding="utf-8"))
            elif p.suffix.lower() == ".toml":
                data = _load_toml(p)
            else:
                raise TemplateError(f"template file {p} must end in .json or .toml.")
        except (json.JSONDecodeError, ValueError) as err:
            if isinstance(err, TemplateError):
                raise
            raise TemplateError(f"could not parse template file {p}: {err}") from err
        return cls.from_dict(data, where=str(p))

    @classmethod
    def from_dict(cls, data: Any, where: str = "template") -> PromptTemplate:
        """A template from a mapping of field -> value; unknown keys are an error."""
        if not isinstance(data, dict):
            raise TemplateError(f"{where} must be a table/object of template fields.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise TemplateError(f"{where}: unknown template field(s) {unknown}; valid: {known}.")
        try:
            return cls(**data)
        except TemplateError as err:
            raise TemplateError(f"{where}: {err}") from None


def _load_toml(path: Path) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - python 3.10
        try:
            import tomli as tomllib
        except ImportError as err:
            raise TemplateError(
                f"reading {path} needs `pip install tomli` on Python 3.10, or use a .json template."
            ) from err
    return tomllib.loads(path.read_text(encoding="utf-8"))


LM_EVAL_MMLU = PromptTemplate()
# The default prompt as one format string (header + item); `PromptTemplate()` renders it.
DEFAULT_TEMPLATE: str = LM_EVAL_MMLU.header + LM_EVAL_MMLU.item
