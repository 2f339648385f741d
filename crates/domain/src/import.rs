//! Importer for the rail-network data files (`stations.csv`, `timetable_by_station.csv`).
//!
//! The timetable has one row per (station, train) call at 321 major stations, in no order.
//! A train's stops are ordered from its origin row (`始`) following times forward; a time earlier
//! than the previous one is the next day. Where the origin is not a major station (no `始` row),
//! the terminus row (`终`) anchors the order backwards; with neither, the largest gap in the
//! train's daily timetable is taken as the point where it starts. Times alone cannot order calls
//! that are more than 24 hours apart, so where the terminus would not come last the terminus is
//! moved last and the train is reported as `ambiguous order`.
//!
//! Nothing in the data is fatal: unknown station names, malformed rows and trains left with fewer
//! than two stops become warnings in the `ImportReport`. Trains with a single known stop (they
//! call at only one of the major stations) are kept, so every train of the data is there, but
//! no journey can be made on them. A dual code (`Z806/Z803`, a train that changes its number
//! on the way) is imported under its first code.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use crate::network::{DAY_MIN, NetworkData, Station, Stop, Train};
use crate::types::{Telecode, TrainCode};

/// What the import found and skipped.
#[derive(Debug, Default, Clone)]
pub struct ImportReport {
    pub stations: usize,
    pub trains: usize,
    pub stops: usize,
    /// Unknown station name → how many timetable rows named it.
    pub unknown_stations: BTreeMap<String, usize>,
    /// Trains with fewer than two known stops: stored, but no journey can be made on them.
    pub too_few_stops: Vec<String>,
    /// Trains whose calls span more than a day, so their order is a best guess.
    pub ambiguous_order: Vec<String>,
    /// Rows that could not be parsed (bad train code, bad time, bad telecode), with the reason.
    pub bad_rows: Vec<String>,
    /// Identical calls listed twice (through-car variants such as Z97 北京西→红磡), merged.
    pub duplicate_calls: usize,
    /// Dual codes (`Z806/Z803`) imported under their first code.
    pub dual_codes: Vec<String>,
    /// Conventional trains running more than a day, ordered by travel-time bounds (not a warning).
    pub multi_day: usize,
}

impl ImportReport {
    pub fn warning_count(&self) -> usize {
        self.unknown_stations.len()
            + self.too_few_stops.len()
            + self.ambiguous_order.len()
            + self.bad_rows.len()
            + self.dual_codes.len()
    }

