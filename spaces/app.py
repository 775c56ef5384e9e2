"""cot-factory demo Space: try a recipe's distilled students side by side.

Self-contained: it needs gradio, transformers, peft, datasets and torch, and `answers.py` and
`questions.py` (the factory's answer extractor and question rendering) next to it.
`space_config.json` beside it (or the file named by $COT_FACTORY_SPACE_CONFIG) names the base
model, the adapters, the dataset and the leaderboard. One base model stays in memory with every
LoRA adapter attached; all students answer a question in a single batched `generate`, one row
each, PEFT choosing each row's adapter (`adapter_names`).
"""

from __future__ import annotations

import json
import os
import queue
import threading
from functools import partial
from pathlib import Path

import gradio as gr
import pandas as pd
import torch
from answers import extract_answer, is_correct
from datasets import load_dataset
from peft import PeftModel
from questions import render_question
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.streamers import BaseStreamer

HERE = Path(__file__).resolve().parent
BASE = "__base__"  # PEFT's adapter name for "no adapter" in a mixed batch
HUB = "https://huggingface.co"
COT_COLUMNS = ("config", "teacher", "format", "level", "num_steps", "num_tokens")
BOARD_COLUMNS = ("student", "config", "teacher", "format", "level", "accuracy")
COT_RENAMES = {"num_steps": "steps", "num_tokens": "tokens"}
HOW_TO = (
    "Ask a question, or pick a dataset problem. **test** problems are held out: the students "
    "never saw them, so that is where their answers are scored (✅/❌ against the gold). "
    "**train** problems are the ones the teacher wrote chain-of-thought for, at every "
    "granularity level: pick one to compare those CoTs (the students were trained on them, so "
    "their marks there are no fair test). Each student answers greedily, all in one batch."
)
TABLE = {"interactive": False, "column_widths": ["8%", "9%", "6%", "5%", "5%", "6%", "8%", "53%"]}
PLOT = {"x": "level", "y": "accuracy", "color": "series", "x_lim": [1, 6], "y_lim": [0, 1]}


def load_config(path: str | Path | None = None) -> dict:
    """The Space config: `path`, else $COT_FACTORY_SPACE_CONFIG, else space_config.json here."""
    path = path or os.environ.get("COT_FACTORY_SPACE_CONFIG") or HERE / "space_config.json"
    config = json.loads(Path(path).read_text(encoding="utf-8"))
    for adapter in config.get("adapters") or []:
        if not adapter.get("repo"):
            raise SystemExit(
                f"{path}: adapter {adapter.get('label')!r} names no folder or repo: rebuild the "
                "Space with `cot-factory space build RECIPE` (or `cot-factory demo RECIPE`)"
            )
    return config


class RowStreamer(BaseStreamer):
    """Receives each decoding step's tokens for the whole batch and keeps every row's tokens up
    to its end-of-sequence; `snapshots()` yields them while `generate` runs in another thread."""

    def __init__(self, rows: int, stop_ids: set[int]):
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.done = [False] * rows
        self.stop_ids, self.prompt_seen, self.cancelled = stop_ids, False, False
        self.events: queue.Queue = queue.Queue()  # None: a step, True: the end, or an exception

    def put(self, value: torch.Tensor) -> None:
        if self.cancelled:  # the visitor left: stop generating for nobody
            raise InterruptedError("generation cancelled")
        if not self.prompt_seen:  # generate first hands over the prompt itself
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if not self.done[row]:
                self.done[row] = token in self.stop_ids
                if not self.done[row]:
                    self.tokens[row].append(token)
        self.events.put(None)

    def end(self) -> None:
        self.events.put(True)

    def snapshots(self):
        """(every row's tokens so far, whether generation ended) after each step; steps that
        queued up meanwhile are merged into one."""
        event = None
        while event is not True:
            event = self.events.get()
            while event is None and not self.events.empty():
                event = self.events.get()
            if isinstance(event, BaseException):
                raise event
            yield [list(tokens) for tokens in self.tokens], event is True


