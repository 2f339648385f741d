//! Sales statistics in SQLite: two grouped reads of `order_lines` (see `chepiao_store::stats`).
//! The table is clustered on (day, order number), so orders write its newest pages; a whole
//! day's figures read the day's range, one train's seek `order_lines_by_train`.

use chepiao_store::{
    LINE_SUMS_LEN, LineCounts, LineGroup, OriginGroup, STATS_GROUPS_MAX, SalesFacts, SalesQuery, days_of, line_sums_sql,
};
use rusqlite::types::Value;
use rusqlite::{Connection, Row, params_from_iter};

/// The lines a query selects (`FROM … WHERE …`), and their parameters: one equality per day,
/// then the train and class when given.
///
/// The plan is named, not left to SQLite's guess (it has no statistics to guess from): one
/// train's lines are found through `order_lines_by_train` (a seek); a whole day's are read in
/// place, in the table's order, since going through the index would look each line up again.
/// `order_no >= ''` (every line) is what makes SQLite read the day's range of the primary key.
fn selection(q: &SalesQuery) -> (String, Vec<Value>) {
    let days = days_of(q);
    let marks = vec!["?"; days.len()].join(", ");
    let mut sql = match q.train {
        Some(_) => format!("order_lines INDEXED BY order_lines_by_train WHERE day IN ({marks})"),
        None => format!("order_lines WHERE day IN ({marks}) AND order_no >= ''"),
    };
    let mut values: Vec<Value> = days.into_iter().map(Value::Text).collect();
    for (column, v) in [("train_code", &q.train), ("class", &q.class)] {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {column} = ?"));
            values.push(Value::Text(v.clone()));
        }
    }
    (sql, values)
}

/// [`LineCounts`] from the columns `line_sums_sql` selects, starting at `at`.
fn counts(r: &Row, at: usize) -> rusqlite::Result<LineCounts> {
    let mut sums = [None; LINE_SUMS_LEN];
    for (i, v) in sums.iter_mut().enumerate() {
        *v = r.get(at + i)?;
    }
    Ok(LineCounts::from_sums(sums))
}

pub fn sales_facts(c: &Connection, q: &SalesQuery) -> rusqlite::Result<SalesFacts> {
    let (from, values) = selection(q);
    let sums = line_sums_sql("");
    let sql = format!(
        "SELECT day, train_code, class, {sums} FROM {from}
         GROUP BY day, train_code, class ORDER BY day, train_code, class LIMIT {}",
        STATS_GROUPS_MAX + 1
    );
    let mut s = c.prepare_cached(&sql)?;
    let mut lines = s
        .query_map(params_from_iter(values.iter()), |r| {
            Ok(LineGroup { day: r.get(0)?, train_code: r.get(1)?, class: r.get(2)?, counts: counts(r, 3)? })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let truncated = lines.len() > STATS_GROUPS_MAX;
    lines.truncate(STATS_GROUPS_MAX);
    // Each order once (its first leg) unless a train or class narrows to the legs that match.
    let once = if q.train.is_none() && q.class.is_none() { " AND leg = 0" } else { "" };
    let sql = format!(
        "SELECT source, channel, {sums} FROM {from}{once}
         GROUP BY source, channel ORDER BY source, channel LIMIT 1000"
    );
    let mut s = c.prepare_cached(&sql)?;
    let origins = s
        .query_map(params_from_iter(values.iter()), |r| {
            Ok(OriginGroup { source: r.get(0)?, channel: r.get(1)?, counts: counts(r, 2)? })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(SalesFacts { lines, origins, truncated })
}
