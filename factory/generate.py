"""Stage 2, generate: ask each teacher for every problem x config x sample, through the cache.

Configs come from the recipe (`plan_configs`); `answer-only` and `reference` come from the source.
Every response is cached the moment it arrives; the traces are assembled from the cache, so an
interrupted run resumes where it stopped. A reasoning teacher's thinking is split from its answer
(`reasoning`, `reasoning_source`); each of its answers that thought is also a trace of the long
(`-think`) twin of its config, asked once for both.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from factory.answers import final_answer_line
from factory.cache import GenerationCache, request_key
from factory.prompts import teacher_messages
from factory.reasoning import split_response
from factory.recipe import ConfigPlan, Recipe, plan_configs, teacher_name
from factory.recipe.plans import THINK, is_reasoning
from factory.recipe.schema import THINK_TAGS
from factory.responses import BadResponse, check_response, count_summary
from factory.sources import Problem
from factory.teachers import Failure, Request, make_teacher

log = logging.getLogger(__name__)
SAMPLING_BACKENDS = ("openai", "transformers")  # the teachers a new sample can say something new
UNPROMPTED = ("replay", "program")  # teachers that write one rationale per problem, unasked


class GenerateError(RuntimeError):
    """Requests that failed after every retry; what did arrive is cached. `counts` has how many
    failed of each class (`{"invalid JSON": 3, "HTTP 503": 1}`)."""

    def __init__(self, message: str, counts: dict[str, int] | None = None):
        super().__init__(message)
        self.counts = counts or {}


def generate(
    recipe: Recipe,
    problems: list[Problem],
    cache: GenerationCache,
    home: Path,
    attempts: dict[tuple[str, str], int] | None = None,
) -> list[dict]:
    """Traces for every config, problem and sample: teacher output plus where it came from.
    `attempts` raises the samples asked of a (config, problem id) above `cot.samples`."""
    plans = plan_configs(recipe)
    by_config, by_id = {p.name: p for p in plans}, {p.id: p for p in problems}
    traces = []
    for spec in recipe.teacher:
        name = teacher_name(spec)
        teacher = make_teacher(spec, home, recipe.source)
        mine = [p for p in plans if p.teacher == name and not p.thinking]
        asked = problems[: getattr(spec, "limit", None)]  # `teacher.limit`: the first N only
        requests = _requests(recipe, asked, mine, teacher, attempts or {})
        responses = _ask(teacher, name, requests, cache)
        fingerprint, tags = teacher.fingerprint(), getattr(spec, "reasoning_tags", THINK_TAGS)
        short = [
            _trace(by_config[r.config], r, responses[r.key], fingerprint, by_id[r.problem_id], tags)
            for r in requests
            if r.key in responses
        ]
        traces += short + _long_traces(recipe, spec, short)
    for plan in plans:
        if plan.teacher in ("gold", "reference"):
            traces.extend(_source_traces(plan, problems))
    return traces


def _requests(recipe: Recipe, problems, plans: list[ConfigPlan], teacher, attempts: dict) -> list:
    fingerprint = teacher.fingerprint()
    requests = []
    for plan, problem in ((plan, problem) for plan in plans for problem in problems):
        common = {
            "config": plan.name,
            "shape": plan.shape,
            "problem_id": problem.id,
            "question": problem.question,
        }
        if fingerprint["backend"] in UNPROMPTED:  # one rationale per problem, no prompt
            key = _unprompted_key(fingerprint, plan, problem)
            requests.append(Request(key=key, sample=0, messages=[], **common))
            continue
        messages = teacher_messages(
            problem.question,
            task=recipe.source.task,
            format=plan.format,
            level=plan.level,
            choices=problem.choices,
        )
        for sample in range(attempts.get((plan.name, problem.id), recipe.cot.samples)):
            key = request_key(fingerprint, messages, sample)
            requests.append(Request(key=key, sample=sample, messages=messages, **common))
    return requests


def _long_traces(recipe: Recipe, spec, short: list[dict]) -> list[dict]:
    """The traces of a reasoning teacher's long configs: each of its answers that thought, as a
    row of its config's `-think` twin (verify drops those over `cot.max_reasoning_tokens`)."""
    name = teacher_name(spec)
    thought = [t for t in short if t["reasoning"]]
    if not is_reasoning(spec, {name} if thought else ()):
        return []
    _warn_thoughtless(spec, len(short) - len(thought), len(short))
    long = {"thinking": True, "max_reasoning_tokens": recipe.cot.max_reasoning_tokens}
    return [{**t, "config": t["config"] + THINK, **long} for t in thought]


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