class Students:
    """The base model with every adapter attached through PEFT, and its tokenizer."""

    def __init__(self, config: dict):
        adapters = config.get("adapters") or []
        self.labels = [config["base_label"], *(a["label"] for a in adapters)]
        self.names = [BASE, *(f"adapter_{i}" for i in range(len(adapters)))]  # PEFT-safe names
        self.max_input = int(config.get("max_input_tokens") or 512)
        self.max_new = int(config.get("max_new_tokens") or 256)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = _load_tokenizer(config)
        model = AutoModelForCausalLM.from_pretrained(config["base_model"], dtype=torch.float32)
        for name, adapter in zip(self.names[1:], adapters, strict=True):
            source = {"revision": adapter.get("revision"), "adapter_name": name}
            if isinstance(model, PeftModel):
                model.load_adapter(adapter["repo"], **source)
            else:
                model = PeftModel.from_pretrained(model, adapter["repo"], **source)
        self.model = model.to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [] if eos is None else [eos]
        self.stop_ids = (set(eos) | {self.tokenizer.eos_token_id}) - {None}
        self.lock = threading.Lock()  # PEFT's per-row hooks live on the shared model

    def encode(self, question: str) -> torch.Tensor:
        """The chat-templated question as input ids (1, length); ValueError when too long."""
        messages = [{"role": "user", "content": question}]
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        if ids.shape[1] > self.max_input:
            raise ValueError(
                f"The question is {ids.shape[1]} tokens long with the chat template; this Space "
                f"takes at most {self.max_input}. Please shorten it."
            )
        return ids

    def stream(self, ids: torch.Tensor, max_new_tokens: int):
        """Every student's greedy answer to one prompt from ONE batched `generate` (a row per
        student, all the same length, so no padding); yields every row's text after each step."""
        streamer = RowStreamer(len(self.names), self.stop_ids)
        batch = ids.to(self.device).repeat(len(self.names), 1)
        kwargs = {"adapter_names": self.names} if isinstance(self.model, PeftModel) else {}
        new_tokens = max(1, min(int(max_new_tokens), self.max_new))

        def run() -> None:
            try:
                with self.lock, torch.inference_mode():
                    self.model.generate(
                        input_ids=batch,
                        attention_mask=torch.ones_like(batch),
                        max_new_tokens=new_tokens,
                        do_sample=False,
                        eos_token_id=sorted(self.stop_ids),
                        pad_token_id=self.tokenizer.pad_token_id,
                        streamer=streamer,
                        **kwargs,
                    )
            except Exception as error:  # handed to the consumer, which raises it
                streamer.events.put(error)

        threading.Thread(target=run, daemon=True).start()
        try:
            for tokens, last in streamer.snapshots():
                texts = [self.tokenizer.decode(row, skip_special_tokens=True) for row in tokens]
                yield texts if last else [text.rstrip("\ufffd") for text in texts]  # no half chars
        finally:
            streamer.cancelled = True


def _load_tokenizer(config: dict):
    """The tokenizer (and chat template) the students were trained with, set up to generate."""
    first = (config.get("adapters") or [None])[0]
    if config.get("tokenizer"):
        repo, revision = config["tokenizer"], None
    elif first and _has_tokenizer(first["repo"], first.get("revision")):
        repo, revision = first["repo"], first.get("revision")
    else:
        repo, revision = config["base_model"], None
    tokenizer = AutoTokenizer.from_pretrained(repo, revision=revision)
    if tokenizer.pad_token is None:  # pads rows that finished early
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _has_tokenizer(repo: str, revision: str | None) -> bool:
    if Path(repo).is_dir():
        return (Path(repo) / "tokenizer_config.json").is_file()
    from huggingface_hub import file_exists

    try:
        return file_exists(repo, "tokenizer_config.json", revision=revision)
    except Exception:  # offline or private: fall back to the base model's tokenizer
        return False


def load_problems(config: dict) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """Picker entries ('test/<id>', 'train/<id>' -> problem) and the teacher CoTs by problem id.

    Test problems are held out (students are scored there); the CoT configs cover train problems
    only, so every train problem with a CoT is offered too."""
    spec = config.get("dataset")
    if not spec:
        return {}, {}
    source = {"path": spec["repo"], "revision": spec.get("revision")}
    if Path(spec["repo"]).is_dir():  # datasets caches a local folder by its name, not its path
        source["download_mode"] = "force_redownload"
    split = spec.get("split") or "test"
    rows = load_dataset(name=spec.get("problems_config") or "problems", split=split, **source)
    problems = {f"test/{row['id']}": {**row, "split": "test"} for row in rows}
    cots: dict[str, list[dict]] = {}
    for cot in spec.get("cot_configs") or []:
        for row in load_dataset(name=cot["name"], split="train", **source):
            cots.setdefault(row["id"], []).append({**row, "config": cot["name"]})
            problems.setdefault(f"train/{row['id']}", {**row, "split": "train"})
    return problems, cots


def cot_table(rows: list[dict]) -> pd.DataFrame:
    """The teacher's CoTs for one problem: one row per config (and sample)."""
    frame = pd.DataFrame(rows, columns=[*COT_COLUMNS, "correct", "completion"]).rename(
        columns=COT_RENAMES
    )
    frame["correct"] = frame["correct"].map({True: "✅", False: "❌"})
    frame["completion"] = frame["completion"].map(lambda messages: messages[-1]["content"])
    return frame


