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
//!
//! Rounds last a minute or more, and the drift within one is as large as between rounds
//! (the hello-world's own req/s moved by 30 % and more from one slot to the next on some
//! hosts). So a variant judged against the baseline can be given an *anchor*: a baseline slot
//! run right beside it ([`schedule`]), and its per-round ratio is then taken against the
//! baseline slots nearest to it in time ([`pair_by_time`]), not against one baseline slot half
//! a round away.

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

/// The order of the slots of round `round`: indices into the variant list, forward in even
/// rounds and backward in odd ones, like [`round_order`], with a slot of variant `anchor`
/// right after every variant `i` with `anchored[i]` (right before it in backward rounds). The
/// anchor variant then runs only in those slots. Without an anchor, or with nothing anchored,
/// this is [`round_order`].
pub fn schedule(variants: usize, anchor: Option<usize>, anchored: &[bool], round: usize) -> Vec<usize> {
    let anchor = anchor.filter(|&a| a < variants && anchored.iter().take(variants).any(|&x| x));
    let Some(anchor) = anchor else {
        return round_order(variants, round);
    };
    let mut forward = Vec::with_capacity(2 * variants);
    for i in (0..variants).filter(|&i| i != anchor) {
        forward.push(i);
        if anchored.get(i).copied().unwrap_or(false) {
            forward.push(anchor);
        }
    }
    if !round.is_multiple_of(2) {
        forward.reverse();
    }
    forward
}

/// One measured slot: which variant ran, in which round, at which position of the round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Index into the variant list.
    pub variant: usize,
    /// 0-based round.
    pub round: usize,
    /// 0-based position within the round.
    pub pos: usize,
}

/// Figures of variants `a` and `b` paired by time, ready for [`Paired::new`]: every slot of
/// `a` with the mean of `b`'s slots of the same round that ran nearest to it (both
/// neighbours when they are equally near, which also cancels a steady drift). `values[k]` is
/// slot `k`'s figure. With one slot per variant and round this pairs by round, as before.
pub fn pair_by_time(slots: &[Slot], values: &[f64], a: usize, b: usize) -> (Vec<f64>, Vec<f64>) {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for (sa, &va) in slots.iter().zip(values).filter(|(s, _)| s.variant == a) {
        let bs = || {
            slots
                .iter()
                .zip(values)
                .filter(move |(s, _)| s.variant == b && s.round == sa.round)
        };
        let Some(nearest) = bs().map(|(s, _)| s.pos.abs_diff(sa.pos)).min() else {
            continue;
        };
        let (sum, n) = bs()
            .filter(|(s, _)| s.pos.abs_diff(sa.pos) == nearest)
            .fold((0.0, 0usize), |(sum, n), (_, &v)| (sum + v, n + 1));
        xs.push(va);
        ys.push(sum / n as f64);
    }
    (xs, ys)
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
    fn anchors_sit_beside_their_variants_and_flip_with_the_round() {
        // Variants 0..4, baseline 0, anchored 2 and 3.
        let anchored = [false, false, true, true];
        assert_eq!(schedule(4, Some(0), &anchored, 0), vec![1, 2, 0, 3, 0]);
        assert_eq!(schedule(4, Some(0), &anchored, 1), vec![0, 3, 0, 2, 1]);
        // Nothing anchored, or no anchor: the plain order, the baseline included once.
        assert_eq!(schedule(4, Some(0), &[false; 4], 0), round_order(4, 0));
        assert_eq!(schedule(4, None, &anchored, 1), round_order(4, 1));
        assert_eq!(schedule(4, Some(9), &anchored, 0), round_order(4, 0));
    }

    fn slots(rounds: &[Vec<usize>]) -> Vec<Slot> {
        rounds
            .iter()
            .enumerate()
            .flat_map(|(round, order)| {
                order
                    .iter()
                    .enumerate()
                    .map(move |(pos, &variant)| Slot { variant, round, pos })
            })
            .collect()
    }

    #[test]
    fn pairs_take_the_nearest_baseline_slots() {
        // Round 0: 1, 2, 0, 3, 0; round 1: 0, 3, 0, 2, 1. The baseline (0) slows down
        // through round 0 and speeds up through round 1.
        let s = slots(&[
            schedule(4, Some(0), &[false, false, true, true], 0),
            schedule(4, Some(0), &[false, false, true, true], 1),
        ]);
        let values = [10.0, 20.0, 100.0, 30.0, 50.0, 60.0, 40.0, 80.0, 21.0, 11.0];
        // Variant 3: beside slot 2 and 4 in round 0 (100, 50: mean 75); in round 1 between
        // slots 0 and 2 (60, 80: mean 70).
        assert_eq!(
            pair_by_time(&s, &values, 3, 0),
            (vec![30.0, 40.0], vec![75.0, 70.0])
        );
        // Variant 2: one baseline slot beside it in each round.
        assert_eq!(
            pair_by_time(&s, &values, 2, 0),
            (vec![20.0, 21.0], vec![100.0, 80.0])
        );
        // Variant 1 is not anchored: its nearest baseline slot, two away.
        assert_eq!(
            pair_by_time(&s, &values, 1, 0),
            (vec![10.0, 11.0], vec![100.0, 80.0])
        );
        // A variant that never ran against one that did: nothing to pair.
        assert_eq!(pair_by_time(&s, &values, 7, 0), (vec![], vec![]));
        assert_eq!(pair_by_time(&s, &values, 1, 7), (vec![], vec![]));
    }

    #[test]
    fn one_slot_per_round_pairs_by_round() {
        let s = slots(&[round_order(3, 0), round_order(3, 1)]);
        // Round 0: 0, 1, 2; round 1: 2, 1, 0.
        let values = [1.0, 2.0, 3.0, 6.0, 5.0, 4.0];
        assert_eq!(pair_by_time(&s, &values, 2, 0), (vec![3.0, 6.0], vec![1.0, 4.0]));
    }

    #[test]
    fn unusable_rounds_are_left_out() {
        let p = Paired::new(&[1.0, f64::NAN, 3.0, 4.0], &[1.0, 1.0, 0.0, 2.0], 1.5, true).unwrap();
        assert_eq!((p.rounds, p.median, p.met), (2, 1.5, 1));
        assert_eq!(Paired::new(&[f64::NAN], &[1.0], 1.0, true), None);
        assert_eq!(Paired::new(&[], &[], 1.0, true), None);
    }
}
