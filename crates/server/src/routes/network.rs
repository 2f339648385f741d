//! Stations, train search with remaining tickets (余票), and run details.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chepiao_domain::network::{Journey, Station, StationIdx};
use chepiao_domain::{ChinaTime, RunId, SeatClass, ServiceDate, Telecode, fare};
use serde::Serialize;

use super::{JsonOut, Params};
use crate::AppState;
use crate::error::ApiError;
use crate::inventory::JourneyKey;

/// Station matches returned when `limit` is not given.
const STATION_LIMIT_DEFAULT: usize = 10;
/// Longest station query, in characters (station names and pinyin are far shorter).
const STATION_QUERY_LEN_MAX: usize = 64;

#[derive(Serialize, utoipa::ToSchema)]
pub struct StationView {
    /// Telecode, e.g. `VNP`.
    pub telecode: String,
    /// Chinese name, e.g. `北京南`.
    pub name: String,
    pub pinyin: String,
    pub city: String,
}

impl From<&Station> for StationView {
    fn from(s: &Station) -> Self {
        StationView {
            telecode: s.telecode.to_string(),
            name: s.name.clone(),
            pinyin: s.pinyin.clone(),
            city: s.city.clone(),
        }
    }
}

/// Find stations by name, pinyin, initials or telecode (`北京南`, `beijingnan`, `bjn`, `VNP`).
#[utoipa::path(get, path = "/api/v1/stations", tag = "network",
    params(("q" = String, Query, description = "name, pinyin, initials or telecode"),
           ("limit" = Option<usize>, Query, description = "at most this many matches (1-50, default 10)")),
    responses((status = 200, body = [StationView]), (status = 400, body = crate::error::ErrorBody)))]
pub async fn stations(State(state): State<AppState>, params: Params) -> Result<Json<Vec<StationView>>, ApiError> {
    let q: String = params.required("q")?;
    if q.chars().count() > STATION_QUERY_LEN_MAX {
        return Err(ApiError::bad_parameter(format!("parameter `q`: at most {STATION_QUERY_LEN_MAX} characters")));
    }
    let limit: usize = params.optional("limit")?.unwrap_or(STATION_LIMIT_DEFAULT);
    if !(1..=chepiao_domain::network::STATION_MATCHES_MAX).contains(&limit) {
        return Err(ApiError::bad_parameter(format!(
            "parameter `limit`: must be 1 to {}",
            chepiao_domain::network::STATION_MATCHES_MAX
        )));
    }
    Ok(Json(state.network.find_stations(&q, limit).into_iter().map(StationView::from).collect()))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Departure<'a> {
    pub telecode: &'a str,
    pub name: &'a str,
    /// RFC 3339, China time.
    #[schema(value_type = String, example = "2026-11-21T09:00:00+08:00")]
    pub departs_at: ChinaTime,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Arrival<'a> {
    pub telecode: &'a str,
    pub name: &'a str,
    /// RFC 3339, China time.
    #[schema(value_type = String, example = "2026-11-21T13:28:00+08:00")]
    pub arrives_at: ChinaTime,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClassOffer {
    #[schema(value_type = String, example = "SECOND")]
    pub class: SeatClass,
    /// Places left for this journey.
    pub remaining: u32,
    pub price_fen: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TrainResult<'a> {
    /// `G1-20261121`: train code and the date the train left its first stop.
    #[schema(value_type = String, example = "G1-20261121")]
    pub run_id: RunId,
    pub train_code: &'a str,
    pub from: Departure<'a>,
    pub to: Arrival<'a>,
    pub duration_min: u32,
    /// Derived distance (see docs/DATA.md).
    pub distance_km: u32,
    pub classes: Vec<ClassOffer>,
}

/// Bytes of JSON per search result, to size the response buffer in one go.
const TRAIN_RESULT_JSON_LEN: usize = 512;

fn station_set<'a>(state: &'a AppState, params: &Params, name: &str) -> Result<&'a [StationIdx], ApiError> {
    let code: Telecode = params.required(name)?;
    state
        .network
        .search_set(code)
        .ok_or_else(|| ApiError::unknown_station(format!("parameter `{name}`: no station with telecode {code}")))
}

