"""Building blocks shared by every network: input scaling, pre-activation residual blocks,
squeeze-excitation, analytic rim features.

One place for these keeps the comparisons fair: `asymmetric`, `rimnet`, `qsm-only` and `concat`
differ only in how modalities are wired, not in block details or input scaling.
"""
from __future__ import annotations

import torch
from torch import nn

QSM_CLIP_PPM = 0.3  # FRODO clips QSM at +-300 ppb
QSM_SCALE = 1.0 / 0.1  # linear in ppm after the clip: 0.1 ppm -> 1.0
FLAIR_CLIP = 5.0


def scale_inputs(x: torch.Tensor) -> torch.Tensor:
    """(N, 4, S, S, S) raw patches -> network scale. QSM stays linear in ppm (clip, then x10) so a
    rim of +0.05 ppm means the same in every subject; FLAIR is already normalised, clipped for
    outliers; mask and signed distance pass through."""
    q = x[:, 0:1].clamp(-QSM_CLIP_PPM, QSM_CLIP_PPM) * QSM_SCALE
    f = x[:, 1:2].clamp(-FLAIR_CLIP, FLAIR_CLIP)
    return torch.cat([q, f, x[:, 2:4]], dim=1)


def frodo_mask(x: torch.Tensor) -> torch.Tensor:
    """FRODO's input masking: keep voxels within clip(0.75 r, 5, 16) voxels of the lesion, where r
    is the equivalent-sphere radius. Our signed-distance channel saturates at 6 mm, so a margin
    >= 6 mm keeps the whole patch (documented deviation: FRODO's 64^3 patches allow up to 16)."""
    vol = x[:, 2].flatten(1).sum(1)  # voxels (1 mm patches)
    r = (3.0 * vol / (4.0 * torch.pi)).pow(1.0 / 3.0)
    margin = (0.75 * r).clamp(5.0, 16.0)
    dist_mm = x[:, 3] * 6.0
    keep = (dist_mm <= margin[:, None, None, None]) | (margin[:, None, None, None] >= 6.0)
    out = x.clone()
    out[:, 0:2] = out[:, 0:2] * keep[:, None].to(x.dtype)
    return out


