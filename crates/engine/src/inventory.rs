//! One class of one run: which segments of which seat are taken, and how to choose seats.
//!
//! Two views of the same facts are kept in step:
//! - per seat, the occupancy mask (bit i = segment i, stop i to stop i+1, is taken), grouped
//!   into *patterns*: seats with equal masks are interchangeable, so best-fit scans the few
//!   distinct patterns, not every seat;
//! - per segment, a bitset of free seats, so the remaining count for any journey [a, b) is the
//!   popcount of an AND over segments a..b.
//!
//! The layout is chosen for a shard that touches a random one of ten thousand runs per hold,
//! so that every access is a likely cache miss (docs/BENCHMARKS.md, issue 17): the chooser
//! scans only the patterns' 8-byte heads (mask, count, lowest seat), kept in one array; the
//! patterns' member bitsets are one array beside it; and the free bitsets are stored word by
//! word, a word's segments together, so a seat's bits on all its segments share a cache line
//! or two rather than one line per segment. Snapshots store a class in the layout it had
//! before ([`Wire`]), so snapshots written by either build are read by both.

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

/// The head of a set of seats sharing one occupancy mask: what the chooser scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pattern {
    mask: u32,
    /// Seats in the pattern (never 0: an empty pattern is removed).
    count: u16,
    /// The pattern's lowest seat, kept so that a tie between patterns needs no bitset scan.
    lowest: u16,
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

