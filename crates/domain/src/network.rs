//! The rail network: stations, trains and their ordered stops, and the in-memory indexes that
//! answer station look-ups and "which trains call at A then B" without touching a store.
//!
//! `NetworkData` is the plain form (what the importer produces and the store persists);
//! `Network` is the indexed form the server searches. Indexes are built once at start-up.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::layout::Layout;
use crate::types::{ServiceDate, Telecode, TrainCode, TrainType};

/// Minutes in a day; stop times are minutes from the run date's midnight, so `/ DAY_MIN` is the day offset.
pub const DAY_MIN: u32 = 24 * 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Station {
    pub telecode: Telecode,
    pub name: String,
    pub pinyin: String,
    pub initials: String,
    pub city: String,
    /// Set for stations outside China (the China–Laos line), e.g. `老挝`.
    pub country: Option<String>,
}

/// One call of a train at a station.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    pub telecode: Telecode,
    /// Minutes after the run date's midnight (China time); None at the first stop.
    pub arrive_min: Option<u32>,
    /// Minutes after the run date's midnight (China time); None at the last stop.
    pub depart_min: Option<u32>,
    /// Distance from the first stop, km (derived, see `TrainType::average_speed_kmh`).
    pub km: u32,
}

impl Stop {
    /// Day offset of the departure (or arrival at the last stop) from the run's date.
    pub fn day_offset(&self) -> u32 {
        self.depart_min.or(self.arrive_min).unwrap_or(0) / DAY_MIN
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Train {
    pub code: TrainCode,
    pub stops: Vec<Stop>,
}

impl Train {
    pub fn train_type(&self) -> TrainType {
        self.code.train_type()
    }
    pub fn layout(&self) -> &'static Layout {
        Layout::for_type(self.train_type())
    }
}

/// The network as imported and stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkData {
    pub stations: Vec<Station>,
    pub trains: Vec<Train>,
}

pub type StationIdx = u32;
pub type TrainIdx = u32;

/// A way to ride one train from one of its stops to a later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Journey {
    pub train: TrainIdx,
    pub from_stop: u16,
    pub to_stop: u16,
    /// The run's service date (the date the train left its first stop).
    pub run_date: ServiceDate,
}

/// Maximum station matches a look-up returns.
pub const STATION_MATCHES_MAX: usize = 50;

/// The indexed network. Immutable once built; share it behind an `Arc`.
#[derive(Debug)]
pub struct Network {
    stations: Vec<Station>,
    trains: Vec<Train>,
    station_by_code: HashMap<Telecode, StationIdx>,
    train_by_code: HashMap<TrainCode, TrainIdx>,
    /// For each station, the (train, stop index) pairs calling there.
    calls: Vec<Vec<(TrainIdx, u16)>>,
    /// For each station, the stations of its city (itself included) when it is the city's
    /// namesake station (北京 for 北京), otherwise just itself.
    search_set: Vec<Vec<StationIdx>>,
    /// Lowercased pinyin and initials per station, for look-ups.
    keys: Vec<(String, String)>,
}

impl Network {
    /// Build the indexes. Stops naming unknown telecodes are dropped (the importer never produces them).
    pub fn new(data: NetworkData) -> Network {
        let NetworkData { stations, mut trains } = data;
        let station_by_code: HashMap<_, _> =
            stations.iter().enumerate().map(|(i, s)| (s.telecode, i as StationIdx)).collect();
        for t in &mut trains {
            t.stops.retain(|s| station_by_code.contains_key(&s.telecode));
        }
        trains.retain(|t| t.stops.len() >= 2);
        let train_by_code = trains.iter().enumerate().map(|(i, t)| (t.code.clone(), i as TrainIdx)).collect();
        let mut calls = vec![Vec::new(); stations.len()];
        for (ti, t) in trains.iter().enumerate() {
            for (si, s) in t.stops.iter().enumerate() {
                calls[station_by_code[&s.telecode] as usize].push((ti as TrainIdx, si as u16));
            }
        }
        let mut by_city: HashMap<&str, Vec<StationIdx>> = HashMap::new();
        for (i, s) in stations.iter().enumerate() {
            by_city.entry(s.city.as_str()).or_default().push(i as StationIdx);
        }
        let search_set = stations
            .iter()
            .enumerate()
            .map(|(i, s)| match s.name == s.city {
                true => by_city[s.city.as_str()].clone(),
                false => vec![i as StationIdx],
            })
            .collect();
        let keys = stations.iter().map(|s| (s.pinyin.to_lowercase(), s.initials.to_lowercase())).collect();
        Network { stations, trains, station_by_code, train_by_code, calls, search_set, keys }
    }

