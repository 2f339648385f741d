//! Coach layouts per train type: which coach carries which class, and the seat labels in it.
//!
//! The timetable data has no consists, so chepiao defines one typical consist per train type
//! (an 8-car EMU for G/D/C/S, a 16-car sleeper train for Z, 15 cars for T/K/Y/P). Seat labels:
//! - seated EMU classes: row + letter, `05A` (二等座 A B C D F, 一等座 A C D F, 商务座 A C F);
//!   A and F are windows, C and D aisles;
//! - hard seat (硬座): a number, `001`..`118`;
//! - sleepers: berth number + level, `01L` lower (下), `01M` middle (中), `01U` upper (上).
//!
//! 无座 (standing) has no seat: it is a per-run capacity, sold only once the run's seated classes
//! are sold out for the journey (the inventory engine enforces that).

use std::sync::OnceLock;

use crate::types::{SeatClass, TrainType};

/// One coach of a consist.
#[derive(Debug, Clone)]
pub struct CoachLayout {
    /// Coach number as painted on the car, from 1.
    pub number: u8,
    pub class: SeatClass,
    /// Seat labels in physical order (neighbours are adjacent in this list).
    pub seats: Vec<String>,
}

/// A train's whole consist.
#[derive(Debug, Clone)]
pub struct Layout {
    pub coaches: Vec<CoachLayout>,
    /// 无座 places per run.
    pub standing_capacity: u32,
    /// Seat indexes per class: seated classes in coach order, then standing.
    class_ranges: Vec<ClassRange>,
    /// Per seated seat index: (coach number, index within the coach).
    seat_places: Vec<(u8, u16)>,
}

/// The seat indexes `first..first + len` of one class. A run's seats are numbered in coach
/// order (every class's coaches are adjacent); standing places come after the last seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassRange {
    pub class: SeatClass,
    pub first: u16,
    pub len: u16,
}

/// Where a seat index is: coach number and label (`无座` for a standing place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatPlace<'a> {
    pub coach: u8,
    pub label: &'a str,
    pub class: SeatClass,
}

/// Label of every standing place.
pub const STANDING_LABEL: &str = "无座";

impl Layout {
    /// The consist every train of `train_type` runs with.
    pub fn for_type(train_type: TrainType) -> &'static Layout {
        static LAYOUTS: OnceLock<Vec<(TrainType, Layout)>> = OnceLock::new();
        let all = LAYOUTS.get_or_init(|| TrainType::ALL.iter().map(|t| (*t, build(*t))).collect());
        &all.iter().find(|(t, _)| *t == train_type).expect("every type has a layout").1
    }

    /// Seats of `class` on one run (standing included as its capacity).
    pub fn capacity(&self, class: SeatClass) -> u32 {
        if class == SeatClass::Standing {
            return self.standing_capacity;
        }
        self.coaches.iter().filter(|c| c.class == class).map(|c| c.seats.len() as u32).sum()
    }

    /// The classes this consist sells, in the API's order, with their capacity.
    pub fn classes(&self) -> Vec<(SeatClass, u32)> {
        SeatClass::ALL.into_iter().map(|c| (c, self.capacity(c))).filter(|(_, n)| *n > 0).collect()
    }

    pub fn seated_total(&self) -> u32 {
        self.seat_places.len() as u32
    }

    /// Seat index ranges per class, in coach order, standing last.
    pub fn class_ranges(&self) -> &[ClassRange] {
        &self.class_ranges
    }

    /// The seated class 无座 is priced with and waits on: standing is sold for a journey only
    /// once this class is sold out for it (二等座 on EMUs, 硬座 on conventional trains).
    pub fn standing_waits_on(&self) -> SeatClass {
        if self.capacity(SeatClass::Second) > 0 { SeatClass::Second } else { SeatClass::HardSeat }
    }

    /// Coach and label of seat index `idx`. Standing places are spread over the coaches of the
    /// class they wait on.
    pub fn seat_at(&self, idx: u16) -> Option<SeatPlace<'_>> {
        if let Some(&(coach_i, within)) = self.seat_places.get(idx as usize) {
            let c = &self.coaches[coach_i as usize];
            return Some(SeatPlace { coach: c.number, label: &c.seats[within as usize], class: c.class });
        }
        let standing_i = u32::from(idx) - self.seated_total();
        if standing_i >= self.standing_capacity {
            return None;
        }
        let hosts: Vec<&CoachLayout> = self.coaches.iter().filter(|c| c.class == self.standing_waits_on()).collect();
        let host = hosts[standing_i as usize % hosts.len()];
        Some(SeatPlace { coach: host.number, label: STANDING_LABEL, class: SeatClass::Standing })
    }

    /// The seat's letter (`A`..`F` for EMU seats, `L`/`M`/`U` for berths); None for numbered
    /// hard seats and standing places.
    pub fn seat_letter(&self, idx: u16) -> Option<u8> {
        let (coach_i, within) = *self.seat_places.get(idx as usize)?;
        let label = self.coaches[coach_i as usize].seats[within as usize].as_bytes();
        label.last().copied().filter(u8::is_ascii_alphabetic)
    }
}

fn rows(rows: u32, letters: &str) -> Vec<String> {
    (1..=rows).flat_map(|r| letters.chars().map(move |l| format!("{r:02}{l}"))).collect()
}

fn numbered(count: u32) -> Vec<String> {
    (1..=count).map(|n| format!("{n:03}")).collect()
}

