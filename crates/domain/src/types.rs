//! Parse-don't-validate value types. A value of one of these types is valid by construction:
//! the only ways in are `FromStr`/`parse` (which check) and `Deserialize` (which calls `parse`).

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, Timelike};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a value was refused; the message names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(message.into()))
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A 12306 station telecode: exactly three ASCII capital letters (`VNP` = 北京南).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Telecode([u8; 3]);

impl Telecode {
    pub fn as_str(&self) -> &str {
        // Safe by construction: only ASCII capitals get in.
        std::str::from_utf8(&self.0).expect("telecode is ASCII")
    }
}

impl FromStr for Telecode {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let b = s.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_uppercase) {
            return err(format!("telecode must be three capital letters, got {s:?}"));
        }
        Ok(Telecode([b[0], b[1], b[2]]))
    }
}

impl fmt::Display for Telecode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Debug for Telecode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Telecode({})", self.as_str())
    }
}
serde_via_str!(Telecode);

/// Maximum length of a train code; the longest real ones are five characters (`D7531`).
pub const TRAIN_CODE_LEN_MAX: usize = 8;

/// A train code such as `G1`, `D7531`, `K1270`, `1461`, or an international train's `004З`:
/// capital letters (any script) and ASCII digits, at least one digit.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrainCode(Box<str>);

impl TrainCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The service type the code's prefix names.
    pub fn train_type(&self) -> TrainType {
        TrainType::from_code_prefix(self.0.as_bytes()[0])
    }
}

impl FromStr for TrainCode {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let valid = s.chars().count() <= TRAIN_CODE_LEN_MAX
            && s.chars().all(|c| c.is_uppercase() || c.is_ascii_digit())
            && s.chars().any(|c| c.is_ascii_digit());
        if !valid {
            return err(format!(
                "train code must be at most {TRAIN_CODE_LEN_MAX} capital letters and digits, with a digit, got {s:?}"
            ));
        }
        Ok(TrainCode(s.into()))
    }
}
impl fmt::Display for TrainCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for TrainCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrainCode({})", &self.0)
    }
}
serde_via_str!(TrainCode);

/// A calendar date on the railway's clock (China time, UTC+8), written `YYYY-MM-DD`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ServiceDate(NaiveDate);

/// China Standard Time: the railway's clock. Fixed offset; China has no daylight saving.
pub fn china_offset() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

impl ServiceDate {
    pub fn new(date: NaiveDate) -> Self {
        ServiceDate(date)
    }
    pub fn naive(&self) -> NaiveDate {
        self.0
    }
    /// Today's date in China time.
    pub fn today_in_china(now: chrono::DateTime<chrono::Utc>) -> Self {
        ServiceDate(now.with_timezone(&china_offset()).date_naive())
    }
    pub fn add_days(&self, days: i64) -> Self {
        ServiceDate(self.0 + chrono::Duration::days(days))
    }
    pub fn days_since(&self, other: ServiceDate) -> i64 {
        (self.0 - other.0).num_days()
    }
    /// `minutes` after this date's midnight, China time, as an instant with offset.
    pub fn at_minutes(&self, minutes: u32) -> chrono::DateTime<chrono::FixedOffset> {
        let midnight = self.0.and_hms_opt(0, 0, 0).expect("midnight exists");
        let local = midnight + chrono::Duration::minutes(i64::from(minutes));
        local.and_local_timezone(china_offset()).single().expect("fixed offset is unambiguous")
    }
    /// The instant `minutes` after this date's midnight, for display (cheaper than `at_minutes`).
    pub fn time_at(&self, minutes: u32) -> ChinaTime {
        ChinaTime { date: *self, minutes }
    }
}

impl FromStr for ServiceDate {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        // Exactly YYYY-MM-DD: chrono alone would also take `2026-1-5`.
        let b = s.as_bytes();
        let shape_ok = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !shape_ok {
            return err(format!("date must be YYYY-MM-DD, got {s:?}"));
        }
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map(ServiceDate).or_else(|_| err(format!("no such date: {s:?}")))
    }
}
impl fmt::Display for ServiceDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.0.year(), self.0.month(), self.0.day())
    }
}

impl ServiceDate {
    /// Days since 0001-01-01 (the binary form in logs and snapshots).
    pub fn days_from_ce(&self) -> i32 {
        self.0.num_days_from_ce()
    }
    pub fn from_days_from_ce(days: i32) -> Option<ServiceDate> {
        NaiveDate::from_num_days_from_ce_opt(days).map(ServiceDate)
    }
}

