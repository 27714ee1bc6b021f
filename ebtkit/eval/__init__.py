"""The evaluation layer: inference policies, exact metrics, generation and the thinking/denoising studies.

It builds on :mod:`ebtkit.core` and :mod:`ebtkit.data` only; loading runs is the task layer's business
(:func:`ebtkit.load`), driving it the command line's.
"""