def show_problem(problems: dict, cots: dict, task: str, key: str | None):
    """A picked problem: its question text, its teacher CoTs and a note on what they are."""
    problem = problems.get(key or "")
    if problem is None:
        return "", cot_table([]), ""
    rows = cots.get(problem["id"], [])
    note = (
        f"**{len(rows)} teacher CoT(s)** for this train problem, one per config (and sample)."
        if problem["split"] == "train"
        else "**No teacher CoT:** this is a held-out test problem; the teacher wrote CoTs for "
        "train problems only. Pick a `train` problem to read them."
    )
    return render_question(problem["question"], task, problem.get("choices")), cot_table(rows), note


def mark(text: str, task: str, problem: dict | None) -> tuple[str, dict]:
    """A panel's answer line (✅/❌ against the gold for a dataset problem) and its record."""
    answer = extract_answer(text, task, (problem or {}).get("choices"))
    shown = f"`{answer}`" if answer is not None else "none found"
    if problem is None:
        return f"**Answer:** {shown}", {"answer": answer, "correct": None}
    correct = is_correct(answer, problem["answer"], task)
    seen = " (a train problem: students saw it)" if problem["split"] == "train" else ""
    verdict = f"{'✅ right' if correct else '❌ wrong'}, gold `{problem['answer']}`{seen}"
    return f"**Answer:** {shown} {verdict}", {"answer": answer, "correct": correct}


def ask(students: Students, problems: dict, task: str, question: str, key, max_new_tokens):
    """Stream every student's answer side by side; then mark each (and score a dataset problem).
    Yields the panels' texts, their answer lines, and at the end one record per student."""
    question, n = (question or "").strip(), len(students.labels)
    if not question:
        raise gr.Error("Type a question or pick a problem first.")
    problem = problems.get(key or "")
    if problem and question != render_question(problem["question"], task, problem.get("choices")):
        problem = None  # edited after picking: a free question, nothing to score against
    try:
        ids = students.encode(question)
    except ValueError as error:
        raise gr.Error(str(error)) from None
    texts = [""] * n
    for texts in students.stream(ids, int(max_new_tokens)):
        yield *texts, *["⏳ generating…"] * n, None
    marked = [mark(text, task, problem) for text in texts]
    records = [
        {"student": label, "text": text, **record}
        for label, text, (_, record) in zip(students.labels, texts, marked, strict=True)
    ]
    yield *texts, *(line for line, _ in marked), records


