"""Hand-crafted lesion statistics from a patch, for the classical baselines.

Regions come from the patch's signed-distance channel with rimscope.lesions' definitions (shell:
within 1 mm of the edge, core: deeper than 1.5 mm, surround: 2-4 mm outside), i.e. the same
patch path as the networks, so classical and neural models see the same lesions the same way.
"""
from __future__ import annotations

import numpy as np

# rim-contrast's prior map of shell minus surround (per ppm): +0.03 ppm -> p = 0.5. The
# asymmetric network's linear path starts from the same map.
RIM_CONTRAST_PRIOR = (100.0, -3.0)

FEATURES = ("shell_mean", "shell_std", "shell_p90", "core_mean", "core_std", "sur_mean", "sur_std",
            "shell_minus_sur", "shell_minus_core", "shell_frac_bright", "log_volume",
            "flair_shell", "flair_core", "flair_sur")


def lesion_features(x: np.ndarray) -> np.ndarray:
    """(N, 4, S, S, S) raw patches -> (N, len(FEATURES)) float64. QSM in ppm."""
    out = np.zeros((len(x), len(FEATURES)))
    for i, p in enumerate(x):
        q, f, m, d = p[0], p[1], p[2] > 0.5, p[3] * 6.0
        shell, core, sur = np.abs(d) <= 1.0, d < -1.5, (d >= 2.0) & (d <= 4.0)
        qs, qc, qr = q[shell], q[core], q[sur]

        def st(v, fn, default=0.0):
            return float(fn(v)) if v.size else default

        sur_mean = st(qr, np.mean)
        out[i] = [st(qs, np.mean), st(qs, np.std), st(qs, lambda v: np.percentile(v, 90)),
                  st(qc, np.mean, st(qs, np.mean)), st(qc, np.std), sur_mean, st(qr, np.std),
                  st(qs, np.mean) - sur_mean, st(qs, np.mean) - st(qc, np.mean, st(qs, np.mean)),
                  st(qs, lambda v: np.mean(v > sur_mean + 0.02)), np.log1p(m.sum()),
                  st(f[shell], np.mean), st(f[core], np.mean), st(f[sur], np.mean)]
    return out
