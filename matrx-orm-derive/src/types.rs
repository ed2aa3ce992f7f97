//! Syntactic inspection of field types: `Option<T>`, `One<T>`, `Many<T>`.
//!
//! A derive macro sees tokens, not resolved types, so these checks look at the last
//! path segment (`Option`, `std::option::Option`, `matrx_orm::One`, ...).

use proc_macro2::{Group, Ident, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{GenericArgument, PathArguments, Type};

/// Removes the invisible groups and parentheses a type may be wrapped in.
fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => peel(&g.elem),
        Type::Paren(p) => peel(&p.elem),
        other => other,
    }
}

/// If `ty` is `Wrapper<Arg>` (by the last path segment), returns `Arg`.
fn single_arg<'a>(ty: &'a Type, wrapper: &str) -> Option<&'a Type> {
    let Type::Path(path) = peel(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != wrapper {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    match (types.next(), types.next()) {
        (Some(t), None) if args.args.len() == 1 => Some(t),
        _ => None,
    }
}

/// `T` if `ty` is `Option<T>`.
pub fn option_inner(ty: &Type) -> Option<&Type> {
    single_arg(ty, "Option")
}

/// The two relation slot types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// `One<T>`.
    One,
    /// `Many<T>`.
    Many,
}

impl SlotKind {
    /// `One` or `Many`.
    pub fn name(self) -> &'static str {
        match self {
            SlotKind::One => "One",
            SlotKind::Many => "Many",
        }
    }
}

/// The slot kind and target type if `ty` is `One<T>` or `Many<T>`.
pub fn slot(ty: &Type) -> Option<(SlotKind, &Type)> {
    if let Some(target) = single_arg(ty, "One") {
        return Some((SlotKind::One, target));
    }
    single_arg(ty, "Many").map(|target| (SlotKind::Many, target))
}

/// Whether `ty` is a plain path (a type that can name a model).
pub fn is_path(ty: &Type) -> bool {
    matches!(peel(ty), Type::Path(p) if p.qself.is_none())
}

/// The tokens of `ty` with every `Self` replaced by `with`, for code emitted outside
/// the model's own `impl` blocks (where `Self` would mean something else).
pub fn replace_self(ty: &Type, with: &Ident) -> TokenStream {
    replace_self_tokens(ty.to_token_stream(), with)
}

fn replace_self_tokens(tokens: TokenStream, with: &Ident) -> TokenStream {
    tokens
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Ident(ident) if ident == "Self" => {
                let mut replaced = with.clone();
                replaced.set_span(ident.span());
                TokenTree::Ident(replaced)
            }
            TokenTree::Group(group) => {
                let mut new =
                    Group::new(group.delimiter(), replace_self_tokens(group.stream(), with));
                new.set_span(group.span());
                TokenTree::Group(new)
            }
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn text(ty: Option<&Type>) -> Option<String> {
        ty.map(|t| t.to_token_stream().to_string())
    }

    #[test]
    fn options() {
        assert_eq!(
            text(option_inner(&parse_quote!(Option<i64>))),
            Some("i64".into())
        );
        assert_eq!(
            text(option_inner(&parse_quote!(std::option::Option<Vec<u8>>))),
            Some("Vec < u8 >".into())
        );
        assert_eq!(text(option_inner(&parse_quote!(i64))), None);
        assert_eq!(text(option_inner(&parse_quote!(Vec<Option<i64>>))), None);
    }

    #[test]
    fn slots() {
        let one: Type = parse_quote!(One<Customer>);
        let many: Type = parse_quote!(matrx_orm::Many<crate::Tag>);
        assert_eq!(slot(&one).map(|s| s.0), Some(SlotKind::One));
        assert_eq!(slot(&many).map(|s| s.0), Some(SlotKind::Many));
        assert_eq!(text(slot(&many).map(|s| s.1)), Some("crate :: Tag".into()));
        assert!(slot(&parse_quote!(Vec<Customer>)).is_none());
        assert!(slot(&parse_quote!(One)).is_none());
    }

    #[test]
    fn self_is_replaced() {
        let ty: Type = parse_quote!(One<Self>);
        let ident = Ident::new("Customer", proc_macro2::Span::call_site());
        assert_eq!(replace_self(&ty, &ident).to_string(), "One < Customer >");
        let ty: Type = parse_quote!(Option<(Self, i64)>);
        assert_eq!(
            replace_self(&ty, &ident).to_string(),
            "Option < (Customer , i64) >"
        );
    }
}
