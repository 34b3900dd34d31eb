//! The `wordpress` connector against a real WordPress (Debian package) on a throwaway
//! MariaDB, served by `php -S` on loopback, installed over HTTP by this harness. One
//! WordPress per test binary (started once, shared); every test uses its own people.
//!
//! Needs scripts/peers/install-wordpress.sh. When LATCHKEY_REQUIRE_PEERS is set and
//! WordPress cannot start, the tests fail; otherwise they print a notice and pass.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{T0, Workspace, member, out};
use latchkey::connectors::wordpress::username_for;
use latchkey::connectors::{
    Completeness, Connector, ErrorClass, Op, Registry, Secret, SecretSource,
};
use latchkey::model::SystemSpec;
use serde_json::{Value, json};

const ADMIN: &str = "admin";
const ADMIN_PW: &str = "Adm1n-pass-xyz";

/// A running WordPress.
struct Wp {
    url: String,
    app_password: String,
    admin_id: u64,
    /// The wrappers that stop MariaDB and PHP when this process exits (stdin closes).
    _guards: Vec<Child>,
}

static WP: OnceLock<Result<Wp, String>> = OnceLock::new();

/// The shared WordPress, or `None` (after a notice) when it cannot start and peers are
/// not required.
fn wp() -> Option<&'static Wp> {
    match WP.get_or_init(start) {
        Ok(wp) => Some(wp),
        Err(e) if std::env::var("LATCHKEY_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty()) => {
            panic!("LATCHKEY_REQUIRE_PEERS is set but WordPress could not start: {e}")
        }
        Err(e) => {
            eprintln!(
                "SKIP: WordPress is not available ({e}); run scripts/peers/install-wordpress.sh"
            );
            None
        }
    }
}

fn free_port() -> Result<u16, String> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port())
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Starts `args` in the background under a shell that stops it (and runs `cleanup`)
/// when our end of its stdin closes, i.e. when this test process exits. `setsid` gives
/// the server its own process group, so PHP's worker processes stop with it.
fn guarded(
    args: &[&str],
    env: &[(&str, &str)],
    log: &Path,
    cleanup: &str,
) -> Result<Child, String> {
    let script = format!(
        "setsid \"$@\" </dev/null & s=$!; cat >/dev/null; kill -TERM -$s 2>/dev/null || kill -TERM $s; wait $s; {cleanup}"
    );
    let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).arg("sh").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", args[0]))
}

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{what} was not ready within {}s", limit.as_secs()))
}

