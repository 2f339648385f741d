//! The rail network and its runs in PostgreSQL: bulk writes as one statement per table with
//! `UNNEST` over arrays, so an import is a handful of round trips, not tens of thousands.

use chepiao_domain::network::{NetworkData, Station};
use chepiao_domain::{RunId, ServiceDate};
use chepiao_store::{Result, RunRecord, RunStatus, StationRow, StopRow, StoreError, parse, trains_from_rows};
use chrono::NaiveDate;
use sqlx::{PgConnection, PgPool, Row};

use crate::writer::db;

fn to_i32(v: u32) -> Result<i32> {
    i32::try_from(v).map_err(|_| StoreError::Limit(format!("{v} does not fit a 32-bit column")))
}

/// Upsert stations and trains, replace every train's stops (in the caller's transaction).
pub async fn save(c: &mut PgConnection, data: &NetworkData) -> Result<()> {
    let s = &data.stations;
    let col = |f: fn(&Station) -> String| s.iter().map(f).collect::<Vec<String>>();
    sqlx::query(
        "INSERT INTO stations (telecode, name, pinyin, initials, city, country)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
         ON CONFLICT (telecode) DO UPDATE SET name = excluded.name, pinyin = excluded.pinyin,
         initials = excluded.initials, city = excluded.city, country = excluded.country",
    )
    .bind(col(|s| s.telecode.to_string()))
    .bind(col(|s| s.name.clone()))
    .bind(col(|s| s.pinyin.clone()))
    .bind(col(|s| s.initials.clone()))
    .bind(col(|s| s.city.clone()))
    .bind(s.iter().map(|s| s.country.clone()).collect::<Vec<Option<String>>>())
    .execute(&mut *c)
    .await
    .map_err(db)?;
    let codes: Vec<String> = data.trains.iter().map(|t| t.code.to_string()).collect();
    sqlx::query("INSERT INTO trains (code) SELECT * FROM UNNEST($1::text[]) ON CONFLICT DO NOTHING")
        .bind(&codes)
        .execute(&mut *c)
        .await
        .map_err(db)?;
    sqlx::query("DELETE FROM stops WHERE train_code = ANY($1)").bind(&codes).execute(&mut *c).await.map_err(db)?;
    insert_stops(c, data).await
}

async fn insert_stops(c: &mut PgConnection, data: &NetworkData) -> Result<()> {
    let (mut train, mut seq, mut code, mut arr, mut dep, mut km) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for t in &data.trains {
        for (i, st) in t.stops.iter().enumerate() {
            train.push(t.code.to_string());
            seq.push(i as i32);
            code.push(st.telecode.to_string());
            arr.push(st.arrive_min.map(to_i32).transpose()?);
            dep.push(st.depart_min.map(to_i32).transpose()?);
            km.push(to_i32(st.km)?);
        }
    }
    sqlx::query(
        "INSERT INTO stops (train_code, seq, telecode, arrive_min, depart_min, km)
         SELECT * FROM UNNEST($1::text[], $2::int[], $3::text[], $4::int[], $5::int[], $6::int[])",
    )
    .bind(train)
    .bind(seq)
    .bind(code)
    .bind(arr)
    .bind(dep)
    .bind(km)
    .execute(c)
    .await
    .map_err(db)?;
    Ok(())
}

pub async fn load(pool: &PgPool) -> Result<NetworkData> {
    let rows = sqlx::query("SELECT telecode, name, pinyin, initials, city, country FROM stations ORDER BY telecode")
        .fetch_all(pool)
        .await
        .map_err(db)?;
    let stations = rows
        .iter()
        .map(|r| {
            StationRow {
                telecode: r.get("telecode"),
                name: r.get("name"),
                pinyin: r.get("pinyin"),
                initials: r.get("initials"),
                city: r.get("city"),
                country: r.get("country"),
            }
            .into_station()
        })
        .collect::<Result<Vec<_>>>()?;
    let rows =
        sqlx::query("SELECT train_code, telecode, arrive_min, depart_min, km FROM stops ORDER BY train_code, seq")
            .fetch_all(pool)
            .await
            .map_err(db)?;
    let trains = trains_from_rows(rows.iter().map(|r| StopRow {
        train_code: r.get("train_code"),
        telecode: r.get("telecode"),
        arrive_min: r.get::<Option<i32>, _>("arrive_min").map(i64::from),
        depart_min: r.get::<Option<i32>, _>("depart_min").map(i64::from),
        km: i64::from(r.get::<i32, _>("km")),
    }))?;
    Ok(NetworkData { stations, trains })
}

pub async fn ensure_runs(pool: &PgPool, first: ServiceDate, last: ServiceDate) -> Result<u64> {
    let done = sqlx::query(
        "INSERT INTO runs (train_code, service_date)
         SELECT t.code, d::date FROM trains t CROSS JOIN generate_series($1::date, $2::date, interval '1 day') d
         ON CONFLICT DO NOTHING",
    )
    .bind(first.naive())
    .bind(last.naive())
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(done.rows_affected())
}

pub async fn runs_between(pool: &PgPool, first: ServiceDate, last: ServiceDate) -> Result<Vec<RunRecord>> {
    let rows = sqlx::query("SELECT train_code, service_date, status FROM runs WHERE service_date BETWEEN $1 AND $2")
        .bind(first.naive())
        .bind(last.naive())
        .fetch_all(pool)
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            let status: &str = r.get("status");
            let date: NaiveDate = r.get("service_date");
            Ok(RunRecord {
                run_id: RunId::new(parse("runs", r.get("train_code"))?, ServiceDate::new(date)),
                status: RunStatus::parse(status)
                    .ok_or_else(|| StoreError::Corrupt { table: "runs", detail: status.to_string() })?,
            })
        })
        .collect()
}

pub async fn set_run_status(pool: &PgPool, run: &RunId, status: RunStatus) -> Result<bool> {
    let done = sqlx::query("UPDATE runs SET status = $1 WHERE train_code = $2 AND service_date = $3")
        .bind(status.as_str())
        .bind(run.train.as_str())
        .bind(run.date.naive())
        .execute(pool)
        .await
        .map_err(db)?;
    Ok(done.rows_affected() == 1)
}
