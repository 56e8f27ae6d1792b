"""Still scenes (background + 1-3 objects, exact masks) and the captions that describe them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.toyworld.classes import CLASSES, RELEASES, ToyClass
from ingest.toyworld.render import ObjectSpec, background, finish, paste, rasterize, sample_object

OBJECT_SCALE = (0.14, 0.24)  # range of an object's half-size, as a fraction of the image side


@dataclass
class Scene:
    """A rendered still: image (H, W, 3) uint8, class ids (H, W) uint16 (0 = background),
    instance ids (H, W) uint8 (1-based drawing order, 0 = background) and the objects."""

    image: np.ndarray
    classes: np.ndarray
    instances: np.ndarray
    objects: list[ObjectSpec]


def place_objects(
    rng: np.random.Generator,
    chosen: list[ToyClass],
    size: int,
    scale: tuple[float, float] = OBJECT_SCALE,
) -> list[ObjectSpec]:
    """Random sizes (half-size ``scale`` x ``size``) and positions for ``chosen`` classes, with
    little overlap between objects (each stays mostly visible). Objects that cannot be placed
    after 200 tries are dropped, never the first one."""
    placed: list[ObjectSpec] = []
    for cls in chosen:
        for _ in range(200):
            half = rng.uniform(*scale) * size
            cx, cy = rng.uniform(0.75 * half, size - 0.75 * half, size=2)
            if all(
                np.hypot(cx - o.center[0], cy - o.center[1]) >= 0.85 * (half + o.half_size)
                for o in placed
            ):
                placed.append(sample_object(cls, rng, (float(cx), float(cy)), float(half)))
                break
    return placed


def sample_classes(
    rng: np.random.Generator, classes: tuple[ToyClass, ...], include: ToyClass | None = None
) -> list[ToyClass]:
    """1-3 distinct classes (probabilities 0.3/0.4/0.3); ``include``, when given, comes first."""
    count = min(int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3])), len(classes))
    pool = [c for c in classes if c != include]
    picked = [
        pool[i] for i in rng.choice(len(pool), size=count - (include is not None), replace=False)
    ]
    return ([include] if include is not None else []) + picked


def draw_scene(rng: np.random.Generator, objects: list[ObjectSpec], size: int) -> Scene:
    """Render ``objects`` over a random background."""
    canvas = background(rng, size)
    class_map = np.zeros((size, size), np.uint16)
    instance_map = np.zeros((size, size), np.uint8)
    for k, obj in enumerate(objects, start=1):
        paste(canvas, (class_map, instance_map), (obj.cls.ade_class_id, k), rasterize(obj))
    return Scene(finish(canvas, rng), class_map, instance_map, objects)


def random_scene(
    rng: np.random.Generator,
    classes: tuple[ToyClass, ...],
    size: int,
    include: ToyClass | None = None,
    scale: tuple[float, float] = OBJECT_SCALE,
) -> Scene:
    """A scene of 1-3 random classes in random drawing order; ``include`` is placed first so it
    is never dropped for lack of room."""
    objects = place_objects(rng, sample_classes(rng, classes, include), size, scale)
    order = rng.permutation(len(objects))
    return draw_scene(rng, [objects[i] for i in order], size)


_TEMPLATES: dict[int, tuple[str, ...]] = {
    1: (
        "a picture of {0}",
        "this is {0}",
        "there is {0}",
        "i can see {0}",
        "look at {0}",
        "here is {0}",
        "a photo of {0}",
    ),
    2: (
        "a picture of {0} and {1}",
        "there is {0} next to {1}",
        "i see {0} and {1}",
        "{0} with {1}",
        "this shows {0} and {1}",
        "a photo of {0} and {1}",
    ),
    3: (
        "a picture of {0} {1} and {2}",
        "i see {0} {1} and {2}",
        "there is {0} and {1} and {2}",
        "{0} {1} and {2}",
        "this shows {0} {1} and {2}",
    ),
}


def _phrase(cls: ToyClass, rng: np.random.Generator, adjective_prob: float) -> list[str]:
    words = [cls.adjective, cls.name] if rng.random() < adjective_prob else [cls.name]
    article = "an" if words[0][0] in "aeiou" else "a"
    return [article] + words


def caption(
    rng: np.random.Generator, objects: list[ToyClass], adjective_prob: float = 0.3
) -> tuple[list[str], list[int]]:
    """A random sentence naming every object once, e.g. "a picture of a red ball and a star".

    Returns the words and, per object, the index of its noun in the words.
    """
    order = list(rng.permutation(len(objects)))
    template = _TEMPLATES[len(objects)][int(rng.integers(0, len(_TEMPLATES[len(objects)])))]
    phrases = {i: _phrase(objects[i], rng, adjective_prob) for i in order}
    words: list[str] = []
    noun_index = [0] * len(objects)
    for token in template.split():
        if token.startswith("{"):
            obj = order[int(token[1:-1])]
            words.extend(phrases[obj])
            noun_index[obj] = len(words) - 1
        else:
            words.append(token)
    return words, noun_index


def vocabulary() -> list[str]:
    """Every word a toy-world caption or prompt can contain, sorted."""
    return sorted(w for release in vocabulary_releases() for w in release)


def vocabulary_releases() -> list[list[str]]:
    """The vocabulary by release (``classes.RELEASES``): each the sorted words it added."""
    words = {"a", "an", "picture", "of"}
    for templates in _TEMPLATES.values():
        words.update(w for w in " ".join(templates).split() if not w.startswith("{"))
    releases, start, known = [], 0, set()
    for end in RELEASES:
        for c in CLASSES[start:end]:
            words.update((c.name, c.adjective))
        releases.append(sorted(words - known))
        known |= words
        start = end
    return releases