    /// Human summary, one line per kind of warning.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} stations, {} trains, {} stops; {} duplicate calls merged; {} trains run over more than a day\n",
            self.stations, self.trains, self.stops, self.duplicate_calls, self.multi_day
        );
        for (name, rows) in &self.unknown_stations {
            s += &format!("warning: unknown station {name:?} in {rows} timetable rows (those calls skipped)\n");
        }
        let list = |v: &[String]| v.iter().take(10).cloned().collect::<Vec<_>>().join(" ");
        if !self.too_few_stops.is_empty() {
            s += &format!(
                "warning: {} trains call at fewer than two known stations (kept, not bookable): {} ...\n",
                self.too_few_stops.len(),
                list(&self.too_few_stops)
            );
        }
        if !self.ambiguous_order.is_empty() {
            s += &format!(
                "warning: {} trains without an origin row span more than a day; stop order is a best guess: {} ...\n",
                self.ambiguous_order.len(),
                list(&self.ambiguous_order)
            );
        }
        for c in &self.dual_codes {
            s += &format!("warning: dual train code {c} imported under its first code\n");
        }
        for r in self.bad_rows.iter().take(20) {
            s += &format!("warning: bad row: {r}\n");
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading {file}: {source}")]
    Csv { file: &'static str, source: csv::Error },
    #[error("{file}: missing column {column:?}")]
    MissingColumn { file: &'static str, column: &'static str },
}

/// Progress callback: (bytes read so far, total bytes) over both files.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Parse both files into a network. `progress` is called as rows are read.
pub fn parse_network(
    stations_csv: &[u8],
    timetable_csv: &[u8],
    progress: Progress<'_>,
) -> Result<(NetworkData, ImportReport), ImportError> {
    let total = (stations_csv.len() + timetable_csv.len()) as u64;
    let mut report = ImportReport::default();
    let stations = parse_stations(stations_csv, &mut report, &mut |pos| progress(pos, total))?;
    let by_name: HashMap<&str, Telecode> = stations.iter().map(|s| (s.name.as_str(), s.telecode)).collect();
    let offset = stations_csv.len() as u64;
    let rows = parse_timetable(timetable_csv, &by_name, &mut report, &mut |pos| progress(offset + pos, total))?;
    let city: HashMap<Telecode, &str> = stations.iter().map(|s| (s.telecode, s.city.as_str())).collect();
    let trains = build_trains(rows, &city, &mut report);
    report.stations = stations.len();
    report.trains = trains.len();
    report.stops = trains.iter().map(|t| t.stops.len()).sum();
    progress(total, total);
    Ok((NetworkData { stations, trains }, report))
}

fn column(headers: &csv::StringRecord, file: &'static str, column: &'static str) -> Result<usize, ImportError> {
    headers.iter().position(|h| h == column).ok_or(ImportError::MissingColumn { file, column })
}

fn parse_stations(
    bytes: &[u8],
    report: &mut ImportReport,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<Station>, ImportError> {
    const FILE: &str = "stations.csv";
    let mut rdr = csv::Reader::from_reader(bytes);
    let h = rdr.headers().map_err(|source| ImportError::Csv { file: FILE, source })?.clone();
    let [name, code, pinyin, initials, city, country] =
        ["name", "telecode", "pinyin", "initials", "city", "country"].map(|c| column(&h, FILE, c));
    let (name, code, pinyin, initials, city, country) = (name?, code?, pinyin?, initials?, city?, country?);
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|source| ImportError::Csv { file: FILE, source })?;
        let Ok(telecode) = rec[code].parse::<Telecode>() else {
            report.bad_rows.push(format!("{FILE}: bad telecode {:?} for {:?}", &rec[code], &rec[name]));
            continue;
        };
        out.push(Station {
            telecode,
            name: rec[name].to_string(),
            pinyin: rec[pinyin].to_string(),
            initials: rec[initials].to_string(),
            city: if rec[city].is_empty() { rec[name].to_string() } else { rec[city].to_string() },
            country: Some(rec[country].to_string()).filter(|c| !c.is_empty()),
        });
        progress(rec.position().map_or(0, |p| p.byte()));
    }
    Ok(out)
}

/// One parsed timetable row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    telecode: Telecode,
    kind: CallKind,
    arrive: Option<u32>,
    depart: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Origin,
    Pass,
    Terminus,
}

impl Call {
    /// The time that places this call in the train's day.
    fn key(&self) -> u32 {
        match self.kind {
            CallKind::Origin => self.depart.or(self.arrive),
            _ => self.arrive.or(self.depart),
        }
        .unwrap_or(0)
    }
}

fn parse_hhmm(s: &str) -> Result<Option<u32>, ()> {
    if s == "-" || s.is_empty() {
        return Ok(None);
    }
    let (h, m) = s.split_once(':').ok_or(())?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| ())?, m.parse().map_err(|_| ())?);
    if h >= 24 || m >= 60 {
        return Err(());
    }
    Ok(Some(h * 60 + m))
}

