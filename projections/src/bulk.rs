//! Writing view rows: multi-row `INSERT … ON CONFLICT` statements, the same on PostgreSQL and
//! SQLite (through sqlx's `Any` driver, `$n` placeholders).
//!
//! A statement carries at most [`ROWS_PER_STATEMENT`] rows and never more than
//! [`MAX_PARAMETERS`] bound values: SQLite allows 32,766 per statement (PostgreSQL 65,535).
//!
//! SQLite gets anonymous `?` placeholders, PostgreSQL `$n`: SQLite looks a numbered or named
//! parameter's name up in a list, once per parameter bound, which makes binding a statement of
//! n parameters cost n² (70 % of a rebuild's time at 7,500 parameters a statement).

use std::fmt::Write;

use sqlx::AnyConnection;

/// Rows per statement, unless the parameter bound cuts it shorter.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;
/// SQLite's bound-parameter limit (SQLITE_MAX_VARIABLE_NUMBER since 3.32), the lower of the two.
pub(crate) const MAX_PARAMETERS: usize = 32_766;

/// One value of a view row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
}

impl From<String> for Cell {
    fn from(value: String) -> Self {
        Cell::Text(Some(value))
    }
}

impl From<&str> for Cell {
    fn from(value: &str) -> Self {
        Cell::Text(Some(value.to_string()))
    }
}

impl From<Option<String>> for Cell {
    fn from(value: Option<String>) -> Self {
        Cell::Text(value)
    }
}

impl From<i64> for Cell {
    fn from(value: i64) -> Self {
        Cell::Int(Some(value))
    }
}

impl From<Option<i64>> for Cell {
    fn from(value: Option<i64>) -> Self {
        Cell::Int(value)
    }
}

/// A row, in the order of its table's columns.
pub(crate) type Row = Vec<Cell>;

/// How a statement names its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placeholders {
    /// `$1, $2, …` (PostgreSQL).
    Numbered,
    /// `?, ?, …` in order (SQLite).
    Anonymous,
}

impl Placeholders {
    /// The style for the database behind `connection`.
    pub(crate) fn of(connection: &sqlx::AnyConnection) -> Placeholders {
        if connection.backend_name().eq_ignore_ascii_case("sqlite") {
            Placeholders::Anonymous
        } else {
            Placeholders::Numbered
        }
    }

    /// Writes parameter `n` (from 1).
    pub(crate) fn write(self, sql: &mut String, n: usize) {
        match self {
            Placeholders::Numbered => {
                let _ = write!(sql, "${n}");
            }
            Placeholders::Anonymous => sql.push('?'),
        }
    }

    /// Parameters `first..first + count`, comma-separated.
    pub(crate) fn list(self, first: usize, count: usize) -> String {
        let mut sql = String::with_capacity(count * 6);
        for n in first..first + count {
            if n > first {
                sql.push_str(", ");
            }
            self.write(&mut sql, n);
        }
        sql
    }
}

/// What writing a row whose key is already there does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnConflict {
    /// The row is the latest state of its key (aggregate views, positions).
    Update,
    /// The row is derived from one event, the same every time (access records, alerts).
    Nothing,
    /// The row is a delta of counters: its values are added to those there (stats).
    Add,
}

/// A table rows are written to.
#[derive(Debug)]
pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    pub key: &'static [&'static str],
    pub on_conflict: OnConflict,
}

impl Table {
    /// Rows per statement for this table.
    pub(crate) fn rows_per_statement(&self) -> usize {
        ROWS_PER_STATEMENT
            .min(MAX_PARAMETERS / self.columns.len())
            .max(1)
    }

    /// `INSERT … VALUES (…), … ON CONFLICT …` for `rows` rows.
    pub(crate) fn insert_sql(&self, rows: usize, placeholders: Placeholders) -> String {
        let width = self.columns.len();
        let mut sql = String::with_capacity(64 + rows * width * 7);
        let _ = write!(
            sql,
            "INSERT INTO {} ({}) VALUES ",
            self.name,
            self.columns.join(", ")
        );
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..width {
                if column > 0 {
                    sql.push_str(", ");
                }
                placeholders.write(&mut sql, row * width + column + 1);
            }
            sql.push(')');
        }
        let _ = write!(sql, " ON CONFLICT ({}) DO ", self.key.join(", "));
        match self.on_conflict {
            OnConflict::Nothing => sql.push_str("NOTHING"),
            OnConflict::Update => {
                sql.push_str("UPDATE SET ");
                let updated: Vec<String> = self
                    .columns
                    .iter()
                    .filter(|c| !self.key.contains(c))
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect();
                sql.push_str(&updated.join(", "));
            }
            OnConflict::Add => {
                sql.push_str("UPDATE SET ");
                let added: Vec<String> = self
                    .columns
                    .iter()
                    .filter(|c| !self.key.contains(c))
                    .map(|c| format!("{c} = {}.{c} + excluded.{c}", self.name))
                    .collect();
                sql.push_str(&added.join(", "));
            }
        }
        sql
    }
}

