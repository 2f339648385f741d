//! Stations, train search with remaining tickets (余票), and run details.

use std::borrow::Cow;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chepiao_api::network::{
    Arrival, ClassCapacity, ClassOffer, CoachView, Departure, RunView, SeatMapView, SeatView, StationView, StopView,
    TrainResult,
};
use chepiao_domain::network::{Journey, Station, StationIdx};
use chepiao_domain::{RunId, SeatClass, ServiceDate, Telecode, fare};

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{JsonOut, Params, json_response};
use crate::search::{JourneyKey, SearchKey};
use crate::state::AppState;

/// Station matches returned when `limit` is not given.
const STATION_LIMIT_DEFAULT: usize = 10;
/// Longest station query, in characters (station names and pinyin are far shorter).
const STATION_QUERY_LEN_MAX: usize = 64;

fn station_view(s: &Station) -> StationView {
    StationView {
        telecode: s.telecode.to_string(),
        name: s.name.clone(),
        pinyin: s.pinyin.clone(),
        city: s.city.clone(),
    }
}

/// Find stations by name, pinyin, initials or telecode (`北京南`, `beijingnan`, `bjn`, `VNP`).
#[utoipa::path(get, path = "/api/v1/stations", tag = "network",
    params(("q" = String, Query, description = "name, pinyin, initials or telecode"),
           ("limit" = Option<usize>, Query, description = "at most this many matches (1-50, default 10)")),
    responses((status = 200, body = [StationView]), (status = 400, body = ErrorBody)))]
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
    Ok(Json(state.flow.network.find_stations(&q, limit).into_iter().map(station_view).collect()))
}

/// Bytes of JSON per search result, to size the response buffer in one go.
const TRAIN_RESULT_JSON_LEN: usize = 512;

/// The telecode asked and the stations it stands for.
fn station_set<'a>(state: &'a AppState, params: &Params, name: &str) -> Result<(Telecode, &'a [StationIdx]), ApiError> {
    let code: Telecode = params.required(name)?;
    let set = state
        .flow
        .network
        .search_set(code)
        .ok_or_else(|| ApiError::unknown_station(format!("parameter `{name}`: no station with telecode {code}")))?;
    Ok((code, set))
}

