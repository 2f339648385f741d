//! One class of one run: which segments of which seat are taken, and how to choose seats.
//!
//! Two views of the same facts are kept in step:
//! - per seat, the occupancy mask (bit i = segment i, stop i to stop i+1, is taken), grouped
//!   into *patterns*: seats with equal masks are interchangeable, so best-fit scans the few
//!   distinct patterns, not every seat;
//! - per segment, a bitset of free seats, so the remaining count for any journey [a, b) is the
//!   popcount of an AND over segments a..b.

use serde::{Deserialize, Serialize};

/// Segments a run may have. Seat masks are stored as u32 to halve memory (the longest train
/// in the data has 20 segments); arithmetic is done in u64 with bits above kept as sentinels.
pub const SEGMENTS_MAX: u8 = 31;

/// Allocation policy. The engine always uses best-fit; first-fit exists for comparison
/// (`chepiao bench allocation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    BestFit,
    FirstFit,
}

/// Mask of segments [a, b).
pub fn span_mask(a: u8, b: u8) -> u64 {
    debug_assert!(a < b && b <= SEGMENTS_MAX);
    ((1u64 << b) - 1) & !((1u64 << a) - 1)
}

/// Seats sharing one occupancy mask.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Pattern {
    mask: u64,
    /// Bitset over the class's seats.
    members: Vec<u64>,
    count: u32,
}

/// How well a journey [a, b) fits a seat with occupancy `mask`: the free run around the
/// journey is [l, r); lower is better. Fewer new holes first (a seat already sold up to `a` or
/// from `b` is filled flush), then fewer leftover segments. Among equals the chooser takes the
/// lowest seat, packing like first-fit does. (Measured in docs/BENCHMARKS.md: ranking leftover
/// first, or preferring fuller seats on ties, lost to first-fit more often.)
fn fit_score(mask: u64, segments: u8, a: u8, b: u8) -> u32 {
    let occupied = mask | !((1u64 << segments) - 1);
    let below = occupied & ((1u64 << a) - 1);
    let l = if below == 0 { 0 } else { 64 - below.leading_zeros() } as u8;
    let r = b + (occupied >> b).trailing_zeros() as u8;
    let leftover = u32::from(a - l) + u32::from(r - b);
    let holes = u32::from(a > l) + u32::from(r > b);
    holes * 1024 + leftover
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClassInventory {
    segments: u8,
    words: usize,
    /// Occupancy mask per seat of the class.
    masks: Vec<u32>,
    /// segments × words: bit s of word block i set = seat s free on segment i.
    seg_free: Vec<u64>,
    patterns: Vec<Pattern>,
}

/// Seat facts the chooser needs, indexed by seat within the class.
pub struct SeatFacts<'a> {
    /// Coach number per seat.
    pub coach: &'a [u8],
    /// Seat letter per seat (0 when it has none).
    pub letter: &'a [u8],
}

fn full_words(len: usize) -> Vec<u64> {
    let mut w = vec![u64::MAX; len.div_ceil(64)];
    if !len.is_multiple_of(64) {
        *w.last_mut().expect("len > 0") = (1u64 << (len % 64)) - 1;
    }
    w
}

fn bit(words: &[u64], i: usize) -> bool {
    words[i / 64] & (1u64 << (i % 64)) != 0
}

impl ClassInventory {
    /// A fresh class: `len` seats, all free on all `segments`.
    pub fn new(len: usize, segments: u8) -> ClassInventory {
        assert!((1..=SEGMENTS_MAX).contains(&segments));
        let words = len.div_ceil(64);
        let free = full_words(len);
        let seg_free = (0..segments).flat_map(|_| free.iter().copied()).collect();
        let patterns = if len == 0 { vec![] } else { vec![Pattern { mask: 0, members: free, count: len as u32 }] };
        ClassInventory { segments, words, masks: vec![0; len], seg_free, patterns }
    }