fn parse_timetable(
    bytes: &[u8],
    by_name: &HashMap<&str, Telecode>,
    report: &mut ImportReport,
    progress: &mut dyn FnMut(u64),
) -> Result<BTreeMap<TrainCode, Vec<Call>>, ImportError> {
    const FILE: &str = "timetable_by_station.csv";
    let mut rdr = csv::Reader::from_reader(bytes);
    let h = rdr.headers().map_err(|source| ImportError::Csv { file: FILE, source })?.clone();
    let [station, kind, code, arrival, departure] =
        ["station", "kind", "train_code", "arrival", "departure"].map(|c| column(&h, FILE, c));
    let (station, kind, code, arrival, departure) = (station?, kind?, code?, arrival?, departure?);
    let mut trains: BTreeMap<TrainCode, Vec<Call>> = BTreeMap::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|source| ImportError::Csv { file: FILE, source })?;
        progress(rec.position().map_or(0, |p| p.byte()));
        let raw_code = &rec[code];
        let first_code = match raw_code.split_once('/') {
            Some((first, _)) => {
                report.dual_codes.push(raw_code.to_string());
                first
            }
            None => raw_code,
        };
        let Ok(train) = first_code.parse::<TrainCode>() else {
            report.bad_rows.push(format!("{FILE}: bad train code {:?}", &rec[code]));
            continue;
        };
        let Some(&telecode) = by_name.get(&rec[station]) else {
            *report.unknown_stations.entry(rec[station].to_string()).or_default() += 1;
            continue;
        };
        let kind = match &rec[kind] {
            "始" => CallKind::Origin,
            "终" => CallKind::Terminus,
            _ => CallKind::Pass,
        };
        let (Ok(arrive), Ok(depart)) = (parse_hhmm(&rec[arrival]), parse_hhmm(&rec[departure])) else {
            report.bad_rows.push(format!("{FILE}: bad time for {train} at {}", &rec[station]));
            continue;
        };
        if arrive.is_none() && depart.is_none() {
            report.bad_rows.push(format!("{FILE}: no time for {train} at {}", &rec[station]));
            continue;
        }
        let call = Call { telecode, kind, arrive, depart };
        let calls = trains.entry(train).or_default();
        if calls.iter().any(|c| c.telecode == call.telecode && c.key() == call.key()) {
            report.duplicate_calls += 1;
        } else {
            calls.push(call);
        }
    }
    Ok(trains)
}

fn build_trains(
    rows: BTreeMap<TrainCode, Vec<Call>>,
    city: &HashMap<Telecode, &str>,
    report: &mut ImportReport,
) -> Vec<Train> {
    // EMUs never run for a day, so ordering them by time from their origin is exact; their
    // running times then bound how fast anything gets from one station to another.
    let emu = |code: &TrainCode| code.train_type().is_emu();
    let mut ordered: BTreeMap<TrainCode, Vec<Stop>> = BTreeMap::new();
    for (code, calls) in rows.iter().filter(|(c, _)| emu(c)) {
        let (calls, ambiguous) = order_calls(calls.clone());
        if ambiguous {
            report.ambiguous_order.push(code.to_string());
        }
        ordered.insert(code.clone(), to_stops(&calls));
    }
    let called: Vec<Telecode> = rows.values().flatten().map(|c| c.telecode).collect();
    let bounds = TravelBounds::new(ordered.values(), &called, city);
    for (code, calls) in rows.iter().filter(|(c, _)| !emu(c)) {
        let stops = match calls.iter().position(|c| c.kind == CallKind::Origin) {
            Some(origin) => {
                let stops = simulate_forward(calls, origin, &bounds);
                if stops.last().and_then(|s| s.arrive_min).is_some_and(|m| m >= DAY_MIN) {
                    report.multi_day += 1;
                }
                stops
            }
            None => {
                let (calls, ambiguous) = order_calls(calls.clone());
                if ambiguous {
                    report.ambiguous_order.push(code.to_string());
                }
                to_stops(&calls)
            }
        };
        ordered.insert(code.clone(), stops);
    }
    let mut trains: Vec<Train> = Vec::with_capacity(ordered.len());
    for (code, stops) in ordered {
        if stops.len() < 2 {
            report.too_few_stops.push(code.to_string());
        }
        trains.push(Train { code, stops });
    }
    assign_distances(&mut trains);
    trains
}

