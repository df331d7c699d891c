"""rimscope: per-lesion probability of a paramagnetic rim on QSM, with FLAIR as context."""
__version__ = "0.1.0"


def predict(qsm, flair, lesions, model=None, **kwargs):
    """Rate every lesion of one subject; see :func:`rimscope.inference.api.predict_subject`."""
    from .inference.api import predict_subject

    return predict_subject(qsm, flair, lesions, model=model, **kwargs)
