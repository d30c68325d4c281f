//! The sorter's memory arithmetic, pure: how many rows a spilled chunk holds, what the merge
//! needs per run, how large a buffer spilled by plan may be, and — when the input's row count
//! is known — how many rows must be spilled so that the rest fits in memory at the end.
//!
//! Everything is derived from the budget, the batch size and the rows and encoded bytes seen
//! so far (their mean row size), so the ratios hold for rows of any width.

/// Fewest runs one merge pass should take at once: at the default budget, the runs of
/// tens of millions of rows (every buffer of half the sort budget is a run).
pub(super) const MIN_FAN_IN: usize = 64;

/// Sort scratch per buffered row: its 56-byte sort entry and its 8-byte sorted position.
pub(super) const SCRATCH_PER_ROW: usize = 64;

/// What the sorter knows when it decides.
#[derive(Clone, Copy, Debug)]
pub(super) struct Budget {
    pub(super) budget_bytes: usize,
    pub(super) batch_size: usize,
    pub(super) seen_rows: usize,
    pub(super) seen_bytes: usize,
}

/// How a sorter with a known input size splits it between disk and memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SpillPlan {
    /// Rows to spill before the rest is kept in memory.
    pub(super) must_spill_rows: usize,
    /// Bytes the sorted pieces, the piece being filled and a run in flight may hold.
    pub(super) capacity: usize,
    /// Bytes of a piece sorted and kept in memory.
    pub(super) piece: usize,
}

impl Budget {
    /// Mean encoded bytes of a row seen so far.
    fn mean_row(&self) -> usize {
        self.seen_bytes / self.seen_rows.max(1)
    }

    /// Bytes one row takes in memory while merged, on average (rows and read buffers).
    pub(super) fn row_bytes(&self) -> usize {
        (2 * self.mean_row()).max(16)
    }

    /// Rows per spilled chunk: small enough that a merge of [`MIN_FAN_IN`] runs, each
    /// holding about three chunks, fits half the budget.
    pub(super) fn spill_batch_rows(&self) -> usize {
        (self.budget_bytes / (3 * MIN_FAN_IN * self.row_bytes()))
            .clamp(256.min(self.batch_size), self.batch_size)
    }

    /// Memory the merge needs per run: about three chunks of rows as encoded. A run's
    /// source holds one decoded chunk, whose rows share the buffers of the IPC batch they
    /// came from, and the file reader's 64 KiB buffer, so this is about twice what it holds.
    pub(super) fn merge_bytes_per_run(&self) -> usize {
        3 * self.spill_batch_rows() * self.mean_row().max(8)
    }

    /// Most rows a buffer spilled by plan holds: three quarters of half the budget.
    pub(super) fn spill_buffer_rows(&self) -> usize {
        let cost_per_row = SCRATCH_PER_ROW + self.mean_row();
        (self.budget_bytes / 2 * 3 / 4 / cost_per_row).max(1)
    }

    /// With `expected` input rows: how many to spill so that the rest fits in memory at the
    /// end (a sixteenth of the budget is kept for the merge to read every run at once; sorted
    /// pieces keep 8 bytes of order per row, the piece being filled the full sort scratch).
    /// `None` when, deciding before anything was spilled (`first`), the merge would need more
    /// than that sixteenth to read the runs the plan makes.
    pub(super) fn spill_plan(&self, expected: usize, first: bool) -> Option<SpillPlan> {
        let reserve = self.budget_bytes / 16;
        let capacity = self.budget_bytes - reserve;
        let piece = capacity / 4;
        let row = self.mean_row();
        let fit = (capacity - piece) / (row + 8) + piece / (row + SCRATCH_PER_ROW);
        let must_spill_rows = expected.max(self.seen_rows).saturating_sub(fit);
        if first {
            // The runs the plan will spill, and a margin.
            let runs = must_spill_rows.div_ceil(self.spill_buffer_rows()) + 4;
            if runs * self.merge_bytes_per_run() > reserve {
                return None;
            }
        }
        Some(SpillPlan {
            must_spill_rows,
            capacity,
            piece,
        })
    }

