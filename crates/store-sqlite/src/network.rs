//! The rail network and its runs in SQLite.

use chepiao_domain::network::{NetworkData, Station, Stop, Train};
use chepiao_domain::{RunId, ServiceDate};
use chepiao_store::{RunRecord, RunStatus};
use rusqlite::{Connection, params};

use crate::row::{decode, parsed};

/// Upsert stations and trains, replace every train's stops.
pub fn save(c: &Connection, data: &NetworkData) -> rusqlite::Result<()> {
    for s in &data.stations {
        upsert_station(c, s)?;
    }
    for t in &data.trains {
        replace_train(c, t)?;
    }
    Ok(())
}

fn upsert_station(c: &Connection, s: &Station) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO stations (telecode, name, pinyin, initials, city, country) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (telecode) DO UPDATE SET name = excluded.name, pinyin = excluded.pinyin,
         initials = excluded.initials, city = excluded.city, country = excluded.country",
    )?
    .execute(params![s.telecode.as_str(), s.name, s.pinyin, s.initials, s.city, s.country])?;
    Ok(())
}

fn replace_train(c: &Connection, t: &Train) -> rusqlite::Result<()> {
    let code = t.code.as_str();
    c.prepare_cached("INSERT INTO trains (code) VALUES (?1) ON CONFLICT DO NOTHING")?.execute([code])?;
    c.prepare_cached("DELETE FROM stops WHERE train_code = ?1")?.execute([code])?;
    let mut insert = c.prepare_cached(
        "INSERT INTO stops (train_code, seq, telecode, arrive_min, depart_min, km) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (seq, s) in t.stops.iter().enumerate() {
        insert.execute(params![code, seq as i64, s.telecode.as_str(), s.arrive_min, s.depart_min, s.km])?;
    }
    Ok(())
}

pub fn load(c: &Connection) -> rusqlite::Result<NetworkData> {
    let mut q = c.prepare("SELECT telecode, name, pinyin, initials, city, country FROM stations ORDER BY telecode")?;
    let stations = q
        .query_map([], |r| {
            Ok(Station {
                telecode: parsed(r, 0)?,
                name: r.get(1)?,
                pinyin: r.get(2)?,
                initials: r.get(3)?,
                city: r.get(4)?,
                country: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut q =
        c.prepare("SELECT train_code, telecode, arrive_min, depart_min, km FROM stops ORDER BY train_code, seq")?;
    let mut trains: Vec<Train> = Vec::new();
    let mut rows = q.query([])?;
    while let Some(r) = rows.next()? {
        let code: String = r.get(0)?;
        if trains.last().is_none_or(|t| t.code.as_str() != code) {
            trains.push(Train { code: parsed(r, 0)?, stops: Vec::new() });
        }
        let stop = Stop { telecode: parsed(r, 1)?, arrive_min: r.get(2)?, depart_min: r.get(3)?, km: r.get(4)? };
        trains.last_mut().expect("pushed above").stops.push(stop);
    }
    Ok(NetworkData { stations, trains })
}

pub fn ensure_runs(c: &Connection, first: ServiceDate, last: ServiceDate) -> rusqlite::Result<u64> {
    // `WHERE true` keeps SQLite's parser from reading ON CONFLICT as a join constraint.
    let done = c.prepare_cached(
        "WITH RECURSIVE d(day) AS (SELECT date(?1) UNION ALL SELECT date(day, '+1 day') FROM d WHERE day < date(?2))
         INSERT INTO runs (train_code, service_date) SELECT t.code, d.day FROM trains t CROSS JOIN d WHERE true
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![first.to_string(), last.to_string()])?;
    Ok(done as u64)
}

pub fn runs_between(c: &Connection, first: ServiceDate, last: ServiceDate) -> rusqlite::Result<Vec<RunRecord>> {
    let mut q =
        c.prepare_cached("SELECT train_code, service_date, status FROM runs WHERE service_date BETWEEN ?1 AND ?2")?;
    q.query_map(params![first.to_string(), last.to_string()], |r| {
        Ok(RunRecord { run_id: RunId::new(parsed(r, 0)?, parsed(r, 1)?), status: decode(r, 2, RunStatus::parse)? })
    })?
    .collect()
}

pub fn set_run_status(c: &Connection, run: &RunId, status: RunStatus) -> rusqlite::Result<bool> {
    let done = c
        .prepare_cached("UPDATE runs SET status = ?1 WHERE train_code = ?2 AND service_date = ?3")?
        .execute(params![status.as_str(), run.train.as_str(), run.date.to_string()])?;
    Ok(done == 1)
}
