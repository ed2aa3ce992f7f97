//! Rust types for PostgreSQL types: exactly the types matrx-orm's `SqlType` and the
//! driver support, nothing else. A type without a Rust type is reported by name
//! (never silently mapped to `String`).

use crate::catalog::{ColumnType, PgType};

/// The Rust side of a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RustType {
    /// The field type, without `Option`.
    pub ty: String,
    /// `#[orm(sql_type = ..)]`, when the Rust type's own `SqlType` would not give the
    /// column's exact type (a length, a precision, a domain, `json`, an enum array).
    pub sql_type: Option<String>,
    /// Whether the type can be a key column (matrx-orm's `KeyPart`).
    pub key: bool,
}

/// A scalar: Rust type, the type as `format_type` prints what `SqlType` declares,
/// whether `SqlType` is implemented for it and for `Vec` of it, key support.
struct Scalar {
    rust: &'static str,
    canonical: &'static str,
    array_impl: bool,
    key: bool,
}

fn scalar(typname: &str) -> Option<Scalar> {
    let s = |rust, canonical, array_impl, key| Scalar {
        rust,
        canonical,
        array_impl,
        key,
    };
    Some(match typname {
        "bool" => s("bool", "boolean", true, true),
        "int2" => s("i16", "smallint", true, true),
        "int4" => s("i32", "integer", true, true),
        "int8" => s("i64", "bigint", true, true),
        "float4" => s("f32", "real", true, false),
        "float8" => s("f64", "double precision", true, false),
        "text" => s("String", "text", true, true),
        "varchar" => s("String", "", true, true),
        "bpchar" => s("String", "", true, true),
        "numeric" => s("rust_decimal::Decimal", "numeric", true, true),
        "uuid" => s("uuid::Uuid", "uuid", true, true),
        "timestamptz" => s(
            "chrono::DateTime<chrono::Utc>",
            "timestamp with time zone",
            true,
            true,
        ),
        "timestamp" => s(
            "chrono::NaiveDateTime",
            "timestamp without time zone",
            true,
            true,
        ),
        "date" => s("chrono::NaiveDate", "date", true, true),
        "time" => s("chrono::NaiveTime", "time without time zone", true, false),
        "jsonb" => s("serde_json::Value", "jsonb", true, false),
        "json" => s("serde_json::Value", "", true, false),
        "bytea" => s("Vec<u8>", "bytea", false, false),
        _ => return None,
    })
}

/// The Rust type of a column type, or `None` when matrx-orm has none. `enum_type`
/// names the Rust enum generated for a PostgreSQL enum.
pub fn rust_type(ty: &ColumnType, enum_type: &dyn Fn(&str) -> Option<String>) -> Option<RustType> {
    let mut out = match &ty.resolved {
        PgType::Builtin(name) => {
            let s = scalar(name)?;
            RustType {
                ty: s.rust.to_owned(),
                sql_type: (ty.display != s.canonical).then(|| ty.display.clone()),
                key: s.key,
            }
        }
        PgType::Enum(name) => RustType {
            ty: enum_type(name)?,
            sql_type: None,
            key: false,
        },
        PgType::Array(elem) => {
            let (rust, exact) = match &**elem {
                PgType::Builtin(name) => {
                    let s = scalar(name)?;
                    let exact = s.array_impl && ty.display == format!("{}[]", s.canonical);
                    (s.rust.to_owned(), exact)
                }
                // `Vec<Enum>` cannot implement the foreign `SqlType` in the user's crate.
                PgType::Enum(name) => (enum_type(name)?, false),
                _ => return None,
            };
            RustType {
                ty: format!("Vec<{rust}>"),
                sql_type: (!exact).then(|| ty.display.clone()),
                key: false,
            }
        }
        PgType::Other(_) => return None,
    };
    if ty.domain.is_some() {
        out.sql_type = Some(ty.display.clone());
    }
    Some(out)
}
