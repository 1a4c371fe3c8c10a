//! Round order and per-round (paired) ratios.
//!
//! A shared VM's CPU speed drifts over tens of seconds, and one round of the load bench runs
//! every variant in turn for a few seconds each, so two variants of one round can meet
//! different weather. Two things keep that drift out of the ratios:
//!
//! * the order alternates: forward in even rounds, backward in odd ones (an ABBA design), so a
//!   steady drift favours each variant of a pair as often as the other, and no variant is
//!   always the one that runs right after the dearest;
//! * a ratio is taken within each round, between two variants that ran in the same round,
//!   and the median of those per-round ratios is reported with their spread and how many
//!   rounds met the target; a slow spell then spoils one round's ratio, not a median of one
//!   variant only.

/// The order in which `variants` variants run in round `round` (0-based): indices into the
/// variant list, forward in even rounds and backward in odd ones.
pub fn round_order(variants: usize, round: usize) -> Vec<usize> {
    let forward = 0..variants;
    if round.is_multiple_of(2) {
        forward.collect()
    } else {
        forward.rev().collect()
    }
}

/// The per-round ratios `a[i] / b[i]` of two variants measured in the same rounds, and how
/// they stand against a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    /// Median of the per-round ratios.
    pub median: f64,
    /// Smallest per-round ratio.
    pub min: f64,
    /// Largest per-round ratio.
    pub max: f64,
    /// Rounds whose ratio meets the target.
    pub met: usize,
    /// Rounds with a ratio (both figures finite and the divisor above zero).
    pub rounds: usize,
}

impl Paired {
    /// Ratios of round-aligned figures; `higher_better` says whether the target is a floor
    /// (`ratio >= target`) or a ceiling (`ratio <= target`). Rounds where either figure is not
    /// a finite number, or the divisor is not above zero, are left out. `None` when no round
    /// is left.
    pub fn new(a: &[f64], b: &[f64], target: f64, higher_better: bool) -> Option<Self> {
        let mut ratios: Vec<f64> = a
            .iter()
            .zip(b)
            .filter(|(x, y)| x.is_finite() && y.is_finite() && **y > 0.0)
            .map(|(x, y)| x / y)
            .collect();
        if ratios.is_empty() {
            return None;
        }
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        let median = if !n.is_multiple_of(2) {
            ratios[n / 2]
        } else {
            (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
        };
        let met = ratios
            .iter()
            .filter(|&&r| if higher_better { r >= target } else { r <= target })
            .count();
        Some(Self {
            median,
            min: ratios[0],
            max: ratios[n - 1],
            met,
            rounds: n,
        })
    }

    /// Whether the median of the per-round ratios meets the target.
    pub fn meets(&self, target: f64, higher_better: bool) -> bool {
        if higher_better {
            self.median >= target
        } else {
            self.median <= target
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_alternates_and_covers_every_variant_once() {
        assert_eq!(round_order(4, 0), vec![0, 1, 2, 3]);
        assert_eq!(round_order(4, 1), vec![3, 2, 1, 0]);
        assert_eq!(round_order(4, 2), vec![0, 1, 2, 3]);
        assert_eq!(round_order(1, 1), vec![0]);
        assert!(round_order(0, 3).is_empty());
    }

    #[test]
    fn ratios_are_paired_by_round_not_by_rank() {
        // Round 2 is slow for both: paired ratios stay at 0.5; a ratio of the two medians
        // would say the same here, but pairing must not sort each side separately.
        let a = [50.0, 10.0, 60.0];
        let b = [100.0, 20.0, 120.0];
        let p = Paired::new(&a, &b, 0.5, true).unwrap();
        assert_eq!((p.median, p.min, p.max, p.met, p.rounds), (0.5, 0.5, 0.5, 3, 3));

        // Sorted separately, the medians would be 50 and 100 (0.5); paired, the ratios are
        // 0.25, 1.0 and 2.0, median 1.0.
        let a = [25.0, 50.0, 200.0];
        let b = [100.0, 50.0, 100.0];
        let p = Paired::new(&a, &b, 1.0, true).unwrap();
        assert_eq!((p.median, p.min, p.max, p.met), (1.0, 0.25, 2.0, 2));
    }

    #[test]
    fn even_counts_take_the_middle_pair_and_ceilings_count_the_other_way() {
        let p = Paired::new(&[1.0, 2.0, 3.0, 4.0], &[1.0; 4], 2.0, false).unwrap();
        assert_eq!(p.median, 2.5);
        assert_eq!(p.met, 2);
        assert!(!p.meets(2.0, false));
        assert!(p.meets(2.0, true));
    }

    #[test]
    fn unusable_rounds_are_left_out() {
        let p = Paired::new(&[1.0, f64::NAN, 3.0, 4.0], &[1.0, 1.0, 0.0, 2.0], 1.5, true).unwrap();
        assert_eq!((p.rounds, p.median, p.met), (2, 1.5, 1));
        assert_eq!(Paired::new(&[f64::NAN], &[1.0], 1.0, true), None);
        assert_eq!(Paired::new(&[], &[], 1.0, true), None);
    }
}