fn berths(numbers: u32, levels: &str) -> Vec<String> {
    (1..=numbers).flat_map(|n| levels.chars().map(move |l| format!("{n:02}{l}"))).collect()
}

fn coach(number: u8, class: SeatClass) -> CoachLayout {
    let seats = match class {
        SeatClass::Business => rows(6, "ACF"),
        SeatClass::First => rows(13, "ACDF"),
        SeatClass::Second => rows(18, "ABCDF"),
        SeatClass::SoftSleeper => berths(18, "LU"),
        SeatClass::HardSleeper => berths(22, "LMU"),
        SeatClass::HardSeat => numbered(118),
        SeatClass::Standing => unreachable!("standing has no coach"),
    };
    CoachLayout { number, class, seats }
}

fn build(train_type: TrainType) -> Layout {
    use SeatClass::*;
    let plan: Vec<(std::ops::RangeInclusive<u8>, SeatClass)> = match train_type {
        TrainType::G => vec![(1..=1, Business), (2..=2, First), (3..=8, Second)],
        TrainType::D | TrainType::C | TrainType::S => vec![(1..=1, First), (2..=8, Second)],
        TrainType::Z => vec![(1..=2, SoftSleeper), (3..=10, HardSleeper), (11..=16, HardSeat)],
        TrainType::T | TrainType::K | TrainType::Y | TrainType::P => {
            vec![(1..=1, SoftSleeper), (2..=7, HardSleeper), (8..=15, HardSeat)]
        }
    };
    let coaches: Vec<CoachLayout> =
        plan.into_iter().flat_map(|(nums, class)| nums.map(move |n| coach(n, class))).collect();
    let standing_capacity = match train_type {
        TrainType::G => 60,
        TrainType::D | TrainType::C | TrainType::S => 80,
        TrainType::Z => 150,
        _ => 200,
    };
    let mut class_ranges: Vec<ClassRange> = Vec::new();
    let mut seat_places = Vec::new();
    for (ci, c) in coaches.iter().enumerate() {
        match class_ranges.last_mut() {
            Some(r) if r.class == c.class => r.len += c.seats.len() as u16,
            _ => {
                assert!(class_ranges.iter().all(|r| r.class != c.class), "a class's coaches are adjacent");
                class_ranges.push(ClassRange {
                    class: c.class,
                    first: seat_places.len() as u16,
                    len: c.seats.len() as u16,
                });
            }
        }
        seat_places.extend((0..c.seats.len()).map(|i| (ci as u8, i as u16)));
    }
    let first = seat_places.len() as u16;
    class_ranges.push(ClassRange { class: SeatClass::Standing, first, len: standing_capacity as u16 });
    Layout { coaches, standing_capacity, class_ranges, seat_places }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_train_consist() {
        let l = Layout::for_type(TrainType::G);
        assert_eq!(l.capacity(SeatClass::Business), 18);
        assert_eq!(l.capacity(SeatClass::First), 52);
        assert_eq!(l.capacity(SeatClass::Second), 540);
        assert_eq!(l.capacity(SeatClass::HardSeat), 0);
        assert_eq!(l.coaches[0].seats[..3], ["01A", "01C", "01F"]);
        assert_eq!(l.coaches[2].seats[..5], ["01A", "01B", "01C", "01D", "01F"]);
    }

    #[test]
    fn sleeper_consist() {
        let l = Layout::for_type(TrainType::K);
        let classes: Vec<_> = l.classes().into_iter().map(|(c, _)| c).collect();
        assert_eq!(classes, [SeatClass::SoftSleeper, SeatClass::HardSleeper, SeatClass::HardSeat, SeatClass::Standing]);
        assert_eq!(l.capacity(SeatClass::HardSleeper), 6 * 66);
        assert_eq!(l.coaches[1].seats[..3], ["01L", "01M", "01U"]);
    }

    #[test]
    fn seat_indexes_map_to_coaches_letters_and_standing() {
        let l = Layout::for_type(TrainType::G);
        let ranges = l.class_ranges();
        assert_eq!(
            ranges.iter().map(|r| r.class).collect::<Vec<_>>(),
            [SeatClass::Business, SeatClass::First, SeatClass::Second, SeatClass::Standing]
        );
        assert_eq!((ranges[2].first, ranges[2].len), (70, 540));
        let p = l.seat_at(70).unwrap();
        assert_eq!((p.coach, p.label, p.class), (3, "01A", SeatClass::Second));
        assert_eq!(l.seat_letter(70), Some(b'A'));
        assert_eq!(l.seat_letter(74), Some(b'F'));
        let standing = l.seat_at(610).unwrap();
        assert_eq!((standing.label, standing.class), (STANDING_LABEL, SeatClass::Standing));
        assert!(l.seat_at(610 + 60).is_none());
        assert_eq!(l.standing_waits_on(), SeatClass::Second);
        let k = Layout::for_type(TrainType::K);
        assert_eq!(k.standing_waits_on(), SeatClass::HardSeat);
        assert_eq!(k.seat_letter(36 + 2), Some(b'U'));
        assert_eq!(k.seat_letter(36 + 396), None);
    }

    #[test]
    fn seat_labels_unique_per_coach() {
        for t in TrainType::ALL {
            for c in &Layout::for_type(t).coaches {
                let mut s = c.seats.clone();
                s.sort();
                s.dedup();
                assert_eq!(s.len(), c.seats.len());
            }
        }
    }
}
