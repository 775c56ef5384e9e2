"""Stage 2, generate: ask each teacher for every problem x config x sample, through the cache.

Configs come from the recipe (`plan_configs`); `answer-only` and `reference` come from the source.
`ask` asks each teacher for what the cache lacks, caching each answer as it arrives (an
interrupted run resumes where it stopped); `generate` reads the traces back as a stream, in order:
each teacher's configs, problems and samples, its long traces, then the source's configs. A
reasoning teacher's thinking is split from its answer (`reasoning`, `reasoning_source`); each of
its answers that thought is also a trace of its config's long (`-think`) twin, asked once for both.
No list of every request or trace is held: memory does not grow with the traces.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from factory.answers import final_answer_line
from factory.cache import (
    GenerateError,
    GenerationCache,
    ask_missing,
    checked,
    chunks,
    failed,
    request_key,
)
from factory.prompts import teacher_messages
from factory.reasoning import split_response
from factory.recipe import ConfigPlan, Recipe, plan_configs, teacher_name
from factory.recipe.plans import THINK, is_reasoning
from factory.recipe.schema import THINK_TAGS
from factory.sources import Problem
from factory.teachers import Request, make_teacher

__all__ = ["GenerateError", "Stream", "Work", "ask", "generate", "more_attempts", "sampled"]
log = logging.getLogger(__name__)
SAMPLING_BACKENDS = ("openai", "transformers")  # the teachers a new sample can say something new
UNPROMPTED = ("replay", "program")  # teachers that write one rationale per problem, unasked
Pairs = set[tuple[str, str]] | None  # (config, problem id) pairs to ask or read; None: all


class Stream:
    """Traces read afresh each time they are iterated (`make()` starts the read): a stage's
    output that stays on disk instead of in memory, yet can be gone through more than once."""

    def __init__(self, make: Callable[[], Iterator[dict]]):
        self._make = make

    def __iter__(self) -> Iterator[dict]:
        return iter(self._make())


@dataclass(frozen=True)
class Work:
    """What one pass over the teachers' requests covers: `attempts` raises the samples asked
    of a (config, problem id) above `cot.samples`; `pairs`, when given, limits the pass to them;
    `warned` names the teachers already warned about (passes that share it warn once)."""

    recipe: Recipe
    problems: list[Problem]
    cache: GenerationCache
    home: Path
    attempts: dict = field(default_factory=dict)
    pairs: Pairs = None
    warned: set[str] = field(default_factory=set)

    def teachers(self, backends: tuple[str, ...] | None = None) -> Iterator[tuple]:
        """(spec, teacher) of every teacher (of `backends` only, when given)."""
        for spec in self.recipe.teacher:
            if backends is None or spec.backend in backends:
                yield spec, make_teacher(spec, self.home, self.recipe.source)


def ask(work: Work) -> None:
    """Ask every teacher for the answers the cache lacks, each cached as it arrives. Raises
    GenerateError, once every request was tried, when some failed."""
    for spec, teacher in work.teachers():
        name, backend = teacher_name(spec), teacher.fingerprint()["backend"]
        if backend == "replay":  # replayed files are read, not asked
            continue
        requests, in_order = _teacher_requests(work, spec, teacher, True), backend in UNPROMPTED
        found, failures = ask_missing(teacher, name, requests, work.cache, in_order=in_order)
        prompts, missing = found["distinct"], found["missing"]
        log.info(
            "teacher %s: %d distinct prompts, %d cached, %d to ask",
            *(name, prompts, prompts - missing, missing),
        )
        if failures:
            raise failed(name, failures, missing)


def generate(work: Work) -> Iterator[dict]:
    """Traces for every config, problem and sample that has an answer: teacher output plus
    where it came from, read from the cache (replayed files: from the files); asks nothing."""
    for spec, teacher in work.teachers():
        yield from _teacher_traces(work, spec, teacher)
    for plan in plan_configs(work.recipe):
        if plan.teacher in ("gold", "reference"):
            yield from _source_traces(plan, work.problems)


def sampled(work: Work) -> Iterator[dict]:
    """The short traces of the sampling teachers (those `more_attempts` may ask again)."""
    for spec, teacher in work.teachers(SAMPLING_BACKENDS):
        yield from _answered(work, spec, teacher)


def _teacher_traces(work: Work, spec, teacher) -> Iterator[dict]:
    """A teacher's short traces, then (read again) its long ones."""
    answers = thought = 0
    for trace in _answered(work, spec, teacher):
        answers, thought = answers + 1, thought + bool(trace["reasoning"])
        yield trace
    name = teacher_name(spec)
    if is_reasoning(spec, {name} if thought else ()):
        if name not in work.warned:
            work.warned.add(name)
            _warn_thoughtless(spec, answers - thought, answers)
        if thought:
            yield from _long_traces(work.recipe, _answered(work, spec, teacher))