// Text (`2026-11-21`) for people and JSON; a day number for binary formats (the engine's log).
impl Serialize for ServiceDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.collect_str(self) } else { s.serialize_i32(self.days_from_ce()) }
    }
}
impl<'de> Deserialize<'de> for ServiceDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let days = i32::deserialize(d)?;
            ServiceDate::from_days_from_ce(days).ok_or_else(|| serde::de::Error::custom("day number out of range"))
        }
    }
}

/// A minute on the railway's clock, displayed as RFC 3339 with the +08:00 offset:
/// `2026-11-21T09:00:00+08:00`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChinaTime {
    date: ServiceDate,
    /// Minutes after `date`'s midnight; may span several days.
    minutes: u32,
}

impl fmt::Display for ChinaTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let day = self.date.0 + chrono::Duration::days(i64::from(self.minutes / (24 * 60)));
        let m = self.minutes % (24 * 60);
        write!(f, "{:04}-{:02}-{:02}T{:02}:{:02}:00+08:00", day.year(), day.month(), day.day(), m / 60, m % 60)
    }
}

impl FromStr for ChinaTime {
    type Err = ParseError;

    /// `2026-11-21T09:00:00+08:00`: a minute on the railway's clock, offset +08:00 only.
    fn from_str(s: &str) -> Result<ChinaTime, ParseError> {
        let t = chrono::DateTime::parse_from_rfc3339(s).or_else(|_| err(format!("{s:?} is not an RFC 3339 time")))?;
        if t.offset().local_minus_utc() != 8 * 3600 || t.timestamp() % 60 != 0 {
            return err(format!("{s:?} is not a whole minute in China time (+08:00)"));
        }
        let local = t.naive_local();
        let minutes = local.time().num_seconds_from_midnight() / 60;
        Ok(ChinaTime { date: ServiceDate(local.date()), minutes })
    }
}

serde_via_str!(ChinaTime);

/// Money in integer fen (1 yuan = 100 fen). Never a float.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fen(pub i64);

impl Fen {
    pub fn yuan(&self) -> String {
        format!("{}.{:02}", self.0 / 100, (self.0 % 100).abs())
    }
}

/// A run is one train on one service date (the date it leaves its first stop). Written `G1-20261121`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RunId {
    pub train: TrainCode,
    pub date: ServiceDate,
}

impl RunId {
    pub fn new(train: TrainCode, date: ServiceDate) -> Self {
        RunId { train, date }
    }
}

impl FromStr for RunId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || ParseError(format!("run id must look like G1-20261121, got {s:?}"));
        let (code, date) = s.rsplit_once('-').ok_or_else(bad)?;
        if date.len() != 8 || !date.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let iso = format!("{}-{}-{}", &date[0..4], &date[4..6], &date[6..8]);
        Ok(RunId { train: code.parse().map_err(|_| bad())?, date: iso.parse()? })
    }
}
impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.date.0;
        write!(f, "{}-{:04}{:02}{:02}", self.train, d.year(), d.month(), d.day())
    }
}

// `G1-20261121` for people and JSON; (code, day number) for binary formats.
impl Serialize for RunId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.collect_str(self) } else { (self.train.as_str(), self.date).serialize(s) }
    }
}
impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let (code, date) = <(String, ServiceDate)>::deserialize(d)?;
            Ok(RunId { train: code.parse().map_err(serde::de::Error::custom)?, date })
        }
    }
}

/// Service type, from the train code's first character.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub enum TrainType {
    /// 高速动车 high-speed EMU
    G,
    /// 动车组 EMU
    D,
    /// 城际 intercity EMU
    C,
    /// 市郊 suburban EMU
    S,
    /// 直达特快 non-stop express
    Z,
    /// 特快 express
    T,
    /// 快速 fast
    K,
    /// 旅游 tourist
    Y,
    /// 普快/普客 ordinary (all-digit codes)
    P,
}

impl TrainType {
    pub const ALL: [TrainType; 9] = [
        TrainType::G,
        TrainType::D,
        TrainType::C,
        TrainType::S,
        TrainType::Z,
        TrainType::T,
        TrainType::K,
        TrainType::Y,
        TrainType::P,
    ];

    fn from_code_prefix(c: u8) -> TrainType {
        match c {
            b'G' => TrainType::G,
            b'D' => TrainType::D,
            b'C' => TrainType::C,
            b'S' => TrainType::S,
            b'Z' => TrainType::Z,
            b'T' => TrainType::T,
            b'K' => TrainType::K,
            b'Y' => TrainType::Y,
            _ => TrainType::P,
        }
    }

