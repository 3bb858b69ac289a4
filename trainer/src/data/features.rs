//! Featurization of lab series: the lookback window before each prediction time, in `T` buckets x `K`
//! lab channels.
//!
//! - Channels are catalogue tests (by name, LOINC or JLAC10 code), chosen by the config or by DP
//!   selection (`channels = "auto"`, `data prepare`). A channel matches every code the catalogue maps to
//!   its test (the LOINC code, the JLAC10 code and JLAC10 codes of the same quantity with another method
//!   or a compatible material, `catalog::lookup_index`), in the catalogue's unit (or with no unit): the
//!   readers have already converted values in commensurable units (UCUM, `units.rs`); values left in
//!   other units are counted, not used.
//! - Values are normalized with the public reference interval, or with DP quantiles (2.5% and 97.5%)
//!   where the catalogue has none: `(v - mid) / half_width`, clamped to [-10, 10], never with
//!   non-private statistics of the private data.
//! - Per bucket and channel: the last value in the bucket, an observation mask, and the time since the
//!   last observation at the bucket's end (as a fraction of the lookback, 1 when none).
//! - Events up to and including the prediction time are used (the MEDS label schema's rule: "data may
//!   be used up to and including this time"; times are read to the second, so an event in the same
//!   second counts as at it), none after it.

use super::catalog::{self, Lab};
use super::labels::Label;
use super::{Dataset, EventKind, NONE};

#[derive(Debug, Clone)]
pub struct LabSeriesSpec {
    pub channels: Vec<&'static Lab>,
    /// per channel, the interval (low, high) that maps to [-1, 1]: the public reference interval, or
    /// DP quantiles where the catalogue has none ([`LabSeriesSpec::with_scale`])
    pub scales: Vec<Option<(f64, f64)>>,
    pub buckets: usize,
    pub lookback_hours: f64,
}