/// Lower bounds on the minutes between two stations: the shortest EMU running time (EMUs never
/// run for a day, so their times are exact), extended over the network by shortest paths,
/// with a city's stations counted as one place (a bound may only be too low, never too high).
/// Stations no EMU serves (嘉峪关) have no bound: a multi-day train's call there is placed at
/// the first time of day it could be, which can be a day early (docs/DATA.md).
struct TravelBounds {
    index: HashMap<Telecode, usize>,
    /// n × n minutes; u32::MAX where no EMU connects the two.
    min: Vec<u32>,
}

impl TravelBounds {
    /// `called`: every station the timetable calls at (each gets a row, so that a station only
    /// conventional trains serve is still tied to its city's EMU station).
    fn new<'a>(
        emu_trains: impl Iterator<Item = &'a Vec<Stop>>,
        called: &[Telecode],
        city: &HashMap<Telecode, &str>,
    ) -> TravelBounds {
        let mut index: HashMap<Telecode, usize> = HashMap::new();
        let mut edges: Vec<(usize, usize, u32)> = Vec::new();
        let id = |t: Telecode, index: &mut HashMap<Telecode, usize>| {
            let n = index.len();
            *index.entry(t).or_insert(n)
        };
        for &t in called {
            id(t, &mut index);
        }
        for stops in emu_trains {
            for (i, a) in stops.iter().enumerate() {
                for b in &stops[i + 1..] {
                    if let (Some(dep), Some(arr)) = (a.depart_min, b.arrive_min) {
                        let (x, y) = (id(a.telecode, &mut index), id(b.telecode, &mut index));
                        edges.push((x, y, arr.saturating_sub(dep)));
                    }
                }
            }
        }
        let n = index.len();
        let mut min = vec![u32::MAX; n * n];
        for i in 0..n {
            min[i * n + i] = 0;
        }
        for (x, y, m) in edges {
            for (a, b) in [(x, y), (y, x)] {
                min[a * n + b] = min[a * n + b].min(m);
            }
        }
        let mut by_city: HashMap<&str, Vec<usize>> = HashMap::new();
        for (t, &i) in &index {
            if let Some(c) = city.get(t) {
                by_city.entry(c).or_default().push(i);
            }
        }
        for same in by_city.values() {
            for &a in same {
                for &b in same {
                    min[a * n + b] = 0;
                }
            }
        }
        // Floyd–Warshall: a few hundred stations.
        for k in 0..n {
            for i in 0..n {
                let ik = min[i * n + k];
                if ik == u32::MAX {
                    continue;
                }
                for j in 0..n {
                    let kj = min[k * n + j];
                    if kj != u32::MAX && ik + kj < min[i * n + j] {
                        min[i * n + j] = ik + kj;
                    }
                }
            }
        }
        TravelBounds { index, min }
    }

    /// The least minutes from `a` to `b` (0 when unknown), taken at three quarters: the bound
    /// only has to rule out mistakes of a whole day, and the EMU network may detour where a
    /// conventional line runs straight. (Half is too weak to place K728's 贵阳 on its day;
    /// three quarters still puts its 商丘南 a day late: see docs/DATA.md.)
    fn at_least(&self, a: Telecode, b: Telecode) -> u32 {
        let (Some(&i), Some(&j)) = (self.index.get(&a), self.index.get(&b)) else { return 0 };
        match self.min[i * self.index.len() + j] {
            u32::MAX => 0,
            m => m * 3 / 4,
        }
    }
}

