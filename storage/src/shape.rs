//! Fixed-shape set statements on PostgreSQL.
//!
//! A multi-row `INSERT … VALUES ($1, $2), ($3, $4), …` has a different text for every
//! row count, so a batch of 37 turns and one of 38 are two statements to sqlx's
//! per-connection prepared-statement cache (and to PostgreSQL's parser and planner).
//! Group-committed batches vary in size all the time, so the cache kept missing: every
//! miss is an extra round trip (Parse/Describe) plus a parse and a plan.
//!
//! [`fixed_shape`] rewrites such an insert into `INSERT … SELECT * FROM UNNEST($1, $2, …)`
//! with one array parameter per column: one text per table and conflict rule, whatever
//! the row count, so the statement is prepared once per connection and reused. The
//! rewrite is exact or not made: it applies only to PostgreSQL, only when the statement's
//! `VALUES` list is the plain placeholder grid sea-query renders for `rows × columns`
//! parameters, and only when every value of a column is a non-null value of one array
//! type. Anything else (a NULL, a type without an array binding, SQLite) keeps the
//! statement as it was, which is still correct, only not cached as well.

use sea_orm::{sea_query::ArrayType, DbBackend, Statement, Value};

/// Rewrites an `INSERT … VALUES` of `rows` rows into its fixed-shape `UNNEST` form on
/// PostgreSQL; returns `stmt` unchanged when it cannot (see the module docs).
pub(crate) fn fixed_shape(stmt: Statement, rows: usize) -> Statement {
    if stmt.db_backend != DbBackend::Postgres || rows == 0 {
        return stmt;
    }
    let Some(values) = stmt.values.as_ref().map(|v| &v.0) else {
        return stmt;
    };
    if values.is_empty() || values.len() % rows != 0 {
        return stmt;
    }
    let columns = values.len() / rows;
    let grid = placeholder_grid(rows, columns);
    let Some(at) = stmt.sql.find(&grid) else {
        return stmt;
    };
    let Some(arrays) = columns_as_arrays(values, columns) else {
        return stmt;
    };
    let unnest = format!(
        "SELECT * FROM UNNEST({})",
        (1..=columns)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let sql = format!(
        "{}{}{}",
        &stmt.sql[..at],
        unnest,
        &stmt.sql[at + grid.len()..]
    );
    Statement::from_sql_and_values(DbBackend::Postgres, sql, arrays)
}

/// The `VALUES` grid sea-query renders on PostgreSQL: `VALUES ($1, $2), ($3, $4)`.
fn placeholder_grid(rows: usize, columns: usize) -> String {
    let mut grid = String::with_capacity(8 + rows * columns * 6);
    grid.push_str("VALUES ");
    for row in 0..rows {
        if row > 0 {
            grid.push_str(", ");
        }
        grid.push('(');
        for column in 0..columns {
            if column > 0 {
                grid.push_str(", ");
            }
            grid.push('$');
            grid.push_str(&(row * columns + column + 1).to_string());
        }
        grid.push(')');
    }
    grid
}

/// The row-major `values` as one array per column, or `None` when a column holds a NULL,
/// mixes types or has a type with no array binding.
fn columns_as_arrays(values: &[Value], columns: usize) -> Option<Vec<Value>> {
    (0..columns)
        .map(|column| {
            let cells: Vec<Value> = values
                .iter()
                .skip(column)
                .step_by(columns)
                .cloned()
                .collect();
            let ty = array_type(cells.first()?)?;
            cells
                .iter()
                .all(|cell| array_type(cell).as_ref() == Some(&ty))
                .then(|| Value::Array(ty, Some(Box::new(cells))))
        })
        .collect()
}

/// The array type a non-null value binds as, for the types merit's tables use.
fn array_type(value: &Value) -> Option<ArrayType> {
    Some(match value {
        Value::Bool(Some(_)) => ArrayType::Bool,
        Value::SmallInt(Some(_)) => ArrayType::SmallInt,
        Value::Int(Some(_)) => ArrayType::Int,
        Value::BigInt(Some(_)) => ArrayType::BigInt,
        Value::String(Some(_)) => ArrayType::String,
        Value::Json(Some(_)) => ArrayType::Json,
        Value::ChronoDateTimeUtc(Some(_)) => ArrayType::ChronoDateTimeUtc,
        Value::Uuid(Some(_)) => ArrayType::Uuid,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use sea_orm::sea_query::{Alias, OnConflict, Query};

    use super::*;

    fn insert(rows: &[(&str, i64)], backend: DbBackend) -> Statement {
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new("t"))
            .columns([Alias::new("a"), Alias::new("b")]);
        for (a, b) in rows {
            insert.values_panic([(*a).into(), (*b).into()]);
        }
        insert.on_conflict(OnConflict::column(Alias::new("a")).do_nothing().to_owned());
        backend.build(&insert)
    }

    #[test]
    fn one_text_for_every_row_count() {
        let one = fixed_shape(insert(&[("x", 1)], DbBackend::Postgres), 1);
        let three = fixed_shape(
            insert(&[("x", 1), ("y", 2), ("z", 3)], DbBackend::Postgres),
            3,
        );
        assert_eq!(one.sql, three.sql);
        assert_eq!(
            three.sql,
            r#"INSERT INTO "t" ("a", "b") SELECT * FROM UNNEST($1, $2) ON CONFLICT ("a") DO NOTHING"#
        );
        let values = three.values.expect("values").0;
        assert_eq!(
            values,
            [
                Value::Array(
                    ArrayType::String,
                    Some(Box::new(vec!["x".into(), "y".into(), "z".into()]))
                ),
                Value::Array(
                    ArrayType::BigInt,
                    Some(Box::new(vec![1i64.into(), 2i64.into(), 3i64.into()]))
                ),
            ]
        );
    }

    #[test]
    fn what_it_cannot_rewrite_exactly_stays_as_it_was() {
        let sqlite = insert(&[("x", 1), ("y", 2)], DbBackend::Sqlite);
        assert_eq!(fixed_shape(sqlite.clone(), 2).sql, sqlite.sql);

        // A NULL has no place in an UNNEST array of a non-null type.
        let mut with_null = Query::insert();
        with_null
            .into_table(Alias::new("t"))
            .columns([Alias::new("a")])
            .values_panic([Option::<String>::None.into()])
            .values_panic(["y".into()]);
        let with_null = DbBackend::Postgres.build(&with_null);
        assert_eq!(fixed_shape(with_null.clone(), 2).sql, with_null.sql);

        // A row count that does not divide the parameters is not a grid.
        let odd = insert(&[("x", 1), ("y", 2)], DbBackend::Postgres);
        assert_eq!(fixed_shape(odd.clone(), 3).sql, odd.sql);
    }
}
