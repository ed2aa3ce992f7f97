//! Code generation from a checked [`ModelDef`].

mod columns;
mod model_impl;
mod relations;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, Result};

use crate::model::ModelDef;

/// Expands `#[derive(Model)]` on `input`.
pub fn derive(input: &DeriveInput) -> Result<TokenStream> {
    let model = ModelDef::from_input(input)?;
    let ident = &model.ident;
    let model_impl = model_impl::expand(&model);
    let column_consts = columns::consts(&model);
    let relation_consts = relations::consts(&model);
    let relation_items = relations::items(&model);
    Ok(quote! {
        #model_impl

        #[allow(dead_code)]
        impl #ident {
            #(#column_consts)*
            #(#relation_consts)*
        }

        #(#relation_items)*
    })
}

/// `Some("x")` / `None` as tokens.
fn option_str(value: Option<&str>) -> TokenStream {
    match value {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    /// The expansion as a string with single spaces, for substring checks.
    fn expand(input: DeriveInput) -> String {
        derive(&input).unwrap().to_string()
    }

    fn stock() -> DeriveInput {
        parse_quote! {
            #[orm(schema = "shop")]
            pub struct Stock {
                #[orm(primary_key)]
                pub product_id: i64,
                #[orm(primary_key)]
                pub region: String,
                #[orm(primary_key)]
                pub code: i32,
                #[orm(sql_type = "smallint")]
                pub qty: Option<i32>,
                #[orm(belongs_to(key = "region, code"))]
                pub warehouse: One<Warehouse>,
            }
        }
    }

    #[test]
    fn model_impl() {
        let code = expand(stock());
        assert!(code.contains("type Key = (i64 , String , i32) ;"), "{code}");
        assert!(
            code.contains("decode_column :: < i64 > (row , offset , \"Stock\") ?"),
            "{code}"
        );
        assert!(
            code.contains("decode_column :: < Option < i32 > > (row , offset + 3 , \"Stock\") ?"),
            "{code}"
        );
        assert!(
            code.contains("decode_column_named :: < String > (row , \"region\" , \"Stock\") ?"),
            "{code}"
        );
        assert!(
            code.contains("warehouse : :: core :: default :: Default :: default ()"),
            "{code}"
        );
        assert!(code.contains("3 => & self . qty ,"), "{code}");
        assert!(
            code.contains("_ => & :: core :: option :: Option :: None :: < i32 > ,"),
            "{code}"
        );
        assert!(code.contains("primary_key : & [0 , 1 , 2]"), "{code}");
        assert!(
            code.contains("sql_type : || :: std :: borrow :: Cow :: Borrowed (\"smallint\")"),
            "{code}"
        );
        assert!(
            code.contains("sql_type : < i64 as :: matrx_orm :: SqlType > :: pg_type"),
            "{code}"
        );
    }

    #[test]
    fn decoding_from_any_field_source() {
        let code = expand(stock());
        assert!(
            code.contains("fn decode_fields < F : :: matrx_orm :: __private :: Fields >"),
            "{code}"
        );
        assert!(
            code.contains(
                "Fields :: field :: < Option < i32 > > (src , offset + 3 , \"Stock\" , \"qty\") ?"
            ),
            "{code}"
        );
        assert!(
            code.contains("Result :: Ok ((:: matrx_orm :: __private :: Fields :: field :: < i64 > (src , offset , \"Stock\" , \"product_id\") ? ,"),
            "composite key: {code}"
        );
        let single = expand(parse_quote! {
            struct Tag {
                #[orm(primary_key)]
                id: i64,
            }
        });
        assert!(
            single.contains("Self :: Key > { :: matrx_orm :: __private :: Fields :: field :: < i64 > (src , offset , \"Tag\" , \"id\") }"),
            "single key, no Ok(..?): {single}"
        );
    }

    #[test]
    fn constants() {
        let code = expand(stock());
        assert!(code.contains(
            "pub const QTY : :: matrx_orm :: Column < Stock , i32 > = :: matrx_orm :: Column :: new (3usize) ;"
        ));
        assert!(
            code.contains("pub const WAREHOUSE : __StockRel_warehouse = __StockRel_warehouse ;")
        );
        assert!(code.contains("# [doc = \"Column `qty` of `stock`.\"]"));
    }

    #[test]
    fn relation_impl() {
        let code = expand(stock());
        assert!(code.contains("pub struct __StockRel_warehouse ;"), "{code}");
        assert!(code.contains(
            "type Key = (< String as :: matrx_orm :: KeyField > :: Part , < i32 as :: matrx_orm :: KeyField > :: Part) ;"
        ));
        assert!(code.contains("type Slot = One < Warehouse > ;"));
        assert!(code.contains("& < Stock as :: matrx_orm :: Model > :: META . relations [0]"));
        assert!(code.contains("source_columns : & [\"region\" , \"code\"] , target_fields : & [] , through : :: core :: option :: Option :: None"));
        assert!(code.contains(
            ":: core :: option :: Option :: Some (:: matrx_orm :: Model :: key (target))"
        ));
    }

    #[test]
    fn many_to_many_assertion() {
        let code = expand(parse_quote! {
            struct Order {
                #[orm(primary_key)]
                id: i64,
                #[orm(many_to_many(through = "order_tags", source = "order_id", target = "tag_id"))]
                tags: Many<Tag>,
            }
        });
        assert!(code.contains("const _ : () = :: core :: assert ! (< Tag as :: matrx_orm :: Model > :: META . primary_key . len () == 1usize"), "{code}");
        assert!(code.contains("\"Order.tags: many_to_many target lists 1 column(s) but Tag's primary key has a different number\""));
        assert!(code.contains("type Key = < Order as :: matrx_orm :: Model > :: Key ;"));
        assert!(
            code.contains("struct __OrderRel_tags ;"),
            "private model, private relation type"
        );
    }
}