    /// With `expected` input rows: whether a sorter should work within `smaller` bytes
    /// instead of this budget. Only when the input will not fit in this budget anyway (some
    /// of it is spilled either way), and the smaller budget's runs still fit a merge of
    /// [`MIN_FAN_IN`] (a second merge pass would rewrite most of the spilled bytes).
    pub(super) fn yields_to(&self, smaller: usize, expected: usize) -> bool {
        if smaller >= self.budget_bytes {
            return false;
        }
        let fits = self
            .spill_plan(expected, false)
            .is_some_and(|plan| plan.must_spill_rows == 0);
        let small = Budget {
            budget_bytes: smaller,
            ..*self
        };
        let runs = expected
            .max(self.seen_rows)
            .div_ceil(small.spill_buffer_rows());
        !fits && runs + 2 <= MIN_FAN_IN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(budget_bytes: usize, rows: usize, bytes_per_row: usize) -> Budget {
        Budget {
            budget_bytes,
            batch_size: 8192,
            seen_rows: rows,
            seen_bytes: rows * bytes_per_row,
        }
    }

    #[test]
    fn a_merge_of_the_fewest_runs_fits_the_budget() {
        for (b, row) in [
            (512 << 20, 140),
            (2 << 30, 140),
            (16 << 20, 60),
            (64 << 20, 1000),
        ] {
            let budget = budget(b, 1 << 20, row);
            assert!(
                MIN_FAN_IN * budget.merge_bytes_per_run() <= b,
                "budget {b}, rows of {row} bytes"
            );
            let rows = budget.spill_batch_rows();
            assert!((256..=8192).contains(&rows), "{rows}");
        }
    }

    #[test]
    fn a_buffer_spilled_by_plan_fills_three_eighths_of_the_budget() {
        let b = budget(512 << 20, 1 << 20, 136);
        let cost = b.spill_buffer_rows() * (136 + SCRATCH_PER_ROW);
        assert!(
            cost <= (512 << 20) * 3 / 8 && cost > (512 << 20) * 3 / 8 - 200,
            "{cost}"
        );
    }

    #[test]
    fn the_plan_spills_exactly_what_does_not_fit() {
        let b = budget(2 << 30, 100_000, 140);
        let small = b.spill_plan(100_000, true).unwrap();
        assert_eq!(small.must_spill_rows, 0, "100k rows fit");
        let plan = b.spill_plan(20_000_000, true).unwrap();
        let fit = (plan.capacity - plan.piece) / 148 + plan.piece / (140 + SCRATCH_PER_ROW);
        assert_eq!(plan.must_spill_rows + fit, 20_000_000);
        assert!(plan.must_spill_rows > 0);
        assert_eq!(plan.capacity, (2 << 30) - (2 << 30) / 16);
        // Far too many rows for the merge's sixteenth to read every run: no plan.
        assert_eq!(b.spill_plan(2_000_000_000, true), None);
        // Once decided, a plan is not refused later.
        assert!(b.spill_plan(2_000_000_000, false).is_some());
    }

    #[test]
    fn a_large_budget_yields_to_a_smaller_one_only_for_input_that_spills_anyway() {
        let b = budget(1792 << 20, 8192, 370);
        // 8M rows of 370 bytes (the wide benchmark shape) spill at 1.75 GiB too: a 768 MiB
        // sorter spills more of them but touches half the memory, in 12 runs.
        assert!(b.spill_plan(8_000_000, false).unwrap().must_spill_rows > 0);
        assert!(b.yields_to(768 << 20, 8_000_000));
        // 3M such rows fit in 1.75 GiB: nothing is spilled, so the budget is kept.
        assert_eq!(b.spill_plan(3_000_000, false).unwrap().must_spill_rows, 0);
        assert!(!b.yields_to(768 << 20, 3_000_000));
        // So many rows that the smaller budget's runs would need a second merge pass.
        assert!(!b.yields_to(768 << 20, 200_000_000));
        // Never to a budget that is not smaller.
        assert!(!b.yields_to(1792 << 20, 8_000_000));
    }

    #[test]
    fn at_512_mib_rows_of_140_bytes_fit_up_to_3_million_and_a_plan_spills_up_to_about_8_million() {
        // The merge's sixteenth reads the runs of a planned spill of a few million such
        // rows; beyond that the sorter spills every buffer.
        let b = budget(512 << 20, 100_000, 140);
        assert_eq!(b.spill_plan(3_000_000, true).unwrap().must_spill_rows, 0);
        assert!(b.spill_plan(3_500_000, true).unwrap().must_spill_rows > 0);
        assert!(b.spill_plan(7_500_000, true).is_some());
        assert_eq!(b.spill_plan(9_000_000, true), None);
    }

    #[test]
    fn the_merge_reads_every_run_of_the_benchmark_shapes_at_the_default_budget_in_one_pass() {
        // The default 512 MiB budget gives the sorter 256 MiB, of which the merge has half
        // for its runs' read buffers. Without a plan every buffer of half the sort budget is
        // spilled: 20M rows of 140 bytes make about 31 runs, 8M rows of 367 bytes (strings
        // of up to 70 bytes) about 26. They, the last buffer and a stopped run must fit in
        // one pass: an extra pass rewrites most of the spilled bytes and puts a merged copy
        // beside its runs, past the disk bound of twice the input.
        for (rows, row) in [(20_000_000, 140), (8_000_000, 367)] {
            let b = budget(256 << 20, 1 << 20, row);
            let runs = rows * (row + SCRATCH_PER_ROW) / (128 << 20) + 1;
            assert!(
                (runs + 2) * b.merge_bytes_per_run() <= (128 << 20),
                "{runs} runs of {row}-byte rows, {} bytes each",
                b.merge_bytes_per_run()
            );
        }
    }
}