def _answered(work: Work, spec, teacher) -> Iterator[dict]:
    """The short traces of one teacher's answered requests, in request order."""
    by_config = {p.name: p for p in plan_configs(work.recipe)}
    by_id = {p.id: p for p in work.problems}
    fingerprint, tags = teacher.fingerprint(), getattr(spec, "reasoning_tags", THINK_TAGS)
    for chunk in chunks(_teacher_requests(work, spec, teacher)):
        responses = _responses(teacher, teacher_name(spec), fingerprint, chunk, work.cache)
        for r in chunk:
            if r.key in responses:
                problem = by_id[r.problem_id]
                yield _trace(by_config[r.config], r, responses[r.key], fingerprint, problem, tags)


def _responses(teacher, name: str, fingerprint: dict, chunk: list, cache: GenerationCache) -> dict:
    """The answers to a chunk of requests: cached ones, or a replay teacher's from its files."""
    if fingerprint["backend"] != "replay":
        return checked(name, cache.get_many([r.key for r in chunk]), fingerprint)
    replayed: dict[str, dict] = {}
    teacher.complete(chunk, lambda request, response: replayed.update({request.key: response}))
    return replayed


def _teacher_requests(work: Work, spec, teacher, distinct: bool = False) -> Iterator[Request]:
    """A teacher's requests: its short configs x the problems it is asked about (`limit`), in
    that order, a problem's samples together; `distinct`: each prompt once (a question asked
    twice in a config is one prompt), remembering a config's questions while it lasts."""
    plans = [p for p in plan_configs(work.recipe) if p.teacher == teacher_name(spec)]
    asked = work.problems[: getattr(spec, "limit", None)]  # `teacher.limit`: the first N only
    fingerprint = teacher.fingerprint()
    for plan in (p for p in plans if not p.thinking):
        samples: dict[tuple, int] = {}  # per question: the samples already requested
        for problem in asked:
            if work.pairs is not None and (plan.name, problem.id) not in work.pairs:
                continue
            question = (problem.question, tuple(problem.choices or ()))
            first = samples.get(question, 0) if distinct else 0
            for request in _problem_requests(work, plan, problem, fingerprint, first):
                samples[question] = request.sample + 1
                yield request


def _problem_requests(work: Work, plan: ConfigPlan, problem: Problem, fingerprint: dict, first):
    """A problem's requests in one config, from sample `first` on."""
    common = {"config": plan.name, "shape": plan.shape, "problem_id": problem.id}
    common["question"] = problem.question
    if fingerprint["backend"] in UNPROMPTED:  # one rationale per problem, no prompt
        if not first:
            key = _unprompted_key(fingerprint, plan, problem)
            yield Request(key=key, sample=0, messages=[], **common)
        return
    samples = work.attempts.get((plan.name, problem.id), work.recipe.cot.samples)
    if first >= samples:
        return
    task, choices = work.recipe.source.task, problem.choices
    shape = {"format": plan.format, "level": plan.level}
    messages = teacher_messages(problem.question, task=task, choices=choices, **shape)
    for sample in range(first, samples):
        key = request_key(fingerprint, messages, sample)
        yield Request(key=key, sample=sample, messages=messages, **common)


def _long_traces(recipe: Recipe, short: Iterable[dict]) -> Iterator[dict]:
    """The traces of a reasoning teacher's long configs: each of its answers that thought, as a
    row of its config's `-think` twin (verify drops those over `cot.max_reasoning_tokens`)."""
    long = {"thinking": True, "max_reasoning_tokens": recipe.cot.max_reasoning_tokens}
    return ({**t, "config": t["config"] + THINK, **long} for t in short if t["reasoning"])


