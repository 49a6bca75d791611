"""Small worlds for tests and experiments: a toy novel, and random graphs written straight to SQLite.

    write_sample_novel(Path("novel"))            # 6 chapters in the novel's format, with dialogue
    anima world build novel -o toy.db --embedder hash

    random_world(Path("r.db"), rng, chapters=10, entities=12, facts=40, dim=16)   # for property tests
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from anima.embed import to_blob
from anima.thinker.world import SCHEMA_VERSION, create_schema, transaction

SAMPLE_CHAPTERS = [
    ("Part 1, Chapter I: The Harbor",
     ["In the spring of 1866, Professor Aronnax arrived in the harbor of Brest with his manservant Conseil.",
      "Ned Land, a Canadian harpooner, was waiting aboard the frigate Halcyon beside the pier.",
      "\u201cWe sail tomorrow,\u201d Ned Land said. \u201cThe beast was sighted near the Azure Reef.\u201d",
      "\u201cAs master wishes,\u201d Conseil replied."]),
    ("Part 1, Chapter II: The Chase",
     ["For three weeks the Halcyon hunted the creature across the Grey Sea.",
      "On the last night Ned Land threw his harpoon, and the harpoon rang against iron plates.",
      "\u201cIt is no whale,\u201d I said. \u201cIt is a boat of steel.\u201d"]),
    ("Part 1, Chapter III: The Stranger",
     ["We were taken inside the iron boat, and Captain Nemo met us in a lounge full of pearls.",
      "\u201cYou are passengers on the Nautilus,\u201d Captain Nemo said, \u201cand you will never leave it.\u201d",
      "From that day we lived aboard the Nautilus, a ship of steel that the sea itself could not stop.",
      "The Nautilus lay in latitude 30\u00b0 north and longitude 140\u00b0 west."]),
    ("Part 1, Chapter IV: The Forest",
     ["Captain Nemo led us through the underwater forests of Coral Island in diving suits.",
      "Conseil classified a sea turtle, and Ned Land shot a seal with an air rifle.",
      "That evening we were off Coral Island, and the Nautilus lay in latitude 12\u00b0 south."]),
    ("Part 2, Chapter I: The Pearl",
     ["In the pearl fisheries of Lantern Bay a shark attacked a diver, and Captain Nemo saved him.",
      "\u201cThat diver is a man of an oppressed land,\u201d Captain Nemo said."]),
    ("Part 2, Chapter II: The Whirlpool",
     ["The Nautilus was drawn into the Black Whirlpool near the Isle of Storms.",
      "Ned Land cut the skiff loose, and we woke in a fisherman\u2019s hut on the Isle of Storms."]),
]


def write_sample_novel(directory: Path, chapters: int = len(SAMPLE_CHAPTERS)) -> Path:
    """Write the toy novel (``partN-chapterMM.txt``, heading first) and return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    part1 = sum(1 for h, _ in SAMPLE_CHAPTERS if h.startswith("Part 1"))
    for i, (heading, paragraphs) in enumerate(SAMPLE_CHAPTERS[:chapters], start=1):
        part, number = (1, i) if i <= part1 else (2, i - part1)
        (directory / f"part{part}-chapter{number:02d}.txt").write_text(
            heading + "\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return directory


def random_world(path: Path, rng: np.random.Generator, chapters: int = 10, entities: int = 12, facts: int = 40,
                 dim: int = 16, words: tuple[str, ...] = ("storm", "pearl", "harpoon", "coral", "ice", "whale")) -> dict:
    """A random graph: entities and facts with random story times (some facts stop being true),
    random unit vectors. Returns {"entities": [(id, name, known_from)], "facts": [(id, text,
    known_from, valid_until, vector)]} for checking against."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    create_schema(conn)
    out: dict = {"entities": [], "facts": []}

    def unit() -> np.ndarray:
        v = rng.normal(size=dim).astype(np.float32)
        return v / np.linalg.norm(v)

    with transaction(conn):
        conn.executemany("INSERT INTO meta VALUES (?,?)", [
            ("schema_version", str(SCHEMA_VERSION)), ("embedder", "hash"), ("dim", str(dim)),
            ("chapters", str(chapters)), ("build_id", f"random-{rng.integers(1 << 30)}"), ("narrator", "")])
        for i in range(entities):
            known = int(rng.integers(1, chapters + 1))
            name = f"Entity{i}"
            eid = conn.execute("INSERT INTO entities(name, kind, description, known_from, origin, embedding) "
                               "VALUES (?,?,?,?,?,?)", (name, "object", f"{name} is thing {i}.", known, "offline",
                                                         to_blob(unit()))).lastrowid
            conn.execute("INSERT INTO aliases VALUES (?,?,1)", (name, eid))
            out["entities"].append((eid, name, known))
        for j in range(facts):
            subject = out["entities"][int(rng.integers(len(out["entities"])))][0]
            known = int(rng.integers(1, chapters + 1))
            until = None if rng.random() < 0.7 else int(rng.integers(known + 1, chapters + 2))
            text = f"Fact {j} about {words[j % len(words)]} and {words[(j * 7 + 3) % len(words)]}."
            vector = unit()
            fid = conn.execute("INSERT INTO facts(subject_id, predicate, text, known_from, valid_until, chapter, origin, "
                               "embedding) VALUES (?,?,?,?,?,?,?,?)",
                               (subject, "described", text, known, until, known, "offline", to_blob(vector))).lastrowid
            out["facts"].append((fid, text, known, until, vector.astype(np.float16).astype(np.float32)))
    conn.close()
    return out
