//! One way to both databases: SQLite (embedded, the default) and PostgreSQL (several instances
//! on one database). The store's SQL is written once, in what both accept, with `?N`
//! placeholders (rewritten to `$N` for PostgreSQL); values cross as `Value`, the five kinds
//! SQLite has, so that a row reads the same from either.

use std::borrow::Cow;

/// A value as the store writes and reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// the driver's words with their causes (its `Display` alone says only "db error")
    #[error("postgresql: {0}")]
    Postgres(String),
    #[error("no row")]
    NoRows,
    #[error("column {column}: {problem}")]
    Column { column: usize, problem: String },
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(inner) = cause {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            cause = inner.source();
        }
        DbError::Postgres(text)
    }
}

/// The SQL that differs between the two, where a statement cannot be written for both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One row read, its values in the order selected.
#[derive(Clone, Debug)]
pub struct Row(Vec<Value>);

impl Row {
    pub fn get<T: FromValue>(&self, column: usize) -> Result<T, DbError> {
        let value = self.0.get(column).ok_or_else(|| DbError::Column {
            column,
            problem: "not selected".into(),
        })?;
        T::from_value(value).map_err(|problem| DbError::Column { column, problem })
    }

    pub fn values(&self) -> &[Value] {
        &self.0
    }
}

/// A connection, or a transaction on one.
pub trait Conn {
    fn dialect(&self) -> Dialect;
    /// Runs one statement; answers the rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize, DbError>;
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;
    /// Runs statements separated by `;`, without parameters.
    fn execute_batch(&self, sql: &str) -> Result<(), DbError>;
}

impl dyn Conn + '_ {
    /// The first row, or `DbError::NoRows`.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[Value],
        read: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let rows = self.query(sql, params)?;
        read(rows.first().ok_or(DbError::NoRows)?)
    }

    /// Every row, read and collected (into a `Vec`, a map, ...).
    pub fn query_map<T, C: FromIterator<T>>(
        &self,
        sql: &str,
        params: &[Value],
        read: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<C, DbError> {
        self.query(sql, params)?.iter().map(read).collect()
    }
}

pub trait OptionalRow<T> {
    /// `DbError::NoRows` as `None`.
    fn optional(self) -> Result<Option<T>, DbError>;
}

impl<T> OptionalRow<T> for Result<T, DbError> {
    fn optional(self) -> Result<Option<T>, DbError> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `params![a, b]`: the statement's values, in placeholder order.
macro_rules! params {
    () => {
        &[] as &[$crate::store::db::Value]
    };
    ($($value:expr),+ $(,)?) => {
        &[$($crate::store::db::ToValue::to_value(&$value)),+] as &[$crate::store::db::Value]
    };
}
pub(crate) use params;

pub trait ToValue {
    fn to_value(&self) -> Value;
}

pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Result<Self, String>;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Int(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "text",
        Value::Blob(_) => "a blob",
    }
}

fn expected(what: &str, found: &Value) -> String {
    format!("expected {what}, found {}", kind(found))
}

/// The integers, each read back only when it fits.
macro_rules! integers {
    ($($int:ty),+) => {$(
        impl ToValue for $int {
            fn to_value(&self) -> Value {
                // the store's integers are far below i64::MAX; a larger one saturates
                Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }

        impl FromValue for $int {
            fn from_value(value: &Value) -> Result<Self, String> {
                match value {
                    Value::Int(i) => <$int>::try_from(*i)
                        .map_err(|_| format!("{i} does not fit {}", stringify!($int))),
                    other => Err(expected("an integer", other)),
                }
            }
        }
    )+};
}

integers!(i16, i32, i64, u32, u64, usize);

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Int(i) => Ok(*i != 0),
            other => Err(expected("an integer", other)),
        }
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}

impl ToValue for f32 {
    fn to_value(&self) -> Value {
        Value::Real(f64::from(*self))
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Real(r) => Ok(*r),
            Value::Int(i) => Ok(*i as f64),
            other => Err(expected("a number", other)),
        }
    }
}

impl FromValue for f32 {
    fn from_value(value: &Value) -> Result<Self, String> {
        f64::from_value(value).map(|r| r as f32)
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for Cow<'_, str> {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(t) => Ok(t.clone()),
            other => Err(expected("text", other)),
        }
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Blob(b) => Ok(b.clone()),
            other => Err(expected("a blob", other)),
        }
    }
}

/// `?N` placeholders as PostgreSQL's `$N`; quoted text is left alone.
pub fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    for ch in sql.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(ch),
            (None, '?') => {
                out.push('$');
                continue;
            }
            (None, _) => {}
        }
        out.push(ch);
    }
    out
}

// ---- SQLite ----

