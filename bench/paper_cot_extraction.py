"""Answer extraction on every CoT file the paper released, against the gold answers.

For each `paper-cot/*/*.json` file (alpaca rows `{instruction, output}`) it runs the factory's own
extractor (`factory.answers.extract_answer`) on every output and `is_correct` against the gold
answer of the same question: SVAMP golds from `svamp/train.jsonl` + `svamp/test.jsonl`, GSM8K
golds from `gsm8k/train.jsonl` (`#### N`), StrategyQA golds from the paper's own answer-only file
`strategyQA_onlyans.json` (the dataset's True/False labels; no other StrategyQA file is here).
Columns: `rows`; `gold` (rows whose question has a gold answer); `extracted` (share of rows with
an answer); `agree` (share of gold rows whose answer is judged equal to the gold: the teacher's
accuracy as this extractor sees it); `unparseable` (rows with no answer).

    .venv/bin/python bench/paper_cot_extraction.py [DATA_DIR] [--show 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from factory.answers import extract_answer, is_correct, normalize_gold  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
TASKS = {"svamp": "math", "gsm8k": "math", "strategyqa": "yes_no"}


@dataclass
class FileScore:
    name: str
    task: str
    rows: int = 0
    gold: int = 0
    extracted: int = 0
    agree: int = 0
    misses: list[str] = field(default_factory=list)  # output tails with no answer

    @property
    def extraction_rate(self) -> float:
        return self.extracted / self.rows if self.rows else 0.0

    @property
    def agreement(self) -> float | None:
        return self.agree / self.gold if self.gold else None


def question_key(question: str) -> str:
    return " ".join(question.split())


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def gold_answers(data: Path, folder: str) -> dict[str, str]:
    """{question key: normalised gold} for one paper-cot folder; empty when none is available."""
    if folder == "svamp":
        rows = [r for split in ("train", "test") for r in _jsonl(data / "svamp" / f"{split}.jsonl")]
        pairs = [(r["question"], r["answer"]) for r in rows]
    elif folder == "gsm8k":
        pairs = [(r["question"], r["answer"]) for r in _jsonl(data / "gsm8k" / "train.jsonl")]
    else:
        path = data / "paper-cot" / "strategyqa" / "strategyQA_onlyans.json"
        pairs = [(r["instruction"], r["output"]) for r in json.loads(path.read_text())]
    return {question_key(q): normalize_gold(a, TASKS[folder]) for q, a in pairs}


def score_file(path: Path, task: str, gold: dict[str, str]) -> FileScore:
    """Extraction and agreement of one alpaca file of teacher outputs."""
    score = FileScore(path.name, task)
    for row in json.loads(path.read_text(encoding="utf-8")):
        score.rows += 1
        predicted = extract_answer(row["output"], task)
        if predicted is None:
            score.misses.append(" ".join(row["output"].split())[-90:])
        score.extracted += predicted is not None
        answer = gold.get(question_key(row["instruction"]))
        if answer is not None:
            score.gold += 1
            score.agree += is_correct(predicted, answer, task)
    return score


def score_all(data: Path) -> list[FileScore]:
    scores = []
    for folder, task in TASKS.items():
        gold = gold_answers(data, folder)
        for path in sorted((data / "paper-cot" / folder).glob("*.json")):
            scores.append(score_file(path, task, gold))
    return scores


def table(scores: list[FileScore]) -> str:
    lines = [
        "| file | task | rows | gold | extracted | agree | unparseable |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in scores:
        agree = f"{s.agreement:.2%}" if s.agreement is not None else "n/a"
        lines.append(
            f"| {s.name} | {s.task} | {s.rows} | {s.gold} | {s.extraction_rate:.2%} | {agree} "
            f"| {len(s.misses)} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--show", type=int, default=3, help="unparseable output tails per file")
    parser.add_argument("--json", type=Path, help="also write the scores here")
    args = parser.parse_args()
    if not (args.data / "paper-cot").is_dir():
        sys.exit(f"error: {args.data / 'paper-cot'} is absent (see ../shared/data/README.md)")
    scores = score_all(args.data)
    print(table(scores))
    for s in scores:
        for tail in s.misses[: args.show]:
            print(f"unparseable in {s.name}: ...{tail}")
    if args.json:
        args.json.write_text(json.dumps([asdict(s) for s in scores], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