def more_attempts(recipe: Recipe, traces: list[dict], attempts: dict) -> dict:
    """The (config, problem id) pairs of sampling teachers that kept fewer than `cot.samples`
    verified traces and have attempts left (`cot.max_attempts`), with their new attempt count:
    one more sample for every trace still missing."""
    wanted, budget = recipe.cot.samples, recipe.cot.max_attempts or recipe.cot.samples
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


def _ask(teacher, name: str, requests: list[Request], cache: GenerationCache) -> dict[str, dict]:
    """Cached responses, after asking the teacher for the missing ones."""
    if teacher.fingerprint()["backend"] == "replay":
        replayed: dict[str, dict] = {}
        teacher.complete(
            requests, lambda request, response: replayed.update({request.key: response})
        )
        return replayed
    responses = _checked(name, cache.get_many([r.key for r in requests]), teacher.fingerprint())
    # Identical prompts (the same question twice) are asked once and answer both.
    missing = list({r.key: r for r in requests if r.key not in responses}.values())
    log.info(
        "teacher %s: %d distinct prompts, %d cached, %d to ask",
        name,
        len({r.key for r in requests}),
        len(responses),
        len(missing),
    )
    if not missing:
        return responses
    with tqdm(total=len(missing), desc=f"teacher {name}", unit="req") as bar:

        def on_result(request: Request, response: dict) -> None:
            cache.put(
                request.key,
                name,
                {"messages": request.messages, "sample": request.sample},
                response,
            )
            responses[request.key] = response
            bar.update()

        failures = teacher.complete(missing, on_result)
    if failures:
        raise _failed(name, failures, len(missing))
    return responses


def _checked(name: str, cached: dict[str, dict], fingerprint: dict) -> dict[str, dict]:
    """The cached answers that pass today's checks: older versions kept empty or oversize ones."""
    if fingerprint["backend"] != "openai":
        return cached
    kept, stale = {}, Counter()
    for key, response in cached.items():
        try:
            kept[key] = check_response(response, fingerprint["max_tokens"])
        except BadResponse as bad:
            stale[bad.kind] += 1
    if stale:
        summary = count_summary(stale)
        log.info("teacher %s: %d cached answers asked again: %s", name, stale.total(), summary)
    return kept


def _failed(name: str, failures: list[Failure], asked: int) -> GenerateError:
    """The error for requests that failed after retries, counting each class of failure."""
    counts = Counter(f.kind for f in failures)
    summary, first = count_summary(counts), failures[0]
    log.warning("teacher %s: %d requests failed after retries: %s", name, len(failures), summary)
    return GenerateError(
        f"teacher {name}: {len(failures)} of {asked} requests failed after retries: {summary} "
        f"(first: config {first.request.config}, problem {first.request.problem_id}: "
        f"{first.error}). The {asked - len(failures)} that succeeded are cached; re-run to resume.",
        dict(counts),
    )


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


def _source_traces(plan: ConfigPlan, problems: list[Problem]) -> list[dict]:
    """`answer-only` and `reference` come from the source itself, no teacher involved."""
    traces = []
    for problem in problems:
        answer_line = final_answer_line(problem.answer)
        if plan.teacher == "gold":
            text = answer_line
        elif problem.reference_rationale:
            text = _with_answer_line(problem.reference_rationale, answer_line)
        else:
            continue
        traces.append(
            {
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
        )
    return traces


def _with_answer_line(rationale: str, answer_line: str) -> str:
    if "the answer is" in rationale.lower()[-80:]:
        return rationale
    return f"{rationale.rstrip()}\n{answer_line}"