/// Order a train with an origin row by running it forward: from where it is, the next call is
/// the one it can reach earliest, at the first time of day that is not sooner than any bound
/// from the calls already made allows. The terminus comes last.
fn simulate_forward(calls: &[Call], origin: usize, bounds: &TravelBounds) -> Vec<Stop> {
    let o = &calls[origin];
    let start = o.depart.or(o.arrive).unwrap_or(0);
    let mut stops = vec![Stop { telecode: o.telecode, arrive_min: None, depart_min: Some(start), km: 0 }];
    let mut left: Vec<usize> = (0..calls.len()).filter(|&i| i != origin).collect();
    let terminus = left.iter().position(|&i| calls[i].kind == CallKind::Terminus).map(|p| left.remove(p));
    let mut now = start;
    let earliest = |c: &Call, stops: &[Stop], now: u32| {
        let bound = stops
            .iter()
            .map(|s| s.depart_min.unwrap_or(0) + bounds.at_least(s.telecode, c.telecode))
            .max()
            .unwrap_or(0)
            .max(now);
        let arrive = c.arrive.or(c.depart).unwrap_or(0);
        bound + (arrive + DAY_MIN - bound % DAY_MIN) % DAY_MIN
    };
    while !left.is_empty() {
        let (pos, at) = left
            .iter()
            .enumerate()
            .map(|(p, &i)| (p, earliest(&calls[i], &stops, now)))
            .min_by_key(|&(_, at)| at)
            .expect("left is not empty");
        let c = &calls[left.remove(pos)];
        let dwell = match (c.arrive, c.depart) {
            (Some(a), Some(d)) => (d + DAY_MIN - a) % DAY_MIN,
            _ => 0,
        };
        stops.push(Stop { telecode: c.telecode, arrive_min: Some(at), depart_min: Some(at + dwell), km: 0 });
        now = at + dwell;
    }
    match terminus {
        Some(t) => {
            let at = earliest(&calls[t], &stops, now);
            stops.push(Stop { telecode: calls[t].telecode, arrive_min: Some(at), depart_min: None, km: 0 });
        }
        None => {
            // No terminus row: the last call made is the end of the line.
            if stops.len() > 1 {
                stops.last_mut().expect("not empty").depart_min = None;
            }
        }
    }
    stops
}

/// Running-time estimate of the distance between two calls of a train: minutes × the type's speed.
fn estimate_km(train: &Train, from: usize, to: usize) -> u32 {
    let (a, b) = (&train.stops[from], &train.stops[to]);
    let (Some(depart), Some(arrive)) = (a.depart_min, b.arrive_min) else { return 0 };
    (u64::from(arrive.saturating_sub(depart)) * u64::from(train.train_type().average_speed_kmh()) / 60) as u32
}

/// The data has no distances. A station pair's distance is the shortest running-time estimate
/// ([`estimate_km`]) over every train that calls at both, so a slow train is not charged more
/// than a fast one for the same hop; a train's stop distances are the sums over its hops.
fn assign_distances(trains: &mut [Train]) {
    let mut pair_km: HashMap<(Telecode, Telecode), u32> = HashMap::new();
    for t in trains.iter() {
        for i in 0..t.stops.len() {
            for j in i + 1..t.stops.len() {
                let (a, b) = (t.stops[i].telecode, t.stops[j].telecode);
                let key = if a < b { (a, b) } else { (b, a) };
                let km = estimate_km(t, i, j);
                pair_km.entry(key).and_modify(|v| *v = (*v).min(km)).or_insert(km);
            }
        }
    }
    for t in trains.iter_mut() {
        let mut km = 0;
        for i in 1..t.stops.len() {
            let (a, b) = (t.stops[i - 1].telecode, t.stops[i].telecode);
            // At least 1 km per hop, so distances grow along the train.
            km += pair_km[&if a < b { (a, b) } else { (b, a) }].max(1);
            t.stops[i].km = km;
        }
    }
}

