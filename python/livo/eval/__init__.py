"""Evaluation of value alignment: metrics, judges' verdicts, baselines run by one harness, reports.

``livo eval CONFIG`` runs :func:`livo.eval.harness.evaluate` on a YAML config
(:mod:`livo.eval.config`) and writes the report (:mod:`livo.eval.report`); ``livo demo`` runs the
whole pipeline on the toy world and ends with this evaluation. Heavy libraries are imported by the
functions that need them.
"""

from livo.eval.config import EvalConfig, MethodConfig, load_eval_config, parse_eval_config

__all__ = ["EvalConfig", "MethodConfig", "load_eval_config", "parse_eval_config"]