def norm(ch: int) -> nn.GroupNorm:
    """GroupNorm: batch sizes are small and DDP ranks see different batches, BatchNorm would
    make results depend on both."""
    return nn.GroupNorm(min(8, ch // 2) if ch >= 4 else 1, ch)


class PreActBlock(nn.Module):
    """Pre-activation residual block (norm-act-conv x2), optional stride / width change."""

    def __init__(self, cin: int, cout: int, stride: int = 1, se: bool = False):
        super().__init__()
        self.n1, self.c1 = norm(cin), nn.Conv3d(cin, cout, 3, stride, 1, bias=False)
        self.n2, self.c2 = norm(cout), nn.Conv3d(cout, cout, 3, 1, 1, bias=False)
        self.act = nn.SiLU()
        self.skip = None if (cin == cout and stride == 1) else nn.Conv3d(cin, cout, 1, stride, bias=False)
        self.se = SqueezeExcite(cout) if se else None

    def forward(self, x):
        h = self.act(self.n1(x))
        skip = x if self.skip is None else self.skip(h)
        h = self.c1(h)
        h = self.c2(self.act(self.n2(h)))
        if self.se is not None:
            h = self.se(h)
        return h + skip


class SqueezeExcite(nn.Module):
    def __init__(self, ch: int, reduction: int = 4):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(ch, max(4, ch // reduction)), nn.SiLU(),
                                nn.Linear(max(4, ch // reduction), ch), nn.Sigmoid())

    def forward(self, x):
        w = self.fc(x.mean(dim=(2, 3, 4)))
        return x * w[:, :, None, None, None]


class Stem(nn.Module):
    """Strided 3x3x3 conv to half resolution (32^3 -> 16^3) then one residual block: the early
    downsampling is what keeps a lesion under ~0.3 GFLOP on CPU."""

    def __init__(self, cin: int, width: int, blocks: int = 1):
        super().__init__()
        self.conv = nn.Conv3d(cin, width, 3, 2, 1, bias=False)
        self.blocks = nn.Sequential(*[PreActBlock(width, width) for _ in range(blocks)])

    def forward(self, x):
        return self.blocks(self.conv(x))


RIM_FEATURE_SCALE = 100.0  # ppm -> units of 10 ppb


def rim_features(x: torch.Tensor, profile: bool = False) -> torch.Tensor:
    """Analytic rim statistics from a raw patch (N, 4, S, S, S) -> (N, 15), or (N, 20) with
    `profile` (radial_profile's five appended).

    QSM means of the edge shell (|d| <= 1 mm), core (d < -1.5 mm) and surround (2-4 mm outside),
    shell minus surround, shell minus core, log lesion volume; then how much of the edge is
    paramagnetic — the fraction of shell voxels above the surround mean by 10 and 20 ppb (a
    proxy for the NAIMS coverage criterion, which a mean cannot see: a full weak rim and a vein
    along one side have the same mean) — the 25th and 75th percentile of shell minus surround,
    the surround's spread (noise and veins nearby), and the edge coverage by sectors (see
    edge_sectors). QSM enters in units of 10 ppb, so a typical rim contrast is O(1) and the head
    learns it in a few hundred steps. Regions follow rimscope.lesions' definitions on the patch's
    signed-distance channel (the nets' patch path).
    """
    q = (x[:, 0].clamp(-QSM_CLIP_PPM, QSM_CLIP_PPM) * RIM_FEATURE_SCALE).flatten(1)
    d = x[:, 3].flatten(1)  # signed distance / 6 mm: region bounds in those units
    masks = torch.stack([d.abs() <= 1 / 6, d < -1.5 / 6, (d >= 2 / 6) & (d <= 4 / 6)], 1).to(q.dtype)
    counts = masks.sum(2).clamp_min(1.0)
    means = torch.bmm(masks, q.unsqueeze(2)).squeeze(2) / counts  # one pass
    shell, core, sur = means.unbind(1)
    vol = torch.log1p(x[:, 2].flatten(1).sum(1)) / 5.0
    in_shell = masks[:, 0] > 0
    rel = q - sur[:, None]
    cover = [((rel > t) & in_shell).sum(1) / counts[:, 0] for t in (1.0, 2.0)]
    # quartiles from every 2nd voxel per axis: sorting the whole patch cost more than the network
    sub = (slice(None), slice(None, None, 2), slice(None, None, 2), slice(None, None, 2))
    rel_s = rel.view_as(x[:, 0])[sub].flatten(1)
    shell_s = in_shell.view_as(x[:, 0])[sub].flatten(1)
    quart = torch.nanquantile(torch.where(shell_s, rel_s, torch.nan),
                              torch.tensor([0.25, 0.75], dtype=q.dtype, device=q.device), dim=1)
    quart = torch.nan_to_num(quart, nan=0.0)
    sur_sd = (((rel ** 2) * masks[:, 2]).sum(1) / counts[:, 2]).sqrt()
    sectors = edge_sectors(rel.view_as(x[:, 0]), in_shell.view_as(x[:, 0]), x[:, 2])
    out = [shell, core, sur, shell - sur, shell - core, vol, *cover, quart[0], quart[1], sur_sd,
           counts[:, 0].log() / 5.0, *sectors]
    if profile:
        out += radial_profile(q, d, sur)
    return torch.stack(out, dim=1)


N_RIM_FEATURES = 15
N_PROFILE_FEATURES = 5


def radial_profile(q: torch.Tensor, d: torch.Tensor, sur: torch.Tensor) -> list[torch.Tensor]:
    """Where across the edge the susceptibility sits, relative to the surround: the first voxel
    layer inside the edge, the first and second outside it, the lesion's deepest 1 mm, and the
    first outside layer minus the deepest. A rim raises the layers either side of the edge (it
    straddles it, and QSM blurs it outward); a paramagnetic core raises the deepest voxels more
    than the outside layer; a central vein raises the deepest voxels and the surround alike. The
    shell mean cannot tell these apart on lesions of a few dozen voxels, whose "core" (deeper
    than 1.5 mm) is empty. `q`, `d`, `sur` as in rim_features (10 ppb units, distance / 6 mm);
    the patch's distances are whole-voxel EDTs at 1 mm (1, sqrt 2, sqrt 3, 2, ...)."""
    deep_to = (d.amin(1, keepdim=True) + 1 / 6).clamp_max(-0.5 / 6)
    regions = torch.stack([(d >= -1.2 / 6) & (d < 0), (d > 0) & (d <= 1.2 / 6),
                           (d > 1.2 / 6) & (d <= 2.2 / 6), d <= deep_to], 1).to(q.dtype)
    # an empty region sums to 0 over a count clamped to 1: its mean is 0, as rim_features' are
    means = torch.bmm(regions, q.unsqueeze(2)).squeeze(2) / regions.sum(2).clamp_min(1.0)
    in1, out1, out2, deep = means.unbind(1)
    return [in1 - sur, out1 - sur, out2 - sur, deep - sur, out1 - deep]


SECTOR_TAN = 0.41421356  # tan(22.5 deg)


def edge_sectors(rel: torch.Tensor, in_shell: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """How much of the edge carries a rim, read the way a rater reads it (NAIMS: a paramagnetic
    rim around >= 2/3 of the edge). The shell is cut into 26 sectors by direction from the
    lesion's centroid; each sector's mean contrast over the surround averages out voxel noise,
    which a per-voxel fraction cannot. Returns the sector contrast exceeded by 2/3 and by 1/3 of
    the (non-empty) sectors, and the fraction of sectors above 10 ppb; `rel` in units of 10 ppb.
    """
    n, s = rel.shape[0], rel.shape[-1]
    ax = torch.arange(s, dtype=rel.dtype, device=rel.device)
    grid = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij")).flatten(1)  # (3, V)
    m = mask.flatten(1)
    centre = (m @ grid.t()) / m.sum(1, keepdim=True).clamp_min(1.0)  # (n, 3)
    lesion, voxel = in_shell.flatten(1).nonzero(as_tuple=True)  # shell voxels only: ~5 % of V
    v = grid[:, voxel].t() - centre[lesion]  # (M, 3)
    # the 26 sectors around a cube's faces, edges and corners: a component counts where it is
    # at least tan(22.5 deg) of the largest one
    big = v.abs() >= SECTOR_TAN * v.abs().amax(1, keepdim=True)
    code = ((torch.sign(v) * big + 1) @ torch.tensor([9.0, 3.0, 1.0], dtype=rel.dtype, device=rel.device)).long()
    bins = lesion * 27 + code
    count = torch.zeros(n * 27, dtype=rel.dtype, device=rel.device).index_add_(
        0, bins, torch.ones_like(code, dtype=rel.dtype)).view(n, 27)
    total = torch.zeros(n * 27, dtype=rel.dtype, device=rel.device).index_add_(
        0, bins, rel.flatten(1)[lesion, voxel]).view(n, 27)
    mean = torch.where(count > 0, total / count.clamp_min(1.0), torch.nan)
    quant = torch.nan_to_num(torch.nanquantile(mean, torch.tensor([1 / 3, 2 / 3], dtype=rel.dtype,
                                                                  device=rel.device), dim=1), nan=0.0)
    filled = (count > 0).sum(1).clamp_min(1)
    above = ((mean > 1.0) & (count > 0)).sum(1) / filled
    return [quant[0], quant[1], above.to(rel.dtype)]
