//! Stations, train search with remaining tickets (余票), runs and seat maps.
//!
//! The search answer is the hottest body the server writes (~16 KB, 100 times as often as an
//! order), so its strings are `Cow`: the server borrows them from its network index, a client
//! owns what it parsed.

use std::borrow::Cow;

use chepiao_domain::{ChinaTime, RunId, SeatClass};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StationView {
    /// Telecode, e.g. `VNP`.
    pub telecode: String,
    /// Chinese name, e.g. `北京南`.
    pub name: String,
    pub pinyin: String,
    pub city: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Departure<'a> {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub telecode: Cow<'a, str>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: Cow<'a, str>,
    /// RFC 3339, China time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "2026-11-21T09:00:00+08:00"))]
    pub departs_at: ChinaTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Arrival<'a> {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub telecode: Cow<'a, str>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: Cow<'a, str>,
    /// RFC 3339, China time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "2026-11-21T13:28:00+08:00"))]
    pub arrives_at: ChinaTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassOffer {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "SECOND"))]
    pub class: SeatClass,
    /// Places left for this journey.
    pub remaining: u32,
    pub price_fen: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrainResult<'a> {
    /// `G1-20261121`: train code and the date the train left its first stop.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "G1-20261121"))]
    pub run_id: RunId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub train_code: Cow<'a, str>,
    pub from: Departure<'a>,
    pub to: Arrival<'a>,
    pub duration_min: u32,
    /// Derived distance (see docs/DATA.md).
    pub distance_km: u32,
    pub classes: Vec<ClassOffer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StopView {
    pub index: u16,
    pub telecode: String,
    pub name: String,
    /// RFC 3339, China time; absent at the first stop.
    pub arrives_at: Option<String>,
    /// RFC 3339, China time; absent at the last stop.
    pub departs_at: Option<String>,
    pub km: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassCapacity {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "SECOND"))]
    pub class: SeatClass,
    pub capacity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunView {
    pub run_id: String,
    pub train_code: String,
    /// The date the train leaves its first stop.
    pub date: String,
    pub stops: Vec<StopView>,
    pub classes: Vec<ClassCapacity>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeatView<'a> {
    /// `05A`, `001`, `01L`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub seat: Cow<'a, str>,
    /// Free for the whole journey asked about.
    pub free: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoachView<'a> {
    pub coach: u8,
    pub seats: Vec<SeatView<'a>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeatMapView<'a> {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub run_id: RunId,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "SECOND"))]
    pub class: SeatClass,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub from: Cow<'a, str>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub to: Cow<'a, str>,
    /// Free seats of the class for this journey.
    pub free: u32,
    pub coaches: Vec<CoachView<'a>>,
}
