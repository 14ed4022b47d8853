"""The embedded offline source: a synthetic Paris of bike counters (`BIKE_SOURCE=synthetic`).

Why it exists: the platform (ingestion, training, drift monitoring, serving) must run end to end
without network access, in tests and in demos, on data that *behaves* like the real Paris
counters (see `bench/results/synthetic_calibration.md` for the comparison with the real counts).

Design constraints that shape the code:

* **Window independence.** Dagster fetches daily partitions, backfills fetch months; both must
  see the same numbers. Every random draw is therefore a pure function of
  `(seed, stream, counter, hour)` (a counter-based hash, splitmix64), never of a sequential RNG
  stream whose state would depend on where the window started. Processes with memory (the
  weather AR(1), multi-hour outages, multi-day gaps) are evaluated from their defining
  innovations over a fixed look-back, so they too are identical whatever the window.
* **Speed.** Everything is vectorised over a `(counter, hour)` grid: ~230K rows in a fraction of
  a second, so tests and local materialisations stay cheap.
* **Wall-clock behaviour.** Commuters follow Paris local time, so the hourly shapes are indexed by
  the local hour (zoneinfo through pandas), the DST spring day has 23 hours and the autumn day 25.

The counter catalogue (ids, names, coordinates, installation dates, behaviour parameters) is drawn
once for the largest supported city (`MAX_COUNTERS`) and `n_counters` takes a prefix, so a counter
keeps its identity and its behaviour when the size of the city changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

import holidays
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import Field, field_validator

from bike_assets.schema import TIDY_COLUMNS, coerce_tidy
from bike_assets.settings import PARIS_TZ, Settings
from bike_assets.sources.base import CountsBatch, CountsSource, FetchProgress, ProgressCallback

MAX_COUNTERS: Final = 200
DRIFT_KINDS: Final = ("level_shift", "broken_counter")

U64 = NDArray[np.uint64]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Bool = NDArray[np.bool_]

_HOUR_NS: Final = 3_600 * 10**9
_EPOCH_DAY: Final = np.datetime64("1970-01-01", "D")
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()

# --------------------------------------------------------------------------------------------
# Hourly shapes, Paris local hour 0..23, each normalised to mean 1 below. Rounded from the shape
# of the real counts (weekday peaks 08-09h and 17-19h, weekend afternoon hump, Friday/Saturday
# night activity after midnight); counter-level variations are applied on top.
# Tables of 24 hours read better 12 values a line than one value a line (ruff format):
# fmt: off
_WEEKDAY_SHAPE: Final = np.array(
    [0.15, 0.08, 0.045, 0.03, 0.03, 0.07, 0.21, 0.82, 2.45, 2.20, 1.03, 0.93,
     1.18, 1.18, 1.12, 1.14, 1.37, 2.03, 2.68, 2.35, 1.30, 0.69, 0.46, 0.35]
)
_SATURDAY_SHAPE: Final = np.array(
    [0.28, 0.18, 0.14, 0.08, 0.06, 0.06, 0.10, 0.19, 0.40, 0.66, 0.88, 1.10,
     1.32, 1.27, 1.39, 1.67, 1.79, 1.79, 1.55, 1.18, 0.78, 0.52, 0.35, 0.29]
)
_SUNDAY_SHAPE: Final = np.array(
    [0.24, 0.17, 0.13, 0.08, 0.05, 0.05, 0.07, 0.12, 0.27, 0.51, 0.83, 1.13,
     1.40, 1.20, 1.31, 1.66, 1.79, 1.78, 1.48, 1.02, 0.66, 0.44, 0.28, 0.18]
)
# fmt: on
# Where the commute lives, to skew one direction of a site to the morning and the other to the
# evening (people ride in and out of the centre) and to damp peaks on school holidays.
_MORNING: Final = np.zeros(24)
_MORNING[[6, 7, 8, 9, 10]] = [0.3, 0.8, 1.0, 1.0, 0.4]
_EVENING: Final = np.zeros(24)
_EVENING[[16, 17, 18, 19, 20]] = [0.4, 0.9, 1.0, 1.0, 0.4]
# Night riders come in small groups and at irregular times: the extra-Poisson noise (sd of the
# log-intensity) is much larger at night, which is where most of the real zeros are.
_NIGHT_SIGMA: Final = np.zeros(24)
_NIGHT_SIGMA[[22, 23, 0, 1, 2, 3, 4, 5, 6]] = [0.4, 0.7, 1.0, 1.05, 1.05, 1.05, 1.0, 0.7, 0.35]
# Post-drift commute (level_shift): earlier, flatter morning peak and a broader evening, as after
# a change of working habits; small enough that only the level change is obvious.
_DRIFT_SHAPE: Final = np.ones(24)
_DRIFT_SHAPE[[6, 7, 8, 9, 10]] = [1.5, 1.4, 0.8, 0.85, 1.15]
_DRIFT_SHAPE[[16, 17, 18, 19, 20]] = [1.3, 1.2, 0.85, 0.9, 1.2]

# Day-type levels relative to a normal weekday (Mon..Fri), then Saturday, Sunday, holiday.
_WEEKDAY_LEVEL: Final = np.array([0.92, 1.01, 1.03, 1.03, 0.95])
_SATURDAY_LEVEL: Final = 0.68
_SUNDAY_LEVEL: Final = 0.63
_PUBLIC_HOLIDAY_LEVEL: Final = 0.45
_SCHOOL_HOLIDAY_LEVEL: Final = 0.88
_SCHOOL_PEAK_DAMPING: Final = 0.25

# Seasonality: mid-month multipliers, interpolated on the day of the year (cyclic). Summer and
# autumn high, winter low; the August dip is deepened by the (separate) school-holiday effect.
_SEASON_ANCHORS: Final = np.array(
    [0.70, 0.76, 0.96, 0.98, 0.95, 1.28, 1.08, 0.82, 1.46, 1.10, 0.90, 0.72]
)
_MID_MONTH_DOY: Final = np.array(
    [15.5, 45, 74.5, 105, 135.5, 166, 196.5, 227.5, 258, 288.5, 319, 349.5]
)

# Weather: one day-level factor for the whole city (rain keeps everybody home at once).
_WEATHER_PHI: Final = 0.7
_WEATHER_SIGMA: Final = 0.09  # innovation sd of the log-factor
_WEATHER_LOOKBACK: Final = 40  # 0.7**40 ~ 6e-7: the truncated AR(1) is exact to float noise
_RAIN_PROB_BY_MONTH: Final = np.array(
    [0.35, 0.32, 0.30, 0.30, 0.33, 0.28, 0.25, 0.25, 0.25, 0.32, 0.36, 0.36]
)

# Poisson draws: exact inversion below this mean, normal approximation above; the cap is far in
# the tail of Poisson(30) (P(X > 110) < 1e-20).
_POISSON_INVERSION_MAX_MEAN: Final = 30.0
_POISSON_INVERSION_MAX_K: Final = 110

# Outages and gaps: (start probability per unit, max duration in units).
_ZERO_RUN_HOURLY: Final = (0.002, 6)  # counter reports 0 for a few hours
_ZERO_RUN_DAILY: Final = (0.0005, 30)  # counter broken for days/weeks, still reporting 0
_GAP_HOURLY: Final = (0.0008, 4)  # rows absent for a few hours
_GAP_DAILY: Final = (0.0004, 21)  # rows absent for days (the real data has a ~19-day hole)

# Stream tags: one per kind of draw, so that adding a draw never shifts another one.
_T_SITE, _T_SCALE, _T_NOISE_A, _T_NOISE_B, _T_POISSON = 1, 2, 3, 4, 5
_T_ZR_START, _T_ZR_LEN, _T_ZD_START, _T_ZD_LEN = 6, 7, 8, 9
_T_GH_START, _T_GH_LEN, _T_GD_START, _T_GD_LEN = 10, 11, 12, 13
_T_WEATHER_A, _T_WEATHER_B, _T_RAIN, _T_RAIN_LEVEL = 14, 15, 16, 17
_T_COUNTER_DAY_A, _T_COUNTER_DAY_B = 18, 19
_T_DRIFT_RANK, _T_DRIFT_MODE, _T_DRIFT_SIZE = 20, 21, 22
_T_CATALOGUE = 23

# Street names for believable site names (real Paris streets, bridges and quays).
# fmt: off
_STREETS: Final = (
    "boulevard Diderot", "quai d'Issy", "avenue de la porte de Charenton",
    "avenue de la porte de Bagnolet", "rue d'Aubervilliers", "quai de l'Hôtel de Ville",
    "rue de Sèvres", "boulevard du Montparnasse", "quai de Bercy", "rue Julia Bartet",
    "quai de Grenelle", "rue de Vaugirard", "Cours la Reine", "quai François Mauriac",
    "quai de l'Oise", "avenue de Clichy", "quai d'Austerlitz", "quai d'Orsay",
    "quai de la Tournelle", "rue Turbigo", "quai de la Marne", "rue de Rivoli",
    "boulevard de Sébastopol", "boulevard Voltaire", "boulevard de Magenta", "rue La Fayette",
    "avenue des Champs-Élysées", "boulevard Saint-Germain", "boulevard Raspail",
    "rue du Faubourg Saint-Antoine", "avenue Daumesnil", "boulevard de Ménilmontant",
    "avenue Denfert-Rochereau", "boulevard Richard Lenoir", "rue de Rennes",
    "boulevard de la Villette", "avenue de Flandre", "quai de Valmy", "quai de Jemmapes",
    "boulevard Haussmann", "avenue de l'Opéra", "rue de la Convention", "avenue du Maine",
    "boulevard de Port-Royal", "rue Saint-Antoine", "boulevard Beaumarchais",
    "avenue de la Grande Armée", "boulevard Malesherbes", "rue de Charenton",
    "avenue d'Italie", "boulevard Auguste Blanqui", "rue de Tolbiac", "avenue Jean Jaurès",
    "boulevard de Belleville", "avenue Parmentier", "boulevard Saint-Michel",
    "quai Saint-Bernard", "quai des Célestins", "quai du Louvre", "quai de la Mégisserie",
    "avenue de Suffren", "avenue de la Bourdonnais", "boulevard de Grenelle",
    "boulevard Pereire", "boulevard de Courcelles", "avenue de Wagram",
)
_BRIDGES: Final = (
    "Pont de Bercy", "Pont Charles De Gaulle", "Pont d'Austerlitz", "Pont de Sully",
    "Pont Marie", "Pont Neuf", "Pont de la Concorde", "Pont Alexandre III", "Pont de l'Alma",
    "Pont de Grenelle", "Pont Mirabeau", "Pont de Tolbiac", "Voie Georges Pompidou",
)
# fmt: on
_DIRECTION_PAIRS: Final = (("E-O", "O-E"), ("N-S", "S-N"), ("NE-SO", "SO-NE"), ("NO-SE", "SE-NO"))


# --------------------------------------------------------------------------------------------
# Counter-based random numbers.
_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_MIX1: Final = np.uint64(0xBF58476D1CE4E5B9)
_MIX2: Final = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_MASK64: Final = (1 << 64) - 1


def _mix(x: U64) -> U64:
    """splitmix64 finaliser: a bijective, well-avalanched 64-bit mix (wrap-around is intended)."""
    z = x + _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return np.asarray(z ^ (z >> _S31), dtype=np.uint64)


def _u64(values: Any) -> U64:
    # int64 -> uint64 wraps negative keys (hours before 1970) to distinct values, which is all
    # a hash key needs; atleast_1d keeps numpy in array arithmetic (no scalar-overflow warnings).
    arr = np.atleast_1d(np.asarray(values))
    if arr.dtype != np.uint64:
        arr = arr.astype(np.int64).view(np.uint64)
    return arr


def _uniform(seed: int, tag: int, counters: Any, keys: Any) -> F64:
    """U[0, 1) for every (counter, key) pair, broadcast like `counters[:, None], keys[None, :]`."""
    base = _mix(_mix(np.array([seed & _MASK64], dtype=np.uint64)) ^ _u64([tag]))
    per_counter = _mix(base ^ _u64(counters))
    h = _mix(per_counter[:, None] ^ _mix(_u64(keys))[None, :])
    return (h >> _S11).astype(np.float64) * (1.0 / 2**53)


def _normal_pair(seed: int, tag_a: int, tag_b: int, counters: Any, keys: Any) -> tuple[F64, F64]:
    """Two independent N(0, 1) grids from two hashed uniforms (Box-Muller)."""
    u1 = _uniform(seed, tag_a, counters, keys)
    u2 = _uniform(seed, tag_b, counters, keys)
    radius = np.sqrt(-2.0 * np.log1p(-u1))  # 1 - u1 is in (0, 1]: no log(0)
    angle = 2.0 * np.pi * u2
    return radius * np.cos(angle), radius * np.sin(angle)


def _poisson(lam: F64, uniform: F64, normal: F64) -> I64:
    """Poisson(lam) by CDF inversion of `uniform` for small means, normal approximation above.

    Inversion keeps the discreteness that matters for quiet counters and night hours (zeros,
    ones); for large means the normal approximation is accurate and avoids a long CDF walk.
    """
    out = np.zeros(lam.shape, dtype=np.int64)
    small = lam < _POISSON_INVERSION_MAX_MEAN
    lam_s = lam[small]
    u_s = uniform[small]
    prob = np.exp(-lam_s)
    cdf = prob.copy()
    k_small = np.zeros(lam_s.shape, dtype=np.int64)
    # A fixed cap (not one derived from the window's largest mean) keeps each draw a function of
    # its own (mean, uniform) only; stopping early once every CDF passed its uniform changes
    # nothing because the CDF only grows.
    for k in range(_POISSON_INVERSION_MAX_K):
        above = u_s > cdf
        if not above.any():
            break
        k_small += above
        prob = prob * lam_s / (k + 1)
        cdf = cdf + prob
    out[small] = k_small
    big = ~small
    lam_b = lam[big]
    approx = np.floor(lam_b + np.sqrt(lam_b) * normal[big] + 0.5)
    out[big] = np.maximum(approx, 0.0).astype(np.int64)
    return out


def _runs(
    seed: int,
    start_tag: int,
    len_tag: int,
    counters: I64,
    first: int,
    n: int,
    prob: F64 | float,
    max_len: int,
) -> Bool:
    """Mask of units (hours or days) `first..first+n-1` covered by a random run per counter.

    A run starts at unit s with probability `prob` (per counter) and lasts 1..max_len units, both
    drawn from (counter, s), so a unit's state is found by looking back max_len-1 units: the
    result does not depend on where the window starts.
    """
    keys = np.arange(first - max_len + 1, first + n, dtype=np.int64)
    p = np.asarray(prob, dtype=np.float64).reshape(-1, 1) if np.ndim(prob) else prob
    starts = _uniform(seed, start_tag, counters, keys) < p
    length = 1 + np.floor(_uniform(seed, len_tag, counters, keys) * max_len).astype(np.int64)
    covered = np.zeros((counters.size, n), dtype=bool)
    for lag in range(max_len):
        # a run that started `lag` units before unit i covers i when it is longer than lag
        lo = max_len - 1 - lag
        covered |= starts[:, lo : lo + n] & (length[:, lo : lo + n] > lag)
    return covered


# --------------------------------------------------------------------------------------------
# Counter catalogue.
@dataclass(frozen=True)
class _Catalogue:
    frame: pd.DataFrame  # tidy metadata columns, one row per counter, generation order
    scale: F64  # mean count per hour on a normal weekday, before seasonality
    peakiness: F64  # exponent on the weekday shape (commuter routes have sharper peaks)
    asymmetry: F64  # morning/evening skew of the direction (inbound vs outbound)
    weekend: F64  # weekend appetite (riverside routes are leisure routes)
    hourly_sigma: F64  # extra-Poisson noise (negative-binomial-like overdispersion)
    flakiness: F64  # multiplies the zero-run start probability
    install_day: I64  # Paris local day number of the installation date


def _site_name(rng: np.random.Generator, k: int, streets: list[str], bridges: list[str]) -> str:
    # Most sites are addresses; a few are bridges/expressways named without a number.
    if k % 9 == 4 and bridges:
        return bridges.pop()
    street = streets[k % len(streets)]
    number = int(rng.integers(1, 160))
    prefix = rng.choice(["", "", "", "Face au ", "Totem "])
    return f"{prefix}{number} {street}"


@lru_cache(maxsize=16)
def _catalogue(seed: int) -> _Catalogue:
    """The whole synthetic city for a seed (MAX_COUNTERS channels, in generation order).

    A sequential RNG is fine here: the catalogue does not depend on any time window.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed & _MASK64, _T_CATALOGUE]))
    streets = list(_STREETS)
    rng.shuffle(streets)
    bridges = list(_BRIDGES)
    rng.shuffle(bridges)
    late_sites = set(rng.choice(np.arange(5, 25), size=2, replace=False).tolist())

    rows: list[dict[str, Any]] = []
    params: list[tuple[float, float, float, float, float, float]] = []
    # spread like the real ids (100007049 .. 100063175), unique by construction
    site_numbers = 7000 + np.arange(MAX_COUNTERS) * 280 + rng.integers(0, 280, size=MAX_COUNTERS)
    k = 0
    while len(rows) < MAX_COUNTERS:
        late = k in late_sites or (k >= 25 and rng.random() < 0.015)
        number = int(site_numbers[k])
        site_id = f"{'3000' if late else '1000'}{number:05d}"
        name = _site_name(rng, k, streets, bridges)
        if late:
            installed = date(2020, 3, 1) + timedelta(days=int(rng.integers(0, 480)))
        else:
            installed = date(2013, 1, 1) + timedelta(days=int(rng.integers(0, 2550)))
        # Paris ellipse around the centre, clipped to the box of the real counters
        r, theta = np.sqrt(rng.random()), rng.random() * 2 * np.pi
        lat = float(np.clip(48.8566 + 0.036 * r * np.sin(theta), 48.821, 48.899))
        lon = float(np.clip(2.3400 + 0.080 * r * np.cos(theta), 2.251, 2.419))
        pair = _DIRECTION_PAIRS[int(rng.integers(0, len(_DIRECTION_PAIRS)))]
        n_channels = 1 if rng.random() < 0.12 else 2
        site_scale = float(np.exp(rng.normal(np.log(66.0), 0.65)))
        split = float(rng.uniform(0.6, 1.4))
        skew = float(np.exp(rng.normal(0.0, 0.20)))
        weekend = float(np.exp(rng.normal(0.0, 0.20)))
        channel_base = int(rng.integers(0, 3)) * 2 + 1  # channel digits 1-2, 3-4 or 5-6
        # newer sites number their channels 3532xxxxx instead of 10<n><site digits>
        new_style = late or rng.random() < 0.15
        new_channel = int(rng.integers(10000, 99000))
        for ch in range(n_channels):
            if len(rows) >= MAX_COUNTERS:
                break
            if new_style:
                channel_id = f"3532{new_channel + 2 * ch:05d}"
            else:
                channel_id = f"10{channel_base + ch}{site_id[-6:]}"
            share = split if ch == 0 else 2.0 - split
            quiet = rng.random() < 0.07  # e.g. a contraflow lane with a couple of bikes an hour
            scale = site_scale * (1.0 if n_channels == 1 else share) * (0.1 if quiet else 1.0)
            rows.append(
                {
                    "counter_id": f"{site_id}-{channel_id}",
                    "counter_name": f"{name} {pair[ch]}",
                    "site_id": site_id,
                    "site_name": name,
                    "lat": round(lat, 6),
                    "lon": round(lon, 6),
                    "installation_date": installed.isoformat(),
                }
            )
            params.append(
                (
                    float(np.clip(scale, 1.5, 220.0)),
                    float(rng.uniform(0.9, 1.1)),
                    skew if ch == 0 else 1.0 / skew,
                    weekend,
                    float(rng.uniform(0.08, 0.25)),
                    float(np.exp(rng.normal(0.0, 0.8))),
                )
            )
        k += 1
    frame = pd.DataFrame(rows)
    p = np.array(params, dtype=np.float64)
    install = pd.to_datetime(frame["installation_date"]).to_numpy().astype("datetime64[D]")
    return _Catalogue(
        frame=frame,
        scale=p[:, 0],
        peakiness=p[:, 1],
        asymmetry=p[:, 2],
        weekend=p[:, 3],
        hourly_sigma=p[:, 4],
        flakiness=p[:, 5],
        install_day=(install - _EPOCH_DAY).astype(np.int64),
    )


