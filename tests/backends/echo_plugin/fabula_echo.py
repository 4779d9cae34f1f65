"""A fabula backend plug-in, whole: one class, one entry point (pyproject.toml).

It "writes" by drawing sentences from a word list, seeded by the request, so
a corpus written with it is the same every time.
"""

import random
from dataclasses import dataclass

from fabula.backends import Backend, Completion

WORDS = (
    "the a quiet late early cold grey narrow open second last clerk driver porter window door table street station "
    "letter ticket coat key hat bag coffee bread stair garden harbour bridge lamp clock radio paper envelope glove "
    "waited walked looked listened turned stood kept carried opened watched counted noticed folded paid nodded read "
    "slowly again almost never still once twice carefully with behind under across along beside before after into "
    "toward near and but so then while until"
).split()


@dataclass
class EchoBackend(Backend):
    id: str = "echo"
    model: str = "echo-1"

    def complete(self, request):
        rng = random.Random(f"echo:{request.seed}:{request.prompt[-100:]}")
        want = int(rng.randint(max(request.min_tokens, 8), max(request.max_tokens, request.min_tokens, 9)) * 0.75)
        out, n = [], 0
        while n < want:
            k = rng.randint(6, 12)
            out.append(" ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + ".")
            n += k
        text = " " + " ".join(out)
        if request.prompt and request.prompt.rstrip()[-1:] not in ".!?\"'”’:":
            text = " " + text[1].lower() + text[2:]  # goes on with the opener's sentence
        return Completion(text=text, tokens=round(n / 0.75), seconds=0.0)