fn start() -> Result<Wp, String> {
    for needed in [
        "/usr/share/wordpress/wp-load.php",
        "/usr/sbin/mariadbd",
        "/usr/bin/mariadb-install-db",
        "/usr/bin/php",
    ] {
        if !Path::new(needed).exists() {
            return Err(format!("{needed} is missing"));
        }
    }
    let base: PathBuf = tempfile::Builder::new()
        .prefix("latchkey-wp-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let mysql_dir = base.join("mysql");
    let run_dir = base.join("run");
    std::fs::create_dir_all(&mysql_dir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&run_dir).map_err(|e| e.to_string())?;
    // The mysql OS user must reach and own its directories.
    run(Command::new("chmod").arg("755").arg(&base))?;
    run(Command::new("chown")
        .arg("mysql:mysql")
        .arg(&mysql_dir)
        .arg(&run_dir))?;
    run(Command::new("mariadb-install-db")
        .arg("--user=mysql")
        .arg(format!("--datadir={}", mysql_dir.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db"))?;
    let db_port = free_port()?;
    let socket = run_dir.join("mysqld.sock");
    let mut guards = Vec::new();
    guards.push(guarded(
        &[
            "/usr/sbin/mariadbd",
            "--no-defaults",
            "--user=mysql",
            &format!("--datadir={}", mysql_dir.display()),
            &format!("--socket={}", socket.display()),
            &format!("--pid-file={}", run_dir.join("mysqld.pid").display()),
            &format!("--log-error={}", run_dir.join("mysqld.err").display()),
            "--bind-address=127.0.0.1",
            &format!("--port={db_port}"),
            "--skip-name-resolve",
        ],
        &[],
        &base.join("mariadbd.log"),
        // Once MariaDB has stopped, its data and the logs go too.
        &format!("rm -rf {}", base.display()),
    )?);
    wait_until("MariaDB", Duration::from_secs(30), || {
        Command::new("mariadb-admin")
            .arg(format!("--socket={}", socket.display()))
            .args(["-uroot", "ping"])
            .output()
            .is_ok_and(|o| o.status.success())
    })?;
    run(Command::new("mariadb")
        .arg(format!("--socket={}", socket.display()))
        .args([
            "-uroot",
            "-e",
            "CREATE DATABASE wordpress; CREATE USER 'wp'@'127.0.0.1' IDENTIFIED BY 'wppw'; \
             GRANT ALL ON wordpress.* TO 'wp'@'127.0.0.1';",
        ]))?;

    // Debian's wp-config.php loads /etc/wordpress/config-$WORDPRESS_CONFIG.php; a PHP
    // prepend file sets that name per server so parallel runs never share a config.
    let web_port = free_port()?;
    let url = format!("http://127.0.0.1:{web_port}");
    let name = format!("latchkey-test-{web_port}");
    let config_path = format!("/etc/wordpress/config-{name}.php");
    run(Command::new("cp")
        .arg("-a")
        .arg("/var/lib/wordpress/wp-content")
        .arg(base.join("wp-content")))?;
    let salts: String = [
        "AUTH_KEY",
        "SECURE_AUTH_KEY",
        "LOGGED_IN_KEY",
        "NONCE_KEY",
        "AUTH_SALT",
        "SECURE_AUTH_SALT",
        "LOGGED_IN_SALT",
        "NONCE_SALT",
    ]
    .iter()
    .map(|k| format!("define('{k}', '{k}-{web_port}-test-only');\n"))
    .collect();
    std::fs::write(
        &config_path,
        format!(
            "<?php\ndefine('DB_NAME', 'wordpress');\ndefine('DB_USER', 'wp');\ndefine('DB_PASSWORD', 'wppw');\n\
             define('DB_HOST', '127.0.0.1:{db_port}');\ndefine('WP_HOME', '{url}');\ndefine('WP_SITEURL', '{url}');\n\
             define('WP_CONTENT_DIR', '{}');\ndefine('WP_ENVIRONMENT_TYPE', 'local');\ndefine('DISABLE_WP_CRON', true);\n\
             define('AUTOMATIC_UPDATER_DISABLED', true);\ndefine('WP_HTTP_BLOCK_EXTERNAL', true);\n{salts}$table_prefix = 'wp_';\n",
            base.join("wp-content").display()
        ),
    )
    .map_err(|e| format!("cannot write {config_path}: {e}"))?;
    let prepend = base.join("prepend.php");
    std::fs::write(
        &prepend,
        format!("<?php $_SERVER['WORDPRESS_CONFIG'] = '{name}';\n"),
    )
    .map_err(|e| e.to_string())?;
    guards.push(guarded(
        &[
            "php",
            "-d",
            &format!("auto_prepend_file={}", prepend.display()),
            "-S",
            &format!("127.0.0.1:{web_port}"),
            "-t",
            "/usr/share/wordpress",
        ],
        &[("PHP_CLI_SERVER_WORKERS", "4")],
        &base.join("php.log"),
        &format!("rm -f {config_path}"),
    )?);
    wait_until("php -S", Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", web_port)).is_ok()
    })?;

    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{url}/wp-admin/install.php?step=2"))
            .form(&[
                ("weblog_title", "Staging store"),
                ("user_name", ADMIN),
                ("admin_password", ADMIN_PW),
                ("admin_password2", ADMIN_PW),
                ("pw_weak", "1"),
                ("admin_email", "admin@agency.example"),
                ("blog_public", "0"),
            ])
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| format!("install: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("install answered {}", resp.status()));
        }
        Ok::<_, String>(())
    })?;
    // The application password and the agency's custom roles, through PHP's CLI.
    let php = format!(
        r#"$_SERVER["HTTP_HOST"]="127.0.0.1"; $_SERVER["WORDPRESS_CONFIG"]="{name}";
        define("WP_USE_THEMES", false); require "/usr/share/wordpress/wp-load.php";
        add_role("shop_manager", "Shop manager", ["read" => true, "edit_posts" => true]);
        add_role("fulfilment", "Order fulfilment", ["read" => true]);
        $u = get_user_by("login", "{ADMIN}");
        [$pw, $item] = WP_Application_Passwords::create_new_application_password($u->ID, ["name" => "latchkey"]);
        echo $u->ID, " ", $pw;"#
    );
    let answer = run(Command::new("php").arg("-r").arg(php))?;
    let (id, pw) = answer
        .trim()
        .split_once(' ')
        .ok_or_else(|| format!("unexpected PHP answer: {answer}"))?;
    Ok(Wp {
        url,
        app_password: pw.to_string(),
        admin_id: id.parse().map_err(|_| format!("bad admin id {id}"))?,
        _guards: guards,
    })
}

impl Wp {
    /// A raw REST call as the admin, for arranging and checking state behind latchkey.
    async fn rest(
        &self,
        method: reqwest::Method,
        route: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}/", self.url))
            .query(&[("rest_route", format!("/wp/v2{route}"))])
            .query(query)
            .basic_auth(ADMIN, Some(&self.app_password));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("rest call");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The user with this email as WordPress holds it, if any.
    async fn user(&self, email: &str) -> Option<Value> {
        let (status, users) = self
            .rest(
                reqwest::Method::GET,
                "/users",
                &[("context", "edit"), ("search", email)],
                None,
            )
            .await;
        assert_eq!(status, 200, "{users}");
        users
            .as_array()
            .expect("users")
            .iter()
            .find(|u| u["email"] == email)
            .cloned()
    }

    /// Creates a user directly, as an admin would by hand (not latchkey's).
    async fn create_unmanaged(&self, username: &str, email: &str, roles: &[&str]) -> u64 {
        let (status, u) = self
            .rest(
                reqwest::Method::POST,
                "/users",
                &[],
                Some(json!({"username": username, "email": email, "password": "Own-pw-123456", "roles": roles})),
            )
            .await;
        assert_eq!(status, 201, "{u}");
        u["id"].as_u64().expect("id")
    }

    fn connector(&self, extra: Value, password: &str) -> Box<dyn Connector> {
        let mut connection = json!({"url": self.url, "user": ADMIN, "reassignTo": ADMIN});
        for (k, v) in extra.as_object().expect("object") {
            if v.is_null() {
                connection.as_object_mut().expect("object").remove(k);
            } else {
                connection[k] = v.clone();
            }
        }
        let spec: SystemSpec = serde_json::from_value(json!({
            "type": "wordpress",
            "environment": "staging",
            "connection": connection,
            "credentials": {"secretKey": "wp"},
        }))
        .expect("spec");
        let mut secrets = SecretSource::default();
        secrets
            .secret_keys
            .insert("wp".into(), Secret::new(password));
        Registry::builtin(secrets)
            .connect("store", &spec)
            .unwrap_or_else(|e| panic!("connect: {e}"))
    }
}

fn roles(u: &Value) -> Vec<String> {
    let mut r: Vec<String> = u["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|r| r.as_str().expect("role").to_string())
        .collect();
    r.sort();
    r
}

fn add(identity: &str, role: &str) -> Op {
    Op::AddEntitlement {
        identity: identity.into(),
        entitlement: role.into(),
    }
}

fn remove(identity: &str, role: &str) -> Op {
    Op::RemoveEntitlement {
        identity: identity.into(),
        entitlement: role.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_grant_revoke_disable_and_delete_with_reassign_are_idempotent() {
    let Some(wp) = tokio::task::spawn_blocking(wp).await.unwrap() else {
        return;
    };
    let c = wp.connector(json!({}), &wp.app_password);
    let erin = "erin.life@acme.example";
    let create = Op::CreateAccount {
        identity: erin.into(),
        display_name: Some("Erin Fulfil".into()),
    };
    for op in [
        &create,
        &create,
        &add(erin, "shop_manager"),
        &add(erin, "fulfilment"),
        &add(erin, "shop_manager"),
    ] {
        c.apply(op).await.unwrap_or_else(|e| panic!("{op:?}: {e}"));
    }
    let u = wp.user(erin).await.expect("created");
    assert_eq!(roles(&u), ["fulfilment", "shop_manager"]);
    assert_eq!(u["username"], username_for(erin));
    assert_eq!(u["name"], "Erin Fulfil");
    assert_eq!(u["description"], "latchkey:managed");

    // Read after write.
    let snap = c.read().await.expect("read");
    assert_eq!(snap.completeness, Completeness::Complete);
    let acc = snap
        .managed
        .iter()
        .find(|a| a.identity == erin)
        .expect("managed");
    assert!(acc.active);
    assert_eq!(
        acc.entitlements.iter().collect::<Vec<_>>(),
        ["fulfilment", "shop_manager"]
    );
    assert!(snap.unmanaged.contains_key("admin@agency.example"));

    c.apply(&remove(erin, "fulfilment")).await.expect("revoke");
    c.apply(&remove(erin, "fulfilment"))
        .await
        .expect("revoke again");
    assert_eq!(roles(&wp.user(erin).await.unwrap()), ["shop_manager"]);

    // Disable: WordPress has no disabled state, so every role goes.
    let disable = Op::DisableAccount {
        identity: erin.into(),
    };
    c.apply(&disable).await.expect("disable");
    c.apply(&disable).await.expect("disable again");
    let u = wp.user(erin).await.unwrap();
    assert!(roles(&u).is_empty(), "{u}");
    let snap = c.read().await.unwrap();
    let acc = snap.managed.iter().find(|a| a.identity == erin).unwrap();
    assert!(!acc.active && acc.entitlements.is_empty());
    c.apply(&Op::EnableAccount {
        identity: erin.into(),
    })
    .await
    .expect("enable");
    let snap = c.read().await.unwrap();
    assert!(
        snap.managed
            .iter()
            .find(|a| a.identity == erin)
            .unwrap()
            .active
    );
    assert_eq!(
        wp.user(erin).await.unwrap()["description"],
        "latchkey:managed"
    );

    // Delete reassigns the user's content to connection.reassignTo.
    let id = u["id"].as_u64().unwrap();
    let (status, post) = wp
        .rest(
            reqwest::Method::POST,
            "/posts",
            &[],
            Some(json!({"title": "Packing notes", "status": "publish", "author": id})),
        )
        .await;
    assert_eq!(status, 201, "{post}");
    let delete = Op::DeleteAccount {
        identity: erin.into(),
    };
    c.apply(&delete).await.expect("delete");
    c.apply(&delete).await.expect("delete again");
    assert!(wp.user(erin).await.is_none());
    let (_, post) = wp
        .rest(
            reqwest::Method::GET,
            &format!("/posts/{}", post["id"]),
            &[("context", "edit")],
            None,
        )
        .await;
    assert_eq!(post["author"], wp.admin_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmanaged_user_is_reported_and_never_changed() {
    let Some(wp) = tokio::task::spawn_blocking(wp).await.unwrap() else {
        return;
    };
    let c = wp.connector(json!({}), &wp.app_password);
    let owner = "owner.unm@acme.example";
    wp.create_unmanaged("owner-unm", owner, &["editor"]).await;
    let snap = c.read().await.unwrap();
    // Reported with its roles (for import), never managed.
    assert_eq!(
        snap.unmanaged[owner].entitlements,
        ["editor".to_string()].into()
    );
    assert!(snap.managed.iter().all(|a| a.identity != owner));
    for op in [
        Op::CreateAccount {
            identity: owner.into(),
            display_name: None,
        },
        add(owner, "shop_manager"),
        remove(owner, "editor"),
        Op::DisableAccount {
            identity: owner.into(),
        },
        Op::DeleteAccount {
            identity: owner.into(),
        },
    ] {
        let e = c.apply(&op).await.expect_err("out of scope");
        assert_eq!(e.class, ErrorClass::Permanent, "{op:?}");
        assert!(
            e.message
                .contains("is not managed by latchkey; it is left alone"),
            "{op:?}: {e}"
        );
    }
    let u = wp.user(owner).await.expect("still there");
    assert_eq!(roles(&u), ["editor"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_username_answers_500_and_is_reported_out_of_scope() {
    let Some(wp) = tokio::task::spawn_blocking(wp).await.unwrap() else {
        return;
    };
    let c = wp.connector(json!({}), &wp.app_password);
    let dup = "dup@acme.example";
    // Someone already has the login latchkey would pick, under another email.
    let other_id = wp
        .create_unmanaged(&username_for(dup), "someone.else@acme.example", &["author"])
        .await;
    let (status, body) = wp
        .rest(
            reqwest::Method::POST,
            "/users",
            &[],
            Some(json!({"username": username_for(dup), "email": "x@acme.example", "password": "Pw-123456789"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (500, Some("existing_user_login")),
        "WordPress's quirk"
    );
    let e = c
        .apply(&Op::CreateAccount {
            identity: dup.into(),
            display_name: None,
        })
        .await
        .expect_err("taken");
    assert_eq!(e.class, ErrorClass::Permanent);
    assert_eq!(
        e.message,
        format!(
            "cannot create {dup}: the WordPress login {} or the email is taken by an account latchkey does not manage; it is left alone",
            username_for(dup)
        )
    );
    assert!(wp.user(dup).await.is_none());
    let (_, other) = wp
        .rest(
            reqwest::Method::GET,
            &format!("/users/{other_id}"),
            &[("context", "edit")],
            None,
        )
        .await;
    assert_eq!(roles(&other), ["author"]);
    assert_eq!(other["description"], "");
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_page_through_x_wp_totalpages_and_a_page_cap_is_partial() {
    let Some(wp) = tokio::task::spawn_blocking(wp).await.unwrap() else {
        return;
    };
    let c = wp.connector(json!({}), &wp.app_password);
    let people: Vec<String> = (1..=5).map(|i| format!("pager{i}@acme.example")).collect();
    for p in &people {
        c.apply(&Op::CreateAccount {
            identity: p.clone(),
            display_name: None,
        })
        .await
        .unwrap();
        c.apply(&add(p, "fulfilment")).await.unwrap();
    }
    let full = c.read().await.unwrap();
    let paged = wp
        .connector(json!({"perPage": 2}), &wp.app_password)
        .read()
        .await
        .unwrap();
    assert_eq!(paged.completeness, Completeness::Complete);
    // Only this test's accounts: the other tests share the site and create and delete
    // their own users while these reads run.
    let ids = |s: &latchkey::connectors::Snapshot| {
        let mut v: Vec<_> = s
            .managed
            .iter()
            .filter(|a| a.identity.starts_with("pager"))
            .map(|a| (a.identity.clone(), a.entitlements.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&paged), ids(&full));
    assert_eq!(ids(&paged).len(), people.len());
    for p in &people {
        assert!(
            paged.managed.iter().any(|a| &a.identity == p),
            "{p} on a later page"
        );
    }
    let capped = wp
        .connector(json!({"perPage": 2, "maxPages": 1}), &wp.app_password)
        .read()
        .await
        .unwrap();
    match capped.completeness {
        Completeness::Partial(reason) => assert!(
            reason.starts_with("stopped after 1 pages of users (the site announces "),
            "{reason}"
        ),
        Completeness::Complete => panic!("a capped read must not be complete"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_application_password_is_a_config_error_without_the_password() {
    let Some(wp) = tokio::task::spawn_blocking(wp).await.unwrap() else {
        return;
    };
    let wrong = "abcd EFGH ijkl MNOP qrst UVWX";
    let c = wp.connector(json!({}), wrong);
    let e = c.read().await.expect_err("401");
    assert_eq!(e.class, ErrorClass::Config);
    assert!(e.message.starts_with("GET /users: HTTP 401"), "{e}");
    assert!(
        !e.message.contains(wrong) && !e.message.contains("abcdEFGH"),
        "{e}"
    );
    let e = c
        .apply(&add("nobody@acme.example", "editor"))
        .await
        .expect_err("401");
    assert_eq!(e.class, ErrorClass::Config);
    assert!(!e.message.contains(wrong), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_without_reassign_to_is_a_config_error_and_deletes_nothing() {
    let Some(wp) = tokio::task::spawn_blocking(wp).await.unwrap() else {
        return;
    };
    let c = wp.connector(json!({"reassignTo": null}), &wp.app_password);
    let lee = "lee.keep@acme.example";
    c.apply(&Op::CreateAccount {
        identity: lee.into(),
        display_name: None,
    })
    .await
    .unwrap();
    let e = c
        .apply(&Op::DeleteAccount {
            identity: lee.into(),
        })
        .await
        .expect_err("no reassignTo");
    assert_eq!(e.class, ErrorClass::Config);
    assert!(
        e.message
            .starts_with("connection.reassignTo is required to delete WordPress users"),
        "{e}"
    );
    assert!(wp.user(lee).await.is_some());
    let e = wp
        .connector(json!({"reassignTo": "no-such-login"}), &wp.app_password)
        .apply(&Op::DeleteAccount {
            identity: lee.into(),
        })
        .await
        .expect_err("unknown login");
    assert_eq!(
        e.message,
        "connection.reassignTo: no WordPress user with login no-such-login"
    );
    assert!(wp.user(lee).await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_site_is_transient() {
    let port = free_port().unwrap();
    let spec: SystemSpec = serde_json::from_value(json!({
        "type": "wordpress",
        "environment": "staging",
        "connection": {"url": format!("http://127.0.0.1:{port}"), "user": "admin", "timeout": "5s"},
        "credentials": {"secretKey": "wp"},
    }))
    .unwrap();
    let mut secrets = SecretSource::default();
    secrets
        .secret_keys
        .insert("wp".into(), Secret::new("sekrit pass word"));
    let c = Registry::builtin(secrets).connect("store", &spec).unwrap();
    let e = c.read().await.expect_err("refused");
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    assert!(e.message.starts_with("GET /users failed: "), "{e}");
    assert!(!e.message.contains("sekrit"), "{e}");
}

#[test]
fn missing_settings_are_config_errors() {
    let registry = |secret: bool| {
        let mut secrets = SecretSource::default();
        if secret {
            secrets.secret_keys.insert("wp".into(), Secret::new("pw"));
        }
        Registry::builtin(secrets)
    };
    for (connection, creds, expected) in [
        (
            json!({"user": "admin"}),
            true,
            "connection: missing field `url` (System store; docs/connectors.md lists the settings of type wordpress)",
        ),
        (
            json!({"url": "http://127.0.0.1:9"}),
            true,
            "connection: missing field `user` (System store; docs/connectors.md lists the settings of type wordpress)",
        ),
        (
            json!({"url": "http://127.0.0.1:9", "user": "admin"}),
            false,
            "type wordpress needs credentials",
        ),
        (
            json!({"url": "http://127.0.0.1:9", "user": "admin", "perPage": 0}),
            true,
            "connection.perPage must be a positive number",
        ),
    ] {
        let mut spec =
            json!({"type": "wordpress", "environment": "staging", "connection": connection});
        if creds {
            spec["credentials"] = json!({"secretKey": "wp"});
        }
        let spec: SystemSpec = serde_json::from_value(spec).unwrap();
        let e = match registry(creds).connect("store", &spec) {
            Ok(_) => panic!("{expected}: connected"),
            Err(e) => e,
        };
        assert_eq!(e.class, ErrorClass::Config);
        assert!(e.message.starts_with(expected), "{e}");
    }
}

/// This test's first commit: 30 days before T0, so that every instant it applies at is
/// in the past (`apply` refuses a `--now` in the future).
const START: i64 = T0 - 30 * 86_400;

#[test]
fn latchkey_apply_grants_for_14_days_then_expires_and_offboards_through_the_cli() {
    let Some(wp) = wp() else {
        return;
    };
    let ws = Workspace::new();
    // prune is off: other tests share this WordPress and their users must stay.
    let system = format!(
        r#"apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {{name: store}}
spec:
  type: wordpress
  environment: staging
  connection: {{url: "{}", user: admin, reassignTo: admin}}
  credentials: {{env: WP_APP_PASSWORD}}
  prune: false
  offboard: delete
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {{name: fulfilment}}
spec:
  entitlements: {{store: [shop_manager, fulfilment]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {{name: acme}}
spec:
  allowedRoles: [fulfilment]
"#,
        wp.url
    );
    ws.commit(
        &[
            ("latchkey.yaml", &system),
            (
                "clients/acme/members.yaml",
                &member("cli-erin", "    - {role: fulfilment, for: 14d}"),
            ),
        ],
        START,
        "store",
    );
    let latchkey = |args: &[&str]| {
        let o = out(&Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(args)
            .current_dir(ws.path())
            .env("WP_APP_PASSWORD", &wp.app_password)
            .env("NO_COLOR", "1")
            .env("LATCHKEY_LOG", "trace")
            .output()
            .expect("run"));
        for text in [&o.1, &o.2] {
            // Even at trace level: neither the password nor the Basic auth header.
            assert!(
                !text.contains(&wp.app_password),
                "the password leaked: {text}"
            );
            assert!(!text.contains("Basic "), "the auth header leaked: {text}");
        }
        o
    };
    let erin = "cli-erin@acme.example";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = "2026-10-21T13:00:00Z";
    let (code, stdout, _) = latchkey(&["plan", "access", "--now", now]);
    assert_eq!(code, 2, "changes pending: {stdout}");
    assert!(
        stdout.contains(&format!("+ {erin}")) && stdout.contains("3 changes: 3 to grant"),
        "{stdout}"
    );
    let (code, stdout, stderr) = latchkey(&["apply", "access", "--rev", "main", "--now", now]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let u = rt.block_on(wp.user(erin)).expect("created");
    assert_eq!(roles(&u), ["fulfilment", "shop_manager"]);
    let (code, stdout, _) = latchkey(&["plan", "access", "--now", now]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("0 changes"), "{stdout}");

    // 15 days later the grant has expired: both roles go, the user stays.
    let later = "2026-11-05T13:00:00Z";
    let (code, stdout, _) = latchkey(&["plan", "access", "--now", later]);
    assert_eq!(code, 2, "changes pending: {stdout}");
    assert!(
        stdout.contains(&format!(
            "- {erin}        revoke shop_manager              expired"
        )),
        "{stdout}"
    );
    let (code, stdout, stderr) = latchkey(&["apply", "access", "--rev", "main", "--now", later]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let u = rt.block_on(wp.user(erin)).expect("still there");
    assert!(roles(&u).is_empty(), "{u}");
    let expired: Vec<_> = ws
        .ledger()
        .into_iter()
        .filter(|r| r.to_string().contains("expired"))
        .collect();
    assert_eq!(expired.len(), 2, "two expiry records");

    // Offboarding deletes the user.
    ws.commit(
        &[(
            "clients/acme/members.yaml",
            &member("cli-erin", "    - {role: fulfilment, for: 14d}")
                .replace("  client: acme\n", "  client: acme\n  offboarded: true\n"),
        )],
        START + 20 * 86_400,
        "offboard erin",
    );
    let gone = "2026-11-11T13:00:00Z";
    // acme's last member goes, so the empty-client guard asks for a reason.
    let (code, stdout, stderr) = latchkey(&[
        "apply",
        "access",
        "--rev",
        "main",
        "--now",
        gone,
        "--allow-mass-revoke",
        "acme's engagement ended",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "- {erin}        delete account                   offboarded"
        )),
        "{stdout}"
    );
    assert!(rt.block_on(wp.user(erin)).is_none(), "deleted");
    let (code, stdout, _) = latchkey(&["plan", "access", "--now", gone]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("0 changes"), "{stdout}");
}

/// examples/store-staging validates as a repository.
#[test]
fn example_store_staging_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/store-staging");
    let files = [
        "latchkey.yaml",
        "clients/harbour/client.yaml",
        "clients/harbour/members.yaml",
        "team/agency.yaml",
    ];
    let contents: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(root.join(f)).expect("example file"))
        .collect();
    let ws = Workspace::new();
    let edits: Vec<(&str, &str)> = files
        .iter()
        .zip(&contents)
        .map(|(f, c)| (*f, c.as_str()))
        .collect();
    let head = ws.commit(&edits, T0, "example");
    let (code, stdout, stderr) = out(&ws.latchkey(&[
        "validate",
        "access",
        "--rev",
        "main",
        "--now",
        "2026-11-20T13:00:00Z",
    ]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stderr,
        format!(
            "main@sha1:{head}: valid (1 systems, 2 roles, 2 clients, 2 members, 2 grants; 0 warnings)\n"
        )
    );
}