def _check_n_counters(n_counters: int) -> None:
    if not 1 <= n_counters <= MAX_COUNTERS:
        raise ValueError(f"n_counters must be in 1..{MAX_COUNTERS}, got {n_counters}")


def synthetic_counters(seed: int, n_counters: int) -> pd.DataFrame:
    """The counter catalogue: counter_id, counter_name, site_id, site_name, lat, lon,
    installation_date (tidy dtypes), one row per counter, sorted by counter_id.

    Stable under `n_counters`: the catalogue for n is a subset of the one for n + 1.
    """
    _check_n_counters(n_counters)
    frame = _catalogue(seed).frame.iloc[:n_counters]
    out = frame.astype(
        {
            c: "string"
            for c in ("counter_id", "counter_name", "site_id", "site_name", "installation_date")
        }
    ).astype({"lat": "float64", "lon": "float64"})
    return out.sort_values("counter_id", kind="stable").reset_index(drop=True)


def drifted_counters(seed: int, n_counters: int, drift_share: float = 0.4) -> list[str]:
    """Ground truth for drift monitoring: the counter_ids hit by the drift event, sorted.

    Exactly round(drift_share * n_counters) counters (at least one when drift_share > 0).
    """
    _check_n_counters(n_counters)
    return sorted(
        _catalogue(seed).frame["counter_id"].iloc[_drift_index(seed, n_counters, drift_share)]
    )