    /// Electric multiple units (G/D/C/S) seat passengers; locomotive-hauled trains carry sleepers.
    pub fn is_emu(&self) -> bool {
        matches!(self, TrainType::G | TrainType::D | TrainType::C | TrainType::S)
    }

    /// Average speed over the whole journey, dwell included, in km/h. The timetable data has no
    /// distances, so distance is derived as running time × this speed (see docs/DATA.md).
    pub fn average_speed_kmh(&self) -> u32 {
        match self {
            TrainType::G => 250,
            TrainType::D => 180,
            TrainType::C => 160,
            TrainType::S => 120,
            TrainType::Z => 110,
            TrainType::T => 95,
            TrainType::K => 75,
            TrainType::Y => 70,
            TrainType::P => 55,
        }
    }
}

/// Seat classes, as the API spells them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatClass {
    /// 商务座
    Business,
    /// 一等座
    First,
    /// 二等座
    Second,
    /// 软卧
    SoftSleeper,
    /// 硬卧
    HardSleeper,
    /// 硬座
    HardSeat,
    /// 无座
    Standing,
}

impl SeatClass {
    pub const ALL: [SeatClass; 7] = [
        SeatClass::Business,
        SeatClass::First,
        SeatClass::Second,
        SeatClass::SoftSleeper,
        SeatClass::HardSleeper,
        SeatClass::HardSeat,
        SeatClass::Standing,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            SeatClass::Business => "BUSINESS",
            SeatClass::First => "FIRST",
            SeatClass::Second => "SECOND",
            SeatClass::SoftSleeper => "SOFT_SLEEPER",
            SeatClass::HardSleeper => "HARD_SLEEPER",
            SeatClass::HardSeat => "HARD_SEAT",
            SeatClass::Standing => "STANDING",
        }
    }

    pub fn name_zh(&self) -> &'static str {
        match self {
            SeatClass::Business => "商务座",
            SeatClass::First => "一等座",
            SeatClass::Second => "二等座",
            SeatClass::SoftSleeper => "软卧",
            SeatClass::HardSleeper => "硬卧",
            SeatClass::HardSeat => "硬座",
            SeatClass::Standing => "无座",
        }
    }
}

impl FromStr for SeatClass {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        SeatClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ParseError(format!("unknown seat class {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telecode_accepts_three_capitals_only() {
        assert_eq!("VNP".parse::<Telecode>().unwrap().as_str(), "VNP");
        for bad in ["", "VN", "VNPX", "vnp", "V1P", "北京南"] {
            assert!(bad.parse::<Telecode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn train_code_shapes() {
        for ok in ["G1", "D7531", "K1270", "1461", "Z97", "004З"] {
            assert_eq!(ok.parse::<TrainCode>().unwrap().as_str(), ok);
        }
        for bad in ["", "G", "g1", "G1-", "G123456789", "G 1", "Z806/Z803"] {
            assert!(bad.parse::<TrainCode>().is_err(), "{bad}");
        }
        assert_eq!("1461".parse::<TrainCode>().unwrap().train_type(), TrainType::P);
        assert_eq!("G1".parse::<TrainCode>().unwrap().train_type(), TrainType::G);
    }

    #[test]
    fn dates_are_strict() {
        assert!("2026-11-21".parse::<ServiceDate>().is_ok());
        for bad in ["2026-1-21", "2026-02-30", "21-11-2026", "2026/11/21", "", "2026-11-21T00:00"] {
            assert!(bad.parse::<ServiceDate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn run_id_round_trips() {
        let id: RunId = "G1-20261121".parse().unwrap();
        assert_eq!(id.train.as_str(), "G1");
        assert_eq!(id.date.to_string(), "2026-11-21");
        assert_eq!(id.to_string(), "G1-20261121");
        for bad in ["G1", "G1-2026112", "G1-20261131", "-20261121", "g1-20261121", "G1-2026-11-21"] {
            assert!(bad.parse::<RunId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_china_time() {
        let d: ServiceDate = "2026-11-21".parse().unwrap();
        assert_eq!(d.at_minutes(9 * 60).to_rfc3339(), "2026-11-21T09:00:00+08:00");
        assert_eq!(d.at_minutes(24 * 60 + 30).to_rfc3339(), "2026-11-22T00:30:00+08:00");
        for m in [0, 9 * 60, 24 * 60 + 30, 3 * 24 * 60 + 23 * 60 + 59] {
            assert_eq!(d.time_at(m).to_string(), d.at_minutes(m).to_rfc3339());
        }
    }

    #[test]
    fn fen_formats_as_yuan() {
        assert_eq!(Fen(55350).yuan(), "553.50");
        assert_eq!(Fen(5).yuan(), "0.05");
    }
}
