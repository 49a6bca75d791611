"""Export a trained stage-2 checkpoint as the shipped runtime weights (no optimizer state).

The export directory holds ``model.safetensors`` (quantiser + generator), ``config.json`` (both
configs, the training lineage and the recommended sampling) and ``styles.safetensors``: 4 s
reference clips of held-out (validation) speakers, one per style name, in natural motion units.

    python -m anima.face.training.export out/face/stage2 --corpus out/face_corpus --out anima/assets/weights/face/unils
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from anima.face.data.corpus import load_tracks
from anima.face.model.unils import load_unils
from anima.face.unils import DEFAULT_WEIGHTS
from anima.train import save_checkpoint

STYLE_FRAMES = 100


def style_clips(corpus: str | Path, n: int, split: str = "val") -> dict[str, np.ndarray]:
    """``n`` reference clips (100, 50) from different speakers of ``split``: the 4 s with most motion."""
    tracks = load_tracks(corpus, split)
    if not tracks:
        raise ValueError(f"{corpus}: the {split} split is empty")
    clips = {}
    for i, t in enumerate(tracks[:n]):
        m = t.motion
        best, best_var = 0, -1.0
        for s in range(0, max(1, m.shape[0] - STYLE_FRAMES), 25):
            var = float(m[s:s + STYLE_FRAMES].std(0).sum())
            if var > best_var:
                best, best_var = s, var
        clips[f"style{i}"] = np.ascontiguousarray(m[best:best + STYLE_FRAMES], dtype=np.float32)
    return clips


def export_weights(checkpoint: str | Path, out: str | Path | None = None, corpus: str | Path = "out/face_corpus",
                   n_styles: int = 4, temperature: float = 1.0, top_k: int = 0) -> Path:
    model, meta = load_unils(checkpoint)
    if not model.config.audio:
        raise ValueError(f"{checkpoint}: an audio-free (stage-1) model cannot drive the runtime face; export stage 2")
    out = Path(out) if out is not None else DEFAULT_WEIGHTS
    extra = {
        "sampling": {"temperature": temperature, "top_k": top_k},
        "exported_from": str(checkpoint),
        "trained_steps": meta.get("step", 0),
        "report": meta.get("extra", {}).get("report", {}),
    }
    save_checkpoint(out, model, meta["config"], meta.get("step", 0), None, extra)
    save_file(style_clips(corpus, n_styles), str(out / "styles.safetensors"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a stage-2 checkpoint as the shipped UniLS weights.")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--corpus", type=Path, default=Path("out/face_corpus"))
    parser.add_argument("--styles", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"wrote {export_weights(args.checkpoint, args.out, args.corpus, args.styles, args.temperature, args.top_k)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
