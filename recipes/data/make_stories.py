#!/usr/bin/env python3
"""Writes the demo dataset: short TinyStories-style stories ({"text": ...} per line) in the
domain of models/stories260K (simple words, children's-story plots), made from templates with a
fixed seed so the files are reproducible. Run from anywhere: python3 make_stories.py"""
import json
import os
import random

rng = random.Random(260)
names = [("Lily", "she", "her"), ("Tim", "he", "his"), ("Ben", "he", "his"), ("Sue", "she", "her"),
         ("Max", "he", "his"), ("Mia", "she", "her"), ("Tom", "he", "his"), ("Anna", "she", "her"),
         ("Sam", "he", "his"), ("Lucy", "she", "her"), ("Jack", "he", "his"), ("Amy", "she", "her")]
animals = ["small dog", "happy cat", "little bird", "brave bunny", "kind bear"]
likes = ["play in the park", "run in the sun", "look at the flowers", "play with a red ball",
         "read books with mom", "build a big tower", "sing songs", "help dad in the garden",
         "jump in the water", "draw pictures", "climb the big tree", "bake cookies"]
finds = [("a shiny stone", "stone"), ("a big box", "box"), ("a little kite", "kite"), ("a blue hat", "hat"),
         ("a lost puppy", "puppy"), ("a red flower", "flower"), ("a small boat", "boat"), ("a toy car", "car")]
places = ["in the park", "near the tree", "under the bed", "by the pond", "in the garden", "on the hill"]
helpers = ["Mom", "Dad", "Bird", "Owl", "Frog"]
problems = ["It was stuck in the mud", "It was too high to reach", "It was broken",
            "It was very dirty", "It was far away", "It was under a big rock"]
fixes = ["worked together to get it out", "used a long stick", "asked for help",
         "cleaned it with water", "tried again and again", "pushed very hard"]
feels = ["happy", "proud", "glad", "excited"]
morals = ["They learned that it is good to share.", "They learned that friends help each other.",
          "From that day on, they played together every day.", "It was the best day ever.",
          "They all smiled and went home.", "They knew that trying hard is important."]


def story():
    name, he, his = rng.choice(names)
    kind = rng.choice(animals + ["little girl" if he == "she" else "little boy"] * 3)
    like = rng.choice(likes)
    thing, short = rng.choice(finds)
    place, call = rng.choice(places), rng.choice(helpers)
    problem, fix, feel, moral = rng.choice(problems), rng.choice(fixes), rng.choice(feels), rng.choice(morals)
    start = rng.choice(["Once upon a time, there was a {k} named {n}.", "A {k} named {n} lived in a small house.",
                        "There was a {k} named {n}."]).format(k=kind, n=name)
    s = [start, f"{he.capitalize()} loved to {like}.", f"One day, {he} saw {thing} {place}.", f"{problem}.",
         f"{name} said, \"Help me, {call}!\"", f"They {fix}.", f"{name} was very {feel}.", moral]
    if rng.random() < 0.5:
        s.pop(1)  # what they loved
    elif rng.random() < 0.7:
        s.pop()  # the moral
    return " ".join(s)


here = os.path.dirname(os.path.abspath(__file__))
seen = set()
rows = []
while len(rows) < 220:
    t = story()
    if t not in seen:
        seen.add(t)
        rows.append(t)
for name, part in (("stories-train.jsonl", rows[:200]), ("stories-valid.jsonl", rows[200:])):
    with open(os.path.join(here, name), "w") as f:
        for t in part:
            f.write(json.dumps({"text": t}) + "\n")
