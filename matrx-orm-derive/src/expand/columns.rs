//! Column code: `ColumnMeta` entries and the typed column constants.

use proc_macro2::{Ident, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::option_str;
use crate::model::{ColumnDef, ModelDef};
use crate::names::{screaming_snake_case, unraw};

/// One `::matrx_orm::ColumnMeta { .. }` per column, in field order.
pub fn metas(model: &ModelDef) -> Vec<TokenStream> {
    model.columns.iter().map(column_meta).collect()
}

fn column_meta(column: &ColumnDef) -> TokenStream {
    let name = &column.name;
    let field = unraw(&column.ident);
    let sql_type = sql_type(column);
    let nullable = column.nullable;
    let primary_key = column.primary_key;
    let auto = column.auto;
    let default_sql = option_str(column.default_sql.as_deref());
    let unique = column.unique;
    let indexed = column.indexed;
    quote! {
        ::matrx_orm::ColumnMeta {
            name: #name,
            field: #field,
            sql_type: #sql_type,
            nullable: #nullable,
            primary_key: #primary_key,
            auto: #auto,
            default_sql: #default_sql,
            unique: #unique,
            indexed: #indexed,
        }
    }
}

/// The `fn() -> Cow<'static, str>` of the column's DDL type.
fn sql_type(column: &ColumnDef) -> TokenStream {
    match &column.sql_type {
        Some(sql) => quote!(|| ::std::borrow::Cow::Borrowed(#sql)),
        None => {
            let ty = &column.value_ty;
            quote_spanned!(ty.span()=> <#ty as ::matrx_orm::SqlType>::pg_type)
        }
    }
}

/// `pub const ID: ::matrx_orm::Column<Order, i64> = ::matrx_orm::Column::new(0);` per column.
pub fn consts(model: &ModelDef) -> Vec<TokenStream> {
    let ident = &model.ident;
    let vis = &model.vis;
    model
        .columns
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let name = const_ident(&column.ident);
            let ty = &column.value_ty;
            let doc = format!("Column `{}` of `{}`.", column.name, model.table);
            quote! {
                #[doc = #doc]
                #vis const #name: ::matrx_orm::Column<#ident, #ty> = ::matrx_orm::Column::new(#index);
            }
        })
        .collect()
}

/// The constant name of a field: `customer_id` -> `CUSTOMER_ID`.
pub fn const_ident(field: &Ident) -> Ident {
    Ident::new(&screaming_snake_case(&unraw(field)), field.span())
}
