"""Experiments built on the core: :mod:`.demo` (the headline ERM-vs-reweighting
comparison), :mod:`.digits` (a real network on imbalanced digits, bridged to the UFM) and
:mod:`.terminal` (the terminal phase of cross-entropy over decreasing weight decay) and
:mod:`.resampling` (class-balanced resampling against reweighting under minibatch SGD).

They run and return results; printing, files and figures are the callers' (the CLI's
``commands/``, :mod:`ssm_jax.plot`)."""