def _warn_thoughtless(spec, missing: int, answers: int) -> None:
    """One warning when a teacher marked `reasoning: true` sent no thinking at all."""
    name = teacher_name(spec)
    if answers and missing == answers:
        opening, closing = getattr(spec, "reasoning_tags", THINK_TAGS)
        log.warning(
            "teacher %s is marked `reasoning: true`, but none of its %d answers carried thinking "
            "(no `reasoning` or `reasoning_content` field, no %s...%s in the text): its -think "
            "configs are empty. Serve it with a reasoning parser (vLLM or SGLang: "
            "--reasoning-parser), turn its thinking on (extra_body: {chat_template_kwargs: "
            "{enable_thinking: true}}), or set its reasoning_tags",
            *(name, answers, opening, closing),
        )
    elif missing:
        log.info("teacher %s: %d of its %d answers did not think", name, missing, answers)


def _unprompted_key(fingerprint: dict, plan: ConfigPlan, problem: Problem) -> str:
    """Replay's rationales are found by config and problem; a program's go through the cache like
    any answer, keyed by what decides them: the program (version, task), the shape, the question."""
    if fingerprint["backend"] == "replay":
        return f"{plan.name}/{problem.id}"
    return request_key(fingerprint, [{"shape": plan.shape, "question": problem.question}], 0)


def more_attempts(recipe: Recipe, traces: Iterable[dict], attempts: dict) -> dict:
    """The (config, problem id) pairs of sampling teachers that kept fewer than `cot.samples`
    verified traces and have attempts left (`cot.max_attempts`), with their new attempt count:
    one more sample for every trace still missing. Reads `traces` only when a budget allows."""
    wanted, budget = recipe.cot.samples, recipe.cot.max_attempts or recipe.cot.samples
    if budget <= wanted:
        return {}
    sampling = {teacher_name(t) for t in recipe.teacher if t.backend in SAMPLING_BACKENDS}
    kept: Counter[tuple[str, str]] = Counter()
    for trace in traces:
        if trace["teacher"] in sampling and not trace.get("thinking"):  # long twins ask nothing
            pair = (trace["config"], trace["problem_id"])
            kept[pair] += trace["drop_reason"] is None
    more = {}
    for pair, n in kept.items():
        asked = attempts.get(pair, wanted)
        if n < wanted and asked < budget:
            more[pair] = min(asked + wanted - n, budget)
    return more


def _trace(
    plan: ConfigPlan,
    request: Request,
    response: dict,
    fingerprint: dict,
    problem: Problem,
    tags: tuple[str, str] = THINK_TAGS,
) -> dict:
    thinking = split_response(response, tags)
    return {
        "config": plan.name,
        "teacher": plan.teacher,
        "teacher_params": fingerprint,
        "format": plan.format,
        "level": plan.level,
        "problem_id": request.problem_id,
        "sample": request.sample,
        "messages": request.messages,
        "raw_output": response["text"],  # as received, inline thinking included
        "output": thinking.answer,  # the text without the thinking
        "reasoning": thinking.reasoning,
        "reasoning_source": thinking.source,
        "thinking_cut": thinking.cut,
        "finish_reason": response["finish_reason"],
        "usage": response.get("usage") or {},  # what the endpoint counted; {} when unknown
        "replica": response.get("replica"),  # the `openai` URL that answered, where known
        **_gold(problem),
    }


def _gold(problem: Problem) -> dict:
    return {"question": problem.question, "answer": problem.answer, "choices": problem.choices}


def _source_traces(plan: ConfigPlan, problems: list[Problem]) -> Iterator[dict]:
    """`answer-only` and `reference` come from the source itself, no teacher involved."""
    for problem in problems:
        answer_line = final_answer_line(problem.answer)
        if plan.teacher == "gold":
            text = answer_line
        elif problem.reference_rationale:
            text = _with_answer_line(problem.reference_rationale, answer_line)
        else:
            continue
        yield {
            "config": plan.name,
            "teacher": plan.teacher,
            "teacher_params": {"backend": "source"},
            "format": None,
            "level": None,
            "problem_id": problem.id,
            "sample": 0,
            "messages": [],
            "raw_output": text,
            "output": text,
            "reasoning": None,
            "reasoning_source": None,
            "finish_reason": "stop",
            **_gold(problem),
        }


def _with_answer_line(rationale: str, answer_line: str) -> str:
    if "the answer is" in rationale.lower()[-80:]:
        return rationale
    return f"{rationale.rstrip()}\n{answer_line}"
