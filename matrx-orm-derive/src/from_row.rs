//! `#[derive(FromRow)]`: a plain struct read from a row, column by column.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Error, Fields, Result};

use crate::attrs::parse_from_row_field;
use crate::names::unraw;

/// The `impl ::matrx_orm::FromRow` of a struct with named fields.
pub fn derive(input: &DeriveInput) -> Result<TokenStream> {
    let ident = &input.ident;
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => &fields.named,
            _ => {
                return Err(Error::new_spanned(
                    ident,
                    "FromRow needs a struct with named fields",
                ))
            }
        },
        _ => return Err(Error::new_spanned(ident, "FromRow needs a struct")),
    };
    let mut names = Vec::new();
    let mut positional = Vec::new();
    let mut named = Vec::new();
    let type_name = ident.to_string();
    for (i, field) in fields.iter().enumerate() {
        let Some(field_ident) = &field.ident else {
            continue;
        };
        let name = match parse_from_row_field(&field.attrs)? {
            Some(lit) => lit.value(),
            None => unraw(field_ident),
        };
        positional.push(quote! {
            #field_ident: ::matrx_orm::__private::decode_column(row, at + #i, #type_name)?
        });
        named.push(quote! {
            #field_ident: ::matrx_orm::__private::decode_column_named(row, #name, #type_name)?
        });
        names.push(name);
    }
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::matrx_orm::FromRow for #ident #ty_generics #where_clause {
            const COLUMNS: &'static [&'static str] = &[#(#names),*];

            fn from_row(
                row: &::matrx_orm::__private::Row,
                at: usize,
            ) -> ::matrx_orm::Result<Self> {
                ::std::result::Result::Ok(#ident { #(#positional,)* })
            }

            fn from_row_named(row: &::matrx_orm::__private::Row) -> ::matrx_orm::Result<Self> {
                ::std::result::Result::Ok(#ident { #(#named,)* })
            }
        }
    })
}
