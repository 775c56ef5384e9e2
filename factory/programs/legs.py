"""Solutions of reasoning-gym `leg_counting`: each kind's legs (count × legs of one animal, from
reasoning-gym's own table), then their sum."""

from __future__ import annotations

from factory.programs.solution import Solution, Step, listed

PLAN = (
    "Multiply the number of each kind of animal by the legs one of them has, then add the results."
)
PLAN_QUESTIONS = [
    "How many legs does each kind of animal have together?",
    "What do those amounts add up to?",
]
PRODUCT_RULE = "equal groups combine by multiplication, total = number of groups × size of a group"
SUM_RULE = "the total of separate parts is the sum of the parts"
SAME_PLURAL = ("sheep", "deer", "shrimp", "fish")
PLURALS = {"woodlouse": "woodlice", "praying mantis": "praying mantises"}


def plural(animal: str, count: int = 2) -> str:
    """The animal's name for `count` of them: `woodlice`, `butterflies`, `leeches`, `sheep`."""
    if count == 1 or animal.endswith(SAME_PLURAL):
        return animal
    if animal in PLURALS:
        return PLURALS[animal]
    if animal.endswith(("s", "sh", "ch", "x")):
        return animal + "es"
    if animal.endswith("y") and animal[-2:-1] not in "aeiou":
        return animal[:-1] + "ies"
    return animal + "s"


def leg_counting(metadata: dict) -> Solution:
    """The legs of every kind of animal in the problem, then the total."""
    from reasoning_gym.arithmetic.leg_counting import ANIMALS

    kinds = [(animal, count, ANIMALS[animal]) for animal, count in metadata["animals"].items()]
    steps = [_kind(i, *kind, last=len(kinds) == 1) for i, kind in enumerate(kinds, 1)]
    if len(kinds) > 1:
        steps.append(_total(steps, [plural(animal, count) for animal, count, _ in kinds]))
    givens = [
        (f"{s}{i}", v)
        for i, (_, *values) in enumerate(kinds, 1)
        for s, v in zip("nk", values, strict=True)
    ]
    return Solution(
        answer=steps[-1].value,
        steps=steps,
        groups=[list(range(len(kinds))), [len(kinds)]] if len(kinds) > 1 else [[0]],
        plan=PLAN,
        plan_questions=PLAN_QUESTIONS,
        equation=f"L = {' + '.join(f'n{i} × k{i}' for i in range(1, len(kinds) + 1))}, where ni "
        "is the number of animals of kind i and ki the legs of one of them",
        givens=givens,
        let=", ".join(_notes(i, *kind) for i, kind in enumerate(kinds, 1)),
        legend=_legend(kinds),
        check=_check(kinds, steps),
    )


def _kind(i: int, animal: str, count: int, legs: int, *, last: bool) -> Step:
    """The legs of all animals of one kind."""
    them, have = plural(animal, count), "has" if count == 1 else "have"
    if legs:
        why = f"Each {animal} has {legs} legs, so {count} {them} {have} {count} times {legs} legs"
    else:
        why = f"A {animal} has no legs, so {count} {them} add no legs at all"
    return Step(
        calc=f"{count} × {legs}",
        value=count * legs,
        symbol="L" if last else f"p{i}",
        formula=f"n{i} × k{i}",
        label=f"legs of the {them}",
        name="total legs" if last else f"legs of the {them}",
        named=f"{count} × {legs}",
        sentence=f"There is 1 {animal} with {legs} legs, so it has"
        if count == 1
        else f"There are {count} {them} with {legs} legs each, so together they have",
        question=f"How many legs do the {count} {them} have?",
        why=why,
        rule=PRODUCT_RULE,
        meaning=f"{'L' if last else f'p{i}'} is n{i} times k{i}, the legs of all the {them}",
    )


def _total(products: list[Step], names: list[str]) -> Step:
    count = len(products)
    return Step(
        calc=" + ".join(str(step.value) for step in products),
        value=sum(step.value for step in products),
        symbol="L",
        formula=" + ".join(step.symbol for step in products),
        label="total legs",
        name="total legs",
        named=f"the legs of all {count} kinds together",
        sentence=f"Adding up the legs of the {listed(names)} gives",
        question="How many legs are there in all?",
        why="Every leg belongs to exactly one animal, so the total is the sum over all kinds",
        rule=SUM_RULE,
        meaning=f"L is the sum of p1 to p{count}, the legs of every kind",
    )


def _notes(i: int, animal: str, count: int, legs: int) -> str:
    return f"n{i} = {count} ({plural(animal, count)}), k{i} = {legs} (legs per {animal})"


def _legend(kinds: list[tuple[str, int, int]]) -> str:
    together = ", pi their legs together" if len(kinds) > 1 else ""
    values = [
        f"n{i} = {count} {plural(animal, count)} (k{i} = {legs})"
        for i, (animal, count, legs) in enumerate(kinds, 1)
    ]
    return (
        f"Let ni be the number of animals of kind i, ki the legs of one of them{together} and L "
        f"the total, with {listed(values)}"
    )


def _check(kinds: list[tuple[str, int, int]], steps: list[Step]) -> str:
    """Another way to the answer: the sum in the opposite order, or back to the count."""
    if len(kinds) > 1:
        backwards = " + ".join(str(step.value) for step in steps[-2::-1])
        return (
            f"adding the legs of each kind in the opposite order, {backwards} = "
            f"{steps[-1].value}, gives the same total. The result is consistent."
        )
    animal, count, legs = kinds[0]
    if not legs:
        return (
            f"a {animal} has no legs, so any number of them has 0 legs. The result is consistent."
        )
    return (
        f"dividing the total by the legs of one {animal}, {count * legs} ÷ {legs} = {count}, "
        f"gives back the number of {plural(animal, count)}. The result is consistent."
    )