/// Order a train's calls; true when the order had to be guessed (calls over more than a day).
fn order_calls(mut calls: Vec<Call>) -> (Vec<Call>, bool) {
    let anchor = calls.iter().find(|c| c.kind == CallKind::Origin).map(|c| c.key());
    let terminus = calls.iter().find(|c| c.kind == CallKind::Terminus).map(|c| c.key());
    let start = match (anchor, terminus) {
        (Some(t0), _) => t0,
        // Anchor on the terminus: the call furthest back from it starts the day.
        (None, Some(tt)) => (tt + 1) % DAY_MIN,
        (None, None) => start_after_largest_gap(&calls),
    };
    let rank = |c: &Call| {
        let offset = (c.key() + DAY_MIN - start) % DAY_MIN;
        // The origin sorts first, the terminus last, among calls at the same minute.
        let tie = match c.kind {
            CallKind::Origin => 0,
            CallKind::Pass => 1,
            CallKind::Terminus => 2,
        };
        (offset, tie)
    };
    calls.sort_by_key(rank);
    let mut ambiguous = false;
    if let Some(pos) = calls.iter().position(|c| c.kind == CallKind::Terminus)
        && pos != calls.len() - 1
    {
        let t = calls.remove(pos);
        calls.push(t);
        ambiguous = true;
    }
    (calls, ambiguous)
}

fn start_after_largest_gap(calls: &[Call]) -> u32 {
    let mut keys: Vec<u32> = calls.iter().map(Call::key).collect();
    keys.sort_unstable();
    let n = keys.len();
    (0..n).max_by_key(|&i| (keys[(i + 1) % n] + DAY_MIN - keys[i]) % DAY_MIN).map(|i| keys[(i + 1) % n]).unwrap_or(0)
}

/// Turn ordered calls into stops with absolute minutes (day offsets); distances come later.
fn to_stops(calls: &[Call]) -> Vec<Stop> {
    let last = calls.len().saturating_sub(1);
    let mut clock: Option<u32> = None;
    let mut stops = Vec::with_capacity(calls.len());
    for (i, c) in calls.iter().enumerate() {
        // Each time is the first moment at or after the previous one with that time of day.
        let mut advance = |t: Option<u32>| {
            t.map(|t| {
                let abs = match clock {
                    None => t,
                    Some(prev) => prev + (t + DAY_MIN - prev % DAY_MIN) % DAY_MIN,
                };
                clock = Some(abs);
                abs
            })
        };
        let arrive = if i == 0 { None } else { advance(c.arrive.or(c.depart)) };
        let depart = if i == last { None } else { advance(c.depart.or(c.arrive)) };
        stops.push(Stop { telecode: c.telecode, arrive_min: arrive, depart_min: depart, km: 0 });
    }
    stops
}

