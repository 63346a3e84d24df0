"""extract.data.prompts: the lm-eval MMLU prompt, few-shot rendering, template files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from extract.data import MCExample, load_dataset
from extract.data.prompts import (
    DEFAULT_TEMPLATE,
    LETTERS,
    PromptTemplate,
    TemplateError,
    answer_continuations,
)
from tests import REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    env = os.environ.get("LAYERCAL_DATA_DIR")
    root = Path(env) if env else REPO.parent / "shared" / "data"
    if not (root / "mmlu" / "test").is_dir():
        pytest.fail(f"benchmark data not found at {root}; set LAYERCAL_DATA_DIR to ../shared/data")
    return root


def _ex(question: str, choices: tuple[str, ...], label: int, subject: str = "anatomy") -> MCExample:
    return MCExample("t/0", subject, "other", question, choices, label)


def test_zero_shot_matches_lm_eval(shared_data: Path) -> None:
    ds = load_dataset("mmlu", subjects=["abstract_algebra"], data_dir=shared_data)
    expected = (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
        "A. 0\n"
        "B. 4\n"
        "C. 2\n"
        "D. 6\n"
        "Answer:"
    )
    assert PromptTemplate().render(ds.examples[0]) == expected


def test_few_shot_matches_lm_eval() -> None:
    shot = _ex("What is 1+1?", ("1", "2", "3", "4"), 1, subject="high_school_us_history")
    query = _ex(
        "  Who was the first US president?\n",
        ("Adams", "Washington", "None", "Lincoln"),
        1,
        "high_school_us_history",
    )
    expected = (
        "The following are multiple choice questions (with answers) about high school us history.\n\n"
        "What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
        "Who was the first US president?\nA. Adams\nB. Washington\nC. None\nD. Lincoln\nAnswer:"
    )
    assert PromptTemplate().render(query, [shot]) == expected
    # lm-eval strips the question ({{question.strip()}}); the option may be turned off
    raw = PromptTemplate(strip_question=False).render(query)
    assert "\n\n  Who was the first US president?\n\nA. Adams" in raw


def test_dataset_shots_render(shared_data: Path) -> None:
    ds = load_dataset("mmlu", subjects=["formal_logic"], shots=5, limit=1, data_dir=shared_data)
    ex = ds.examples[0]
    prompt = PromptTemplate().render(ex, ds.shots[ex.subject])
    assert prompt.startswith(
        "The following are multiple choice questions (with answers) about formal logic.\n\n"
    )
    assert prompt.count("\nAnswer:") == 6 and prompt.endswith("\nAnswer:")
    for shot in ds.shots["formal_logic"]:
        assert f"\nAnswer: {LETTERS[shot.label]}\n\n" in prompt


def test_truthfulqa_header_and_many_options(shared_data: Path) -> None:
    ds = load_dataset("truthfulqa-mc1", data_dir=shared_data)
    ex = max(ds.examples, key=lambda e: len(e.choices))
    prompt = PromptTemplate().render(ex)
    assert prompt.startswith("The following are multiple choice questions (with answers).\n\n")
    assert "truthfulqa" not in prompt
    assert f"\nM. {ex.choices[12]}\nAnswer:" in prompt and len(ex.choices) == 13


def test_answer_continuations() -> None:
    assert answer_continuations(4) == [" A", " B", " C", " D"]
    assert answer_continuations(13)[-1] == " M"
    assert PromptTemplate(target_delimiter="").continuations(2) == ["A", "B"]
    with pytest.raises(TemplateError):
        answer_continuations(0)
    with pytest.raises(TemplateError):
        answer_continuations(27)


def test_text_and_sha256() -> None:
    a, b = PromptTemplate(), PromptTemplate()
    assert a.text() == b.text() and a.sha256() == b.sha256() and len(a.sha256()) == 64
    assert json.loads(a.text())["name"] == "lm-eval-mmlu"
    assert PromptTemplate(item="Q: {question}\n{choices}\nAnswer:").sha256() != a.sha256()
    assert a.header + a.item == DEFAULT_TEMPLATE
    assert DEFAULT_TEMPLATE.endswith("{question}\n{choices}\nAnswer:")


def test_from_file_json_and_toml(tmp_path: Path) -> None:
    js = tmp_path / "t.json"
    js.write_text(
        json.dumps({"name": "qa", "item": "Q: {question}\n{choices}\nA:"}), encoding="utf-8"
    )
    t = PromptTemplate.from_file(js)
    assert t.name == "qa" and t.header == PromptTemplate().header
    assert t.render(_ex("x?", ("p", "q"), 0)).endswith("Q: x?\nA. p\nB. q\nA:")
    toml = tmp_path / "t.toml"
    toml.write_text(
        'name = "paren"\nchoice = "({letter}) {text}"\nstrip_question = false\n', encoding="utf-8"
    )
    t2 = PromptTemplate.from_file(toml)
    assert "\n(A) p\n(B) q\n" in t2.render(_ex("x?", ("p", "q"), 0)) and not t2.strip_question
    assert PromptTemplate.from_file(toml) == t2  # frozen, comparable


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"itme": "{question}"}, r"unknown template field\(s\) \['itme'\]"),
        ({"item": "{question}\nAnswer:"}, r"lacks placeholder\(s\) \['choices'\]"),
        ({"header": "About {topic}.\n\n"}, r"unknown placeholder\(s\) \['topic'\]"),
        ({"choice": "{letter}. {text"}, "not a valid format string"),
        ({"strip_question": "yes"}, "true/false"),
    ],
)
def test_from_file_errors(tmp_path: Path, content: dict, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(TemplateError, match=message):
        PromptTemplate.from_file(path)


def test_from_file_missing_or_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="not found"):
        PromptTemplate.from_file(tmp_path / "none.json")
    path = tmp_path / "t.yaml"
    path.write_text("name: x", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"\.json or \.toml"):
        PromptTemplate.from_file(path)


def test_braces_in_question_are_kept() -> None:
    ex = _ex("Solve {x | x > 0} for {y}", ("{a}", "b"), 0)
    assert "Solve {x | x > 0} for {y}\nA. {a}\nB. b\nAnswer:" in PromptTemplate().render(ex)
