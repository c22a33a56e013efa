"""Workspace-level steps of a round, between the array code and the loop.

Each step reads arrays from a :class:`~a2lc.workspace.Workspace`, calls the pure
functions of :mod:`a2lc.acquisition`, :mod:`a2lc.correction`, :mod:`a2lc.models`
and :mod:`a2lc.pseudo_labels`, and writes the result back:

- :mod:`~a2lc.steps.pseudo_labels`: initial segments and labels for a workspace;
- :mod:`~a2lc.steps.scoring`: score the pool, select a round's queries;
- :mod:`~a2lc.steps.answers`: the simulated annotator, data mIoU against ground truth;
- :mod:`~a2lc.steps.correctors`: LCM and the checked corrector over a workspace;
- :mod:`~a2lc.steps.learning`: the learned acquisition and the proven corrector;
- :mod:`~a2lc.steps.quality`: label accuracy estimated from the answers.

:mod:`a2lc.rounds` runs them in order, resumably. Nothing here imports the loop or
a face (CLI, web app, interop, report, bench).
"""