impl rusqlite::types::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(t) => ValueRef::Text(t.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn sqlite_value(value: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl Conn for rusqlite::Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize, DbError> {
        let mut statement = self.prepare_cached(sql)?;
        Ok(statement.execute(rusqlite::params_from_iter(params))?)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut statement = self.prepare_cached(sql)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        let mut read = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..columns)
                .map(|i| row.get_ref(i).map(sqlite_value))
                .collect::<rusqlite::Result<_>>()?;
            read.push(Row(values));
        }
        Ok(read)
    }

    fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        Ok(rusqlite::Connection::execute_batch(self, sql)?)
    }
}

// ---- PostgreSQL ----

pub(super) mod postgres {
    use bytes::BytesMut;
    use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

    use super::{Conn, DbError, Dialect, Row, Value, postgres_sql};

    type BoxError = Box<dyn std::error::Error + Sync + Send>;

    impl ToSql for Value {
        fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
            match (self, ty) {
                (Value::Null, _) => Ok(IsNull::Yes),
                (Value::Int(i), &Type::INT8) => i.to_sql(ty, out),
                (Value::Int(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
                (Value::Int(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
                (Value::Int(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
                (Value::Int(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
                (Value::Int(i), &Type::TEXT | &Type::VARCHAR) => i.to_string().to_sql(ty, out),
                (Value::Real(r), &Type::FLOAT8) => r.to_sql(ty, out),
                (Value::Real(r), &Type::FLOAT4) => (*r as f32).to_sql(ty, out),
                (Value::Text(t), &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME) => {
                    t.as_str().to_sql(ty, out)
                }
                (Value::Blob(b), &Type::BYTEA) => b.as_slice().to_sql(ty, out),
                (value, ty) => {
                    Err(format!("{} for a parameter of type {ty}", super::kind(value)).into())
                }
            }
        }

        fn accepts(_: &Type) -> bool {
            true
        }

        to_sql_checked!();
    }

    fn value(row: &tokio_postgres::Row, i: usize) -> Result<Value, DbError> {
        let ty = row.columns()[i].type_();
        Ok(match *ty {
            Type::INT8 => row
                .try_get::<_, Option<i64>>(i)?
                .map_or(Value::Null, Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map_or(Value::Null, |v| Value::Int(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map_or(Value::Null, |v| Value::Int(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map_or(Value::Null, |v| Value::Int(v.into())),
            Type::FLOAT8 => row
                .try_get::<_, Option<f64>>(i)?
                .map_or(Value::Null, Value::Real),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(i)?
                .map_or(Value::Null, |v| Value::Real(v.into())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
                .try_get::<_, Option<String>>(i)?
                .map_or(Value::Null, Value::Text),
            Type::BYTEA => row
                .try_get::<_, Option<Vec<u8>>>(i)?
                .map_or(Value::Null, Value::Blob),
            Type::VOID => Value::Null,
            _ => {
                return Err(DbError::Column {
                    column: i,
                    problem: format!("a value of type {ty}, which the store does not read"),
                });
            }
        })
    }

    /// A pooled connection, used from a thread that is not the driver's: each call waits for
    /// its answer, which the connection's task (on the store's own runtime) delivers.
    pub struct PgConn<'a> {
        pub client: &'a deadpool_postgres::Client,
    }

    impl PgConn<'_> {
        async fn statement(&self, sql: &str) -> Result<tokio_postgres::Statement, DbError> {
            Ok(self.client.prepare_cached(&postgres_sql(sql)).await?)
        }
    }

    fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
        params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
    }

    impl Conn for PgConn<'_> {
        fn dialect(&self) -> Dialect {
            Dialect::Postgres
        }

        fn execute(&self, sql: &str, params: &[Value]) -> Result<usize, DbError> {
            futures_executor::block_on(async {
                let statement = self.statement(sql).await?;
                let changed = self.client.execute(&statement, &refs(params)).await?;
                Ok(usize::try_from(changed).unwrap_or(usize::MAX))
            })
        }

        fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
            futures_executor::block_on(async {
                let statement = self.statement(sql).await?;
                let rows = self.client.query(&statement, &refs(params)).await?;
                rows.iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|i| value(row, i))
                            .collect::<Result<Vec<_>, _>>()
                            .map(Row)
                    })
                    .collect()
            })
        }

        fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
            Ok(futures_executor::block_on(self.client.batch_execute(sql))?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_dollars_outside_quotes() {
        assert_eq!(
            postgres_sql("SELECT '?1', \"a?\" FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1', \"a?\" FROM t WHERE a = $1 AND b = $12"
        );
    }

    #[test]
    fn values_read_back_only_as_what_they_are() {
        assert_eq!(u32::from_value(&Value::Int(7)), Ok(7));
        assert!(u32::from_value(&Value::Int(-1)).is_err());
        assert!(i64::from_value(&Value::Text("7".into())).is_err());
        assert_eq!(Option::<String>::from_value(&Value::Null), Ok(None));
        assert_eq!(params![Some(2.5f32), None::<i64>, "x"].len(), 3);
    }
}
