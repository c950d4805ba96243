"""Experiments: arms (methods) compared on a target domain by one engine (``engine.main``), with
cached stages, run directories claimed for their config, and a report that states the result.

    shiftalign experiment configs/experiment.yaml
"""
