//! Registration, login and the caller's passengers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chepiao_api::users::{
    Credentials, LoggedIn, NewPassengerBody, PassengerList, PassengerView, PasswordChange, Registered,
};

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::ApiJson;
use crate::security::auth::AuthUser;
use crate::security::pii::{IdType, mask_id_no, mask_name};
use crate::state::AppState;

/// Passengers one user may keep (12306 allows 15).
pub const PASSENGERS_PER_USER_MAX: u32 = 15;
const USERNAME_LEN: std::ops::RangeInclusive<usize> = 3..=32;
const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=128;
const NAME_LEN: std::ops::RangeInclusive<usize> = 1..=40;

fn check_credentials(c: &Credentials) -> Result<(), ApiError> {
    let name_ok = USERNAME_LEN.contains(&c.username.len())
        && c.username.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !name_ok {
        return Err(ApiError::bad_parameter("field `username`: 3-32 letters, digits, `_`, `.` or `-`"));
    }
    if !PASSWORD_LEN.contains(&c.password.chars().count()) {
        return Err(ApiError::bad_parameter("field `password`: 8-128 characters"));
    }
    Ok(())
}

/// Create an account.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "users", request_body = Credentials,
    responses((status = 201, body = Registered), (status = 400, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    check_credentials(&c)?;
    let hash = state.auth.hash_password(c.password).await?;
    match state.flow.store.create_user(&c.username, &hash, state.flow.now_ms()).await? {
        Some(user_id) => Ok((StatusCode::CREATED, Json(Registered { user_id }))),
        None => Err(ApiError::username_exists(format!("username {:?} is taken", c.username))),
    }
}

/// Exchange a username and password for a token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "users", request_body = Credentials,
    responses((status = 200, body = LoggedIn), (status = 400, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<Json<LoggedIn>, ApiError> {
    if c.password.len() > PASSWORD_LEN.end() * 4 {
        return Err(ApiError::bad_parameter("field `password`: 8-128 characters"));
    }
    state.auth.login_attempt(&c.username)?;
    let user = state.flow.store.user_by_name(&c.username).await?;
    let known = user.is_some();
    let ok = state.auth.verify_password(c.password, user.as_ref().map(|u| u.password_hash.clone())).await?;
    let Some(user) = user.filter(|_| ok) else {
        return Err(if known {
            ApiError::wrong_password("wrong password")
        } else {
            ApiError::user_not_found(format!("no user {:?}", c.username))
        });
    };
    Ok(Json(logged_in(&state, user.id, &user.username, user.token_version)))
}

fn logged_in(state: &AppState, user_id: i64, username: &str, version: u32) -> LoggedIn {
    let now_s = (state.flow.now_ms() / 1000) as u64;
    let (token, exp) = state.auth.issue(user_id, username, version, now_s);
    LoggedIn { token, expires_at: chepiao_flow::rfc3339(exp as i64 * 1000) }
}

/// Change the caller's password: every earlier token stops working; the answer carries a
/// fresh one.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "users", request_body = PasswordChange,
    security(("bearer" = [])),
    responses((status = 200, body = LoggedIn), (status = 400, body = ErrorBody, description = "old password wrong (40009) or new one too short or long (40002)"),
              (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(c): ApiJson<PasswordChange>,
) -> Result<Json<LoggedIn>, ApiError> {
    if !PASSWORD_LEN.contains(&c.new_password.chars().count()) || c.old_password.len() > PASSWORD_LEN.end() * 4 {
        return Err(ApiError::bad_parameter("field `new_password`: 8-128 characters"));
    }
    state.auth.login_attempt(&user.username)?;
    let stored = state.flow.store.user_by_name(&user.username).await?;
    let hash = stored.as_ref().map(|u| u.password_hash.clone());
    if !state.auth.verify_password(c.old_password, hash).await? {
        return Err(ApiError::old_password_wrong("the old password is wrong"));
    }
    let new_hash = state.auth.hash_password(c.new_password).await?;
    let version = state.flow.store.set_password(user.id, &new_hash).await?;
    state.auth.remember_version(user.id, version);
    Ok(Json(logged_in(&state, user.id, &user.username, version)))
}

/// Log out: every token of the caller stops working (on every device).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "users", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, user: AuthUser) -> Result<StatusCode, ApiError> {
    let version = state.flow.store.bump_token_version(user.id).await?;
    state.auth.remember_version(user.id, version);
    Ok(StatusCode::NO_CONTENT)
}

/// Add a passenger to the caller's list. Name and ID number are stored encrypted and answered
/// masked.
#[utoipa::path(post, path = "/api/v1/passengers", tag = "users", request_body = NewPassengerBody,
    security(("bearer" = [])),
    responses((status = 201, body = PassengerView), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_passenger(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<NewPassengerBody>,
) -> Result<(StatusCode, Json<PassengerView>), ApiError> {
    let name = body.name.trim();
    if !NAME_LEN.contains(&name.chars().count()) || name.chars().any(char::is_control) {
        return Err(ApiError::bad_parameter("field `name`: 1-40 characters"));
    }
    let id_type =
        IdType::parse(&body.id_type).ok_or_else(|| ApiError::bad_parameter("field `id_type`: ID_CARD or PASSPORT"))?;
    let id_no = id_type.check(&body.id_no).map_err(|e| ApiError::bad_parameter(format!("field `id_no`: {e}")))?;
    let record = chepiao_store::NewPassenger {
        user_id: user.id,
        name_enc: state.pii.encrypt(name),
        id_type: id_type.as_str().into(),
        id_no_enc: state.pii.encrypt(&id_no),
        id_no_index: state.pii.index(&id_no),
        masked: format!("{} {}", mask_name(name), mask_id_no(&id_no)),
        created_at_ms: state.flow.now_ms(),
    };
    match state.flow.store.add_passenger(&record, PASSENGERS_PER_USER_MAX).await? {
        chepiao_store::AddPassenger::Added(passenger_id) => Ok((
            StatusCode::CREATED,
            Json(PassengerView {
                passenger_id,
                name: mask_name(name),
                id_type: id_type.as_str().into(),
                id_no_masked: mask_id_no(&id_no),
            }),
        )),
        chepiao_store::AddPassenger::Duplicate => {
            Err(ApiError::passenger_exists("this passenger is on your list already"))
        }
        chepiao_store::AddPassenger::TooMany => {
            Err(ApiError::passengers_full(format!("at most {PASSENGERS_PER_USER_MAX} passengers per user")))
        }
    }
}

/// The caller's passengers, masked.
#[utoipa::path(get, path = "/api/v1/passengers", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = PassengerList), (status = 401, body = ErrorBody)))]
pub async fn passengers(State(state): State<AppState>, user: AuthUser) -> Result<Json<PassengerList>, ApiError> {
    let records = state.flow.store.passengers(user.id).await?;
    let items = records
        .iter()
        .map(|p| {
            Ok(PassengerView {
                passenger_id: p.id,
                name: mask_name(&state.pii.decrypt(&p.name_enc)?),
                id_type: p.id_type.clone(),
                id_no_masked: mask_id_no(&state.pii.decrypt(&p.id_no_enc)?),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let total = items.len() as u32;
    Ok(Json(PassengerList { items, page: 1, page_size: PASSENGERS_PER_USER_MAX, total }))
}