impl LabSeriesSpec {
    /// Channels by catalogue name, LOINC or JLAC10 code; an unknown one is an error naming it. Channels
    /// without a public reference interval need a scale set with [`LabSeriesSpec::with_scale`] before use.
    pub fn new(channels: &[String], buckets: usize, lookback_hours: f64) -> Result<Self, String> {
        let channels = channels
            .iter()
            .enumerate()
            .map(|(i, c)| {
                catalog::by_name_or_code(c).ok_or_else(|| {
                    // a name in other case or with spaces or hyphens: the catalogue's spelling offered (its
                    // own name, never the value given)
                    let hint = catalog::by_name_or_code(&catalog::folded_name(c))
                        .map_or_else(String::new, |l| format!(" (the catalogue's name is {:?})", l.name));
                    let shown = super::reportable::quoted(c);
                    let shown = if shown.starts_with('"') { format!(" ({shown})") } else { String::new() };
                    format!(
                        "features.channels: entry {}{shown} is not a catalogue test, LOINC or JLAC10 code{hint}",
                        i + 1
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // the same test twice (by name and by code, or one name twice) would be two identical channels
        for (i, l) in channels.iter().enumerate() {
            if let Some(j) = channels[..i].iter().position(|o| o.name == l.name) {
                return Err(format!("features.channels: entries {} and {} are both the test {}", j + 1, i + 1, l.name));
            }
        }
        if buckets == 0 || lookback_hours.is_nan() || lookback_hours <= 0.0 {
            return Err(format!(
                "features: buckets ({buckets}) and lookback_hours ({lookback_hours}) must be positive"
            ));
        }
        let scales = channels.iter().map(|l| l.reference).collect();
        Ok(LabSeriesSpec { channels, scales, buckets, lookback_hours })
    }

    /// Sets the normalization interval of channel `ch` (DP quantiles of a channel with no public one).
    pub fn with_scale(mut self, ch: usize, low: f64, high: f64) -> Self {
        self.scales[ch] = Some((low, high));
        self
    }

    /// The channels that still have no normalization interval.
    pub fn unscaled(&self) -> Vec<usize> {
        (0..self.channels.len()).filter(|&c| self.scales[c].is_none()).collect()
    }
}

/// The features of many examples, each `buckets x channels`, row-major.
#[derive(Debug, Default)]
pub struct LabSeries {
    pub buckets: usize,
    pub channels: usize,
    pub values: Vec<f32>,
    pub mask: Vec<f32>,
    pub since_last: Vec<f32>,
    /// values skipped because their unit is not the channel's (counted per example that looked at them)
    pub unit_mismatches: u64,
}

/// Builds the lab series of every label. The dataset must be sorted ([`Dataset::sort`]).
pub fn lab_series(data: &Dataset, spec: &LabSeriesSpec, labels: &[Label]) -> LabSeries {
    let k = spec.channels.len();
    let t = spec.buckets;
    // code index -> channel (every code the catalogue maps to the channel's test)
    let mut channel_of_row = vec![None; catalog::LABS.len()];
    for (ch, l) in spec.channels.iter().enumerate() {
        channel_of_row[catalog::index_of(l)] = Some(ch);
    }
    let channel_of: Vec<Option<usize>> = data
        .codes
        .iter()
        .map(|c| catalog::lookup_index(&c.system, &c.code).and_then(|row| channel_of_row[row]))
        .collect();
    let ranges = data.by_subject();
    let lookback = (spec.lookback_hours * 3600.0) as i64;
    let width = lookback as f64 / t as f64;
    let mut out = LabSeries { buckets: t, channels: k, ..Default::default() };
    out.values = vec![0.0; labels.len() * t * k];
    out.mask = vec![0.0; labels.len() * t * k];
    out.since_last = vec![1.0; labels.len() * t * k];
    for (i, label) in labels.iter().enumerate() {
        let base = i * t * k;
        let start = label.prediction_time.saturating_sub(lookback);
        let r = ranges.get(label.subject as usize).cloned().unwrap_or(0..0);
        let events = &data.events[r];
        let end = events.partition_point(|e| e.time <= label.prediction_time);
        for e in &events[..end] {
            if e.kind != EventKind::Lab && e.kind != EventKind::Vital || e.value.is_nan() {
                continue;
            }
            let Some(ch) = channel_of[e.code as usize] else { continue };
            let lab = spec.channels[ch];
            if e.unit != NONE && data.units.names[e.unit as usize] != lab.unit {
                out.unit_mismatches += 1;
                continue;
            }
            if e.time < start {
                continue;
            }
            let b = ((e.time.saturating_sub(start) as f64 / width) as usize).min(t - 1);
            // a channel without a scale is refused by `data prepare`; here it only gives zeros
            let (lo, hi) = spec.scales[ch].unwrap_or((lab.plausible.0, lab.plausible.1));
            let mid = (lo + hi) / 2.0;
            let half = ((hi - lo) / 2.0).max(1e-6);
            out.values[base + b * k + ch] = ((e.value as f64 - mid) / half).clamp(-10.0, 10.0) as f32;
            out.mask[base + b * k + ch] = 1.0;
        }
        // time since the last observation (inside the window or before it) at each bucket's end
        let usable = |e: &super::Event| match channel_of[e.code as usize] {
            Some(ch)
                if !e.value.is_nan()
                    && (e.unit == NONE || data.units.names[e.unit as usize] == spec.channels[ch].unit) =>
            {
                Some(ch)
            }
            _ => None,
        };
        let mut last = vec![i64::MIN; k];
        let mut cursor = 0;
        for b in 0..t {
            let bucket_end =
                if b + 1 == t { label.prediction_time } else { start.saturating_add((width * (b + 1) as f64) as i64) };
            // the last bucket ends at the prediction time, which it holds
            while cursor < end && (b + 1 == t || events[cursor].time < bucket_end) {
                if let Some(ch) = usable(&events[cursor]) {
                    last[ch] = events[cursor].time;
                }
                cursor += 1;
            }
            for ch in 0..k {
                if last[ch] != i64::MIN {
                    out.since_last[base + b * k + ch] =
                        (bucket_end.saturating_sub(last[ch]) as f64 / lookback as f64).clamp(0.0, 1.0) as f32;
                }
            }
        }
    }
    out
}
