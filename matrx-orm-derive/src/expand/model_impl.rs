//! `impl ::matrx_orm::Model`: the metadata, row decoding, key and column values.

use proc_macro2::{Literal, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::{columns, option_str, relations};
use crate::model::{ColumnDef, ModelDef};

/// The whole `impl ::matrx_orm::Model for X { .. }`.
pub fn expand(model: &ModelDef) -> TokenStream {
    let ident = &model.ident;
    let meta = meta(model);
    let key_type = key_type(model);
    let decode = decode(model);
    let decode_named = decode_named(model);
    let decode_fields = decode_fields(model);
    let key = key(model);
    let value = value(model);
    let relations = relations::dyn_table(model);
    quote! {
        #[automatically_derived]
        impl ::matrx_orm::Model for #ident {
            const META: &'static ::matrx_orm::ModelMeta = #meta;

            type Key = #key_type;

            #decode
            #decode_named
            #decode_fields
            #key
            #value
            #relations
        }
    }
}

/// `&::matrx_orm::ModelMeta { .. }`.
fn meta(model: &ModelDef) -> TokenStream {
    let name = model.name();
    let schema = option_str(model.schema.as_deref());
    let table = &model.table;
    let columns = columns::metas(model);
    let primary_key = model
        .primary_key()
        .into_iter()
        .map(Literal::usize_unsuffixed);
    let relations = relations::metas(model);
    quote! {
        &::matrx_orm::ModelMeta {
            name: #name,
            schema: #schema,
            table: #table,
            columns: &[#(#columns),*],
            primary_key: &[#(#primary_key),*],
            relations: &[#(#relations),*],
        }
    }
}

/// The primary-key field type, or a tuple of them.
fn key_type(model: &ModelDef) -> TokenStream {
    let types = model
        .primary_key()
        .into_iter()
        .map(|i| &model.columns[i].ty);
    tuple_if_many(types.map(|ty| quote!(#ty)).collect())
}

/// `x` for one item, `(x, y)` for several.
pub fn tuple_if_many(mut items: Vec<TokenStream>) -> TokenStream {
    if items.len() == 1 {
        items.remove(0)
    } else {
        quote!((#(#items),*))
    }
}

/// The struct literal fields: `field: <decode expr>` for columns (made by `decode`,
/// which gets the column's position and the column) and `Default` for relations.
fn struct_fields(
    model: &ModelDef,
    decode: impl Fn(usize, &ColumnDef) -> TokenStream,
) -> TokenStream {
    let columns = model.columns.iter().enumerate().map(|(i, column)| {
        let ident = &column.ident;
        let expr = decode(i, column);
        quote!(#ident: #expr)
    });
    let relations = model.relations.iter().map(|relation| {
        let ident = &relation.ident;
        quote!(#ident: ::core::default::Default::default())
    });
    quote!(#(#columns,)* #(#relations,)*)
}

fn decode(model: &ModelDef) -> TokenStream {
    let name = model.name();
    let fields = struct_fields(model, |i, column| {
        let ty = &column.ty;
        let index = match i {
            0 => quote!(offset),
            _ => {
                let i = Literal::usize_unsuffixed(i);
                quote!(offset + #i)
            }
        };
        quote!(::matrx_orm::__private::decode_column::<#ty>(row, #index, #name)?)
    });
    quote! {
        #[inline]
        fn decode(
            row: &::matrx_orm::__private::Row,
            offset: usize,
        ) -> ::matrx_orm::Result<Self> {
            ::core::result::Result::Ok(Self { #fields })
        }
    }
}

fn decode_named(model: &ModelDef) -> TokenStream {
    let name = model.name();
    let fields = struct_fields(model, |_, column| {
        let ty = &column.ty;
        let column_name = &column.name;
        quote!(::matrx_orm::__private::decode_column_named::<#ty>(row, #column_name, #name)?)
    });
    quote! {
        fn decode_named(row: &::matrx_orm::__private::Row) -> ::matrx_orm::Result<Self> {
            ::core::result::Result::Ok(Self { #fields })
        }
    }
}

/// `decode_fields` and `decode_key_fields`: decoding from any `Fields` source (a row,
/// or a record of an aggregated relation), by position from `offset`.
fn decode_fields(model: &ModelDef) -> TokenStream {
    let name = model.name();
    // `Fields::field::<T>(src, offset + i, "Model", "column")`: a `Result<T>`.
    let call = |i: usize, column: &ColumnDef| {
        let ty = &column.ty;
        let column_name = &column.name;
        let index = match i {
            0 => quote!(offset),
            _ => {
                let i = Literal::usize_unsuffixed(i);
                quote!(offset + #i)
            }
        };
        quote!(::matrx_orm::__private::Fields::field::<#ty>(src, #index, #name, #column_name))
    };
    let fields = struct_fields(model, |i, column| {
        let call = call(i, column);
        quote!(#call?)
    });
    let key = match model.primary_key().as_slice() {
        // One column: the call's own `Result` (no `Ok(..?)`).
        [i] => call(*i, &model.columns[*i]),
        pk => {
            let parts = pk
                .iter()
                .map(|&i| {
                    let call = call(i, &model.columns[i]);
                    quote!(#call?)
                })
                .collect();
            let tuple = tuple_if_many(parts);
            quote!(::core::result::Result::Ok(#tuple))
        }
    };
    quote! {
        #[inline]
        fn decode_fields<F: ::matrx_orm::__private::Fields>(
            src: &F,
            offset: usize,
        ) -> ::matrx_orm::Result<Self> {
            ::core::result::Result::Ok(Self { #fields })
        }

        #[inline]
        fn decode_key_fields<F: ::matrx_orm::__private::Fields>(
            src: &F,
            offset: usize,
        ) -> ::matrx_orm::Result<Self::Key> {
            #key
        }
    }
}

fn key(model: &ModelDef) -> TokenStream {
    let parts = model.primary_key().into_iter().map(|i| {
        let ident = &model.columns[i].ident;
        quote!(::core::clone::Clone::clone(&self.#ident))
    });
    let key = tuple_if_many(parts.collect());
    quote! {
        #[inline]
        fn key(&self) -> Self::Key {
            #key
        }
    }
}

fn value(model: &ModelDef) -> TokenStream {
    let arms = model.columns.iter().enumerate().map(|(i, column)| {
        let ident = &column.ident;
        let i = Literal::usize_unsuffixed(i);
        // Spanned at the field type: "ToSql is not implemented" points at the field.
        quote_spanned!(column.ty.span()=> #i => &self.#ident,)
    });
    quote! {
        fn value(
            &self,
            index: usize,
        ) -> &(dyn ::matrx_orm::__private::ToSql + ::core::marker::Sync) {
            match index {
                #(#arms)*
                // Never asked by the runtime; answers NULL rather than panic.
                _ => &::core::option::Option::None::<i32>,
            }
        }
    }
}
