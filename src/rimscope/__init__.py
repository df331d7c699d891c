"""rimscope: per-lesion probability of a paramagnetic rim on QSM, with FLAIR as context.

One Python function per command, keyword arguments as the CLI's options (rimscope.commands):
`rimscope.predict(qsm, flair, lesions, model=None)` (one subject -> a PredictResult: `.table`,
`.records`, `.images`, `.warnings`),
`rimscope.evaluate(cohort=..., labels=..., out=...)`, `rimscope.train(cohort=..., labels=...,
out=...)`, `rimscope.train_engine(out=..., engine=None)` (`train --engine`), `rimscope.simulate(out=...,
subjects=...)`, `rimscope.pretrain(cohort=..., out=...)`.
"""
__version__ = "0.1.0"


def predict(qsm, flair, lesions, model=None, **kwargs):
    """Rate every lesion of one subject -> PredictResult (`.table`: a pandas DataFrame when pandas
    is installed, else the list of dicts; `.records`; `.images` {"probseg", "dseg"} nibabel
    images on the QSM grid; `.warnings`); iterating it gives the lesion dicts. See
    :func:`rimscope.inference.api.predict_subject`."""
    from .inference.api import predict_subject

    return predict_subject(qsm, flair, lesions, model=model, **kwargs)


def pretrain(**kwargs):
    """`rimscope pretrain`; see :func:`rimscope.train.pretrain_command.pretrain`."""
    from .train.pretrain_command import pretrain as run

    return run(**kwargs)


def train_engine(**kwargs):
    """`rimscope train --engine`; see :func:`rimscope.train.engine_command.train_engine`."""
    from .train.engine_command import train_engine as run

    return run(**kwargs)


def __getattr__(name):
    """`rimscope.evaluate`, `.train`, `.simulate`: the stage packages, callable as their command."""
    if name in ("evaluate", "train", "simulate"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rimscope' has no attribute {name!r}")