def leaderboard_frames(rows: list[dict]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The leaderboard table (accuracy with its 95% interval as text) and, per student, the
    accuracy-vs-level series: one per format (and teacher, when several); the base and the
    level-less configs (answer-only, reference) as flat lines."""
    table = pd.DataFrame(rows, columns=[*BOARD_COLUMNS, "base_accuracy", "n"])
    table["accuracy"] = [_pct(r["accuracy"], r.get("ci95")) for r in rows]
    table["base_accuracy"] = [_pct(r.get("base_accuracy")) for r in rows]
    plots = {}
    for student in dict.fromkeys(r["student"] for r in rows):
        mine = [r for r in rows if r["student"] == student]
        levelled = [r for r in mine if r.get("level")]
        several = len({r.get("teacher") for r in levelled}) > 1  # then a series per teacher too
        points = [(_series(r, several), r["level"], r["accuracy"]) for r in levelled]
        flat = [(r["config"], r["accuracy"]) for r in mine if not r.get("level")]
        base = [r["base_accuracy"] for r in mine if r.get("base_accuracy") is not None]
        flat += [("base model", base[0])] if base else []
        points += [(name, level, acc) for name, acc in flat for level in (1, 6)]
        plots[student] = pd.DataFrame(points, columns=["series", "level", "accuracy"])
    return table, plots


def _series(row: dict, per_teacher: bool) -> str:
    return f"{row['format']} · {row['teacher']}" if per_teacher else row["format"]


def _pct(accuracy: float | None, interval: list[float] | None = None) -> str:
    if accuracy is None:
        return "-"
    low_high = f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else ""
    return f"{100 * accuracy:.1f}%{low_high}"


def links(config: dict) -> str:
    """Markdown links to the base model, every adapter's card and the dataset."""
    models = [
        f"{config['base_label']}: {_link(config.get('base_model_id') or config['base_model'])}"
    ]
    for a in config.get("adapters") or []:
        models.append(f"{a['label']}: {_link(a.get('repo_id') or a['repo'], a.get('card_url'))}")
    spec = config.get("dataset") or {}
    dataset = _link(spec.get("repo", "-"), spec.get("url"), kind="datasets/")
    return f"**Models:** {' · '.join(models)}  \n**Dataset:** {dataset}"


def _link(repo: str, url: str | None = None, kind: str = "") -> str:
    if url:
        return f"[{repo}]({url})"
    local = Path(repo).exists() or repo.startswith((".", "/")) or repo.count("/") != 1
    return f"`{repo}`" if local else f"[{repo}]({HUB}/{kind}{repo})"


def build_app(config: dict) -> gr.Blocks:
    """The demo: load the students and the dataset, lay out the two tabs, wire the events."""
    students, task = Students(config), config.get("task", "math")
    problems, cots = load_problems(config)
    title = config.get("title") or "cot-factory students"
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {title}\n\n{config.get('description', '')}")
        gr.Markdown(links(config), elem_id="links")
        with gr.Tab("Try the students"):
            gr.Markdown(HOW_TO)
            choices = [
                (f"{p['split']} · {p['id']} · {_short(p['question'])}", key)
                for key, p in problems.items()
            ]
            picker = gr.Dropdown(choices, value=None, label="Dataset problem", elem_id="picker")
            question = gr.Textbox(label="Question", lines=3, elem_id="question")
            with gr.Row():
                cap = students.max_new
                info = f"at most {cap}; questions may be {students.max_input} tokens long"
                tokens = gr.Slider(1, max(2, cap), cap, step=1, label="Max new tokens", info=info)
                submit = gr.Button("Ask every student", variant="primary", elem_id="submit")
            panels = student_panels(students.labels)
            with gr.Accordion("Teacher CoTs for the selected problem", open=True):
                note = gr.Markdown(elem_id="cot-note")
                empty = cot_table([])
                cot_view = gr.Dataframe(empty, wrap=True, elem_id="teacher-cots", **TABLE)
        with gr.Tab("Leaderboard"):
            leaderboard_tab(config)
        pick = partial(show_problem, problems, cots, task)
        picker.input(pick, picker, [question, cot_view, note], api_name="pick")
        question.input(lambda: None, None, picker, api_visibility="private", queue=False)
        answer = partial(ask, students, problems, task)
        event = {"fn": answer, "inputs": [question, picker, tokens], "outputs": panels}
        event |= {"concurrency_limit": 1, "concurrency_id": "generate"}  # one model, one at a time
        submit.click(**event, api_name="answer")
        question.submit(**event, api_visibility="private")

        @gr.api(api_name="leaderboard")
        def leaderboard() -> list[dict]:
            """The config's leaderboard rows (student, config, accuracy, ci95, base_accuracy)."""
            return config.get("leaderboard") or []

    return demo


def student_panels(labels: list[str]) -> list:
    """One column per student, side by side: its streaming answer and its answer line; then a
    hidden JSON of the final records. Returns the outputs in that order (texts, lines, JSON)."""
    texts, lines = [], []
    with gr.Row(equal_height=True):
        for i, label in enumerate(labels):
            key = f"student-{i}"
            with gr.Column(min_width=220, elem_id=key, elem_classes="student"):
                text = gr.Textbox(label=label, lines=10, interactive=False, elem_id=f"{key}-text")
                texts.append(text)
                lines.append(gr.Markdown(elem_id=f"{key}-answer"))
    return [*texts, *lines, gr.JSON(visible=False)]


def leaderboard_tab(config: dict) -> None:
    """The results table, one accuracy-vs-granularity plot per student, and the links."""
    table, plots = leaderboard_frames(config.get("leaderboard") or [])
    gr.Markdown("Accuracy on the held-out test problems, with its 95% Wilson interval.")
    gr.Dataframe(table, interactive=False, elem_id="leaderboard")
    for student, frame in plots.items():
        title = f"{student}: accuracy vs CoT granularity (level 1 = coarsest steps, 6 = finest)"
        gr.LinePlot(frame, title=title, x_title="granularity level", **PLOT)
    gr.Markdown(links(config))


def _short(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def main() -> None:
    """Serve on $GRADIO_SERVER_NAME (127.0.0.1):$GRADIO_SERVER_PORT; one generation at a time,
    at most $COT_FACTORY_QUEUE_SIZE (32) visitors waiting."""
    port = os.environ.get("GRADIO_SERVER_PORT")
    demo = build_app(load_config())
    demo.queue(max_size=int(os.environ.get("COT_FACTORY_QUEUE_SIZE", "32")))
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(port) if port else None,
    )


if __name__ == "__main__":
    main()
