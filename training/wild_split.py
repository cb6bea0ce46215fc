"""The grouped validation of the in-the-wild default (issue 16), fixed before any model was run on it.

    python -m training.wild_split        # writes training/splits/wild_groups.csv

Rule (written first; see training/WILD_VALIDATION.md for the decision rule that uses it):
- Groups are **source repositories**: an image is never validated on a model that saw another image of its repo.
- **Final test** (never used for any decision, reported once at the end): in ``wild/``, the fake repositories and the
  real repositories are each ordered by the SHA-256 of their name; the first three fake repos and the first two
  real repos are held out.
- **Development**: every other ``wild/`` repository is one cross-validation group (leave one repository out).
  The ``images.csv`` sources (ProGAN-era pairs, Stable Diffusion images, lossless photo sets) are training data in
  every fold; CIFAKE (32 px) is left out: it is not a camera photo or a generator output at any realistic size.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
#: the committed split; train_semantic.py, wild_report.py and wild_invariance.py read it from here
SPLIT = ROOT / "training" / "splits" / "wild_groups.csv"
N_FINAL_FAKE_REPOS, N_FINAL_REAL_REPOS = 3, 2
LEFT_OUT = ("2spi/ai-v-real(CIFAKE)",)


def _order(repo: str) -> str:
    return hashlib.sha256(repo.encode()).hexdigest()


def final_repos(wild_rows: list[dict[str, str]]) -> set[str]:
    by_label: dict[str, set[str]] = {"fake": set(), "real": set()}
    for r in wild_rows:
        by_label[r["label"]].add(r["source_repo"])
    fakes = sorted(by_label["fake"], key=_order)[:N_FINAL_FAKE_REPOS]
    reals = sorted(by_label["real"], key=_order)[:N_FINAL_REAL_REPOS]
    return set(fakes) | set(reals)


def rows(shared: Path = SHARED) -> list[dict[str, str]]:
    """path (relative to shared/data), label, source (repository), generator, role (train|dev|final)."""
    with open(shared / "wild" / "images.csv") as fh:
        wild = list(csv.DictReader(fh))
    with open(shared / "images.csv") as fh:
        seen = [r for r in csv.DictReader(fh) if r["source_repo"] not in LEFT_OUT]
    final = final_repos(wild)
    out = [{"path": r["path"], "label": r["label"], "source": r["source_repo"], "generator": r["generator"],
            "role": "train"} for r in seen]
    out += [{"path": "wild/" + r["path"], "label": r["label"], "source": r["source_repo"], "generator": r["generator"],
             "role": "final" if r["source_repo"] in final else "dev"} for r in wild]
    return out


def main() -> int:
    out = rows()
    SPLIT.parent.mkdir(parents=True, exist_ok=True)
    with open(SPLIT, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "source", "generator", "role"])
        w.writeheader()
        w.writerows(out)
    for role in ("train", "dev", "final"):
        rs = [r for r in out if r["role"] == role]
        print(f"{role:5}: {len(rs)} images ({sum(r['label'] == 'fake' for r in rs)} fake) from "
              f"{len({r['source'] for r in rs})} repos", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
