//! Name helpers: case conversion, comma-separated key lists, identifiers built from
//! attribute strings.

use proc_macro2::{Ident, Span};
use syn::ext::IdentExt;
use syn::{Error, LitStr, Result};

/// `OrderItem` -> `order_item`, `HTTPRequest` -> `http_request`, `fooBar` -> `foo_bar`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1).copied();
            let after_word = prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit());
            let acronym_end =
                prev.is_some_and(char::is_uppercase) && next.is_some_and(char::is_lowercase);
            if after_word || acronym_end {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `customer_id` -> `CUSTOMER_ID` (mixed-case names are split into words first).
pub fn screaming_snake_case(name: &str) -> String {
    snake_case(name).to_uppercase()
}

/// The name of an identifier without its `r#` prefix.
pub fn unraw(ident: &Ident) -> String {
    ident.unraw().to_string()
}

/// A comma-separated list of names written in an attribute string (`"region, code"`).
#[derive(Debug, Clone)]
pub struct NameList {
    /// The names, trimmed, in order.
    pub names: Vec<String>,
    /// The string literal, for error spans.
    pub span: Span,
}

impl NameList {
    /// Splits `lit` on commas; every name must be non-empty and appear once.
    pub fn parse(lit: &LitStr) -> Result<Self> {
        let value = lit.value();
        let mut names: Vec<String> = Vec::new();
        for piece in value.split(',') {
            let name = piece.trim();
            if name.is_empty() {
                return Err(Error::new(
                    lit.span(),
                    format!("empty name in the list {value:?}; write names separated by commas, e.g. \"region, code\""),
                ));
            }
            if names.iter().any(|n| n == name) {
                return Err(Error::new(
                    lit.span(),
                    format!("`{name}` appears twice in {value:?}"),
                ));
            }
            names.push(name.to_owned());
        }
        Ok(NameList {
            names,
            span: lit.span(),
        })
    }

    /// The number of names.
    pub fn len(&self) -> usize {
        self.names.len()
    }
}

/// Builds the identifier of a field named in an attribute string, spanned at the string
/// (so "no field `x` on type `T`" points at the attribute). Keywords become raw idents.
pub fn field_ident(name: &str, span: Span) -> Result<Ident> {
    let bare = name.strip_prefix("r#").unwrap_or(name);
    if !is_identifier(bare) {
        return Err(Error::new(
            span,
            format!("`{name}` is not a valid field name"),
        ));
    }
    if syn::parse_str::<Ident>(bare).is_ok() {
        return Ok(Ident::new(bare, span));
    }
    match bare {
        "self" | "Self" | "super" | "crate" | "_" => Err(Error::new(
            span,
            format!("`{name}` is not a valid field name"),
        )),
        _ => Ok(Ident::new_raw(bare, span)),
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c == '_' || c.is_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// `a, b, c` for messages.
pub fn join(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    names
        .into_iter()
        .map(|n| n.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_of_type_names() {
        assert_eq!(snake_case("Order"), "order");
        assert_eq!(snake_case("OrderItem"), "order_item");
        assert_eq!(snake_case("HTTPRequest"), "http_request");
        assert_eq!(snake_case("UserV2Token"), "user_v2_token");
        assert_eq!(snake_case("ABC"), "abc");
        assert_eq!(snake_case("already_snake"), "already_snake");
    }

    #[test]
    fn screaming_case_of_field_names() {
        assert_eq!(screaming_snake_case("id"), "ID");
        assert_eq!(screaming_snake_case("customer_id"), "CUSTOMER_ID");
        assert_eq!(screaming_snake_case("placedAt"), "PLACED_AT");
        assert_eq!(screaming_snake_case("_hidden"), "_HIDDEN");
        assert_eq!(screaming_snake_case("line2"), "LINE2");
    }

    #[test]
    fn name_lists() {
        let lit: LitStr = syn::parse_quote!(" region ,code");
        assert_eq!(NameList::parse(&lit).unwrap().names, ["region", "code"]);
        let lit: LitStr = syn::parse_quote!("id");
        assert_eq!(NameList::parse(&lit).unwrap().len(), 1);
        for bad in ["", "a,", "a,,b", "a, a"] {
            let lit = LitStr::new(bad, Span::call_site());
            assert!(NameList::parse(&lit).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn field_idents() {
        let span = Span::call_site();
        assert_eq!(
            field_ident("order_id", span).unwrap().to_string(),
            "order_id"
        );
        assert_eq!(field_ident("type", span).unwrap().to_string(), "r#type");
        assert_eq!(field_ident("r#type", span).unwrap().to_string(), "r#type");
        assert!(field_ident("order id", span).is_err());
        assert!(field_ident("1st", span).is_err());
        assert!(field_ident("self", span).is_err());
    }
}
