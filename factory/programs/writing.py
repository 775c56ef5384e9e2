"""A solution written out at one granularity level (factory/prompts/levels.yaml) in one format.

For a solution of n operations shown on g level-2 lines, the steps `factory.verify.count_steps`
measures are, by level 1-6:

    cot   1, g, n, n, 2n, 3n + 2      (a plan; bare equations; one named step per operation; one
                                       sentence each; a reason then a named equation; a rule, a
                                       reason, the equation, and a check of two sentences)
    subq  2, 2g, 2n, 2n, 3n, 4n + 3   (each step a sub-question and its answer; a check question)
    sym   1, 1 + g, 1 + n, 1 + n, 1 + 2n, 3n + 3   (the symbols' line first)

so steps never fall as the level rises, and rise from level 4 to 5 and from 5 to 6; from level 2
up, each level also writes more tokens than the one below it (level 1, a sentence of plan, may
outweigh level 2's bare equations). A rule is said in full once, then referred back to, so long
rationales do not trip the repetition check. Every rationale ends with its answer line.
"""

from __future__ import annotations

from factory.answers import final_answer_line
from factory.programs.solution import Solution, Step, capitalized, listed

FORMATS = ("cot", "subq", "sym")


def write(solution: Solution, format: str, level: int) -> str:
    """The rationale, ending with `The answer is X.`"""
    lines = WRITERS[format](solution, level) if solution.steps else [solution.plan]
    return "\n".join([*lines, final_answer_line(str(solution.answer))])


def _cot(solution: Solution, level: int) -> list[str]:
    if level == 1:
        return [solution.plan]
    if level == 2:
        return [f"{i}. {_equations(solution, group)}." for i, group in _lines(solution)]
    rules = _rules(solution.steps, lambda k: f"in step {k}")
    lines = [
        f"{i}. {_detailed(step, level, 'cot', rule)}"
        for i, (step, rule) in enumerate(zip(solution.steps, rules, strict=True), 1)
    ]
    return lines + [f"{len(lines) + 1}. Check: {solution.check}"] * (level == 6)


def _subq(solution: Solution, level: int) -> list[str]:
    if level == 1:
        return [" ".join(f"Q{i}: {q}" for i, q in enumerate(solution.plan_questions, 1))]
    if level == 2:
        return [f"Q{i}: {_terse_question(solution, group)}" for i, group in _lines(solution)]
    rules, lines = _rules(solution.steps, lambda k: f"in A{k}"), []
    for i, (step, rule) in enumerate(zip(solution.steps, rules, strict=True), 1):
        lines += [f"Q{i}: {step.question}", f"A{i}: {_detailed(step, level, 'subq', rule)}"]
    if level == 6:
        k = len(solution.steps) + 1
        check = capitalized(solution.check)
        lines += [f"Q{k}: Does {solution.answer} fit the problem?", f"A{k}: {check}"]
    return lines


def _sym(solution: Solution, level: int) -> list[str]:
    if level == 1:
        return [f"{solution.equation}."]
    if level == 2:
        givens = ", ".join(f"{symbol} = {value}" for symbol, value in solution.givens)
        lines = [
            ", ".join(f"{s.symbol} = {s.equation}" for s in _of(solution, g)) + "."
            for _, g in _lines(solution)
        ]
        return [f"{givens}.", *lines]
    rules = _rules(solution.steps, lambda k: f"for {solution.steps[k - 1].symbol}")
    lines = [f"Let {solution.let}." if level == 3 else f"{solution.legend}."]
    lines += [_detailed(s, level, "sym", r) for s, r in zip(solution.steps, rules, strict=True)]
    return lines + [f"Check: {solution.check}"] * (level == 6)


WRITERS = {"cot": _cot, "subq": _subq, "sym": _sym}


def _detailed(step: Step, level: int, format: str, rule: str) -> str:
    """One step at level 3-6: its calculation with what the level adds (a name, a sentence, a
    reason, a rule)."""
    if format == "sym":
        equation = f"{step.symbol} = {step.formula} = {step.equation}"
    else:
        named = "" if step.named == step.calc else f" = {step.named}"
        equation = f"{capitalized(step.name)}{named} = {step.equation}"
    if level == 3:
        short = {"cot": f"{capitalized(step.label)}: {step.equation}", "subq": step.equation}
        return short.get(format, equation) + "."
    if level == 4:
        if format == "sym":
            return f"{step.meaning}: {equation}."
        return f"{step.sentence} {step.equation}."
    reasoned = f"{capitalized(step.why)}. {equation}."
    return f"Rule: {rule}. {reasoned}" if level == 6 else reasoned


def _rules(steps: list[Step], where) -> list[str]:
    """Each step's rule, said in full the first time and referred back to after that, so that a
    long rationale does not repeat itself."""
    first: dict[str, int] = {}
    rules = []
    for i, step in enumerate(steps, 1):
        rules.append(step.rule if step.rule not in first else f"as {where(first[step.rule])}")
        first.setdefault(step.rule, i)
    return rules


def _lines(solution: Solution) -> list[tuple[int, list[int]]]:
    return list(enumerate(solution.groups, 1))


def _of(solution: Solution, group: list[int]) -> list[Step]:
    return [solution.steps[i] for i in group]


def _equations(solution: Solution, group: list[int]) -> str:
    return ", ".join(step.equation for step in _of(solution, group))


def _terse_question(solution: Solution, group: list[int]) -> str:
    """A level-2 sub-question with its bare answer (a lone "23." would read as a list marker)."""
    steps = _of(solution, group)
    if len(steps) == 1:
        return f"{capitalized(steps[0].label)}? {steps[0].equation}."
    values = listed([f"{s.value}{s.note}" for s in steps])
    return f"What are {listed([s.calc for s in steps])}? {values}."
