//! The command line: `run`, `check` and `report`. Flags override the file, so one
//! shipped config serves every machine.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, TlsSettings};
use crate::telemetry::LogFormat;

/// knitcache: a caching reverse proxy that makes a slow ERP fast.
#[derive(Debug, Parser)]
#[command(name = "knitcache", version, about)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax); overrides RUST_LOG.
    #[arg(long, global = true)]
    pub log: Option<String>,
    /// Log line format. Default: json for `run` (log shippers), text for everything else.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy in front of the ERP.
    Run(Box<RunArgs>),
    /// Validate a config file and print its route table; exits non-zero on any error.
    Check {
        /// The config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print the performance report of a running proxy, read from its admin listener.
    Report {
        /// The admin listener, e.g. http://127.0.0.1:5009.
        #[arg(long, default_value = "http://127.0.0.1:5009")]
        admin: String,
        /// `text` for people, `json` for machines.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
}

/// Output of `knitcache report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// An aligned table.
    Text,
    /// JSON rows.
    Json,
}

impl Cli {
    /// The log format in force: the flag's, else json for `run` and text for the rest.
    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or(match self.command {
            Command::Run(_) => LogFormat::Json,
            _ => LogFormat::Text,
        })
    }
}

/// `knitcache run` flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file.
    #[arg(short, long)]
    pub config: PathBuf,
    /// Override `listen`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Serve HTTPS on this address (overrides `listen_tls`); needs `--tls-cert` and
    /// `--tls-key`. `tls.redirect_http` and `tls.hsts_max_age_secs` keep the file's values.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub listen_tls: Option<SocketAddr>,
    /// The HTTPS certificate chain, PEM (overrides `tls.cert_file`); with `--listen-tls`.
    #[arg(long, requires = "listen_tls")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key, PEM (overrides `tls.key_file`); with `--listen-tls`.
    #[arg(long, requires = "listen_tls")]
    pub tls_key: Option<PathBuf>,
    /// Override `upstream.address`.
    #[arg(long)]
    pub upstream: Option<SocketAddr>,
    /// Override `admin_listen`.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Override `cache.dir`.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Override `server.pid_file` (a service manager that tracks the process by this file
    /// wants it in its own runtime directory).
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Override `server.upgrade_sock`.
    #[arg(long)]
    pub upgrade_sock: Option<PathBuf>,
    /// Also reload the file when it changes (checked every 2 s); SIGHUP always reloads it.
    #[arg(long)]
    pub watch_config: bool,
    /// Cluster mode on this Redis-protocol server (`redis://host:6379/0`, `rediss://` for
    /// TLS); overrides `cluster.url`. The password comes from `cluster.password_env`'s variable.
    #[arg(long, value_name = "URL", value_parser = crate::config::cluster_url)]
    pub cluster: Option<String>,
    /// Take over from a running knitcache (graceful upgrade): receive its listening sockets
    /// through `server.upgrade_sock`, then send it SIGQUIT (within ~5 s).
    #[arg(long)]
    pub upgrade: bool,
}

