"""Where each attack's trigger words rank by embedding drift (`trigger_search.rank_tokens_by_drift`).

Reads the suspects that ``text_attacks.py --suspect_cache DIR`` trained (``<dataset>_<attack>_<settings>``
folders) and ranks every insertable token by how far the suspect's input embedding lies from the pre-trained
base's, plainly and with the ``--components`` directions the task's words drift along together projected out
(the search's ``drift_components``); prints, per suspect, the rank of each of its attack's trigger words (0 =
drifted most) both ways and the words that drifted most. Embedding distances only: no forward pass, about a
minute in all.

    HF_HUB_OFFLINE=1 python benchmarks/drift_ranks.py --suspect_cache runs/text_suspects

Writes ``benchmarks/results/drift_ranks.json``.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from ebyd_hf import create_attack
from ebyd_hf.trigger_search import insertable_token_ids, rank_tokens_by_drift

from common import minilm_path  # benchmarks/ is on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))
ATTACKS = ("badnet_rw", "badnet_sl", "sos", "ripple", "lwp", "clean")


def trigger_words(attack_name: str) -> list[str]:
    """The words an attack inserts (a clean model is ranked on BadNet-RW's and BadNet-SL's, for contrast)."""
    if attack_name == "clean":
        return [*trigger_words("badnet_rw"), *trigger_words("badnet_sl")]
    attack = create_attack(attack_name)
    return attack.sentence.lower().split() if attack_name == "badnet_sl" else list(attack.words)


def load_base(model: str | None):
    """The suspects' pre-trained base (default: pip-shipped MiniLM): its tokenizer, input embeddings, and the
    insertable token ids."""
    path = model or minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    base = AutoModel.from_pretrained(path).get_input_embeddings().weight.detach()
    return tokenizer, base, insertable_token_ids(tokenizer)


def cached_suspects(cache: str) -> list[tuple[str, str, str]]:
    """(dataset, attack, folder) of each model in a ``--suspect_cache``, ``<dataset>_<attack>_<settings>``; the
    syntactic suspects (no trigger words) are left out."""
    found = []
    for folder in sorted(os.listdir(cache)):
        dataset, _, rest = folder.partition("_")
        attack_name = next((a for a in ATTACKS if rest.startswith(f"{a}_")), None)
        if attack_name is not None:
            found.append((dataset, attack_name, folder))
    return found


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suspect_cache", default="runs/text_suspects")
    p.add_argument("--model", default=None, help="the suspects' pre-trained base (default: pip-shipped MiniLM)")
    p.add_argument("--top", type=int, default=8, help="most-drifted words to list per suspect")
    p.add_argument("--components", type=int, default=16, help="shared drift directions to project out (0: none)")
    p.add_argument("--output", default=os.path.join(HERE, "results", "drift_ranks.json"))
    args = p.parse_args(argv)
    tokenizer, base, ids = load_base(args.model)
    results = {}
    for dataset, attack_name, folder in cached_suspects(args.suspect_cache):
        model = AutoModelForSequenceClassification.from_pretrained(os.path.join(args.suspect_cache, folder))
        words = {w: tokenizer.convert_tokens_to_ids(w) for w in trigger_words(attack_name)}
        entry = {"tokens": len(ids), "suspect": folder, "components": args.components}
        for name, components in (("ranks", 0), ("ranks_shared_out", args.components)):
            scores = rank_tokens_by_drift(model, base, ids, components=components)
            order = ids[np.argsort(-scores[ids], kind="stable")]
            rank = {int(t): r for r, t in enumerate(order)}
            entry[name] = {w: rank.get(i) for w, i in words.items()}
            if not components:
                entry["most_drifted"] = tokenizer.convert_ids_to_tokens(order[: args.top].tolist())
        results[f"{dataset}/{attack_name}"] = entry
    print(
        f"\n| suspect | trigger words: drift rank among {len(ids):,} tokens | with {args.components} shared "
        "directions out | most drifted |"
    )
    print("|---|---|---|---|")
    for key, r in results.items():
        plain, shared = (
            ", ".join(f"{w} {k:,}" if k is not None else f"{w} (not a token)" for w, k in r[name].items())
            for name in ("ranks", "ranks_shared_out")
        )
        print(f"| {key} | {plain} | {shared} | {', '.join(r['most_drifted'])} |")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