    pub fn len(&self) -> usize {
        self.masks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    pub fn mask(&self, seat: usize) -> u64 {
        u64::from(self.masks[seat])
    }

    pub fn is_free(&self, seat: usize, need: u64) -> bool {
        self.mask(seat) & need == 0
    }

    /// Distinct occupancy patterns (for tests and statistics).
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Seats free on every segment of [a, b).
    pub fn remaining(&self, a: u8, b: u8) -> u32 {
        let w = self.words;
        (0..w)
            .map(|i| {
                let acc = (a..b).fold(u64::MAX, |acc, s| acc & self.seg_free[s as usize * w + i]);
                acc.count_ones()
            })
            .sum()
    }

    /// Remaining for every journey: `out[k]` for the k-th pair (a, b), a < b, in order
    /// (0,1), (0,2), .., (0,S), (1,2), ... `acc` is scratch of `words` length.
    pub fn remaining_all(&self, out: &mut Vec<u32>, acc: &mut Vec<u64>) {
        let w = self.words;
        for a in 0..self.segments as usize {
            acc.clear();
            acc.extend_from_slice(&self.seg_free[a * w..(a + 1) * w]);
            out.push(acc.iter().map(|x| x.count_ones()).sum());
            for s in a + 1..self.segments as usize {
                let seg = &self.seg_free[s * w..(s + 1) * w];
                let mut n = 0;
                for (x, y) in acc.iter_mut().zip(seg) {
                    *x &= y;
                    n += x.count_ones();
                }
                out.push(n);
            }
        }
    }

    fn pattern_of(&self, mask: u64) -> Option<usize> {
        self.patterns.iter().position(|p| p.mask == mask)
    }

    fn move_seat(&mut self, seat: usize, old: u64, new: u64) {
        let from = self.pattern_of(old).expect("every seat is in its mask's pattern");
        let p = &mut self.patterns[from];
        debug_assert!(bit(&p.members, seat));
        p.members[seat / 64] &= !(1u64 << (seat % 64));
        p.count -= 1;
        if p.count == 0 {
            self.patterns.swap_remove(from);
        }
        match self.pattern_of(new) {
            Some(to) => {
                let p = &mut self.patterns[to];
                p.members[seat / 64] |= 1u64 << (seat % 64);
                p.count += 1;
            }
            None => {
                let mut members = vec![0; self.words];
                members[seat / 64] |= 1u64 << (seat % 64);
                self.patterns.push(Pattern { mask: new, members, count: 1 });
            }
        }
        self.masks[seat] = new as u32;
    }

    fn set_segments(&mut self, seat: usize, need: u64, free: bool) {
        let (w, word, bit) = (self.words, seat / 64, 1u64 << (seat % 64));
        let mut m = need;
        while m != 0 {
            let s = m.trailing_zeros() as usize;
            m &= m - 1;
            let x = &mut self.seg_free[s * w + word];
            *x = if free { *x | bit } else { *x & !bit };
        }
    }

    /// Take segments `need` of `seat`. The seat must be free there (I1).
    pub fn occupy(&mut self, seat: usize, need: u64) {
        let old = self.mask(seat);
        assert_eq!(old & need, 0, "seat {seat} is already taken on part of the journey");
        self.move_seat(seat, old, old | need);
        self.set_segments(seat, need, false);
    }

    /// Give back segments `need` of `seat`, which must be exactly taken there (I3).
    pub fn vacate(&mut self, seat: usize, need: u64) {
        let old = self.mask(seat);
        assert_eq!(old & need, need, "seat {seat} is not taken on the whole journey being released");
        self.move_seat(seat, old, old & !need);
        self.set_segments(seat, need, true);
    }

    /// Choose `count` seats free on [a, b), or None when fewer are free. `prefs` are wanted
    /// seat letters (at most one per passenger).
    pub fn choose(
        &self,
        a: u8,
        b: u8,
        count: usize,
        prefs: &[u8],
        facts: &SeatFacts<'_>,
        policy: Policy,
    ) -> Option<Vec<usize>> {
        let need = span_mask(a, b);
        if policy == Policy::FirstFit {
            let seats: Vec<usize> = (0..self.len()).filter(|&s| self.is_free(s, need)).take(count).collect();
            return (seats.len() == count).then_some(seats);
        }
        if count == 1 && prefs.is_empty() {
            return self.best_single(need, a, b).map(|s| vec![s]);
        }
        self.best_group(a, b, count, prefs, facts)
    }

    /// The best-fitting pattern's lowest seat: a scan over patterns, not seats. A pattern's
    /// lowest seat is only looked for when it ties with the best so far.
    fn best_single(&self, need: u64, a: u8, b: u8) -> Option<usize> {
        fn lowest(p: &Pattern) -> usize {
            let (i, w) = p.members.iter().enumerate().find(|(_, w)| **w != 0).expect("patterns are not empty");
            i * 64 + w.trailing_zeros() as usize
        }
        let mut best: Option<(u32, usize, &Pattern)> = None;
        for p in self.patterns.iter().filter(|p| p.mask & need == 0) {
            let score = fit_score(p.mask, self.segments, a, b);
            best = match best {
                None => Some((score, lowest(p), p)),
                Some((s, _, _)) if score < s => Some((score, lowest(p), p)),
                Some((s, low, q)) if score == s => {
                    let l = lowest(p);
                    if l < low { Some((score, l, p)) } else { Some((s, low, q)) }
                }
                keep => keep,
            };
        }
        best.map(|(_, seat, _)| seat)
    }

    /// Every seat free on [a, b) with its fit score, in seat order. Read from the per-segment
    /// free bitsets (their AND is the free seats, already in seat order), not gathered from the
    /// patterns and sorted: a group hold on a class of a thousand seats did that sort, and a
    /// batch of such holds kept the shard on its core for over 20 ms.
    fn candidates(&self, a: u8, b: u8) -> Vec<(usize, u32)> {
        let w = self.words;
        let mut out = Vec::with_capacity(self.remaining(a, b) as usize);
        for i in 0..w {
            let mut free = (a..b).fold(u64::MAX, |acc, s| acc & self.seg_free[s as usize * w + i]);
            while free != 0 {
                let seat = i * 64 + free.trailing_zeros() as usize;
                out.push((seat, fit_score(self.mask(seat), self.segments, a, b)));
                free &= free - 1;
            }
        }
        out
    }

    /// A group (or a single seat with a letter wish): the best window of `count` free seats
    /// next to each other in one coach, ranked by unmet letter wishes, then fit, then spread;
    /// with no such window, the best-fitting seats wherever they are.
    fn best_group(&self, a: u8, b: u8, count: usize, prefs: &[u8], facts: &SeatFacts<'_>) -> Option<Vec<usize>> {
        let cands = self.candidates(a, b);
        if cands.len() < count {
            return None;
        }
        let mut best: Option<((u32, u32, usize), usize)> = None;
        for start in 0..=cands.len() - count {
            let window = &cands[start..start + count];
            let (first, last) = (window[0].0, window[count - 1].0);
            if facts.coach[first] != facts.coach[last] {
                continue;
            }
            let misses = unmet_wishes(prefs, window.iter().map(|c| facts.letter[c.0]));
            let key = (misses, window.iter().map(|c| c.1).sum::<u32>(), last - first);
            if best.is_none_or(|(k, _)| key < k) {
                best = Some((key, start));
            }
        }
        if let Some((_, start)) = best {
            return Some(cands[start..start + count].iter().map(|c| c.0).collect());
        }
        let mut by_fit = cands;
        by_fit.sort_by_key(|c| (c.1, c.0));
        Some(by_fit[..count].iter().map(|c| c.0).collect())
    }

    /// Check both views against the masks (tests; O(seats × segments)).
    pub fn check_consistent(&self) -> Result<(), String> {
        let w = self.words;
        for s in 0..self.segments as usize {
            for seat in 0..self.len() {
                let free = self.mask(seat) & (1u64 << s) == 0;
                if bit(&self.seg_free[s * w..(s + 1) * w], seat) != free {
                    return Err(format!("seg_free disagrees for seat {seat} segment {s}"));
                }
            }
        }
        let mut seen = 0usize;
        for p in &self.patterns {
            let members: Vec<usize> = (0..self.len()).filter(|&i| bit(&p.members, i)).collect();
            if members.len() != p.count as usize || p.count == 0 {
                return Err(format!("pattern {:#x} count {} != members {}", p.mask, p.count, members.len()));
            }
            if let Some(&m) = members.iter().find(|&&m| self.mask(m) != p.mask) {
                return Err(format!("seat {m} in pattern {:#x} has mask {:#x}", p.mask, self.mask(m)));
            }
            seen += members.len();
        }
        if seen != self.len() {
            return Err(format!("patterns cover {seen} of {} seats", self.len()));
        }
        Ok(())
    }
}

/// Wishes not met by the letters of a window (each seat meets at most one wish).
fn unmet_wishes(prefs: &[u8], letters: impl Iterator<Item = u8>) -> u32 {
    let mut left: Vec<u8> = prefs.to_vec();
    for l in letters {
        if let Some(i) = left.iter().position(|&p| p == l) {
            left.swap_remove(i);
        }
    }
    left.len() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(len: usize, per_coach: usize, letters: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let coach = (0..len).map(|i| (i / per_coach) as u8 + 1).collect();
        let letter = (0..len).map(|i| letters[i % letters.len()]).collect();
        (coach, letter)
    }

    #[test]
    fn counts_follow_occupancy() {
        let mut c = ClassInventory::new(100, 5);
        assert_eq!(c.remaining(0, 5), 100);
        c.occupy(3, span_mask(1, 3));
        assert_eq!(c.remaining(0, 5), 99);
        assert_eq!(c.remaining(3, 5), 100);
        assert_eq!(c.remaining(0, 1), 100);
        c.occupy(3, span_mask(3, 5));
        assert_eq!(c.remaining(3, 4), 99);
        c.vacate(3, span_mask(1, 3));
        assert_eq!(c.remaining(0, 3), 100);
        c.check_consistent().unwrap();
        let mut all = Vec::new();
        c.remaining_all(&mut all, &mut Vec::new());
        assert_eq!(all.len(), 5 * 6 / 2);
        assert_eq!(all[0], 100); // (0,1)
        assert_eq!(all[4], 99); // (0,5)
    }

    #[test]
    #[should_panic(expected = "already taken")]
    fn double_booking_is_impossible() {
        let mut c = ClassInventory::new(4, 3);
        c.occupy(0, span_mask(0, 2));
        c.occupy(0, span_mask(1, 3));
    }

    #[test]
    fn best_fit_fills_the_tightest_gap() {
        let (coach, letter) = facts(3, 3, b"ABC");
        let f = SeatFacts { coach: &coach, letter: &letter };
        let mut c = ClassInventory::new(3, 6);
        // Seat 0 sold 0-2, seat 1 sold 0-2 and 4-6 (a gap of exactly 2-4), seat 2 empty.
        c.occupy(0, span_mask(0, 2));
        c.occupy(1, span_mask(0, 2));
        c.occupy(1, span_mask(4, 6));
        assert_eq!(c.choose(2, 4, 1, &[], &f, Policy::BestFit), Some(vec![1]));
        // First-fit takes the first free seat, leaving seat 1's gap unsellable.
        assert_eq!(c.choose(2, 4, 1, &[], &f, Policy::FirstFit), Some(vec![0]));
        // A journey starting where seat 0's sale ends fits flush there, not on the empty seat.
        assert_eq!(c.choose(2, 6, 1, &[], &f, Policy::BestFit), Some(vec![0]));
    }

    #[test]
    fn groups_sit_together_and_wishes_are_met() {
        let (coach, letter) = facts(20, 10, b"ABCDF");
        let f = SeatFacts { coach: &coach, letter: &letter };
        let mut c = ClassInventory::new(20, 2);
        for s in [0, 2, 4, 6, 8] {
            c.occupy(s, span_mask(0, 2));
        }
        // Coach 1 has only scattered seats left: three together means coach 2.
        let g = c.choose(0, 2, 3, &[], &f, Policy::BestFit).unwrap();
        assert!(g.iter().all(|&s| coach[s] == 2), "{g:?}");
        assert_eq!(g[2] - g[0], 2);
        // A window seat wish: seat letter A or F.
        let one = c.choose(0, 2, 1, b"F", &f, Policy::BestFit).unwrap();
        assert_eq!(letter[one[0]], b'F');
        // Not enough seats: nothing chosen.
        assert_eq!(c.choose(0, 2, 16, &[], &f, Policy::BestFit), None);
    }
}
