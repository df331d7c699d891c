"""The simulator: realistic QSM/FLAIR cohorts with known Rim+ truth (`rimscope simulate`).

No paramagnetic-rim-labelled data set is public, so every rimscope model learns and is judged
on these cohorts; the modules are split by what they model (anatomy, lesion library, lesion and
vein susceptibility, acquisition grids, dipole physics, FLAIR, rater) so each can be checked and
calibrated on its own. Entry points: `cohort_writer.simulate_cohort`, `subject.simulate_subject`,
`difficulty.measure`; `rimscope.simulate(...)` is the `rimscope simulate` command.
"""
from ..commands import callable_package

callable_package(__name__, "rimscope.simulate.command:simulate")  # rimscope.simulate(...) runs the command
