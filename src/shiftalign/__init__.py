"""shiftalign: aligning language models seen as domain adaptation.

The preference data a reward model or policy is trained on is the source domain; the responses of
the policy being aligned are the target domain. See the README for the architecture.
"""

__version__ = "0.1.0"