/// Runs calling at `from` and later at `to`, boarding on `date`, with remaining places and
/// prices per class. A city's namesake station (北京 `BJP`) stands for all the city's
/// stations (北京南, 北京西, ...); any other telecode means that station alone.
#[utoipa::path(get, path = "/api/v1/trains", tag = "network",
    params(("from" = String, Query, description = "boarding station telecode"),
           ("to" = String, Query, description = "alighting station telecode"),
           ("date" = String, Query, description = "boarding date YYYY-MM-DD (China time), within the sale window")),
    responses((status = 200, body = [TrainResult]), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn trains(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    let from = station_set(&state, &params, "from")?;
    let to = station_set(&state, &params, "to")?;
    let date: ServiceDate = params.required("date")?;
    let calendar = state.calendar();
    if !calendar.on_sale(date) {
        return Err(ApiError::outside_sale_window(format!(
            "parameter `date`: {date} is outside the sale window {}..{}",
            calendar.today, calendar.sale_last
        )));
    }
    let journeys = state.network.journeys(from, to, date, |t, d| calendar.runs(t, d));
    let keys: Vec<JourneyKey> = journeys
        .iter()
        .map(|j| JourneyKey { train: j.train, run_date: j.run_date, from_stop: j.from_stop, to_stop: j.to_stop })
        .collect();
    let counts = state.inventory.remaining(&keys).await?;
    let results: Vec<TrainResult> = journeys.iter().zip(counts).map(|(j, c)| train_result(&state, j, c)).collect();
    let capacity_hint = (results.len() + 1) * TRAIN_RESULT_JSON_LEN;
    Ok(JsonOut { value: results, capacity_hint }.into_response())
}

fn train_result<'a>(state: &'a AppState, j: &Journey, counts: Vec<(SeatClass, u32)>) -> TrainResult<'a> {
    let train = state.network.train(j.train);
    let (a, b) = (&train.stops[j.from_stop as usize], &train.stops[j.to_stop as usize]);
    let depart = a.depart_min.expect("journeys board where the train departs");
    let arrive = b.arrive_min.expect("journeys alight where the train arrives");
    let [from, to] =
        [a.telecode, b.telecode].map(|c| state.network.station_by_code(c).expect("indexed stops have stations"));
    let km = b.km - a.km;
    let classes = counts
        .into_iter()
        .filter_map(|(class, remaining)| {
            fare::fare(train.train_type(), class, km).map(|f| ClassOffer { class, remaining, price_fen: f.0 })
        })
        .collect();
    TrainResult {
        run_id: RunId::new(train.code.clone(), j.run_date),
        train_code: train.code.as_str(),
        from: Departure { telecode: from.telecode.as_str(), name: &from.name, departs_at: j.run_date.time_at(depart) },
        to: Arrival { telecode: to.telecode.as_str(), name: &to.name, arrives_at: j.run_date.time_at(arrive) },
        duration_min: arrive - depart,
        distance_km: km,
        classes,
    }
}

/// The run named in the path, and its train: 400 for a malformed id, 404 for no such run.
fn find_run(
    state: &AppState,
    run_id: Result<Path<String>, PathRejection>,
) -> Result<(RunId, &chepiao_domain::Train), ApiError> {
    let Path(run_id) = run_id.map_err(|e| ApiError::bad_parameter(format!("run_id: {e}")))?;
    let run: RunId = run_id.parse().map_err(|e| ApiError::bad_parameter(format!("run_id: {e}")))?;
    let train_idx = state
        .network
        .train_idx(&run.train)
        .filter(|t| state.calendar().runs(*t, run.date))
        .ok_or_else(|| ApiError::unknown_run(format!("no run {run}")))?;
    Ok((run, state.network.train(train_idx)))
}

#[derive(Serialize, utoipa::ToSchema)]
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

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClassCapacity {
    #[schema(value_type = String, example = "SECOND")]
    pub class: SeatClass,
    pub capacity: u32,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub run_id: String,
    pub train_code: String,
    /// The date the train leaves its first stop.
    pub date: String,
    pub stops: Vec<StopView>,
    pub classes: Vec<ClassCapacity>,
}

