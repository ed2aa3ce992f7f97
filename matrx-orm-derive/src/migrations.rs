//! `embed_migrations!`: the `<version>_<name>` folders of a directory (relative to the
//! crate's `CARGO_MANIFEST_DIR`) as a `matrx_orm::migrate::Migrations` constant. Each
//! file is embedded with `include_str!`, so editing one rebuilds the crate; a folder
//! added later is seen once the crate rebuilds (a `build.rs` with
//! `cargo:rerun-if-changed=migrations` makes that automatic).

use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use quote::quote;
use syn::LitStr;

/// The folder-name rule of `matrx_orm::migrate::parse_folder_name` (this crate cannot
/// depend on the runtime crate, which depends on it).
fn parse_folder_name(folder: &str) -> Option<(i64, &str)> {
    let (digits, name) = folder.split_once('_')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return None;
    }
    Some((digits.parse().ok()?, name))
}

pub fn expand(dir: Option<LitStr>) -> syn::Result<TokenStream> {
    let span = dir
        .as_ref()
        .map_or_else(proc_macro2::Span::call_site, |d| d.span());
    let err = |msg: String| syn::Error::new(span, msg);
    let relative = dir.map_or_else(|| "migrations".to_owned(), |d| d.value());
    let root = std::env::var("CARGO_MANIFEST_DIR")
        .map_err(|_| err("CARGO_MANIFEST_DIR is not set: build with cargo".to_owned()))?;
    let dir = Path::new(&root).join(&relative);
    let entries = std::fs::read_dir(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let mut found: Vec<(i64, String, PathBuf)> = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| err(format!("{}: {e}", dir.display())))?
            .path();
        let Some(folder) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !path.is_dir() || folder.starts_with('.') {
            continue;
        }
        let (version, name) = parse_folder_name(&folder).ok_or_else(|| {
            err(format!(
                "{}: a migration folder is named <version>_<name>, the version in digits",
                path.display()
            ))
        })?;
        if !path.join("up.sql").is_file() {
            return Err(err(format!("{}: no up.sql", path.display())));
        }
        found.push((version, name.to_owned(), path));
    }
    found.sort_by_key(|(v, _, _)| *v);
    for pair in found.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(err(format!(
                "two migrations have version {}: {} and {}",
                pair[0].0, pair[0].1, pair[1].1
            )));
        }
    }
    let items = found.iter().map(|(version, name, path)| {
        let up = path.join("up.sql").to_string_lossy().into_owned();
        let down_path = path.join("down.sql");
        let down = if down_path.is_file() {
            let down = down_path.to_string_lossy().into_owned();
            quote!(::core::option::Option::Some(::core::include_str!(#down)))
        } else {
            quote!(::core::option::Option::None)
        };
        quote! {
            ::matrx_orm::migrate::Migration::embedded(#version, #name, ::core::include_str!(#up), #down)
        }
    });
    Ok(quote! {
        {
            const MIGRATIONS: &[::matrx_orm::migrate::Migration] = &[#(#items),*];
            ::matrx_orm::migrate::Migrations::embedded(MIGRATIONS)
        }
    })
}
