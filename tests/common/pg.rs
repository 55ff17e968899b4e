//! A PostgreSQL database of a test's own, on the server `TRUSTPATH_TEST_PG`
//! names (default: the local one), dropped when the test ends. Without a
//! reachable server a test is skipped loudly, unless `CI` is set: then it
//! fails, so CI never passes without having run it.

use postgres::{Client, NoTls};

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestDb {
    /// The database's URL, for `--store`.
    pub url: String,
    name: String,
    admin: String,
}

/// Runs `f` on a thread of its own: the synchronous client must not run on
/// an async test's runtime thread.
fn apart<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("database helper panicked"))
}

impl TestDb {
    /// A fresh, migrated database; `None` when skipped (no server, not CI).
    pub fn create(test: &str) -> Option<TestDb> {
        let db = Self::create_empty(test)?;
        let (ok, _, err) = super::trustpath(&["store", "migrate", "--store", &db.url]);
        assert!(ok, "trustpath store migrate failed: {err}");
        Some(db)
    }

    /// A fresh database without the schema.
    pub fn create_empty(test: &str) -> Option<TestDb> {
        let admin = std::env::var("TRUSTPATH_TEST_PG").unwrap_or_else(|_| DEFAULT_SERVER.into());
        let name = format!(
            "tp_{}_{}_{}",
            test.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(30)
                .collect::<String>(),
            std::process::id(),
            rand::random::<u32>()
        );
        let created = apart(|| -> Result<(), postgres::Error> {
            let mut client = Client::connect(&admin, NoTls)?;
            // The name is made above from letters, digits and `_` only.
            client.batch_execute(&format!("CREATE DATABASE {name}"))
        });
        if let Err(e) = created {
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL at TRUSTPATH_TEST_PG is unreachable in CI: {e}");
            }
            eprintln!(
                "\n!!!!! SKIPPED {test}: no PostgreSQL at TRUSTPATH_TEST_PG ({e}); \
                 set CI=1 to make this a failure !!!!!\n"
            );
            return None;
        }
        let mut url = url::Url::parse(&admin).expect("TRUSTPATH_TEST_PG is a URL");
        url.set_path(&name);
        Some(TestDb {
            url: url.to_string(),
            name,
            admin,
        })
    }

    /// Runs SQL on the test's database (to look at or damage it).
    pub fn sql(&self, statements: &str) -> Vec<postgres::SimpleQueryMessage> {
        apart(|| {
            let mut client =
                Client::connect(&self.url, NoTls).expect("connect to the test database");
            client.simple_query(statements).expect("test SQL")
        })
    }

    /// The first column of the first row of `query`, as text.
    pub fn value(&self, query: &str) -> Option<String> {
        self.sql(query).into_iter().find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (&self.admin, &self.name);
        apart(|| {
            if let Ok(mut client) = Client::connect(admin, NoTls) {
                let _ =
                    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        });
    }
}
