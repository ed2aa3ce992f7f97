//! SQL text assembly: quoted identifiers and numbered placeholders.
//!
//! The only way text enters a statement is through [`SqlBuf`]: identifiers are always
//! quoted, values always become `$n` placeholders with the value kept beside the text.

use std::fmt::Write as _;

use crate::base::meta::ModelMeta;
use crate::base::value::Param;

/// The alias of the root table in every statement this crate writes.
pub(crate) const ROOT: &str = "t";

/// Appends `ident` to `out` as a quoted identifier (`"a""b"` for `a"b`).
pub fn push_ident(out: &mut String, ident: &str) {
    out.push('"');
    for ch in ident.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
}

/// Returns `ident` quoted as an SQL identifier.
///
/// ```
/// assert_eq!(matrx_orm::sql::quote_ident(r#"we"ird"#), r#""we""ird""#);
/// ```
pub fn quote_ident(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 2);
    push_ident(&mut out, ident);
    out
}

/// The quoted, schema-qualified table name of a model.
pub fn table_name(meta: &ModelMeta) -> String {
    qualified(meta.schema, meta.table)
}

/// `"schema"."table"`, or `"table"` without a schema.
pub fn qualified(schema: Option<&str>, table: &str) -> String {
    let mut out = String::new();
    if let Some(schema) = schema {
        push_ident(&mut out, schema);
        out.push('.');
    }
    push_ident(&mut out, table);
    out
}

/// A statement being written: its text and the values of its placeholders.
#[derive(Debug, Default, Clone)]
pub struct SqlBuf {
    /// The SQL text.
    pub text: String,
    /// The values bound to `$1..$n`, in order.
    pub params: Vec<Param>,
}

impl SqlBuf {
    /// An empty statement.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends trusted SQL text (keywords and punctuation written by this crate).
    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.text.push_str(sql);
        self
    }

    /// Appends a quoted identifier.
    pub fn ident(&mut self, ident: &str) -> &mut Self {
        push_ident(&mut self.text, ident);
        self
    }

    /// Appends `"alias"."column"`.
    pub fn column(&mut self, alias: &str, column: &str) -> &mut Self {
        self.ident(alias).push(".").ident(column)
    }

    /// Appends the comma-separated, alias-qualified columns of a model.
    pub fn columns(&mut self, alias: &str, meta: &ModelMeta) -> &mut Self {
        for (i, col) in meta.columns.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.column(alias, col.name);
        }
        self
    }

    /// Appends the model's table with an alias: `"schema"."table" AS "alias"`.
    pub fn table_as(&mut self, meta: &ModelMeta, alias: &str) -> &mut Self {
        self.text.push_str(&table_name(meta));
        self.push(" AS ").ident(alias)
    }

    /// Binds a value and appends its placeholder (`$n`).
    pub fn param(&mut self, value: Param) -> &mut Self {
        self.params.push(value);
        let _ = write!(self.text, "${}", self.params.len());
        self
    }

    /// Binds a value without writing it; returns its placeholder (`$n`) to write where
    /// the statement refers to it.
    pub fn bind(&mut self, value: Param) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    /// Binds a value and appends its placeholder with a type cast (`$n::int8[]`).
    pub fn param_cast(&mut self, value: Param, pg_type: &str) -> &mut Self {
        self.param(value).push("::").push(pg_type)
    }
}