/// One class of one run. Classes have at most `u16::MAX` seats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
pub struct ClassInventory {
    segments: u8,
    words: usize,
    /// Occupancy mask per seat of the class.
    masks: Vec<u32>,
    /// words × segments: bit s of `seg_free[i * segments + g]` set = seat `64 i + s` is free on
    /// segment g.
    seg_free: Vec<u64>,
    patterns: Vec<Pattern>,
    /// patterns × words: pattern k's members are `members[k * words..(k + 1) * words]`.
    members: Vec<u64>,
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

/// The lowest set bit at or after word `from`, if any.
fn lowest_from(words: &[u64], from: usize) -> Option<usize> {
    words[from..].iter().enumerate().find(|(_, w)| **w != 0).map(|(i, w)| (from + i) * 64 + w.trailing_zeros() as usize)
}

impl ClassInventory {
    /// A fresh class: `len` seats, all free on all `segments`.
    pub fn new(len: usize, segments: u8) -> ClassInventory {
        assert!((1..=SEGMENTS_MAX).contains(&segments));
        assert!(len <= usize::from(u16::MAX), "a class has at most 65,535 seats");
        let words = len.div_ceil(64);
        let free = full_words(len);
        let seg_free = free.iter().flat_map(|&w| std::iter::repeat_n(w, usize::from(segments))).collect();
        let (patterns, members) =
            if len == 0 { (vec![], vec![]) } else { (vec![Pattern { mask: 0, count: len as u16, lowest: 0 }], free) };
        ClassInventory { segments, words, masks: vec![0; len], seg_free, patterns, members }
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

    /// Read the pattern heads' first line (see `StateMachine::warm`).
    pub fn warm(&self) {
        std::hint::black_box(self.patterns.first().map(|p| p.mask));
    }

    /// Distinct occupancy patterns (for tests and statistics).
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Word `i` of the free bitsets of segments [a, b): one contiguous slice.
    fn free_words(&self, i: usize, a: u8, b: u8) -> &[u64] {
        let at = i * usize::from(self.segments);
        &self.seg_free[at + usize::from(a)..at + usize::from(b)]
    }

    /// Seats 64 i .. 64 i + 63 free on every segment of [a, b).
    fn free_on(&self, i: usize, a: u8, b: u8) -> u64 {
        self.free_words(i, a, b).iter().fold(u64::MAX, |acc, w| acc & w)
    }

    /// Seats free on every segment of [a, b).
    pub fn remaining(&self, a: u8, b: u8) -> u32 {
        (0..self.words).map(|i| self.free_on(i, a, b).count_ones()).sum()
    }

    /// Remaining for every journey: `out[k]` for the k-th pair (a, b), a < b, in order
    /// (0,1), (0,2), .., (0,S), (1,2), ... `scratch` is reused between calls: the free bitsets
    /// are first copied segment by segment into it (they are stored word by word), so the
    /// pairs' loops read contiguous rows.
    pub fn remaining_all(&self, out: &mut Vec<u32>, scratch: &mut Vec<u64>) {
        let (w, segments) = (self.words, usize::from(self.segments));
        scratch.clear();
        scratch.extend(
            (0..segments).flat_map(|s| (0..w).map(move |i| (s, i))).map(|(s, i)| self.seg_free[i * segments + s]),
        );
        scratch.resize((segments + 1) * w, 0);
        let (rows, acc) = scratch.split_at_mut(segments * w);
        for a in 0..segments {
            acc.copy_from_slice(&rows[a * w..(a + 1) * w]);
            out.push(acc.iter().map(|x| x.count_ones()).sum());
            for s in a + 1..segments {
                let mut n = 0;
                for (x, y) in acc.iter_mut().zip(&rows[s * w..(s + 1) * w]) {
                    *x &= y;
                    n += x.count_ones();
                }
                out.push(n);
            }
        }
    }

    fn pattern_of(&self, mask: u64) -> Option<usize> {
        self.patterns.iter().position(|p| u64::from(p.mask) == mask)
    }

    fn pattern_members(&self, k: usize) -> &[u64] {
        &self.members[k * self.words..(k + 1) * self.words]
    }

    /// Take `seat` out of pattern `k`, dropping the pattern when it empties (the last pattern
    /// takes its place, heads and members alike).
    fn leave_pattern(&mut self, k: usize, seat: usize) {
        let (w, word) = (self.words, seat / 64);
        debug_assert!(bit(self.pattern_members(k), seat));
        self.members[k * w + word] &= !(1u64 << (seat % 64));
        let p = &mut self.patterns[k];
        p.count -= 1;
        if p.count == 0 {
            let last = self.patterns.len() - 1;
            self.patterns.swap_remove(k);
            self.members.copy_within(last * w..(last + 1) * w, k * w);
            self.members.truncate(last * w);
        } else if usize::from(p.lowest) == seat {
            let lowest = lowest_from(&self.members[k * w..(k + 1) * w], word).expect("count > 0");
            self.patterns[k].lowest = lowest as u16;
        }
    }

    /// Put `seat` into the pattern of `mask`, making it when no seat has that mask yet.
    fn join_pattern(&mut self, mask: u64, seat: usize) {
        let (w, word, bit) = (self.words, seat / 64, 1u64 << (seat % 64));
        match self.pattern_of(mask) {
            Some(k) => {
                self.members[k * w + word] |= bit;
                let p = &mut self.patterns[k];
                p.count += 1;
                p.lowest = p.lowest.min(seat as u16);
            }
            None => {
                let k = self.patterns.len();
                self.patterns.push(Pattern { mask: mask as u32, count: 1, lowest: seat as u16 });
                self.members.resize((k + 1) * w, 0);
                self.members[k * w + word] |= bit;
            }
        }
    }

    fn move_seat(&mut self, seat: usize, old: u64, new: u64) {
        let from = self.pattern_of(old).expect("every seat is in its mask's pattern");
        self.leave_pattern(from, seat);
        self.join_pattern(new, seat);
        self.masks[seat] = new as u32;
    }

    fn set_segments(&mut self, seat: usize, need: u64, free: bool) {
        let (at, bit) = ((seat / 64) * usize::from(self.segments), 1u64 << (seat % 64));
        let mut m = need;
        while m != 0 {
            let s = m.trailing_zeros() as usize;
            m &= m - 1;
            let x = &mut self.seg_free[at + s];
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
        if takes_single(count, prefs, policy) {
            return self.best_single(need, a, b).map(|k| vec![usize::from(self.patterns[k].lowest)]);
        }
        self.best_group(a, b, count, prefs, facts)
    }

    /// The best-fitting pattern (its lowest seat is the choice): a scan over the patterns'
    /// heads, not seats.
    fn best_single(&self, need: u64, a: u8, b: u8) -> Option<usize> {
        let fits = self.patterns.iter().enumerate().filter(|(_, p)| u64::from(p.mask) & need == 0);
        let best = fits.min_by_key(|(_, p)| (fit_score(u64::from(p.mask), self.segments, a, b), p.lowest));
        best.map(|(k, _)| k)
    }

    /// Choose the best single seat free on [a, b) and take it. The chooser's pattern is the
    /// seat's, so neither the seat's mask nor its pattern is looked up again: on a shard
    /// whose runs do not fit in the cache, reading the mask was a miss on every hold.
    pub fn take_single(&mut self, a: u8, b: u8) -> Option<usize> {
        let need = span_mask(a, b);
        let k = self.best_single(need, a, b)?;
        let Pattern { mask, lowest, .. } = self.patterns[k];
        let (seat, old) = (usize::from(lowest), u64::from(mask));
        debug_assert_eq!(self.mask(seat), old, "a pattern's seats have its mask");
        assert_eq!(old & need, 0, "seat {seat} is already taken on part of the journey");
        self.leave_pattern(k, seat);
        self.join_pattern(old | need, seat);
        self.masks[seat] = (old | need) as u32;
        self.set_segments(seat, need, false);
        Some(seat)
    }

    /// Every seat free on [a, b) with its fit score, in seat order. Read from the per-segment
    /// free bitsets (their AND is the free seats, already in seat order), not gathered from the
    /// patterns and sorted: a group hold on a class of a thousand seats did that sort, and a
    /// batch of such holds kept the shard on its core for over 20 ms.
    fn candidates(&self, a: u8, b: u8) -> Vec<(usize, u32)> {
        let mut out = Vec::with_capacity(self.remaining(a, b) as usize);
        for i in 0..self.words {
            let mut free = self.free_on(i, a, b);
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
        for s in 0..self.segments {
            for seat in 0..self.len() {
                let free = self.mask(seat) & (1u64 << s) == 0;
                if self.free_words(seat / 64, s, s + 1)[0] & (1u64 << (seat % 64)) != 0 {
                    if !free {
                        return Err(format!("seg_free disagrees for seat {seat} segment {s}"));
                    }
                } else if free {
                    return Err(format!("seg_free disagrees for seat {seat} segment {s}"));
                }
            }
        }
        if self.members.len() != self.patterns.len() * self.words {
            return Err(format!("{} member words for {} patterns", self.members.len(), self.patterns.len()));
        }
        let mut seen = 0usize;
        for (k, p) in self.patterns.iter().enumerate() {
            let members: Vec<usize> = (0..self.len()).filter(|&i| bit(self.pattern_members(k), i)).collect();
            if members.len() != p.count as usize || p.count == 0 {
                return Err(format!("pattern {:#x} count {} != members {}", p.mask, p.count, members.len()));
            }
            if members[0] != usize::from(p.lowest) {
                return Err(format!("pattern {:#x} lowest {} != {}", p.mask, p.lowest, members[0]));
            }
            if let Some(&m) = members.iter().find(|&&m| self.mask(m) != u64::from(p.mask)) {
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

/// A pattern as snapshots store it.
#[derive(Serialize, Deserialize)]
struct WirePattern {
    mask: u64,
    members: Vec<u64>,
    count: u32,
}

/// A class as snapshots (and digests) store it: the layout before issue 17, field for field,
/// with the free bitsets segment by segment. Kept so that snapshots written by either layout
/// are read by both.
#[derive(Serialize, Deserialize)]
struct Wire {
    segments: u8,
    words: usize,
    masks: Vec<u32>,
    seg_free: Vec<u64>,
    patterns: Vec<WirePattern>,
}

impl From<ClassInventory> for Wire {
    fn from(c: ClassInventory) -> Wire {
        let (segments, words) = (c.segments, c.words);
        let seg_free =
            (0..segments).flat_map(|s| (0..words).map(move |i| (s, i))).map(|(s, i)| c.free_words(i, s, s + 1)[0]);
        let seg_free = seg_free.collect();
        let patterns = c.patterns.iter().enumerate();
        let patterns = patterns
            .map(|(k, p)| WirePattern {
                mask: u64::from(p.mask),
                members: c.pattern_members(k).to_vec(),
                count: u32::from(p.count),
            })
            .collect();
        Wire { segments, words, seg_free, patterns, masks: c.masks }
    }
}

impl TryFrom<Wire> for ClassInventory {
    type Error = String;

    /// Checks the shapes only; the snapshot's checksum vouches for the contents.
    fn try_from(w: Wire) -> Result<ClassInventory, String> {
        let (segments, words, len) = (w.segments, w.words, w.masks.len());
        let seg = usize::from(segments);
        if !(1..=SEGMENTS_MAX).contains(&segments) || len > usize::from(u16::MAX) || words != len.div_ceil(64) {
            return Err(format!("a class of {len} seats, {words} words, {segments} segments"));
        }
        if w.seg_free.len() != seg * words || w.patterns.iter().any(|p| p.members.len() != words || p.count == 0) {
            return Err("a class's bitsets do not match its seats".into());
        }
        let seg_free = (0..words).flat_map(|i| (0..seg).map(move |s| (s, i))).map(|(s, i)| w.seg_free[s * words + i]);
        let mut patterns = Vec::with_capacity(w.patterns.len());
        let mut members = Vec::with_capacity(w.patterns.len() * words);
        for p in w.patterns {
            let lowest = lowest_from(&p.members, 0).ok_or("an empty pattern")?;
            patterns.push(Pattern { mask: p.mask as u32, count: p.count as u16, lowest: lowest as u16 });
            members.extend_from_slice(&p.members);
        }
        Ok(ClassInventory { segments, words, masks: w.masks, seg_free: seg_free.collect(), patterns, members })
    }
}

/// Whether a request is served by the single-seat chooser (`ClassInventory::take_single`, or
/// `choose`'s scan of pattern heads): one passenger, no seat wish, best-fit.
pub fn takes_single(count: usize, prefs: &[u8], policy: Policy) -> bool {
    count == 1 && prefs.is_empty() && policy == Policy::BestFit
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

    /// A small deterministic generator (tests only).
    fn next(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn taking_one_seat_in_one_step_matches_choosing_then_occupying() {
        let (coach, letter) = facts(150, 50, b"ABCDF");
        let f = SeatFacts { coach: &coach, letter: &letter };
        let (mut one_step, mut two_steps) = (ClassInventory::new(150, 9), ClassInventory::new(150, 9));
        let mut x = 7u64;
        let mut taken = Vec::new();
        for round in 0..3_000 {
            if round % 3 == 2 && !taken.is_empty() {
                // Give a seat back, so patterns empty, split and lose their lowest seat.
                let (seat, need) = taken.swap_remove(next(&mut x) as usize % taken.len());
                one_step.vacate(seat, need);
                two_steps.vacate(seat, need);
                continue;
            }
            let a = (next(&mut x) % 8) as u8;
            let b = a + 1 + (next(&mut x) % u64::from(8 - a)) as u8;
            let chosen = two_steps.choose(a, b, 1, &[], &f, Policy::BestFit).map(|s| s[0]);
            if let Some(seat) = chosen {
                two_steps.occupy(seat, span_mask(a, b));
                taken.push((seat, span_mask(a, b)));
            }
            assert_eq!(one_step.take_single(a, b), chosen, "round {round}");
            assert_eq!(one_step.masks, two_steps.masks);
        }
        one_step.check_consistent().unwrap();
        assert!(one_step.pattern_count() > 10, "the test reached many patterns");
    }

    /// Snapshots store a class in the layout it had before issue 17 (free bitsets segment by
    /// segment, a member list per pattern): written from the masks alone here, independently of
    /// the code under test.
    #[test]
    fn a_class_is_stored_in_the_earlier_layout_and_read_back_whole() {
        let mut c = ClassInventory::new(70, 4);
        for (seat, a, b) in [(0, 0, 2), (1, 0, 2), (1, 2, 4), (65, 1, 3), (3, 3, 4)] {
            c.occupy(seat, span_mask(a, b));
        }
        let words = 2;
        let masks: Vec<u32> = (0..70).map(|s| c.mask(s) as u32).collect();
        let free_word = |s: u32, i: usize| -> u64 {
            (0..64).filter(|b| i * 64 + b < 70 && masks[i * 64 + b] & (1 << s) == 0).fold(0, |w, b| w | 1 << b)
        };
        let seg_free = (0..4).flat_map(|s| (0..words).map(move |i| (s, i))).map(|(s, i)| free_word(s, i)).collect();
        let patterns = c
            .patterns
            .iter()
            .map(|p| {
                let mut members = vec![0u64; words];
                (0..70).filter(|&s| masks[s] == p.mask).for_each(|s| members[s / 64] |= 1 << (s % 64));
                WirePattern { mask: u64::from(p.mask), members, count: u32::from(p.count) }
            })
            .collect();
        let earlier = Wire { segments: 4, words, masks: masks.clone(), seg_free, patterns };
        let bytes = postcard::to_stdvec(&c).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&earlier).unwrap());
        let back: ClassInventory = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, c);
        back.check_consistent().unwrap();
        let short = Wire { seg_free: vec![0; 3], ..earlier };
        assert!(postcard::from_bytes::<ClassInventory>(&postcard::to_stdvec(&short).unwrap()).is_err());
    }
}
