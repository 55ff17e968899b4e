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
        Self::create_on(&admin, test)
    }

    /// A fresh, migrated database on the server `admin` names.
    pub fn create_migrated_on(admin: &str, test: &str) -> Option<TestDb> {
        let db = Self::create_on(admin, test)?;
        let (ok, _, err) = super::trustpath(&["store", "migrate", "--store", &db.url]);
        assert!(ok, "trustpath store migrate failed: {err}");
        Some(db)
    }

    fn create_on(admin: &str, test: &str) -> Option<TestDb> {
        let admin = admin.to_string();
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
            let mut client = Client::connect(admin.as_str(), NoTls)?;
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

/// A PostgreSQL cluster of a test's own (`initdb`, `pg_ctl`) in a temp
/// directory, on a free loopback port: a test may stop and start it without
/// disturbing the shared server. Stopped and removed when dropped.
pub struct OwnCluster {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
}

impl OwnCluster {
    /// `None` when skipped: no PostgreSQL binaries here, and not CI.
    pub fn start(test: &str) -> Option<OwnCluster> {
        let Some(bin) = server_binaries() else {
            if std::env::var_os("CI").is_some() {
                panic!("no PostgreSQL server binaries (initdb, pg_ctl) on this CI machine");
            }
            eprintln!("\n!!!!! SKIPPED {test}: no initdb/pg_ctl here !!!!!\n");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // PostgreSQL refuses to run as root: then its own user runs it.
        if is_root() {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:", dir.path().to_str().unwrap()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the cluster's directory to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = OwnCluster { dir, bin, port };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-N"],
        );
        cluster.start_again();
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            std::process::Command::new(&program)
        };
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URL of its `postgres` database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if is_root() {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            std::process::Command::new(&program).args(args).output()
        };
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid only reads the process's user id.
    unsafe { libc::geteuid() == 0 }
}

/// Where `initdb` and `pg_ctl` are: `pg_config --bindir`, else Debian's place.
fn server_binaries() -> Option<std::path::PathBuf> {
    let from_pg_config = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"));
    from_pg_config
        .into_iter()
        .chain(debian)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}