    pub fn stations(&self) -> &[Station] {
        &self.stations
    }
    pub fn trains(&self) -> &[Train] {
        &self.trains
    }
    pub fn station(&self, idx: StationIdx) -> &Station {
        &self.stations[idx as usize]
    }
    pub fn train(&self, idx: TrainIdx) -> &Train {
        &self.trains[idx as usize]
    }
    pub fn station_idx(&self, code: Telecode) -> Option<StationIdx> {
        self.station_by_code.get(&code).copied()
    }
    pub fn station_by_code(&self, code: Telecode) -> Option<&Station> {
        self.station_idx(code).map(|i| self.station(i))
    }
    pub fn train_idx(&self, code: &TrainCode) -> Option<TrainIdx> {
        self.train_by_code.get(code).copied()
    }

    /// Stations matching `q` by telecode, name, pinyin or initials, best matches first:
    /// exact telecode or name, then exact pinyin/initials, then prefixes, then substrings.
    pub fn find_stations(&self, q: &str, limit: usize) -> Vec<&Station> {
        let q = q.trim();
        if q.is_empty() {
            return Vec::new();
        }
        let lower = q.to_lowercase();
        let mut scored: Vec<(u8, StationIdx)> = self
            .stations
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.match_rank(i, s, q, &lower).map(|r| (r, i as StationIdx)))
            .collect();
        // Among equal matches, busier stations first: `bjn` is 北京南 before 宝鸡南.
        scored.sort_by_key(|&(rank, i)| (rank, std::cmp::Reverse(self.calls[i as usize].len()), i));
        scored.into_iter().take(limit.min(STATION_MATCHES_MAX)).map(|(_, i)| self.station(i)).collect()
    }

    fn match_rank(&self, i: usize, s: &Station, q: &str, lower: &str) -> Option<u8> {
        let (pinyin, initials) = &self.keys[i];
        if s.telecode.as_str().eq_ignore_ascii_case(q) || s.name == q {
            Some(0)
        } else if pinyin == lower || initials == lower {
            Some(1)
        } else if s.name.starts_with(q) || pinyin.starts_with(lower) || initials.starts_with(lower) {
            Some(2)
        } else if s.name.contains(q) {
            Some(3)
        } else {
            None
        }
    }

    /// The stations a search from/to `code` covers: the city's stations for a city's namesake
    /// station (北京 `BJP` covers 北京南, 北京西, ...), otherwise the station alone.
    pub fn search_set(&self, code: Telecode) -> Option<&[StationIdx]> {
        self.station_idx(code).map(|i| self.search_set[i as usize].as_slice())
    }

    /// Every journey leaving a station of `from` on `date` (China time) and calling later at a
    /// station of `to`, ordered by departure time. `runs` says whether a train runs on a date.
    pub fn journeys(
        &self,
        from: &[StationIdx],
        to: &[StationIdx],
        date: ServiceDate,
        mut runs: impl FnMut(TrainIdx, ServiceDate) -> bool,
    ) -> Vec<Journey> {
        let mut out = Vec::new();
        for &f in from {
            for &(ti, fi) in &self.calls[f as usize] {
                let train = &self.trains[ti as usize];
                let Some(depart) = train.stops[fi as usize].depart_min else { continue };
                let run_date = date.add_days(-i64::from(depart / DAY_MIN));
                let to_stop = train.stops[fi as usize + 1..]
                    .iter()
                    .position(|s| to.iter().any(|&t| self.stations[t as usize].telecode == s.telecode));
                if let Some(offset) = to_stop
                    && runs(ti, run_date)
                {
                    let to_stop = fi + 1 + offset as u16;
                    out.push(Journey { train: ti, from_stop: fi, to_stop, run_date });
                }
            }
        }
        out.sort_by_key(|j| {
            let t = &self.trains[j.train as usize];
            (t.stops[j.from_stop as usize].depart_min.unwrap_or(0) % DAY_MIN, j.train)
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(code: &str, name: &str, city: &str, pinyin: &str, initials: &str) -> Station {
        Station {
            telecode: code.parse().unwrap(),
            name: name.into(),
            pinyin: pinyin.into(),
            initials: initials.into(),
            city: city.into(),
            country: None,
        }
    }

    fn stop(code: &str, arr: Option<u32>, dep: Option<u32>) -> Stop {
        Stop { telecode: code.parse().unwrap(), arrive_min: arr, depart_min: dep, km: 0 }
    }

    fn sample() -> Network {
        Network::new(NetworkData {
            stations: vec![
                st("BJP", "北京", "北京", "beijing", "bj"),
                st("VNP", "北京南", "北京", "beijingnan", "bjn"),
                st("AOH", "上海虹桥", "上海", "shanghaihongqiao", "shhq"),
                st("JGK", "济南西", "济南", "jinanxi", "jnx"),
            ],
            trains: vec![
                Train {
                    code: "G1".parse().unwrap(),
                    stops: vec![
                        stop("VNP", None, Some(540)),
                        stop("JGK", Some(622), Some(624)),
                        stop("AOH", Some(808), None),
                    ],
                },
                Train {
                    code: "K9".parse().unwrap(),
                    stops: vec![
                        stop("AOH", None, Some(1380)),
                        stop("JGK", Some(1500), Some(1510)),
                        stop("BJP", Some(1800), None),
                    ],
                },
            ],
        })
    }

    #[test]
    fn station_lookup_by_every_key() {
        let n = sample();
        for q in ["VNP", "vnp", "北京南", "beijingnan", "bjn"] {
            assert_eq!(n.find_stations(q, 10)[0].telecode.as_str(), "VNP", "{q}");
        }
        let bj: Vec<_> = n.find_stations("bj", 10).iter().map(|s| s.telecode.as_str()).collect();
        assert_eq!(bj, ["BJP", "VNP"]);
        assert!(n.find_stations("  ", 10).is_empty());
        assert!(n.find_stations("zzzz", 10).is_empty());
    }

    #[test]
    fn city_station_covers_its_siblings_but_not_the_reverse() {
        let n = sample();
        assert_eq!(n.search_set("BJP".parse().unwrap()).unwrap().len(), 2);
        assert_eq!(n.search_set("VNP".parse().unwrap()).unwrap().len(), 1);
    }

    #[test]
    fn journeys_respect_direction_and_day_offset() {
        let n = sample();
        let set = |c: &str| n.search_set(c.parse().unwrap()).unwrap().to_vec();
        let d: ServiceDate = "2026-11-21".parse().unwrap();
        let j = n.journeys(&set("BJP"), &set("AOH"), d, |_, _| true);
        assert_eq!(j.len(), 1);
        assert_eq!((j[0].from_stop, j[0].to_stop, j[0].run_date), (0, 2, d));
        assert!(n.journeys(&set("AOH"), &set("VNP"), d, |_, _| true).is_empty());
        // K9 leaves 济南西 at 01:10 the day after its run date.
        let k = n.journeys(&set("JGK"), &set("BJP"), d, |_, _| true);
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].run_date, d.add_days(-1));
        assert!(n.journeys(&set("JGK"), &set("BJP"), d, |_, date| date == d).is_empty());
    }
}