def _drift_index(seed: int, n_counters: int, drift_share: float) -> I64:
    if not 0.0 <= drift_share <= 1.0:
        raise ValueError(f"drift_share must be in [0, 1], got {drift_share}")
    if drift_share == 0.0:
        return np.zeros(0, dtype=np.int64)
    n_drift = max(1, round(drift_share * n_counters))
    rank_key = _uniform(seed, _T_DRIFT_RANK, np.arange(n_counters), [0])[:, 0]
    return np.sort(np.argsort(rank_key, kind="stable")[:n_drift]).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Calendar.
@lru_cache(maxsize=64)
def _holiday_days(year: int) -> tuple[frozenset[int], frozenset[int]]:
    """(public holidays, school holidays zone C = Paris) as day numbers since 1970-01-01."""
    public = holidays.France(years=year)
    school = holidays.France(years=year, subdiv="Zone C", categories=("school",))

    def days(cal: Any) -> frozenset[int]:
        return frozenset(d.toordinal() - _EPOCH_ORDINAL for d in cal)

    return days(public), days(school)


@dataclass(frozen=True)
class _Days:
    """Day-level features of the Paris local days touched by a window."""

    day: I64
    weekday: I64
    public_holiday: Bool
    school_holiday: Bool
    season: F64
    weather: F64