/// Runs calling at `from` and later at `to`, boarding on `date`, with remaining places and
/// prices per class. A city's namesake station (北京 `BJP`) stands for all the city's
/// stations (北京南, 北京西, ...); any other telecode means that station alone. While a sale
/// changes the seat engine, the remaining places may be up to `search_stale_ms` (1 s) old: the
/// order is decided by the engine.
#[utoipa::path(get, path = "/api/v1/trains", tag = "network",
    params(("from" = String, Query, description = "boarding station telecode"),
           ("to" = String, Query, description = "alighting station telecode"),
           ("date" = String, Query, description = "boarding date YYYY-MM-DD (China time), within the sale window")),
    responses((status = 200, body = [TrainResult]), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn trains(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    let (from_code, from) = station_set(&state, &params, "from")?;
    let (to_code, to) = station_set(&state, &params, "to")?;
    let date: ServiceDate = params.required("date")?;
    let calendar = state.flow.calendar();
    if !calendar.on_sale(date) {
        return Err(ApiError::outside_sale_window(format!(
            "parameter `date`: {date} is outside the sale window {}..{}",
            calendar.today, calendar.sale_last
        )));
    }
    let key = SearchKey { from: from_code, to: to_code, date };
    // Read before asking the engine: the answer is then at least this new (Engine::version).
    let version = state.flow.engine.version();
    let now_ms = state.flow.now_ms();
    if let Some(body) = state.searches.get(&key, version, now_ms) {
        return Ok(json_response(body));
    }
    let journeys = state.flow.network.journeys(from, to, date, |t, d| calendar.runs(t, d));
    let keys: Vec<JourneyKey> = journeys
        .iter()
        .map(|j| JourneyKey { train: j.train, run_date: j.run_date, from_stop: j.from_stop, to_stop: j.to_stop })
        .collect();
    let counts = crate::search::remaining(&state.flow.network, &state.flow.engine, &keys).await?;
    let results: Vec<TrainResult> = journeys.iter().zip(counts).map(|(j, c)| train_result(&state, j, c)).collect();
    let capacity_hint = (results.len() + 1) * TRAIN_RESULT_JSON_LEN;
    let body = JsonOut { value: results, capacity_hint }.body()?;
    state.searches.put(key, body.clone(), version, now_ms);
    Ok(json_response(body))
}

fn train_result<'a>(state: &'a AppState, j: &Journey, counts: Vec<(SeatClass, u32)>) -> TrainResult<'a> {
    let network = &state.flow.network;
    let train = network.train(j.train);
    let (a, b) = (&train.stops[j.from_stop as usize], &train.stops[j.to_stop as usize]);
    let depart = a.depart_min.expect("journeys board where the train departs");
    let arrive = b.arrive_min.expect("journeys alight where the train arrives");
    let [from, to] = [a.telecode, b.telecode].map(|c| network.station_by_code(c).expect("indexed stops have stations"));
    let km = b.km - a.km;
    let classes = counts
        .into_iter()
        .filter_map(|(class, remaining)| {
            fare::fare(train.train_type(), class, km).map(|f| ClassOffer { class, remaining, price_fen: f.0 })
        })
        .collect();
    TrainResult {
        run_id: RunId::new(train.code.clone(), j.run_date),
        train_code: Cow::Borrowed(train.code.as_str()),
        from: Departure {
            telecode: Cow::Borrowed(from.telecode.as_str()),
            name: Cow::Borrowed(&from.name),
            departs_at: j.run_date.time_at(depart),
        },
        to: Arrival {
            telecode: Cow::Borrowed(to.telecode.as_str()),
            name: Cow::Borrowed(&to.name),
            arrives_at: j.run_date.time_at(arrive),
        },
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
    let network = &state.flow.network;
    let train_idx = network
        .train_idx(&run.train)
        .filter(|t| state.flow.calendar().runs(*t, run.date))
        .ok_or_else(|| ApiError::unknown_run(format!("no run {run}")))?;
    Ok((run, network.train(train_idx)))
}

/// A run's stops and capacity per class.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", tag = "network",
    params(("run_id" = String, Path, description = "e.g. G1-20261121")),
    responses((status = 200, body = RunView), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
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
            name: state.flow.network.station_by_code(s.telecode).map(|st| st.name.clone()).unwrap_or_default(),
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
    responses((status = 200, body = SeatMapView), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
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
        spec: chepiao_flow::calendar::run_spec(train),
        from: from as u8,
        to: to as u8,
        class,
    };
    let answer = state.flow.engine.query(vec![query]).await?.pop();
    let Some(chepiao_engine::Answer::SeatMap { first_seat, free }) = answer else {
        return Err(ApiError::internal(format!("engine answered {answer:?} to a seat map")));
    };
    let mut coaches: Vec<CoachView> = Vec::new();
    for (i, is_free) in free.iter().enumerate() {
        let place = layout.seat_at(first_seat + i as u16).expect("the engine's seats are the layout's");
        if coaches.last().is_none_or(|c| c.coach != place.coach) {
            coaches.push(CoachView { coach: place.coach, seats: Vec::new() });
        }
        coaches
            .last_mut()
            .expect("pushed above")
            .seats
            .push(SeatView { seat: Cow::Borrowed(place.label), free: *is_free });
    }
    let view = SeatMapView {
        run_id: run,
        class,
        from: Cow::Borrowed(train.stops[from].telecode.as_str()),
        to: Cow::Borrowed(train.stops[to].telecode.as_str()),
        free: free.iter().filter(|f| **f).count() as u32,
        coaches,
    };
    Ok(JsonOut { value: view, capacity_hint: 64 + free.len() * 32 }.into_response())
}