/// A run's stops and capacity per class.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", tag = "network",
    params(("run_id" = String, Path, description = "e.g. G1-20261121")),
    responses((status = 200, body = RunView), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn run(
    State(state): State<AppState>,
    run_id: Result<Path<String>, PathRejection>,
) -> Result<Json<RunView>, ApiError> {
    let (run, train) = find_run(&state, run_id)?;
    let at = |m: Option<u32>| m.map(|m| run.date.at_minutes(m).to_rfc3339());
    let stops = train
        .stops
        .iter()
        .enumerate()
        .map(|(i, s)| StopView {
            index: i as u16,
            telecode: s.telecode.to_string(),
            name: state.network.station_by_code(s.telecode).map(|st| st.name.clone()).unwrap_or_default(),
            arrives_at: at(s.arrive_min),
            departs_at: at(s.depart_min),
            km: s.km,
        })
        .collect();
    let classes =
        train.layout().classes().into_iter().map(|(class, capacity)| ClassCapacity { class, capacity }).collect();
    Ok(Json(RunView {
        run_id: run.to_string(),
        train_code: train.code.to_string(),
        date: run.date.to_string(),
        stops,
        classes,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SeatView<'a> {
    /// `05A`, `001`, `01L`.
    pub seat: &'a str,
    /// Free for the whole journey asked about.
    pub free: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CoachView<'a> {
    pub coach: u8,
    pub seats: Vec<SeatView<'a>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SeatMapView<'a> {
    #[schema(value_type = String)]
    pub run_id: RunId,
    #[schema(value_type = String, example = "SECOND")]
    pub class: SeatClass,
    pub from: &'a str,
    pub to: &'a str,
    /// Free seats of the class for this journey.
    pub free: u32,
    pub coaches: Vec<CoachView<'a>>,
}

/// Index of the stop at station `name` (a query parameter) on `train`.
fn stop_index(train: &chepiao_domain::Train, params: &Params, name: &str) -> Result<usize, ApiError> {
    let code: Telecode = params.required(name)?;
    train
        .stops
        .iter()
        .position(|s| s.telecode == code)
        .ok_or_else(|| ApiError::bad_parameter(format!("parameter `{name}`: {code} is not a stop of {}", train.code)))
}

/// The seat map of one class for a journey on a run: which seats are free from `from` to `to`.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/seats", tag = "network",
    params(("run_id" = String, Path, description = "e.g. G1-20261121"),
           ("from" = String, Query, description = "boarding stop telecode"),
           ("to" = String, Query, description = "alighting stop telecode, after `from`"),
           ("class" = String, Query, description = "seat class, e.g. SECOND (not STANDING: it has no seats)")),
    responses((status = 200, body = SeatMapView), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn seats(
    State(state): State<AppState>,
    run_id: Result<Path<String>, PathRejection>,
    params: Params,
) -> Result<Response, ApiError> {
    let (run, train) = find_run(&state, run_id)?;
    let (from, to) = (stop_index(train, &params, "from")?, stop_index(train, &params, "to")?);
    if from >= to {
        return Err(ApiError::bad_parameter("parameter `to`: must be a stop after `from`"));
    }
    let class: SeatClass = params.required("class")?;
    let layout = train.layout();
    if class == SeatClass::Standing || layout.capacity(class) == 0 {
        return Err(ApiError::bad_parameter(format!("parameter `class`: {} has no {class:?} seats", train.code)));
    }
    let query = chepiao_engine::Query::SeatMap {
        run: run.clone(),
        spec: crate::inventory::run_spec(train),
        from: from as u8,
        to: to as u8,
        class,
    };
    let answer = state.engine.query(vec![query]).await?.pop();
    let Some(chepiao_engine::Answer::SeatMap { first_seat, free }) = answer else {
        return Err(ApiError::internal(format!("engine answered {answer:?} to a seat map")));
    };
    let mut coaches: Vec<CoachView> = Vec::new();
    for (i, is_free) in free.iter().enumerate() {
        let place = layout.seat_at(first_seat + i as u16).expect("the engine's seats are the layout's");
        if coaches.last().is_none_or(|c| c.coach != place.coach) {
            coaches.push(CoachView { coach: place.coach, seats: Vec::new() });
        }
        coaches.last_mut().expect("pushed above").seats.push(SeatView { seat: place.label, free: *is_free });
    }
    let view = SeatMapView {
        run_id: run,
        class,
        from: train.stops[from].telecode.as_str(),
        to: train.stops[to].telecode.as_str(),
        free: free.iter().filter(|f| **f).count() as u32,
        coaches,
    };
    Ok(JsonOut { value: view, capacity_hint: 64 + free.len() * 32 }.into_response())
}
