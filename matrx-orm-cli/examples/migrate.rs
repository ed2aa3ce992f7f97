//! An application's migrations, both ways a project uses them:
//!
//! - at start-up, the migrations embedded in the binary are applied
//!   (`db.migrate(&MIGRATIONS)`), safely from any number of instances at once;
//! - during development, the same binary is the `matrx-orm` command with the models
//!   compiled in, so `migrate diff` can write the next migration from them.
//!
//! ```text
//! DATABASE_URL=postgres://root@localhost:5432/test \
//!     cargo run -p matrx-orm-cli --example migrate -- serve
//! # after changing the models (here: Book, which no migration creates yet):
//! DATABASE_URL=... cargo run -p matrx-orm-cli --example migrate -- \
//!     migrate diff --dir matrx-orm-cli/examples/migrations --name add_books
//! DATABASE_URL=... cargo run -p matrx-orm-cli --example migrate -- migrate status \
//!     --dir matrx-orm-cli/examples/migrations
//! ```

use std::process::ExitCode;

use matrx_orm::migrate::{Migrations, Migrator};
use matrx_orm::{Db, Many, Model, ModelMeta, One};

/// `examples/migrations`, embedded at compile time: editing a file rebuilds this.
static MIGRATIONS: Migrations = matrx_orm::embed_migrations!("examples/migrations");

#[derive(Model, Debug)]
#[orm(table = "authors")]
pub struct Author {
    #[orm(primary_key, auto)]
    pub id: i64,
    #[orm(index)]
    pub name: String,
    #[orm(has_many(foreign_key = "author_id"))]
    pub books: Many<Book>,
}

#[derive(Model, Debug)]
#[orm(table = "books")]
pub struct Book {
    #[orm(primary_key, auto)]
    pub id: i64,
    pub author_id: i64,
    pub title: String,
    #[orm(belongs_to(key = "author_id"))]
    pub author: One<Author>,
}

fn models() -> Vec<&'static ModelMeta> {
    vec![Author::META, Book::META]
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@localhost:5432/test".to_owned());
    let db = Db::connect(&url).await?;
    for ran in db.migrate(&MIGRATIONS).await? {
        println!("applied {} {} in {:?}", ran.version, ran.name, ran.elapsed);
    }
    for line in Migrator::new(&MIGRATIONS).status(&db).await? {
        println!("{:>6} {:<20} {:?}", line.version, line.name, line.state);
    }
    println!("migrated; the application would start serving here");
    Ok(())
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("serve") {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("cannot start the runtime: {e}");
                return ExitCode::from(2);
            }
        };
        return match runtime.block_on(serve()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    matrx_orm_cli::cli::main(&models())
}