def _season(day_of_year: F64) -> F64:
    # cyclic linear interpolation between mid-month anchors
    xp = np.concatenate([[_MID_MONTH_DOY[-1] - 365.0], _MID_MONTH_DOY, [_MID_MONTH_DOY[0] + 365]])
    fp = np.concatenate([[_SEASON_ANCHORS[-1]], _SEASON_ANCHORS, [_SEASON_ANCHORS[0]]])
    return np.interp(day_of_year, xp, fp)


def _weather(seed: int, days: I64) -> F64:
    """City-wide multiplicative weather factor per day: AR(1) mood of the weather plus rain.

    x_d = sum_j phi^j e_{d-j} over a fixed look-back: the exact AR(1) up to float noise, and a
    function of the day number only (not of the window).
    """
    first = int(days.min()) - _WEATHER_LOOKBACK + 1
    keys = np.arange(first, int(days.max()) + 1, dtype=np.int64)
    innov = _normal_pair(seed, _T_WEATHER_A, _T_WEATHER_B, [0], keys)[0][0] * _WEATHER_SIGMA
    n_out = keys.size - _WEATHER_LOOKBACK + 1
    ar = np.zeros(n_out)
    # explicit loop rather than np.convolve: a fixed summation order per day keeps the value
    # bit-identical whatever the window length (np.convolve may sum in another order)
    for lag in range(_WEATHER_LOOKBACK):
        lo = _WEATHER_LOOKBACK - 1 - lag
        ar += _WEATHER_PHI**lag * innov[lo : lo + n_out]
    ar_days = keys[_WEATHER_LOOKBACK - 1 :]
    stationary_var = _WEATHER_SIGMA**2 / (1.0 - _WEATHER_PHI**2)
    level = np.exp(ar[np.searchsorted(ar_days, days)] - stationary_var / 2.0)

    month = (_EPOCH_DAY + days.astype("timedelta64[D]")).astype("datetime64[M]").astype(int) % 12
    rainy = _uniform(seed, _T_RAIN, [0], days)[0] < _RAIN_PROB_BY_MONTH[month]
    # light drizzle barely matters, a downpour halves the traffic
    rain_cut = 0.5 * _uniform(seed, _T_RAIN_LEVEL, [0], days)[0] ** 1.5
    return level * np.where(rainy, 1.0 - rain_cut, 1.0)


