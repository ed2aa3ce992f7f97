//! Decoding column values from a result row or an aggregated record, with errors
//! that name the model, the column and both types.

use tokio_postgres::Row;

use crate::base::error::{Error, Result};

/// A source of column values by position: a result [`Row`], or one record of an
/// aggregated relation (`select_related`).
///
/// Used by the code `#[derive(Model)]` emits ([`Model::decode_fields`]).
#[doc(hidden)]
pub trait Fields {
    /// Decodes field `index` as `T`; on failure the error names `model` and `column`.
    fn field<'a, T: postgres_types::FromSql<'a>>(
        &'a self,
        index: usize,
        model: &'static str,
        column: &'static str,
    ) -> Result<T>;

    /// Whether field `index` is NULL (false when there is no such field).
    fn is_null(&self, index: usize) -> bool;
}

impl Fields for Row {
    #[inline]
    fn field<'a, T: postgres_types::FromSql<'a>>(
        &'a self,
        index: usize,
        model: &'static str,
        column: &'static str,
    ) -> Result<T> {
        self.try_get(index).map_err(|err| {
            let mut e = decode_error::<T>(self, index, model, err);
            if let Error::Decode { column: c, .. } = &mut e {
                column.clone_into(c);
            }
            e
        })
    }

    #[inline]
    fn is_null(&self, index: usize) -> bool {
        matches!(self.try_get::<_, IsNull>(index), Ok(IsNull(true)))
    }
}

/// Reads only whether a value is NULL, whatever its type.
struct IsNull(bool);

impl<'a> postgres_types::FromSql<'a> for IsNull {
    fn from_sql(
        _: &postgres_types::Type,
        _: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull(false))
    }

    fn from_sql_null(
        _: &postgres_types::Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull(true))
    }

    fn accepts(_: &postgres_types::Type) -> bool {
        true
    }
}

/// Decodes one column of a row; on failure the error names model, column and types.
///
/// Used by the code `#[derive(Model)]` emits.
#[doc(hidden)]
pub fn decode_column<'r, T: postgres_types::FromSql<'r>>(
    row: &'r Row,
    index: usize,
    model: &'static str,
) -> Result<T> {
    row.try_get(index)
        .map_err(|err| decode_error::<T>(row, index, model, err))
}

/// Decodes one column of a row by name; on failure the error names model, column and types.
#[doc(hidden)]
pub fn decode_column_named<'r, T: postgres_types::FromSql<'r>>(
    row: &'r Row,
    name: &'static str,
    model: &'static str,
) -> Result<T> {
    match row.columns().iter().position(|c| c.name() == name) {
        Some(index) => decode_column(row, index, model),
        None => Err(Error::Decode {
            model,
            column: name.to_owned(),
            rust_type: std::any::type_name::<T>(),
            pg_type: "<missing>".to_owned(),
            message: "the row has no column of that name".to_owned(),
        }),
    }
}

/// Decodes one raw value (`None`: NULL) of PostgreSQL type `ty` as `T`, for a field
/// source that holds values as bytes (an aggregated record, a row from an external
/// cache). With `check`, a `T` that does not accept `ty` is refused first, as the
/// driver refuses it for a result row; errors name model, column and both types.
pub(crate) fn decode_raw<'a, T: postgres_types::FromSql<'a>>(
    ty: &postgres_types::Type,
    raw: Option<&'a [u8]>,
    check: bool,
    model: &'static str,
    column: &'static str,
) -> Result<T> {
    if check && !T::accepts(ty) {
        return Err(raw_error::<T>(
            model,
            column,
            ty.name(),
            "the Rust type does not accept this PostgreSQL type".to_owned(),
        ));
    }
    T::from_sql_nullable(ty, raw)
        .map_err(|e| raw_error::<T>(model, column, ty.name(), e.to_string()))
}

/// The error of a field a source of raw values does not have.
pub(crate) fn missing_field<T>(
    model: &'static str,
    column: &'static str,
    message: String,
) -> Error {
    raw_error::<T>(model, column, "<missing>", message)
}

fn raw_error<T>(
    model: &'static str,
    column: &'static str,
    pg_type: &str,
    message: String,
) -> Error {
    Error::Decode {
        model,
        column: column.to_owned(),
        rust_type: std::any::type_name::<T>(),
        pg_type: pg_type.to_owned(),
        message,
    }
}

fn decode_error<T>(
    row: &Row,
    index: usize,
    model: &'static str,
    err: tokio_postgres::Error,
) -> Error {
    let (column, pg_type) = match row.columns().get(index) {
        Some(c) => (c.name().to_owned(), c.type_().name().to_owned()),
        None => (format!("#{index}"), "<missing>".to_owned()),
    };
    let message = match std::error::Error::source(&err) {
        Some(source) => source.to_string(),
        None => err.to_string(),
    };
    Error::Decode {
        model,
        column,
        rust_type: std::any::type_name::<T>(),
        pg_type,
        message,
    }
}

/// A plain struct read from a row column by column, without a model:
/// `#[derive(FromRow)]` implements it, naming each field's column.
///
/// A query on a model reads one with [`Select::select_as`](crate::Select::select_as)
/// (only the struct's columns are selected); rows of a hand-written statement are read
/// by column name with [`from_row_named`](Self::from_row_named) or
/// [`from_rows`](Self::from_rows).
///
/// ```
/// use matrx_orm::FromRow;
///
/// #[derive(FromRow, Debug)]
/// struct OrderLine {
///     id: i64,
///     #[orm(column = "state")]
///     status: String,
///     note: Option<String>,
/// }
///
/// assert_eq!(OrderLine::COLUMNS, ["id", "state", "note"]);
/// ```
pub trait FromRow: Sized {
    /// The columns read, in field order.
    const COLUMNS: &'static [&'static str];

    /// Reads the struct from `row`, its first column at field `at` and the others
    /// following in [`COLUMNS`](Self::COLUMNS) order.
    fn from_row(row: &Row, at: usize) -> Result<Self>;

    /// Reads the struct from `row` by column name, wherever the columns are.
    fn from_row_named(row: &Row) -> Result<Self>;

    /// Reads every row by column name.
    fn from_rows(rows: &[Row]) -> Result<Vec<Self>> {
        rows.iter().map(Self::from_row_named).collect()
    }
}
