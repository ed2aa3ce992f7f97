//! Rust names from SQL names.
//!
//! Any SQL name becomes an identifier: mixed case is split into words (`OrderID` ->
//! `order_id`), anything that is not an ASCII letter or digit becomes `_`, runs of `_`
//! collapse, a leading digit gets a `_` prefix (fields) or `T` prefix (types), an empty
//! result becomes `column_<n>` / `Table<n>`. Rust keywords become raw identifiers
//! (`r#type`); the ones that cannot be raw (`self`, `super`, `crate`, `Self`) get a `_`
//! suffix. Type names that would shadow what generated code names (`Option`, `String`,
//! `Vec`, `One`, `Many`, `Model`, ...) get a `Model` suffix.
//!
//! Collisions (two SQL names that give one Rust name, a relation named like a column)
//! are settled by [`Namer`]: the first claimant keeps the name, later ones get `_2`,
//! `_3`, ... in the order names are claimed (columns in `attnum` order, then relations
//! in the order documented in `relations.rs`).

use std::collections::HashSet;

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// Keywords that cannot be raw identifiers.
const NOT_RAW: &[&str] = &["self", "Self", "super", "crate"];

/// Type names generated code must not shadow.
const RESERVED_TYPES: &[&str] = &[
    "Option",
    "Some",
    "None",
    "Result",
    "Ok",
    "Err",
    "String",
    "Vec",
    "Box",
    "One",
    "Many",
    "Model",
    "Self",
    "Debug",
    "Clone",
    "Copy",
    "PartialEq",
    "Eq",
    "Hash",
    "Cow",
    "SqlType",
];

/// `OrderID` -> `order_id`, `Weird Name!` -> `weird_name`, `1st` -> `1st`: lowercase
/// ASCII words joined by `_` (may be empty, may start with a digit).
pub fn snake(sql: &str) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1).copied();
            let after_word = prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit());
            let acronym_end = prev.is_some_and(|p| p.is_ascii_uppercase())
                && next.is_some_and(|n| n.is_ascii_lowercase());
            if after_word || acronym_end {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if c == '_' && (collapsed.is_empty() || collapsed.ends_with('_')) {
            continue;
        }
        collapsed.push(c);
    }
    while collapsed.ends_with('_') {
        collapsed.pop();
    }
    collapsed
}

/// A field (or module) identifier from a SQL name; `fallback` when nothing is left.
pub fn field_ident(sql: &str, fallback: &str) -> String {
    let mut name = snake(sql);
    if name.is_empty() {
        name = fallback.to_owned();
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    keyword_safe(name)
}

/// `type` -> `r#type`, `self` -> `self_`, anything else unchanged.
pub fn keyword_safe(name: String) -> String {
    if NOT_RAW.contains(&name.as_str()) {
        format!("{name}_")
    } else if KEYWORDS.contains(&name.as_str()) {
        format!("r#{name}")
    } else {
        name
    }
}

/// The identifier without `r#`.
pub fn unraw(ident: &str) -> &str {
    ident.strip_prefix("r#").unwrap_or(ident)
}

/// A type identifier (UpperCamelCase) from a SQL name; `fallback` when nothing is left.
pub fn type_ident(sql: &str, fallback: &str) -> String {
    let mut name: String = snake(sql)
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect();
    if name.is_empty() {
        name = fallback.to_owned();
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, 'T');
    }
    if RESERVED_TYPES.contains(&name.as_str()) {
        name.push_str("Model");
    }
    name
}

/// A naive English singular of a snake name: `categories` -> `category`,
/// `addresses` -> `address`, `orders` -> `order`; `status`, `class`, `analysis` stay.
pub fn singular(word: &str) -> String {
    if let Some(stem) = word.strip_suffix("ies") {
        if !stem.is_empty() {
            return format!("{stem}y");
        }
    }
    for suffix in ["sses", "shes", "ches", "xes"] {
        if let Some(stem) = word.strip_suffix(suffix) {
            return format!("{stem}{}", &suffix[..suffix.len() - 2]);
        }
    }
    if word.ends_with("ss") || word.ends_with("us") || word.ends_with("is") || word.len() < 3 {
        return word.to_owned();
    }
    word.strip_suffix('s').unwrap_or(word).to_owned()
}

/// A naive English plural of a snake name: `friend` -> `friends`, `box` -> `boxes`,
/// `category` -> `categories`.
pub fn plural(word: &str) -> String {
    if word.ends_with('s') || word.ends_with('x') || word.ends_with("sh") || word.ends_with("ch") {
        return format!("{word}es");
    }
    if let Some(stem) = word.strip_suffix('y') {
        if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) && !stem.is_empty() {
            return format!("{stem}ies");
        }
    }
    format!("{word}s")
}

/// Hands out distinct names: the first claimant of a name keeps it, later ones get
/// `_2`, `_3`, ... (types and modules get `2`, `3`, ... without the underscore).
#[derive(Debug, Default)]
pub struct Namer {
    taken: HashSet<String>,
}

impl Namer {
    /// Claims `wanted` (an identifier, maybe raw) or the first free numbered variant.
    /// Names are compared as the derive's constants are: without `r#`, uppercased.
    pub fn claim(&mut self, wanted: &str) -> String {
        self.claim_with(wanted, "_")
    }

    /// Like [`claim`](Self::claim) for type names (`Order2`).
    pub fn claim_type(&mut self, wanted: &str) -> String {
        self.claim_with(wanted, "")
    }

    fn claim_with(&mut self, wanted: &str, sep: &str) -> String {
        let mut candidate = wanted.to_owned();
        let mut n = 2;
        while !self.taken.insert(unraw(&candidate).to_ascii_uppercase()) {
            candidate = keyword_safe(format!("{}{sep}{n}", unraw(wanted)));
            n += 1;
        }
        candidate
    }

    /// Marks `name` as taken without claiming a variant.
    pub fn reserve(&mut self, name: &str) {
        self.taken.insert(unraw(name).to_ascii_uppercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(field_ident("OrderID", "c"), "order_id");
        assert_eq!(field_ident("Weird Name!", "c"), "weird_name");
        assert_eq!(field_ident("1st place", "c"), "_1st_place");
        assert_eq!(field_ident("type", "c"), "r#type");
        assert_eq!(field_ident("self", "c"), "self_");
        assert_eq!(field_ident("\"quoted\"", "c"), "quoted");
        assert_eq!(field_ident("日本", "column_3"), "column_3");
        assert_eq!(type_ident("order_items", "T"), "OrderItems");
        assert_eq!(type_ident("option", "T"), "OptionModel");
        assert_eq!(type_ident("2fa codes", "T"), "T2faCodes");
    }

    #[test]
    fn numbers() {
        assert_eq!(singular("categories"), "category");
        assert_eq!(singular("addresses"), "address");
        assert_eq!(singular("warehouses"), "warehouse");
        assert_eq!(singular("status"), "status");
        assert_eq!(singular("stock"), "stock");
        assert_eq!(plural("friend"), "friends");
        assert_eq!(plural("category"), "categories");
    }

    #[test]
    fn collisions() {
        let mut n = Namer::default();
        assert_eq!(n.claim("foo"), "foo");
        assert_eq!(n.claim("FOO"), "FOO_2");
        assert_eq!(n.claim("r#type"), "r#type");
        assert_eq!(n.claim("type"), "type_2");
        assert_eq!(n.claim_type("Order"), "Order");
        assert_eq!(n.claim_type("Order"), "Order2");
    }
}