def _day_features(seed: int, days: I64) -> _Days:
    dates = _EPOCH_DAY + days.astype("timedelta64[D]")
    years = dates.astype("datetime64[Y]").astype(int) + 1970
    public: set[int] = set()
    school: set[int] = set()
    for y in np.unique(years):
        p, s = _holiday_days(int(y))
        public |= p
        school |= s
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.int64).astype(np.float64) + 1.0
    return _Days(
        day=days,
        weekday=((days + 3) % 7).astype(np.int64),  # 1970-01-01 was a Thursday (Mon=0)
        public_holiday=np.isin(days, list(public)),
        school_holiday=np.isin(days, list(school)),
        season=_season(day_of_year),
        weather=_weather(seed, days),
    )


def _hour_grid(start: datetime, end: datetime) -> I64:
    """Epoch hours whose start lies in [start, end)."""
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    start_ns = pd.Timestamp(start).value
    end_ns = pd.Timestamp(end).value
    first = -(-start_ns // _HOUR_NS)
    last = -(-end_ns // _HOUR_NS)
    return np.arange(first, max(first, last), dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Generation.
def _shape_tables(cat: _Catalogue, idx: I64) -> F64:
    """(counter, day type, local hour) multipliers.

    Day types: 0 normal weekday, 1 weekday in school holidays, 2 Saturday, 3 Sunday/holiday.
    Weekday-of-week levels are applied separately.
    """
    skew = cat.asymmetry[idx, None]
    commute = (_WEEKDAY_SHAPE[None, :] ** cat.peakiness[idx, None]) * (
        1.0 + (skew - 1.0) * _MORNING + (1.0 / skew - 1.0) * _EVENING
    )
    commute /= commute.mean(axis=1, keepdims=True)
    school = commute * (1.0 - _SCHOOL_PEAK_DAMPING * (_MORNING + _EVENING))
    school *= _SCHOOL_HOLIDAY_LEVEL / school.mean(axis=1, keepdims=True)
    weekend = cat.weekend[idx, None]
    saturday = np.broadcast_to(_SATURDAY_SHAPE / _SATURDAY_SHAPE.mean(), commute.shape)
    sunday = np.broadcast_to(_SUNDAY_SHAPE / _SUNDAY_SHAPE.mean(), commute.shape)
    return np.stack(
        [commute, school, saturday * _SATURDAY_LEVEL * weekend, sunday * _SUNDAY_LEVEL * weekend],
        axis=1,
    )


def _parse_drift_date(drift_date: str | date | None) -> date | None:
    if drift_date is None or isinstance(drift_date, date):
        return drift_date
    return date.fromisoformat(drift_date)


def generate_counts(
    start: datetime,
    end: datetime,
    seed: int,
    n_counters: int,
    drift_date: str | date | None = None,
    drift_kind: str = "level_shift",
    drift_share: float = 0.4,
) -> pd.DataFrame:
    """Synthetic hourly counts for every hour starting in `[start, end)`, in the tidy schema.

    A pure function of its arguments; any split of a window into sub-windows yields the same rows.
    `drift_date` (ISO date, Paris local) starts a drift event at Paris midnight for a share of the
    counters (`drifted_counters`): `level_shift` multiplies their level by ~0.45 or ~1.8 and bends
    the commuter peaks; `broken_counter` makes them report 0 or one stuck value.
    """
    _check_n_counters(n_counters)
    if drift_kind not in DRIFT_KINDS:
        raise ValueError(f"drift_kind must be one of {DRIFT_KINDS}, got {drift_kind!r}")
    drift_on = _parse_drift_date(drift_date)
    drift_idx = _drift_index(seed, n_counters, drift_share)

    hours = _hour_grid(start, end)
    cat = _catalogue(seed)
    if hours.size == 0:
        return coerce_tidy(pd.DataFrame({c: [] for c in TIDY_COLUMNS}))
    counters = np.arange(n_counters, dtype=np.int64)

    utc = pd.DatetimeIndex(hours * _HOUR_NS, tz="UTC")
    local = utc.tz_convert(PARIS_TZ)
    local_hour = np.asarray(local.hour, dtype=np.int64)
    local_day = (local.tz_localize(None).to_numpy().astype("datetime64[D]") - _EPOCH_DAY).astype(
        np.int64
    )
    days, day_of_hour = np.unique(local_day, return_inverse=True)
    feats = _day_features(seed, days)

    # day type and day-level multiplier (shared by all counters)
    weekday = feats.weekday
    off_day = feats.public_holiday & (weekday < 5)
    day_type = np.where(
        weekday == 5, 2, np.where((weekday == 6) | off_day, 3, np.where(feats.school_holiday, 1, 0))
    )
    level = np.where((weekday < 5) & ~off_day, _WEEKDAY_LEVEL[np.minimum(weekday, 4)], 1.0)
    level = level * np.where(off_day, _PUBLIC_HOLIDAY_LEVEL / _SUNDAY_LEVEL, 1.0)
    day_mult = level * feats.season * feats.weather

    tables = _shape_tables(cat, counters)
    shape = tables[:, day_type[day_of_hour], local_hour]  # (counter, hour)
    lam = cat.scale[:n_counters, None] * shape * day_mult[day_of_hour][None, :]

    # per counter-day wobble (roadworks, events): lognormal, mean 1
    cd_noise = _normal_pair(seed, _T_COUNTER_DAY_A, _T_COUNTER_DAY_B, counters, days)[0]
    lam *= np.exp(0.12 * cd_noise - 0.0072)[:, day_of_hour]

    is_drifted = np.zeros(n_counters, dtype=bool)
    is_drifted[drift_idx] = True
    after = (
        np.zeros(days.size, dtype=bool)
        if drift_on is None
        else days >= (np.datetime64(drift_on, "D") - _EPOCH_DAY).astype(np.int64)
    )
    drift_mask = is_drifted[:, None] & after[day_of_hour][None, :]
    if drift_kind == "level_shift" and drift_mask.any():
        up = _uniform(seed, _T_DRIFT_MODE, counters, [0])[:, 0] < 0.5
        size = _uniform(seed, _T_DRIFT_SIZE, counters, [0])[:, 0]
        factor = np.where(up, 1.7 + 0.2 * size, 0.40 + 0.10 * size)
        weekday_hours = (day_type[day_of_hour] <= 1)[None, :]
        bend = np.where(weekday_hours, _DRIFT_SHAPE[local_hour][None, :], 1.0)
        lam = np.where(drift_mask, lam * factor[:, None] * bend, lam)

    # overdispersed hourly noise, then Poisson: negative-binomial-like counts
    z_noise, z_poisson = _normal_pair(seed, _T_NOISE_A, _T_NOISE_B, counters, hours)
    sigma = np.hypot(cat.hourly_sigma[:n_counters, None], _NIGHT_SIGMA[local_hour][None, :])
    lam *= np.exp(sigma * z_noise - sigma**2 / 2.0)
    counts = _poisson(lam, _uniform(seed, _T_POISSON, counters, hours), z_poisson)

    first_hour, first_day = int(hours[0]), int(days[0])
    zero = _runs(
        seed,
        _T_ZR_START,
        _T_ZR_LEN,
        counters,
        first_hour,
        hours.size,
        _ZERO_RUN_HOURLY[0] * cat.flakiness[:n_counters],
        _ZERO_RUN_HOURLY[1],
    )
    zero |= _runs(
        seed,
        _T_ZD_START,
        _T_ZD_LEN,
        counters,
        first_day,
        int(days[-1]) - first_day + 1,
        _ZERO_RUN_DAILY[0],
        _ZERO_RUN_DAILY[1],
    )[:, days - first_day][:, day_of_hour]
    counts[zero] = 0

    if drift_kind == "broken_counter" and drift_mask.any():
        stuck = _uniform(seed, _T_DRIFT_MODE, counters, [0])[:, 0] < 0.5
        stuck_value = np.maximum(
            1,
            np.round(
                cat.scale[:n_counters]
                * (0.2 + 0.8 * _uniform(seed, _T_DRIFT_SIZE, counters, [0])[:, 0])
            ),
        ).astype(np.int64)
        broken_value = np.where(stuck, stuck_value, 0)[:, None]
        counts = np.where(drift_mask, broken_value, counts)

    present = local_day[None, :] >= cat.install_day[:n_counters, None]
    present &= ~_runs(
        seed,
        _T_GH_START,
        _T_GH_LEN,
        counters,
        first_hour,
        hours.size,
        _GAP_HOURLY[0],
        _GAP_HOURLY[1],
    )
    present &= ~_runs(
        seed,
        _T_GD_START,
        _T_GD_LEN,
        counters,
        first_day,
        int(days[-1]) - first_day + 1,
        _GAP_DAILY[0],
        _GAP_DAILY[1],
    )[:, days - first_day][:, day_of_hour]

    return _assemble(cat.frame.iloc[:n_counters], hours, counts, present)


def _assemble(meta: pd.DataFrame, hours: I64, counts: I64, present: Bool) -> pd.DataFrame:
    # Row-major nonzero is counter-major and time-ascending: counters are visited in id order
    # so the frame comes out already in key order and coerce_tidy's sort has nothing to move.
    order = np.argsort(meta["counter_id"].to_numpy(dtype=str), kind="stable")
    present = present[order]
    ci, ti = np.nonzero(present)
    src = order[ci]
    meta_cols = {
        col: pd.array(meta[col].to_numpy()[src], dtype="string")
        for col in ("counter_id", "counter_name", "site_id", "site_name", "installation_date")
    }
    frame = pd.DataFrame(
        {
            **meta_cols,
            "timestamp": pd.DatetimeIndex(hours[ti] * _HOUR_NS, tz="UTC"),
            "count": counts[order][ci, ti],
            "lat": meta["lat"].to_numpy(dtype=np.float64)[src],
            "lon": meta["lon"].to_numpy(dtype=np.float64)[src],
        }
    )
    return coerce_tidy(frame)


# --------------------------------------------------------------------------------------------
class SyntheticCounts(CountsSource):
    """Offline counts source: a deterministic synthetic Paris (the platform's default source).

    Same configuration, same rows, whatever the windows asked for. `drift_date` injects a drift
    event (see `generate_counts`) so retraining and monitoring can be exercised offline.
    """

    seed: int = Field(default=42, description="Seed of the synthetic city and of its traffic.")
    n_counters: int = Field(
        default=80, ge=1, le=MAX_COUNTERS, description="Number of counter channels (1..200)."
    )
    drift_date: str | None = Field(
        default=None, description="ISO date (Paris) from which a drift event applies, if set."
    )
    drift_kind: str = Field(default="level_shift", description="'level_shift' or 'broken_counter'.")
    drift_share: float = Field(
        default=0.4, ge=0.0, le=1.0, description="Share of counters hit by the drift event."
    )

    @field_validator("drift_date")
    @classmethod
    def _valid_drift_date(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return date.fromisoformat(value.strip()).isoformat()

    @field_validator("drift_kind")
    @classmethod
    def _valid_drift_kind(cls, value: str) -> str:
        if value not in DRIFT_KINDS:
            raise ValueError(f"drift_kind must be one of {DRIFT_KINDS}, got {value!r}")
        return value

    @classmethod
    def from_settings(cls, settings: Settings) -> SyntheticCounts:
        """The resource configured by `BIKE_SYNTHETIC_*` (see `bike_assets.settings`)."""
        drift = settings.synthetic_drift_date
        return cls(
            seed=settings.synthetic_seed,
            n_counters=settings.synthetic_counters,
            drift_date=drift.isoformat() if drift is not None else None,
            drift_kind=settings.synthetic_drift_kind,
        )

    def counters(self) -> pd.DataFrame:
        """The counter catalogue of this configuration (see `synthetic_counters`)."""
        return synthetic_counters(self.seed, self.n_counters)

    def fetch(
        self, start: datetime, end: datetime, progress: ProgressCallback | None = None
    ) -> CountsBatch:
        frame = generate_counts(
            start,
            end,
            seed=self.seed,
            n_counters=self.n_counters,
            drift_date=self.drift_date,
            drift_kind=self.drift_kind,
            drift_share=self.drift_share,
        )
        if progress is not None:  # generated at once (about a second a year): one report
            days = max(1, round((end - start).total_seconds() / 86_400))
            progress(FetchProgress(days_done=days, days_total=days, rows=len(frame)))
        return CountsBatch(frame=frame)
