"""How good are the near-miss alerts? Recall, false alarms per hour and lead time before the CPA.

The alerts are computed exactly as ``serve --alert-dmin-m M`` computes them (streamer/live/
alerts.py): the causal model over the held-out stream, the online hybrid beside it (classical fit
from the radar's range noise), P(Dmin < M) from the hybrid and its σ, one alert per encounter.
An alert belongs to the encounter whose samples (or the classical fit's 2-s tail after them)
contain the sample that raised it; an encounter is *near* when its true Dmin < M.

* recall: near encounters that raised an alert / near encounters, per peak-SNR band;
* false alarms per hour: alerts raised on encounters that were not near, or outside any
  encounter, per hour of stream;
* lead time: CPA time − alert time of the near encounters that alerted (median, seconds; negative
  when the alert came after the CPA).
"""

from __future__ import annotations

import numpy as np

from bench.quality import HeldOutSet, SNR_BANDS_DB, band_label, causal_stream, model_input

__all__ = ["alert_outcomes", "alert_table"]


def alert_outcomes(bundle, data: HeldOutSet, threshold_m: float, confidence: float = 0.9) -> dict[str, np.ndarray]:
    """Per encounter: ``near`` (truth), ``alerted``, ``lead_s`` (NaN without an alert), and the
    count of ``false_alarms`` (alerts on far encounters or on noise) with the stream's ``hours``."""
    from models.classical import CPAFitConfig
    from models.hybrid import OnlineHybrid
    from models.profile import RadarProfile
    from radarstream.online import Block
    from streamer.live.alerts import AlertConfig, NearMissDetector

    rate = data.config.rate_hz
    r_max = data.config.r_max_m
    model = bundle.causal
    to_data = float(model.profile.r_max_m) / r_max
    xin = model_input(model, data.samples, rate)
    if getattr(model, "uncertainty", False):
        y, y_std = causal_stream(model, xin, return_std=True)
        y_std = y_std * to_data
    else:
        y, y_std = causal_stream(model, xin), np.full(data.samples.shape[0], np.nan)
    y = y * to_data
    period_ns = int(round(1e9 / rate))
    block = Block.regular(data.samples, period_ns=period_ns, estimate=np.stack([y, y_std], axis=1))
    cfg = CPAFitConfig.for_profile(RadarProfile(r_max_m=r_max, rate_hz=rate, rate_envelope_hz=(rate, rate)))
    hyb = OnlineHybrid(cfg).update(block)
    std = np.where(np.isfinite(hyb[:, 3]), hyb[:, 3], y_std) * r_max
    est = np.stack([hyb[:, 2] * r_max, std, np.isfinite(hyb[:, 0])], axis=1)
    out = NearMissDetector(AlertConfig(threshold_m, confidence)).update(
        Block(block.t_ns, block.x, estimate=est))
    fired = np.flatnonzero(out[:, 2] > 0)
    encs = data.encounters
    tail = int(round(2.0 * rate)) + 1
    owner = np.full(data.samples.shape[0], -1, np.int64)
    for k, e in enumerate(encs):
        owner[e.start : min(e.stop + tail, owner.shape[0])] = k
    near = np.array([e.dmin_m < threshold_m for e in encs])
    alerted = np.zeros(len(encs), bool)
    lead = np.full(len(encs), np.nan)
    false_alarms = 0
    noise_alarms = 0
    for i in fired.tolist():
        k = int(owner[i])
        if k < 0:
            noise_alarms += 1
        elif not alerted[k]:
            alerted[k] = True
            lead[k] = (encs[k].cpa_index - i) / rate
    false_alarms = int((alerted & ~near).sum()) + noise_alarms
    return {"near": near, "alerted": alerted, "lead_s": np.where(near, lead, np.nan),
            "false_alarms": np.array(false_alarms), "noise_alarms": np.array(noise_alarms),
            "hours": np.array(data.samples.shape[0] / rate / 3600.0)}


def alert_table(bundle, data: HeldOutSet, threshold_m: float = 100.0, confidence: float = 0.9) -> str:
    """Markdown: recall, lead time and false alarms per hour, per peak-SNR band."""
    o = alert_outcomes(bundle, data, threshold_m, confidence)
    snr = np.array([e.peak_snr_db for e in data.encounters])
    bands = [(band_label(lo, hi), (snr >= lo) & (snr < hi)) for lo, hi in SNR_BANDS_DB]
    bands.append(("all", np.ones_like(snr, bool)))
    near, alerted, lead = o["near"], o["alerted"], o["lead_s"]
    hours = float(o["hours"])
    rows = [f"| near-miss alerts (M = {threshold_m:g} m, P > {confidence:g}) | "
            + " | ".join(n for n, _ in bands) + " |", "|---" * (len(bands) + 1) + "|"]
    rec, med = [], []
    for _, m in bands:
        n = int((m & near).sum())
        rec.append(f"{100 * alerted[m & near].mean():.0f} % ({int((m & near & alerted).sum())}/{n})" if n else "–")
        lt = lead[m & near & alerted]
        med.append(f"{np.median(lt):.1f} s" if lt.size else "–")
    rows.append("| recall (near encounters that alerted) | " + " | ".join(rec) + " |")
    rows.append("| median lead time before the CPA | " + " | ".join(med) + " |")
    fa = [f"{int((m & ~near & alerted).sum()) / hours:.1f} /h ({int((m & ~near & alerted).sum())})" for _, m in bands]
    fa[-1] = f"{int(o['false_alarms']) / hours:.1f} /h ({int(o['false_alarms'])}, {int(o['noise_alarms'])} on noise)"
    rows.append(f"| false alarms per hour of stream ({hours:.2f} h) | " + " | ".join(fa) + " |")
    return "\n".join(rows)