/// Read both files from a directory (as shipped in the repository's `data/rail`).
pub fn read_dir(dir: &std::path::Path) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let read = |name: &str| {
        let mut buf = Vec::new();
        std::fs::File::open(dir.join(name))?.read_to_end(&mut buf)?;
        Ok::<_, std::io::Error>(buf)
    };
    Ok((read("stations.csv")?, read("timetable_by_station.csv")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATIONS: &str = "abbr,name,telecode,pinyin,initials,index,city_code,city,country_code,country,name_local
bjn,北京南,VNP,beijingnan,bjn,3,0357,北京,,,
jnx,济南西,JGK,jinanxi,jnx,4,0001,济南,,,
shq,上海虹桥,AOH,shanghaihongqiao,shhq,5,0002,上海,,,
gz,广州,GZQ,guangzhou,gz,6,0003,广州,,,
";

    fn parse(timetable: &str) -> (NetworkData, ImportReport) {
        parse_network(STATIONS.as_bytes(), timetable.as_bytes(), &mut |_, _| {}).unwrap()
    }

    const HEADER: &str = "station,service,kind,train_code,origin,terminus,arrival,departure\n";

    #[test]
    fn orders_from_origin_and_crosses_midnight() {
        let t = format!(
            "{HEADER}上海虹桥,x,终,K1,北京南,上海虹桥,06:10,-
北京南,x,始,K1,北京南,上海虹桥,-,21:00
济南西,x,过,K1,北京南,上海虹桥,23:58,00:05
"
        );
        let (net, report) = parse(&t);
        assert_eq!(report.warning_count(), 0, "{}", report.summary());
        let k1 = &net.trains[0];
        let codes: Vec<_> = k1.stops.iter().map(|s| s.telecode.as_str()).collect();
        assert_eq!(codes, ["VNP", "JGK", "AOH"]);
        assert_eq!(k1.stops[0].depart_min, Some(21 * 60));
        assert_eq!(k1.stops[1].arrive_min, Some(23 * 60 + 58));
        assert_eq!(k1.stops[1].depart_min, Some(DAY_MIN + 5));
        assert_eq!(k1.stops[2].arrive_min, Some(DAY_MIN + 6 * 60 + 10));
        assert_eq!(k1.stops[2].depart_min, None);
        // Hops of 2h58 and 6h05 running time at 75 km/h.
        assert_eq!(k1.stops[1].km, 222);
        assert_eq!(k1.stops[2].km, 222 + 456);
    }

    #[test]
    fn a_hop_has_one_distance_whatever_the_train() {
        // G3 runs 北京南-济南西 in 1h30, G5 in 2h: both are charged the faster estimate.
        let t = format!(
            "{HEADER}北京南,x,始,G3,北京南,上海虹桥,-,10:00
济南西,x,过,G3,北京南,上海虹桥,11:30,11:35
上海虹桥,x,终,G3,北京南,上海虹桥,15:00,-
北京南,x,始,G5,北京南,济南西,-,08:00
济南西,x,终,G5,北京南,济南西,10:00,-
"
        );
        let (net, _) = parse(&t);
        let train = |code: &str| net.trains.iter().find(|t| t.code.as_str() == code).unwrap();
        assert_eq!(train("G5").stops[1].km, 375);
        assert_eq!(train("G3").stops[1].km, 375);
        // G3 sums its hops: 375 + 济南西-上海虹桥 (3h25 at 250 km/h = 854 km).
        assert_eq!(train("G3").stops[2].km, 375 + 854);
    }

    #[test]
    fn anchors_on_terminus_without_origin_row() {
        let t = format!(
            "{HEADER}上海虹桥,x,终,G7,杭州东,上海虹桥,10:00,-
济南西,x,过,G7,杭州东,上海虹桥,23:00,23:02
北京南,x,过,G7,杭州东,上海虹桥,21:00,21:05
"
        );
        let (net, _) = parse(&t);
        let codes: Vec<_> = net.trains[0].stops.iter().map(|s| s.telecode.as_str()).collect();
        assert_eq!(codes, ["VNP", "JGK", "AOH"]);
    }

    #[test]
    fn warns_about_unknown_stations_short_trains_and_bad_rows() {
        let t = format!(
            "{HEADER}西安南,x,始,G9,西安南,北京南,-,08:00
北京南,x,终,G9,西安南,北京南,12:00,-
北京南,x,始,G10,北京南,广州,-,08:00
广州,x,终,G10,北京南,广州,17:00,-
广州,x,终,G10,北京南,广州,17:00,-
广州,x,过,bad,北京南,广州,17:00,-
广州,x,过,Z806/Z803,北京南,广州,17:00,-
广州,x,过,G11,北京南,广州,25:00,-
"
        );
        let (net, report) = parse(&t);
        assert_eq!(report.unknown_stations.get("西安南"), Some(&1));
        assert_eq!(report.too_few_stops, ["G9", "Z806"]);
        assert_eq!(report.bad_rows.len(), 2);
        assert_eq!(report.duplicate_calls, 1);
        // G9 and Z806 are kept with their one known stop; G10 is whole.
        assert_eq!(net.trains.len(), 3);
        assert_eq!(net.trains.iter().find(|t| t.code.as_str() == "G9").unwrap().stops.len(), 1);
        assert!(report.summary().contains("西安南"));
        assert_eq!(report.dual_codes, ["Z806/Z803"]);
        assert!(net.trains.iter().any(|t| t.code.as_str() == "Z806"));
    }

    #[test]
    fn emu_running_times_put_a_sleeper_call_on_the_right_day() {
        // G3 shows 北京南 → 上海虹桥 takes 5 hours. K7 leaves 北京南 at 21:00; by time of day
        // alone 上海虹桥 at 23:00 would come right after, but it cannot be reached in 2 hours:
        // it is the next evening, after 济南西 at 01:00.
        let t = format!(
            "{HEADER}北京南,x,始,G3,北京南,上海虹桥,-,08:00
上海虹桥,x,终,G3,北京南,上海虹桥,13:00,-
北京南,x,始,K7,北京南,广州,-,21:00
上海虹桥,x,过,K7,北京南,广州,23:00,23:10
济南西,x,过,K7,北京南,广州,01:00,01:05
广州,x,终,K7,北京南,广州,10:00,-
"
        );
        let (net, report) = parse(&t);
        let k7 = net.trains.iter().find(|t| t.code.as_str() == "K7").unwrap();
        let codes: Vec<_> = k7.stops.iter().map(|s| s.telecode.as_str()).collect();
        assert_eq!(codes, ["VNP", "JGK", "AOH", "GZQ"]);
        assert_eq!(k7.stops[1].arrive_min, Some(DAY_MIN + 60));
        assert_eq!(k7.stops[2].arrive_min, Some(DAY_MIN + 23 * 60));
        assert_eq!(k7.stops[3].arrive_min, Some(2 * DAY_MIN + 10 * 60));
        assert_eq!(report.multi_day, 1);
    }

    /// The real data: long sleepers come out in their true order.
    #[test]
    fn real_multi_day_sleepers_are_in_route_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/rail");
        let (stations, timetable) = read_dir(&dir).unwrap();
        let (net, _) = parse_network(&stations, &timetable, &mut |_, _| {}).unwrap();
        let name: HashMap<Telecode, &str> = net.stations.iter().map(|s| (s.telecode, s.name.as_str())).collect();
        let route = |code: &str| -> Vec<&str> {
            let t = net.trains.iter().find(|t| t.code.as_str() == code).unwrap();
            t.stops.iter().map(|s| name[&s.telecode]).collect()
        };
        // Every call of Z40 at a station EMUs serve is in route order. 嘉峪关 has no EMU, so no
        // bound says it cannot come right after 徐州 (docs/DATA.md).
        let z40: Vec<&str> = route("Z40").into_iter().filter(|s| *s != "嘉峪关").collect();
        assert_eq!(
            z40,
            [
                "上海",
                "苏州",
                "常州",
                "南京",
                "蚌埠",
                "徐州",
                "郑州",
                "洛阳",
                "西安",
                "宝鸡",
                "天水",
                "兰州",
                "吐鲁番北",
                "乌鲁木齐"
            ]
        );
        // K728 runs 哈尔滨西 → 昆明 over three days. All in order but 商丘南, where the EMU network
        // detours (via 徐州) and the bound from 菏泽 comes out longer than the direct line.
        let k728: Vec<&str> = route("K728").into_iter().filter(|s| *s != "商丘南").collect();
        assert_eq!(
            k728,
            [
                "哈尔滨西",
                "长春",
                "四平",
                "沈阳北",
                "锦州南",
                "山海关",
                "秦皇岛",
                "天津",
                "衡水",
                "聊城",
                "菏泽",
                "阜阳",
                "九江",
                "南昌",
                "株洲",
                "湘潭",
                "怀化",
                "贵阳",
                "六盘水",
                "昆明"
            ]
        );
        assert_eq!(route("G1"), ["北京南", "济南西", "南京南", "上海虹桥"]);
        assert_eq!(route("K101")[..3], ["北京", "德州", "济南"]);
        for t in &net.trains {
            let times: Vec<u32> = t.stops.iter().flat_map(|s| [s.arrive_min, s.depart_min]).flatten().collect();
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "{}: {times:?}", t.code);
        }
    }
}