impl Cell {
    fn cmp_key(&self, other: &Cell) -> std::cmp::Ordering {
        match (self, other) {
            (Cell::Text(a), Cell::Text(b)) => a.cmp(b),
            (Cell::Int(a), Cell::Int(b)) => a.cmp(b),
            (Cell::Text(_), Cell::Int(_)) => std::cmp::Ordering::Less,
            (Cell::Int(_), Cell::Text(_)) => std::cmp::Ordering::Greater,
        }
    }
}

/// Sorts `rows` by `table`'s key, so that they reach its primary-key index in order.
pub(crate) fn sort_by_key(table: &Table, rows: &mut [Row]) {
    let key: Vec<usize> = table
        .key
        .iter()
        .filter_map(|k| table.columns.iter().position(|c| c == k))
        .collect();
    rows.sort_unstable_by(|a, b| {
        key.iter()
            .map(|&i| a[i].cmp_key(&b[i]))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// Writes `rows` to `table` on the caller's connection (in its transaction), a few hundred rows per statement.
/// Rows with `OnConflict::Update` or `Add` must have distinct keys (PostgreSQL refuses to update one row
/// twice in a statement).
pub(crate) async fn insert(
    connection: &mut AnyConnection,
    table: &Table,
    rows: &[Row],
) -> Result<(), sqlx::Error> {
    let placeholders = Placeholders::of(connection);
    let mut full_sql: Option<String> = None;
    for chunk in rows.chunks(table.rows_per_statement()) {
        let partial;
        let sql: &str = if chunk.len() == table.rows_per_statement() {
            full_sql.get_or_insert_with(|| table.insert_sql(chunk.len(), placeholders))
        } else {
            partial = table.insert_sql(chunk.len(), placeholders);
            &partial
        };
        let mut query = sqlx::query(sql);
        for row in chunk {
            debug_assert_eq!(row.len(), table.columns.len(), "{}", table.name);
            for cell in row {
                query = match cell {
                    Cell::Text(value) => query.bind(value.as_deref()),
                    Cell::Int(value) => query.bind(*value),
                };
            }
        }
        query.execute(&mut *connection).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Table = Table {
        name: "t",
        columns: &["g", "k", "v"],
        key: &["g", "k"],
        on_conflict: OnConflict::Update,
    };

    #[test]
    fn statements_number_their_parameters_in_order() {
        assert_eq!(
            T.insert_sql(2, Placeholders::Numbered),
            "INSERT INTO t (g, k, v) VALUES ($1, $2, $3), ($4, $5, $6) \
             ON CONFLICT (g, k) DO UPDATE SET v = excluded.v"
        );
        assert_eq!(
            T.insert_sql(1, Placeholders::Anonymous),
            "INSERT INTO t (g, k, v) VALUES (?, ?, ?) ON CONFLICT (g, k) DO UPDATE SET v = excluded.v"
        );
    }

    #[test]
    fn counters_add_their_deltas() {
        let counters = Table {
            on_conflict: OnConflict::Add,
            ..T
        };
        assert_eq!(
            counters.insert_sql(1, Placeholders::Numbered),
            "INSERT INTO t (g, k, v) VALUES ($1, $2, $3) ON CONFLICT (g, k) DO UPDATE SET v = t.v + excluded.v"
        );
    }

    #[test]
    fn statements_stay_under_the_parameter_limit() {
        let wide = Table {
            name: "w",
            columns: &["c"; 200],
            key: &["c"],
            on_conflict: OnConflict::Nothing,
        };
        assert_eq!(wide.rows_per_statement(), MAX_PARAMETERS / 200);
        assert_eq!(T.rows_per_statement(), ROWS_PER_STATEMENT);
    }
}
