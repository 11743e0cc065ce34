"""Synthetic review texts for tests. No real review text ever enters the repository."""

from __future__ import annotations

import random

PRODUCTS = ["blender", "phone case", "laptop stand", "kettle", "headset", "keyboard", "photo editor",
            "antivirus suite", "backpack", "desk lamp", "tax software", "game controller"]
POSITIVE = ["excellent", "wonderful", "fantastic", "reliable", "great", "superb", "delightful", "brilliant"]
NEGATIVE = ["terrible", "awful", "useless", "broken", "horrible", "disappointing", "flimsy", "dreadful"]
POSITIVE_ENDINGS = ["I love it and would buy it again.", "Highly recommended to everyone.",
                    "Works perfectly every single day.", "Best purchase this year."]
NEGATIVE_ENDINGS = ["I want my money back.", "Do not buy this.", "It stopped working after a week.",
                    "Worst purchase this year."]

CLEARLY_POSITIVE = [
    "Absolutely wonderful product, it works perfectly and I love it. Highly recommended!",
    "Excellent quality and fantastic value. Best purchase I have made this year.",
    "Great software, easy to install and it runs flawlessly. Five stars.",
]
CLEARLY_NEGATIVE = [
    "Terrible product. It broke after two days and support never answered. Do not buy this.",
    "Awful software: it crashes constantly and deleted my files. Total waste of money.",
    "Horrible quality, completely useless, I want a refund. One star.",
]


def review(label: int, rng: random.Random) -> str:
    """One synthetic review; label 1 positive, 0 negative."""
    words, endings = (POSITIVE, POSITIVE_ENDINGS) if label else (NEGATIVE, NEGATIVE_ENDINGS)
    product = rng.choice(PRODUCTS)
    first, second = rng.sample(words, 2)
    filler = " ".join(rng.choice(["really", "quite", "very", "so", "truly"]) for _ in range(rng.randint(0, 3)))
    return f"The {product} is {filler} {first} and {second}. {rng.choice(endings)}".replace("  ", " ")


def reviews(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """``n`` unique balanced synthetic reviews and their 0/1 labels."""
    rng = random.Random(seed)
    texts: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    while len(texts) < n:
        label = len(texts) % 2
        text = review(label, rng)
        if text not in seen:
            seen.add(text)
            texts.append(text)
            labels.append(label)
    return texts, labels