impl RunArgs {
    /// Applies the flags that were given on top of the file's values.
    pub fn apply(&self, config: &mut Config) {
        if let Some(a) = self.listen {
            config.listen = a;
        }
        if let (Some(listen), Some(cert_file), Some(key_file)) =
            (self.listen_tls, &self.tls_cert, &self.tls_key)
        {
            let (redirect_http, hsts_max_age) = config
                .tls
                .as_ref()
                .map_or((false, None), |t| (t.redirect_http, t.hsts_max_age));
            config.tls = Some(TlsSettings {
                listen,
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                redirect_http,
                hsts_max_age,
            });
        }
        if let Some(a) = self.upstream {
            config.upstream.address = a;
        }
        if let Some(a) = self.admin_listen {
            config.admin_listen = a;
        }
        if let Some(d) = &self.cache_dir {
            config.cache.dir = d.clone();
        }
        if let Some(f) = &self.pid_file {
            config.server.pid_file = f.clone();
        }
        if let Some(s) = &self.upgrade_sock {
            config.server.upgrade_sock = s.clone();
        }
        if let Some(url) = &self.cluster {
            config.cluster = Some(match config.cluster.take() {
                Some(c) => crate::config::ClusterSettings {
                    url: url.clone(),
                    ..c
                },
                None => crate::config::ClusterSettings::with_url(url.clone()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_flags_parse() {
        let cli = Cli::try_parse_from([
            "knitcache",
            "run",
            "-c",
            "x.yaml",
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "127.0.0.1:2",
            "--admin-listen",
            "127.0.0.1:3",
            "--cache-dir",
            "/tmp/c",
            "--pid-file",
            "/run/k/k.pid",
            "--upgrade-sock",
            "/run/k/u.sock",
        ])
        .expect("parse");
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.listen, Some("127.0.0.1:1".parse().expect("addr")));
        assert_eq!(args.cache_dir, Some(PathBuf::from("/tmp/c")));
        assert_eq!(args.pid_file, Some(PathBuf::from("/run/k/k.pid")));
        assert_eq!(args.upgrade_sock, Some(PathBuf::from("/run/k/u.sock")));
    }

    #[test]
    fn run_logs_json_and_the_rest_text_unless_told() {
        let run = Cli::try_parse_from(["knitcache", "run", "-c", "x"]).expect("parse");
        assert_eq!(run.log_format(), LogFormat::Json);
        let check = Cli::try_parse_from(["knitcache", "check", "-c", "x"]).expect("parse");
        assert_eq!(check.log_format(), LogFormat::Text);
        let told = Cli::try_parse_from(["knitcache", "--log-format", "text", "run", "-c", "x"])
            .expect("parse");
        assert_eq!(told.log_format(), LogFormat::Text);
    }

    #[test]
    fn tls_flags_go_together_and_replace_the_endpoint() {
        let alone =
            Cli::try_parse_from(["knitcache", "run", "-c", "x", "--listen-tls", "127.0.0.1:1"]);
        assert!(
            alone.is_err(),
            "--listen-tls without --tls-cert and --tls-key"
        );
        let cert_only = Cli::try_parse_from(["knitcache", "run", "-c", "x", "--tls-cert", "c.pem"]);
        assert!(cert_only.is_err(), "--tls-cert without --listen-tls");
        let cli = Cli::try_parse_from([
            "knitcache",
            "run",
            "-c",
            "x",
            "--listen-tls",
            "127.0.0.1:4",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ])
        .expect("parse");
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let mut config =
            crate::config::parse("upstream: { address: \"127.0.0.1:5007\" }\n", "t.yaml")
                .expect("valid");
        args.apply(&mut config);
        let tls = config.tls.expect("TLS on");
        assert_eq!(tls.listen, "127.0.0.1:4".parse().expect("addr"));
        assert_eq!(tls.cert_file, PathBuf::from("c.pem"));
        assert_eq!(tls.key_file, PathBuf::from("k.pem"));
        assert!(!tls.redirect_http);
    }

    #[test]
    fn cluster_flag_turns_cluster_mode_on_and_refuses_a_password() {
        let cli = Cli::try_parse_from([
            "knitcache",
            "run",
            "-c",
            "x",
            "--cluster",
            "redis://127.0.0.1:6379/0",
        ])
        .expect("parse");
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let mut config =
            crate::config::parse("upstream:\n  address: \"127.0.0.1:5007\"\n", "test.yaml")
                .expect("config");
        assert_eq!(config.cluster, None, "off by default");
        args.apply(&mut config);
        let cluster = config.cluster.expect("on");
        assert_eq!(cluster.url, "redis://127.0.0.1:6379/0");
        assert_eq!(cluster.password_env, "KNITCACHE_REDIS_PASSWORD");
        let err = Cli::try_parse_from([
            "knitcache",
            "run",
            "-c",
            "x",
            "--cluster",
            "redis://:secret@127.0.0.1:6379",
        ])
        .expect_err("a password on the command line is refused");
        assert!(err.to_string().contains("password_env"), "{err}");
    }

    #[test]
    fn bad_address_is_refused() {
        let err = Cli::try_parse_from(["knitcache", "run", "-c", "x", "--listen", "localhost"])
            .expect_err("must fail");
        assert!(err.to_string().contains("--listen"), "{err}");
    }
}
