"""Image judges behind one interface (:class:`ImageJudge`), shared by dataset construction (which
pairs to keep) and evaluation (how often images show an attribute or a harm).

* :class:`~livo.judges.clip.ClipJudge` — CLIP zero-shot attribute classes and harm (kind ``clip``);
* :class:`~livo.judges.nudenet.NudeNetJudge` — NudeNet's ONNX nudity detector (kind ``nudenet``);
* :class:`~livo.judges.vlm.VlmJudge` — yes/no questions to a local vision-language model (kind ``vlm``);
* any other kind a package declares as a ``livo.judges`` plug-in (the toy world's ``toyworld``).

A :class:`JudgeSpec` names a kind and its options; :func:`make_judge` builds one (importing heavy
libraries only then) and :class:`JudgePanel` holds the judges of a whole build or evaluation.
"""

from livo.judges.base import ImageJudge, ImageVerdict
from livo.judges.panel import JudgePanel, make_judge
from livo.judges.spec import JudgesConfig, JudgeSpec

__all__ = ["ImageJudge", "ImageVerdict", "JudgePanel", "JudgeSpec", "JudgesConfig", "make_judge"]
